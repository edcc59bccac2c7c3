//! Several servers, as real `drover` processes on 127.0.0.x addresses (and, for the
//! partition test, each in its own network namespace on a bridge): bootstrap with
//! `bootstrap_expect`, a leader killed during a stream of registrations, restarts, a server
//! moving to a new address, backup and restore, and a server cut off from the others.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_tests::servers::{
    Extra, ServerSpec, leader_of, loopback_specs as specs, server_config, start, wait_leader,
};
use drover_tests::*;
use serde_json::{Value, json};

/// Generous: the machine running the tests may be busy.
const LONG: Duration = Duration::from_secs(60);

/// A job that is cheap to register (it places nowhere: no datacenter matches).
fn cheap_job(id: &str) -> Value {
    json!({ "Job": { "ID": id, "Datacenters": ["nowhere"], "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{ "Name": "t", "Driver": "raw_exec", "Config": { "command": "/bin/true" } }] }] } })
}

/// Registers a job; Ok only when the server acknowledged it.
fn register(agent: &Agent, body: &Value) -> Result<(), String> {
    let r = http()
        .post(format!("{}/v1/jobs", agent.address()))
        .timeout(Duration::from_secs(20))
        .json(body)
        .send()
        .map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    if code == 200 {
        Ok(())
    } else {
        Err(format!("{code}: {text}"))
    }
}

fn job_ids(agent: &Agent, query: &str) -> Option<Vec<String>> {
    let v = agent.get(&format!("/v1/jobs{query}"))?;
    let mut ids: Vec<String> = v
        .as_array()?
        .iter()
        .map(|j| j["ID"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    Some(ids)
}

fn peers(agent: &Agent) -> Vec<Value> {
    agent
        .get("/v1/operator/raft/configuration")
        .and_then(|v| v["Servers"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn three_servers_bootstrap_and_forward_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = specs(tmp.path(), 21, 3, "");
    let servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);
    // Every server holds the same three voters.
    for s in &servers {
        let p = wait_for("three voters", LONG, || {
            let p = peers(s);
            (p.len() == 3 && p.iter().all(|x| x["Voter"] == true)).then_some(p)
        });
        let mut addrs: Vec<String> = p
            .iter()
            .map(|x| x["Address"].as_str().unwrap().to_string())
            .collect();
        addrs.sort();
        let mut want: Vec<String> = servers.iter().map(|a| a.rpc_addr()).collect();
        want.sort();
        assert_eq!(addrs, want);
    }
    // Writes to a follower are forwarded; consistent reads on every server see them.
    let follower = &servers[(leader + 1) % 3];
    register(follower, &cheap_job("via-follower")).unwrap();
    for s in &servers {
        assert!(
            job_ids(s, "")
                .unwrap()
                .contains(&"via-follower".to_string())
        );
    }
    // Server ids are persisted, not derived from addresses.
    for spec in &specs {
        let id = std::fs::read_to_string(spec.data.join("server/server-id")).unwrap();
        assert!(id.trim().parse::<u64>().is_ok(), "server-id {id:?}");
    }
    // The CLI shows the members.
    let out = servers[0].cli(&["server", "members"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for name in ["s1", "s2", "s3"] {
        assert!(text.contains(name), "{text}");
    }
    assert_eq!(text.matches("alive").count(), 3, "{text}");

    // A graceful stop of the leader hands leadership to another server.
    let mut servers = servers;
    servers[leader].terminate();
    assert!(
        servers[leader].log_text().contains("handing leadership"),
        "the leaving leader's log does not mention the handoff"
    );
    let new_leader = wait_leader(&servers);
    assert_ne!(new_leader, leader);
    register(&servers[new_leader], &cheap_job("after-leave")).unwrap();
}

#[test]
fn a_server_that_sees_more_than_bootstrap_expect_refuses_to_bootstrap() {
    let tmp = tempfile::tempdir().unwrap();
    // Two servers waiting for five; then one told to expect two, which sees three.
    let specs: Vec<ServerSpec> = specs(tmp.path(), 31, 3, "")
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            let expect = if i < 2 { 5 } else { 2 };
            let text = std::fs::read_to_string(&s.config).unwrap().replace(
                "bootstrap_expect = 3",
                &format!("bootstrap_expect = {expect}"),
            );
            s.config = tmp.path().join(format!("{}-{expect}.hcl", s.name));
            std::fs::write(&s.config, text).unwrap();
            s
        })
        .collect();
    let mut servers: Vec<Agent> = specs[..2].iter().map(start).collect();
    for s in &servers {
        wait_for("the waiting servers' APIs", LONG, || {
            s.get("/v1/agent/self")
        });
    }
    servers.push(start(&specs[2]));
    wait_for(
        "a refusal to bootstrap in the third server's log",
        LONG,
        || {
            servers[2]
                .log_text()
                .contains(
                    "refusing to bootstrap: 3 servers see each other but bootstrap_expect = 2",
                )
                .then_some(())
        },
    );
    for s in &servers {
        assert!(leader_of(s).is_none(), "no cluster should have formed");
    }
    // Writes say why.
    let err = register(&servers[2], &cheap_job("x")).unwrap_err();
    assert!(err.contains("no cluster leader"), "{err}");
}

#[test]
fn killing_the_leader_loses_no_acknowledged_registration_and_clients_fail_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let specs = specs(dir, 41, 3, "  heartbeat_grace = \"30s\"\n");
    let mut servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);

    // Two clients that know every server.
    let all_rpc: Vec<String> = servers.iter().map(|a| a.rpc_addr()).collect();
    std::fs::write(
        dir.join("client.hcl"),
        "client {\n  enabled = true\n}\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n",
    )
    .unwrap();
    let client_cfg = dir.join("client.hcl");
    let clients: Vec<Agent> = ["c1", "c2"]
        .iter()
        .map(|name| {
            Agent::start(
                &[
                    "-config",
                    client_cfg.to_str().unwrap(),
                    "-servers",
                    &all_rpc.join(","),
                    "-node",
                    name,
                ],
                &dir.join(name),
                free_port(),
                free_port(),
            )
        })
        .collect();
    wait_for("two ready nodes", LONG, || {
        let n = servers[leader].get("/v1/nodes")?;
        (n.as_array()?
            .iter()
            .filter(|n| n["Status"] == "ready")
            .count()
            == 2)
            .then_some(())
    });
    let sleeper = write_job(
        dir,
        "before",
        "job \"before\" {\n  datacenters = [\"dc1\"]\n  group \"g\" {\n    count = 2\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sleep\"\n        args = [\"300\"]\n      }\n    }\n  }\n}\n",
    );
    servers[leader].run_job(&sleeper);
    let running_before: Vec<String> = wait_for("2 running allocations", LONG, || {
        let a = servers[leader].allocs("before");
        let r: Vec<String> = a
            .iter()
            .filter(|a| a["ClientStatus"] == "running")
            .map(|a| a["ID"].as_str().unwrap().to_string())
            .collect();
        (r.len() == 2).then_some(r)
    });

    // A stream of registrations, sent round-robin to every server that is up.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let targets: Vec<(String, u16)> = servers
        .iter()
        .map(|a| (a.host.clone(), a.http_port))
        .collect();
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = http();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let (h, p) = &targets[i % targets.len()];
                let id = format!("job-{i}");
                let ok = c
                    .post(format!("http://{h}:{p}/v1/jobs"))
                    .timeout(Duration::from_secs(20))
                    .json(&cheap_job(&id))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.lock().unwrap().push(id);
                }
                i += 1;
            }
        })
    };
    wait_for("20 acknowledged registrations", LONG, || {
        (acked.lock().unwrap().len() >= 20).then_some(())
    });
    let old_leader_addr = servers[leader].rpc_addr();
    servers[leader].kill9();
    let before_kill = acked.lock().unwrap().len();
    wait_for(
        "20 more acknowledged registrations after the kill",
        LONG,
        || (acked.lock().unwrap().len() >= before_kill + 20).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    let new_leader = wait_leader(&servers);
    assert_ne!(servers[new_leader].rpc_addr(), old_leader_addr);
    let acked = acked.lock().unwrap().clone();
    for s in servers.iter().filter(|s| s.child.is_some()) {
        let ids = wait_for("every server to answer", LONG, || job_ids(s, ""));
        let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged registrations missing on {}: {missing:?}",
            missing.len(),
            s.rpc_addr()
        );
    }

    // The clients moved to the new leader: their allocations kept running (the nodes never
    // went down), and a new job is placed and runs.
    let other = write_job(
        dir,
        "after",
        &std::fs::read_to_string(&sleeper)
            .unwrap()
            .replace("job \"before\"", "job \"after\""),
    );
    servers[new_leader].run_job(&other);
    wait_for("the new job's 2 allocations running", LONG, || {
        let a = servers[new_leader].allocs("after");
        (a.iter().filter(|a| a["ClientStatus"] == "running").count() == 2).then_some(())
    });
    let still: Vec<String> = servers[new_leader]
        .allocs("before")
        .iter()
        .filter(|a| a["ClientStatus"] == "running")
        .map(|a| a["ID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        {
            let mut s = still.clone();
            s.sort();
            s
        },
        {
            let mut r = running_before.clone();
            r.sort();
            r
        },
        "the allocations from before the failover are the ones running"
    );
    let nodes = servers[new_leader].get("/v1/nodes").unwrap();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["Status"] == "ready"),
        "{nodes}"
    );

    // The killed server shows as failed; force-leave removes it.
    let killed_name = &specs[leader].name;
    let out = servers[new_leader].cli(&["server", "members"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with(killed_name.as_str()) && l.contains("failed")),
        "{text}"
    );
    let out = servers[new_leader].cli(&["server", "force-leave", killed_name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("two peers left", LONG, || {
        (peers(&servers[new_leader]).len() == 2).then_some(())
    });
    drop(clients);
}

#[test]
fn restart_every_server_keeps_state_and_no_quorum_fails_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = specs(tmp.path(), 51, 3, "");
    let mut servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);
    for i in 0..30 {
        register(&servers[(leader + i) % 3], &cheap_job(&format!("r{i}"))).unwrap();
    }
    let before = job_ids(&servers[leader], "").unwrap();
    assert_eq!(before.len(), 30);
    for s in servers.iter_mut() {
        s.kill9();
    }
    for s in servers.iter_mut() {
        s.start_again();
    }
    wait_leader(&servers);
    for s in &servers {
        let ids = wait_for("jobs after restart", LONG, || job_ids(s, ""));
        assert_eq!(ids, before, "state on {} after restart", s.rpc_addr());
    }

    // Two of three down: no quorum. Writes fail fast naming the reason; stale reads work,
    // and say whether the server knew a leader as it answered.
    let leader = wait_leader(&servers);
    let known_leader = |s: &Agent| {
        let r = http()
            .get(format!("{}/v1/jobs?stale", s.address()))
            .send()
            .ok()?;
        Some(
            r.headers()
                .get("X-Nomad-KnownLeader")?
                .to_str()
                .ok()?
                .to_string(),
        )
    };
    assert_eq!(known_leader(&servers[leader]).as_deref(), Some("true"));
    let survivor = (leader + 1) % 3;
    for (i, s) in servers.iter_mut().enumerate() {
        if i != survivor {
            s.kill9();
        }
    }
    let s = &servers[survivor];
    let err = wait_for("writes to fail with no cluster leader", LONG, || {
        let t = Instant::now();
        match register(s, &cheap_job("no-quorum")) {
            Err(e) if e.contains("no cluster leader") => Some((e, t.elapsed())),
            _ => None,
        }
    });
    assert!(
        err.1 < Duration::from_secs(15),
        "a write without quorum took {:?}: {}",
        err.1,
        err.0
    );
    let stale = job_ids(s, "?stale").expect("stale reads are served without a leader");
    assert_eq!(stale, before);
    wait_for("a stale read to say no leader is known", LONG, || {
        (known_leader(s)?.as_str() == "false").then_some(())
    });
    // X-Nomad-LastContact is how long ago the survivor last heard from a leader: by now
    // longer than an election timeout.
    let last_contact = http()
        .get(format!("{}/v1/jobs?stale", s.address()))
        .send()
        .unwrap()
        .headers()
        .get("X-Nomad-LastContact")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .expect("a numeric X-Nomad-LastContact");
    assert!(last_contact > 1000, "X-Nomad-LastContact: {last_contact}");
    let r = http()
        .get(format!("{}/v1/jobs", s.address()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().unwrap().contains("no cluster leader"));
}

#[test]
fn a_server_restarted_on_a_new_address_keeps_its_id_and_data() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = specs(tmp.path(), 61, 3, "");
    let mut servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);
    for i in 0..10 {
        register(&servers[leader], &cheap_job(&format!("m{i}"))).unwrap();
    }
    let mover = (leader + 1) % 3;
    let id = std::fs::read_to_string(specs[mover].data.join("server/server-id"))
        .unwrap()
        .trim()
        .to_string();
    servers[mover].terminate();
    // Same data dir and name, new address.
    let new_host = "127.0.0.64";
    let rpcs: Vec<String> = servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != mover)
        .map(|(_, a)| a.rpc_addr())
        .collect();
    let cfg = server_config(tmp.path(), "moved", new_host, 3, &rpcs, Extra::default());
    let cfg_text = std::fs::read_to_string(&cfg).unwrap().replace(
        "name = \"moved\"",
        &format!("name = \"{}\"", specs[mover].name),
    );
    std::fs::write(&cfg, cfg_text).unwrap();
    let (http_port, rpc_port) = (free_port(), free_port());
    servers[mover] = Agent::start_on(
        new_host,
        &[],
        &["-config", cfg.to_str().unwrap()],
        &specs[mover].data,
        http_port,
        rpc_port,
    );
    let new_addr = servers[mover].rpc_addr();
    wait_for("the membership to record the new address", LONG, || {
        let p = peers(&servers[leader]);
        p.iter()
            .any(|x| {
                x["ID"] == id.as_str() && x["Address"] == new_addr.as_str() && x["Voter"] == true
            })
            .then_some(())
    });
    assert_eq!(peers(&servers[leader]).len(), 3, "no fourth member");
    register(&servers[leader], &cheap_job("after-move")).unwrap();
    let want = job_ids(&servers[leader], "").unwrap();
    wait_for("the moved server to catch up", LONG, || {
        (job_ids(&servers[mover], "?stale")? == want).then_some(())
    });
    // It is a full member again: a write through it commits.
    register(&servers[mover], &cheap_job("through-moved")).unwrap();
}

/// The bodies of the records in a Raft log file (the current format, `DRVLOG02` and 12-byte
/// headers, or the earlier one, 8-byte headers); a torn tail is ignored.
fn log_records(path: &Path) -> Vec<Vec<u8>> {
    let buf = std::fs::read(path).unwrap();
    let (mut pos, header) = if buf.starts_with(b"DRVLOG02") {
        (8, 12)
    } else {
        (0, 8)
    };
    let mut out = Vec::new();
    while pos + header <= buf.len() {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let Some(body) = buf.get(pos + header..pos + header + len) else {
            break;
        };
        out.push(body.to_vec());
        pos += header + len;
    }
    out
}

#[test]
fn server_state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let specs = specs(dir, 101, 1, "");
    let mut servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);
    register(&servers[leader], &cheap_job("private")).unwrap();
    // Every server's state is private: data dir 0711, server dirs 0700, Raft files 0600.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    for spec in &specs {
        assert_eq!(mode(&spec.data), 0o711, "{}", spec.data.display());
        assert_eq!(mode(&spec.data.join("server")), 0o700);
        let raft = spec.data.join("server/raft");
        assert_eq!(mode(&raft), 0o700);
        for f in ["log", "vote"] {
            assert_eq!(mode(&raft.join(f)), 0o600, "{}", raft.join(f).display());
        }
        assert_eq!(mode(&spec.data.join("server/server-id")), 0o600);
    }
    for s in servers.iter_mut() {
        s.terminate();
    }
}

#[test]
fn snapshot_save_wipe_restore_gives_identical_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let specs = specs(dir, 71, 3, "");
    let mut servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);
    // ~3 MiB of state (jobs and their versions), so the restore below is committed as
    // several chunk entries that must all reach every server.
    let pad = "x".repeat(60_000);
    for i in 0..25 {
        let mut job = cheap_job(&format!("b{i}"));
        job["Job"]["Meta"] = json!({ "pad": pad });
        register(&servers[(leader + i) % 3], &job).unwrap();
    }
    // Let the scheduler finish with every evaluation, so the saved state is quiescent.
    wait_for("every evaluation processed", LONG, || {
        let e = servers[leader].get("/v1/evaluations")?;
        e.as_array()?
            .iter()
            .all(|e| e["Status"] != "pending")
            .then_some(())
    });
    // A variable, written through a follower, travels in the snapshot too.
    let out = servers[(leader + 1) % 3].cli(&["var", "put", "app/db", "password=s3cret"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs_before = servers[leader].get("/v1/jobs").unwrap();
    let evals_before = servers[leader].get("/v1/evaluations").unwrap();
    let file = dir.join("backup.snap");
    let out =
        servers[(leader + 1) % 3].cli(&["operator", "snapshot", "save", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = servers[0].cli(&["operator", "snapshot", "inspect", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("drover-snapshot"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("jobs") && l.trim_end().ends_with(" 25")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("variables") && l.trim_end().ends_with(" 1")),
        "{text}"
    );

    // Wipe: stop every server, remove their data, start a fresh cluster.
    for s in servers.iter_mut() {
        s.terminate();
    }
    for spec in &specs {
        std::fs::remove_dir_all(&spec.data).unwrap();
    }
    for (s, _) in servers.iter_mut().zip(&specs) {
        s.start_again();
    }
    let leader = wait_leader(&servers);
    assert!(job_ids(&servers[leader], "").unwrap().is_empty());
    let out =
        servers[(leader + 2) % 3].cli(&["operator", "snapshot", "restore", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let strip = |v: &Value| -> Vec<Value> {
        let mut a = v.as_array().unwrap().clone();
        a.sort_by_key(|x| x["ID"].as_str().unwrap_or_default().to_string());
        a
    };
    for s in &servers {
        let jobs = wait_for("restored jobs on every server", LONG, || {
            let v = s.get("/v1/jobs?stale")?;
            (v.as_array()?.len() == 25).then_some(v)
        });
        assert_eq!(
            strip(&jobs),
            strip(&jobs_before),
            "jobs on {}",
            s.rpc_addr()
        );
        let evals = s.get("/v1/evaluations?stale").unwrap();
        assert_eq!(
            strip(&evals)
                .iter()
                .map(|e| e["ID"].clone())
                .collect::<Vec<_>>(),
            strip(&evals_before)
                .iter()
                .map(|e| e["ID"].clone())
                .collect::<Vec<_>>(),
            "evaluations on {}",
            s.rpc_addr()
        );
        let var = s.get("/v1/var/app/db?stale").unwrap();
        assert_eq!(
            var["Items"]["password"],
            "s3cret",
            "variable on {}",
            s.rpc_addr()
        );
    }
    // The restore reached every server as bounded entries, never as one whole-state entry
    // (which, above the gRPC message limit, would commit on the leader and never replicate).
    for spec in &specs {
        let records = log_records(&spec.data.join("server/raft/log"));
        let biggest = records.iter().map(Vec::len).max().unwrap_or(0);
        assert!(
            biggest < 2 << 20,
            "{}: a log record of {biggest} bytes",
            spec.data.display()
        );
        let chunks = records
            .iter()
            .filter(|r| r.windows(12).any(|w| w == b"RestoreChunk"))
            .count();
        assert!(
            chunks >= 2,
            "{}: {chunks} restore chunks",
            spec.data.display()
        );
    }
    // A file that is not a snapshot is refused with a clear error.
    let bad = dir.join("bad.snap");
    std::fs::write(&bad, b"{\"x\": 1}").unwrap();
    let out = servers[0].cli(&["operator", "snapshot", "restore", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Drover snapshot file"));
}

#[test]
fn leave_on_terminate_takes_a_server_out_of_the_membership() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let specs = specs(dir, 51, 3, "");
    for spec in &specs {
        let cfg = std::fs::read_to_string(&spec.config).unwrap();
        std::fs::write(&spec.config, format!("leave_on_terminate = true\n{cfg}")).unwrap();
    }
    let mut servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);
    // A follower leaves: two members remain.
    let follower = (leader + 1) % 3;
    servers[follower].terminate();
    assert!(
        servers[follower]
            .log_text()
            .contains("left the cluster: removed from the membership"),
        "{}",
        servers[follower].log_text()
    );
    wait_for("two members", LONG, || {
        (peers(&servers[leader]).len() == 2).then_some(())
    });
    // The leader leaves: it hands over first, and the last server leads alone.
    servers[leader].terminate();
    assert!(
        servers[leader]
            .log_text()
            .contains("left the cluster: removed from the membership"),
        "{}",
        servers[leader].log_text()
    );
    let last = 3 - leader - follower;
    wait_for("the last server leads alone", LONG, || {
        let p = peers(&servers[last]);
        (p.len() == 1 && leader_of(&servers[last])? == servers[last].rpc_addr()).then_some(())
    });
    register(&servers[last], &cheap_job("after-two-left")).unwrap();
}

// ---- network partition: every server in its own network namespace on one bridge ----

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A switch: a namespace of its own holding a bridge (a fresh namespace has no firewall
/// rules, unlike a host where Docker's FORWARD policy drops bridged traffic); per server, a
/// namespace joined to the bridge by a veth pair; and a veth pair from the test's namespace
/// to the bridge, so the test reaches every server.
struct Net {
    tag: String,
    n: usize,
}

impl Net {
    fn create(n: usize) -> Net {
        let tag = format!("dv{}", std::process::id() % 100_000);
        let net = Net {
            tag: tag.clone(),
            n,
        };
        let sw = net.switch();
        ip(&["netns", "add", &sw]).unwrap_or_else(|e| {
            panic!("the partition test needs root and iproute2 (network namespaces, a bridge): {e}")
        });
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]).unwrap();
        ip(&["-n", &sw, "link", "set", "br0", "up"]).unwrap();
        // The test's own port on the switch.
        let (mine, theirs) = (format!("{tag}t"), format!("{tag}s"));
        ip(&[
            "link", "add", &mine, "type", "veth", "peer", "name", &theirs,
        ])
        .unwrap();
        ip(&["link", "set", &theirs, "netns", &sw]).unwrap();
        ip(&["-n", &sw, "link", "set", &theirs, "master", "br0"]).unwrap();
        ip(&["-n", &sw, "link", "set", &theirs, "up"]).unwrap();
        ip(&["addr", "add", "10.77.0.1/24", "dev", &mine]).unwrap();
        ip(&["link", "set", &mine, "up"]).unwrap();
        for i in 0..n {
            let ns = net.ns(i);
            let (sw_end, ns_end) = (format!("h{i}"), format!("{tag}n{i}"));
            ip(&["netns", "add", &ns]).unwrap();
            ip(&[
                "-n", &sw, "link", "add", &sw_end, "type", "veth", "peer", "name", &ns_end,
            ])
            .unwrap();
            ip(&["-n", &sw, "link", "set", &ns_end, "netns", &ns]).unwrap();
            ip(&["-n", &sw, "link", "set", &sw_end, "master", "br0"]).unwrap();
            ip(&["-n", &sw, "link", "set", &sw_end, "up"]).unwrap();
            let addr = format!("{}/24", net.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &ns_end]).unwrap();
            ip(&["-n", &ns, "link", "set", &ns_end, "up"]).unwrap();
            ip(&["-n", &ns, "link", "set", "lo", "up"]).unwrap();
        }
        net
    }

    fn switch(&self) -> String {
        format!("{}sw", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}ns{i}", self.tag)
    }

    fn addr(&self, i: usize) -> String {
        format!("10.77.0.{}", 10 + i)
    }

    /// Takes server `i`'s link to the switch down (or up again).
    fn set_link(&self, i: usize, up: bool) {
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "set",
            &format!("h{i}"),
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.n {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &format!("{}t", self.tag)]);
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}

#[test]
fn a_cut_off_server_answers_no_cluster_leader_and_catches_up() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the partition test needs root (network namespaces); CI runs it as root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = Net::create(3);
    let (http_port, rpc_port) = (4646u16, 4647u16);
    let rpcs: Vec<String> = (0..3)
        .map(|i| format!("{}:{rpc_port}", net.addr(i)))
        .collect();
    let mut servers: Vec<Agent> = (0..3)
        .map(|i| {
            let name = format!("s{}", i + 1);
            let cfg = server_config(dir, &name, &net.addr(i), 3, &rpcs, Extra::default());
            let ns = net.ns(i);
            Agent::start_on(
                &net.addr(i),
                &["ip", "netns", "exec", &ns],
                &["-config", cfg.to_str().unwrap()],
                &dir.join(&name),
                http_port,
                rpc_port,
            )
        })
        .collect();
    let leader = wait_leader(&servers);
    for i in 0..10 {
        register(&servers[leader], &cheap_job(&format!("p{i}"))).unwrap();
    }
    let cut = (leader + 1) % 3;
    net.set_link(cut, false);
    // The majority keeps accepting writes.
    let majority: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
    for i in 0..10 {
        let s = &servers[majority[i % 2]];
        wait_for("a write on the majority side", LONG, || {
            register(s, &cheap_job(&format!("q{i}"))).ok()
        });
    }
    // The cut-off server answers writes with "no cluster leader", within 5 s, from inside
    // its namespace (the test cannot reach it over the cut link).
    let ns = net.ns(cut);
    let url = format!("http://{}:{http_port}/v1/jobs", net.addr(cut));
    let body = cheap_job("cut-off").to_string();
    let (text, took) = wait_for("the cut-off server to refuse writes", LONG, || {
        let t = Instant::now();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "curl", "-s", "-m", "30", "-X", "POST"])
            .args(["-H", "Content-Type: application/json", "-d", &body, &url])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("no cluster leader")
            .then(|| (text, t.elapsed()))
    });
    assert!(took < Duration::from_secs(5), "took {took:?}: {text}");
    // The link returns: it catches up.
    net.set_link(cut, true);
    let want = job_ids(&servers[majority[0]], "").unwrap();
    assert_eq!(want.len(), 20);
    wait_for("the cut-off server to catch up", LONG, || {
        (job_ids(&servers[cut], "?stale")? == want).then_some(())
    });
    for s in servers.iter_mut() {
        s.terminate();
    }
}

#[test]
fn a_server_added_later_joins_as_learner_becomes_voter_and_dead_servers_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let extra = "  dead_server_cleanup = \"4s\"\n";
    let specs = specs(dir, 81, 3, extra);
    let servers: Vec<Agent> = specs.iter().map(start).collect();
    let leader = wait_leader(&servers);
    for i in 0..15 {
        register(&servers[leader], &cheap_job(&format!("l{i}"))).unwrap();
    }
    // A fourth server, same bootstrap_expect, knowing the others: it joins the existing
    // cluster instead of bootstrapping another.
    let rpcs: Vec<String> = servers.iter().map(|a| a.rpc_addr()).collect();
    let cfg = server_config(
        dir,
        "s4",
        "127.0.0.84",
        3,
        &rpcs,
        Extra {
            server: extra,
            top: "",
        },
    );
    let mut fourth = Agent::start_on(
        "127.0.0.84",
        &[],
        &["-config", cfg.to_str().unwrap()],
        &dir.join("s4"),
        free_port(),
        free_port(),
    );
    let fourth_addr = fourth.rpc_addr();
    wait_for("the fourth server to be a voter", LONG, || {
        let p = peers(&servers[leader]);
        (p.len() == 4
            && p.iter()
                .any(|x| x["Address"] == fourth_addr.as_str() && x["Voter"] == true))
        .then_some(())
    });
    assert!(
        fourth
            .log_text()
            .contains("a cluster exists: asking to join it"),
        "the fourth server should have joined, not bootstrapped"
    );
    let leader_log = servers[leader].log_text();
    assert!(
        leader_log.contains("server joining: adding it as a learner")
            && leader_log.contains("learner caught up: promoting it to voter"),
        "the leader's log should show the learner join and the promotion"
    );
    let want = job_ids(&servers[leader], "").unwrap();
    wait_for("the fourth server to hold every job", LONG, || {
        (job_ids(&fourth, "?stale")? == want).then_some(())
    });
    // It dies for good: the leader removes it after dead_server_cleanup.
    fourth.kill9();
    wait_for("the dead server to be removed", LONG, || {
        let p = peers(&servers[leader]);
        (p.len() == 3 && !p.iter().any(|x| x["Address"] == fourth_addr.as_str())).then_some(())
    });
    register(&servers[leader], &cheap_job("after-cleanup")).unwrap();
}

/// The CLI against `agent` with `NOMAD_TOKEN`.
fn cli_as(agent: &Agent, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(drover_bin())
        .args(args)
        .env("DROVER_ADDR", agent.address())
        .env("NOMAD_TOKEN", token)
        .output()
        .expect("run drover CLI")
}

/// A client that follows no redirect: what a server answers is what the test sees.
fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// How many node-bound requests `agent` has forwarded to the leader (its debug log line).
fn forwarded(agent: &Agent) -> usize {
    agent
        .log_text()
        .matches("forwarding a node-bound request to the leader")
        .count()
}

/// Every answer of `agent`'s API a token may read, as text: each GET route of the table
/// with its parameters filled in (streams and the exec WebSocket aside, read below), and a
/// few seconds of the event stream from the start.
fn every_read(agent: &Agent, token: &str, node: &str, alloc: &str) -> Vec<(String, String)> {
    use drover_api::routes::{Verb, table};
    let c = no_redirects();
    // Each parameter names what exists: by the segment before it.
    let fill = |path: &str| -> String {
        let segs: Vec<&str> = path.split('/').collect();
        let mut out = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let before = if i > 0 { segs[i - 1] } else { "" };
            out.push(match (*seg, before) {
                (s, _) if !s.starts_with('{') => s.to_string(),
                ("{op}", _) => "cat".to_string(),
                ("{*path}", _) => "talk/v".to_string(),
                (_, "allocation" | "{op}" | "logs") => alloc.to_string(),
                (_, "node") => node.to_string(),
                (_, "pool" | "namespace") => "default".to_string(),
                _ => "talk".to_string(),
            });
        }
        out.join("/")
    };
    let mut out = Vec::new();
    for r in table() {
        if !r.verbs.contains(&Verb::Get)
            || r.path.ends_with("/exec")
            || r.path == "/v1/operator/snapshot"
            || r.path == "/v1/event/stream"
        {
            continue;
        }
        let path = format!(
            "{}?namespace=*&task=t&path=alloc/logs/t.stdout.0&prefix=",
            fill(r.path)
        );
        let resp = c
            .get(format!("{}{path}", agent.address()))
            .header("X-Nomad-Token", token)
            .send()
            .unwrap();
        assert!(resp.headers().get("location").is_none(), "{path}");
        out.push((path, resp.text().unwrap_or_default()));
    }
    for (path, body) in [
        (
            "/v1/search",
            json!({ "Prefix": &node[..4], "Context": "all" }),
        ),
        (
            "/v1/search/fuzzy",
            json!({ "Text": "c1", "Context": "all" }),
        ),
    ] {
        let resp = c
            .post(format!("{}{path}", agent.address()))
            .header("X-Nomad-Token", token)
            .json(&body)
            .send()
            .unwrap();
        out.push((path.to_string(), resp.text().unwrap_or_default()));
    }
    let mut events = c
        .get(format!("{}/v1/event/stream?index=1", agent.address()))
        .header("X-Nomad-Token", token)
        .timeout(Duration::from_secs(3))
        .send()
        .unwrap();
    let mut text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut events, &mut text);
    out.push((
        "/v1/event/stream".into(),
        String::from_utf8_lossy(&text).into_owned(),
    ));
    out
}

#[test]
fn node_bound_requests_through_a_follower_are_forwarded_not_redirected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("acl.hcl"), "acl {\n  enabled = true\n}\n").unwrap();
    let specs = specs(dir, 91, 3, "");
    let servers: Vec<Agent> = specs
        .iter()
        .map(|spec| {
            Agent::start_on(
                &spec.host,
                &[],
                &[
                    "-config",
                    spec.config.to_str().unwrap(),
                    "-config",
                    dir.join("acl.hcl").to_str().unwrap(),
                ],
                &spec.data,
                spec.http,
                spec.rpc,
            )
        })
        .collect();
    let leader = wait_leader(&servers);
    let follower = &servers[(leader + 1) % 3];
    let boot: Value = wait_for("the ACL bootstrap", LONG, || {
        let r = http()
            .post(format!("{}/v1/acl/bootstrap", follower.address()))
            .send()
            .ok()?;
        r.status().is_success().then(|| r.json().unwrap())
    });
    let root = boot["SecretID"].as_str().unwrap().to_string();
    std::fs::write(
        dir.join("client.hcl"),
        "client {\n  enabled = true\n}\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n",
    )
    .unwrap();
    let all_rpc: Vec<String> = servers.iter().map(|a| a.rpc_addr()).collect();
    let client_data = dir.join("c1");
    let _client = Agent::start(
        &[
            "-config",
            dir.join("client.hcl").to_str().unwrap(),
            "-servers",
            &all_rpc.join(","),
            "-node",
            "c1",
        ],
        &client_data,
        free_port(),
        free_port(),
    );
    let c = no_redirects();
    let get = |agent: &Agent, path: &str, token: &str| {
        c.get(format!("{}{path}", agent.address()))
            .header("X-Nomad-Token", token)
            .send()
            .unwrap()
    };
    let node: Value = wait_for("a ready node", LONG, || {
        let n: Value = get(&servers[leader], "/v1/nodes", &root).json().ok()?;
        n.as_array()?
            .iter()
            .find(|n| n["Status"] == "ready")
            .cloned()
    });
    let node_id = node["ID"].as_str().unwrap().to_string();
    let job = write_job(
        dir,
        "talk",
        "job \"talk\" {\n  datacenters = [\"dc1\"]\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sh\"\n        args = [\"-c\", \"trap 'echo got-usr1' USR1; echo said-by-the-task; while true; do sleep 1; done\"]\n      }\n    }\n  }\n}\n",
    );
    let out = cli_as(
        follower,
        &root,
        &["job", "run", "-detach", job.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alloc = wait_for("the allocation running", LONG, || {
        let a: Value = get(follower, "/v1/job/talk/allocations", &root)
            .json()
            .ok()?;
        a.as_array()?
            .iter()
            .find(|a| a["ClientStatus"] == "running")
            .cloned()
    });
    let id = alloc["ID"].as_str().unwrap().to_string();

    // Through the follower's API: it forwards node-bound requests to the leader itself.
    let before = forwarded(follower);
    let logs = wait_for("the task's output through a follower", LONG, || {
        let out = cli_as(follower, &root, &["alloc", "logs", &id, "t"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("said-by-the-task")).then_some(text)
    });
    assert_eq!(logs, "said-by-the-task\n");
    assert!(
        forwarded(follower) > before,
        "the follower forwarded the request"
    );
    // A file of the allocation.
    let r = get(
        follower,
        &format!("/v1/client/fs/cat/{id}?path=alloc/logs/t.stdout.0"),
        &root,
    );
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert_eq!(r.text().unwrap(), "said-by-the-task\n");
    // A followed log streams through the follower as it is written: a signal sent through
    // the follower makes the task write a line the open stream then carries.
    let mut stream = c
        .get(format!(
            "{}/v1/client/fs/logs/{id}?task=t&type=stdout&follow=true&plain=true",
            follower.address()
        ))
        .header("X-Nomad-Token", &root)
        .timeout(LONG)
        .send()
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("said-by-the-task") {
        let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    let r = c
        .post(format!(
            "{}/v1/client/allocation/{id}/signal",
            follower.address()
        ))
        .header("X-Nomad-Token", &root)
        .json(&json!({ "Signal": "SIGUSR1", "Task": "t" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    while !String::from_utf8_lossy(&seen).contains("got-usr1") {
        let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
        assert!(n > 0, "the stream ended before the signal's line");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);
    // alloc exec: the WebSocket upgrade, relayed.
    let out = cli_as(
        follower,
        &root,
        &[
            "alloc",
            "exec",
            "-i=false",
            &id,
            "sh",
            "-c",
            "echo via-follower; exit 4",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via-follower\n");
    let out = cli_as(follower, &root, &["alloc", "status", "-stats", &id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CPU Percent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A bad token is refused by the follower itself: nothing is forwarded.
    let before = forwarded(follower);
    for path in [
        format!("/v1/client/fs/logs/{id}?task=t&type=stdout"),
        format!("/v1/client/fs/cat/{id}?path=alloc/logs/t.stdout.0"),
        format!("/v1/client/allocation/{id}/stats"),
    ] {
        let r = get(follower, &path, "00000000-0000-0000-0000-000000000000");
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.headers().get("location").is_none(), "{path}");
    }
    let r = c
        .post(format!(
            "{}/v1/client/allocation/{id}/signal",
            follower.address()
        ))
        .header("X-Nomad-Token", "not-a-token")
        .json(&json!({ "Signal": "SIGUSR1", "Task": "t" }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        forwarded(follower),
        before,
        "a refused request was forwarded"
    );
    // A body larger than the route's limit is refused before anything is sent.
    let r = c
        .post(format!(
            "{}/v1/client/allocation/{id}/restart",
            follower.address()
        ))
        .header("X-Nomad-Token", &root)
        .body(vec![b' '; 64 * 1024])
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(forwarded(follower), before);

    // No answer of any server carries a Location header, and none shows the node's secret.
    let secret = std::fs::read_to_string(find_file(&client_data, "node-secret"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(secret.len(), 36, "a node secret is a UUID");
    for s in &servers {
        let reads = every_read(s, &root, &node_id, &id);
        // The scan reads what exists: the node, its allocation, the task's log.
        for (route, shows) in [
            (format!("/v1/node/{node_id}?"), node_id.as_str()),
            (format!("/v1/allocation/{id}?"), id.as_str()),
            (format!("/v1/client/fs/cat/{id}?"), "said-by-the-task"),
            ("/v1/event/stream".to_string(), node_id.as_str()),
        ] {
            assert!(
                reads
                    .iter()
                    .any(|(p, t)| p.starts_with(&route) && t.contains(shows)),
                "{route} shows {shows}"
            );
        }
        for (path, text) in reads {
            assert!(!text.contains(&secret), "{path} shows the node's secret");
        }
    }
    // The snapshot, which holds it, is for management tokens only.
    let reader = {
        let body = json!({ "Name": "reader", "Rules": "namespace \"*\" { policy = \"read\" }\nnode { policy = \"read\" }\noperator { policy = \"read\" }\nagent { policy = \"read\" }" });
        let r = c
            .post(format!("{}/v1/acl/policy/reader", follower.address()))
            .header("X-Nomad-Token", &root)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let t: Value = c
            .post(format!("{}/v1/acl/token", follower.address()))
            .header("X-Nomad-Token", &root)
            .json(&json!({ "Name": "r", "Type": "client", "Policies": ["reader"] }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        t["SecretID"].as_str().unwrap().to_string()
    };
    for s in &servers {
        let r = get(s, "/v1/operator/snapshot", &reader);
        assert_eq!(r.status(), 403);
        for (path, text) in every_read(s, &reader, &node_id, &id) {
            assert!(!text.contains(&secret), "{path} shows the node's secret");
        }
    }
    let out = cli_as(follower, &root, &["job", "stop", "-purge", "talk"]);
    assert!(out.status.success());
}

/// The first file named `name` below `dir`.
fn find_file(dir: &Path, name: &str) -> PathBuf {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name() == name {
                return p;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    panic!("no {name} below {}", dir.display())
}
