//! Hardening of the API and the node stream, black-box on real agents: server-side parsing
//! reads nothing of the server, huge counts are refused or bounded, cross-site requests are
//! refused, configs that ask for what Drover cannot do stop the agent, periodic and
//! parameterized parents are never placed, and what a node reports is bounded.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn send(
    agent: &Agent,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, String) {
    let mut r = http().request(method, format!("{}{path}", agent.address()));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn post_json(agent: &Agent, path: &str, body: &Value) -> (u16, String) {
    send(
        agent,
        reqwest::Method::POST,
        path,
        &[("Content-Type", "application/json")],
        Some(body.to_string()),
    )
}

fn sleeper(id: &str, count: u64) -> Value {
    json!({ "Job": { "ID": id, "Datacenters": ["*"], "TaskGroups": [{ "Name": "g", "Count": count,
        "Tasks": [{ "Name": "t", "Driver": "raw_exec",
            "Config": { "command": "/bin/sleep", "args": ["300"] },
            "Resources": { "CPU": 10, "MemoryMB": 10 } }] }] } })
}

/// Starts `drover agent -dev -config CONFIG` and returns how it ended within 20 s (None: it
/// kept running) and what it printed.
fn agent_exit(tmp: &std::path::Path, config_text: &str) -> (Option<i32>, String) {
    let cfg = tmp.join("agent.hcl");
    std::fs::write(&cfg, config_text).unwrap();
    let out_path = tmp.join("agent.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(drover_bin())
        .args(["agent", "-dev", "-config", cfg.to_str().unwrap()])
        .args(["-http-port", &free_port().to_string()])
        .args(["-rpc-port", &free_port().to_string()])
        .args(["-dns-port", "0"])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (code, std::fs::read_to_string(&out_path).unwrap_or_default())
}

#[test]
fn parse_on_the_server_reads_no_server_file_or_environment() {
    let tmp = tempfile::tempdir().unwrap();
    // The agent inherits this: a server-side parse must not substitute it.
    // SAFETY: set before any agent of this test starts; no other test reads this name.
    unsafe { std::env::set_var("NOMAD_VAR_hardening_secret", "server-side-secret") };
    let agent = Agent::dev(tmp.path());
    let hcl = "job \"x\" {\n  meta {\n    h = file(\"/etc/hostname\")\n  }\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n    }\n  }\n}\n";
    let (code, body) = send(
        &agent,
        reqwest::Method::PUT,
        "/v1/jobs/parse",
        &[],
        Some(json!({ "JobHCL": hcl }).to_string()),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("file()"), "{body}");
    let hcl = hcl.replace("file(", "fileexists(");
    let (code, body) = post_json(&agent, "/v1/jobs/parse", &json!({ "JobHCL": hcl }));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("fileexists()"), "{body}");
    let hcl = "variable \"hardening_secret\" {\n  type = string\n}\njob \"x\" {\n  meta {\n    s = var.hardening_secret\n  }\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n    }\n  }\n}\n";
    let (code, body) = post_json(&agent, "/v1/jobs/parse", &json!({ "JobHCL": hcl }));
    assert_eq!(code, 400, "{body}");
    assert!(!body.contains("server-side-secret"), "{body}");
    assert!(body.contains("has no value"), "{body}");

    // The CLI still evaluates file() on the submitting machine.
    let local = tmp.path().join("local.txt");
    std::fs::write(&local, "from-the-submitter").unwrap();
    let job = write_job(
        tmp.path(),
        "withfile",
        &format!(
            "job \"withfile\" {{\n  meta {{\n    f = file(\"{}\")\n  }}\n  group \"g\" {{\n    count = 0\n    task \"t\" {{\n      driver = \"raw_exec\"\n    }}\n  }}\n}}\n",
            local.display()
        ),
    );
    agent.run_job(&job);
    let j = agent.get("/v1/job/withfile").unwrap();
    assert_eq!(j["Meta"]["f"], "from-the-submitter");
}

#[test]
fn counts_above_the_limit_are_refused_and_placements_are_bounded_per_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("server.hcl");
    std::fs::write(
        &cfg,
        "server {\n  job_max_count = 50\n  max_placements_per_eval = 3\n}\n",
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    for path in ["/v1/jobs", "/v1/job/big/plan"] {
        let (code, body) = post_json(&agent, path, &sleeper("big", 4_000_000_000));
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains("job_max_count"), "{path}: {body}");
    }
    let (code, body) = post_json(&agent, "/v1/jobs", &sleeper("big", 51));
    assert_eq!(code, 400, "{body}");
    assert!(agent.get("/v1/job/big").is_none());

    // 7 allocations at 3 per evaluation: three evaluations place them all.
    let (code, body) = post_json(&agent, "/v1/jobs", &sleeper("seven", 7));
    assert_eq!(code, 200, "{body}");
    wait_for("7 allocations of seven", WAIT, || {
        (agent.allocs("seven").len() == 7).then_some(())
    });
    let evals = agent.get("/v1/job/seven/evaluations").unwrap();
    let evals = evals.as_array().unwrap();
    assert!(evals.len() >= 3, "{evals:?}");
    assert!(
        evals.iter().any(|e| e["TriggeredBy"] == "queued-allocs"),
        "{evals:?}"
    );
    let mut per_eval: std::collections::BTreeMap<String, usize> = Default::default();
    for a in agent.allocs("seven") {
        *per_eval
            .entry(a["EvalID"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(per_eval.values().all(|n| *n <= 3), "{per_eval:?}");
}

#[test]
fn restoring_a_snapshot_with_a_huge_count_leaves_the_leader_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    // A job that places nowhere (so nothing runs), with count 1 for now.
    let mut job = sleeper("huge", 1);
    job["Job"]["Constraints"] =
        json!([{ "LTarget": "${attr.kernel.name}", "RTarget": "no-such-kernel", "Operand": "=" }]);
    let (code, body) = post_json(&agent, "/v1/jobs", &job);
    assert_eq!(code, 200, "{body}");
    wait_for("the job's evaluation to finish", WAIT, || {
        let evals = agent.get("/v1/job/huge/evaluations")?;
        evals
            .as_array()?
            .iter()
            .any(|e| e["Status"] == "complete")
            .then_some(())
    });
    let snap: Value = http()
        .get(format!("{}/v1/operator/snapshot", agent.address()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut snap = snap;
    for table in ["jobs", "job_versions"] {
        for j in snap["State"][table].as_array_mut().unwrap() {
            if j["ID"] == "huge" {
                j["TaskGroups"][0]["Count"] = json!(4_000_000_000u64);
            }
        }
    }
    for e in snap["State"]["evals"].as_array_mut().unwrap() {
        if e["JobID"] == "huge" {
            e["Status"] = json!("pending");
        }
    }
    let (code, body) = send(
        &agent,
        reqwest::Method::PUT,
        "/v1/operator/snapshot",
        &[],
        Some(snap.to_string()),
    );
    assert_eq!(code, 200, "{body}");
    // The leader schedules the huge job again: it must stay small and answer.
    let rss_mb = || {
        let s = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap()
            / 1024
    };
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let rss = rss_mb();
        assert!(rss < 512, "the agent grew to {rss} MB");
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_for("the evaluations of huge to be worked", WAIT, || {
        let evals = agent.get("/v1/job/huge/evaluations")?;
        evals
            .as_array()?
            .iter()
            .any(|e| e["Status"] == "complete" && !e["FailedTGAllocs"].is_null())
            .then_some(())
    });
    assert!(agent.get("/v1/status/leader").is_some());
    assert!(rss_mb() < 512);
}

#[test]
fn cross_site_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = sleeper("csrf", 1).to_string();
    let own_origin = agent.address();
    let post = |headers: &[(&str, &str)]| {
        send(
            &agent,
            reqwest::Method::POST,
            "/v1/jobs",
            headers,
            Some(job.clone()),
        )
    };
    let (code, body) = post(&[
        ("Origin", "http://evil.example"),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(code, 403, "{body}");
    let (code, body) = post(&[("Origin", "null"), ("Content-Type", "application/json")]);
    assert_eq!(code, 403, "{body}");
    // What a page can send without a CORS preflight.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (code, body) = post(&[("Content-Type", ct)]);
        assert_eq!(code, 415, "{ct}: {body}");
    }
    // DNS rebinding: a loopback agent answers only loopback host names.
    let (code, body) = send(
        &agent,
        reqwest::Method::GET,
        "/v1/jobs",
        &[("Host", "rebound.evil.example")],
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(agent.get("/v1/job/csrf").is_none());
    // Cross-site WebSocket hijacking of alloc exec: the upgrade is a GET.
    let (code, body) = send(
        &agent,
        reqwest::Method::GET,
        "/v1/client/allocation/0123456789abcdef/exec?command=%5B%22id%22%5D&task=t",
        &[
            ("Origin", "http://evil.example"),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        None,
    );
    assert_eq!(code, 403, "{body}");

    // The agent's own origin, JSON, and clients that send neither Origin nor a content type
    // (HashiCorp's Go API client) are fine.
    let (code, body) = post(&[
        ("Origin", own_origin.as_str()),
        ("Content-Type", "application/json"),
    ]);
    assert_eq!(code, 200, "{body}");
    let alloc = agent.wait_alloc_status("csrf", "running", WAIT);
    let id = alloc["ID"].as_str().unwrap();
    // Acting on an allocation needs more than a guessable prefix of its id.
    for path in [
        format!("/v1/allocation/{}/stop", &id[..2]),
        format!("/v1/client/allocation/{}/signal", &id[..2]),
        format!("/v1/client/allocation/{}/restart", &id[..2]),
    ] {
        let (code, body) = send(&agent, reqwest::Method::POST, &path, &[], None);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains("too short"), "{path}: {body}");
    }
    let (code, body) = send(
        &agent,
        reqwest::Method::GET,
        &format!(
            "/v1/client/allocation/{}/exec?command=%5B%22id%22%5D&task=t",
            &id[..2]
        ),
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        None,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("too short"), "{body}");
    let a = agent.alloc(id).unwrap();
    assert_eq!(a["DesiredStatus"], "run");
    let (code, body) = send(
        &agent,
        reqwest::Method::POST,
        &format!("/v1/allocation/{}/stop", &id[..8]),
        &[],
        None,
    );
    assert_eq!(code, 200, "{body}");
}

#[test]
fn acl_or_tls_enabled_stops_the_agent_and_typos_in_every_block_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // ACLs are enforced (tests/tests/acl.rs); a bad value in the block stops the agent.
    let (code, out) = agent_exit(
        tmp.path(),
        "acl {\n  enabled = true\n  token_ttl = \"soon\"\n}\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("acl.token_ttl \"soon\" is not a duration"),
        "{out}"
    );
    // TLS works (tests/tests/tls.rs); a half-given set of files is refused.
    let (code, out) = agent_exit(
        tmp.path(),
        "tls {\n  http = true\n  ca_file = \"ca.pem\"\n}\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("tls: ca_file, cert_file and key_file go together"),
        "{out}"
    );
    for (text, key) in [
        ("acl {\n  enabeld = true\n}\n", "acl.enabeld"),
        ("tls {\n  htttp = false\n}\n", "tls.htttp"),
        ("vault {\n  adress = \"x\"\n}\n", "vault.adress"),
        ("consul {\n  adress = \"x\"\n}\n", "consul.adress"),
        ("ui {\n  enbled = false\n}\n", "ui.enbled"),
        (
            "telemetry {\n  colection_interval = \"1s\"\n}\n",
            "telemetry.colection_interval",
        ),
    ] {
        let (code, out) = agent_exit(tmp.path(), text);
        assert_eq!(code, Some(1), "{text}: {out}");
        assert!(
            out.contains(&format!("agent.hcl:2:3: {key}")) && out.contains("unknown field"),
            "{text}: {out}"
        );
    }
    // Options Drover does not act on yet are refused where they are written.
    for (text, key) in [
        ("client {\n  state_dir = \"/x\"\n}\n", "client.state_dir"),
        (
            "client {\n  options {\n    a = \"b\"\n  }\n}\n",
            "client.options",
        ),
        ("log_file = \"/tmp/x.log\"\n", "log_file"),
        ("enable_debug = true\n", "enable_debug"),
        (
            "server {\n  default_scheduler_config {\n    memory_oversubscription_enabled = true\n  }\n}\n",
            "server.default_scheduler_config.memory_oversubscription_enabled",
        ),
    ] {
        let (code, out) = agent_exit(tmp.path(), text);
        assert_eq!(code, Some(1), "{text}: {out}");
        assert!(out.contains("agent.hcl:"), "{text}: {out}");
        assert!(out.contains(key), "{text}: {out}");
    }
    // `config validate` says the same.
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(&cfg, "data_dir = \"/tmp/x\"\nui {\n  enabled = true\n}\n").unwrap();
    let out = Command::new(drover_bin())
        .args(["config", "validate", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("agent.hcl:3:3: ui.enabled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn addresses_http_is_where_the_api_listens() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(
        &cfg,
        "bind_addr = \"0.0.0.0\"\naddresses {\n  http = \"127.0.0.1\"\n}\n",
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let port = format!(":{:04X} ", agent.http_port);
    let listening: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
        .filter_map(|l| l.split_whitespace().nth(1).map(|s| format!("{s} ")))
        .filter(|local| local.ends_with(&port))
        .collect();
    assert_eq!(listening, vec![format!("0100007F{port}")], "{listening:?}");
    // RPC still follows bind_addr.
    let rpc_port = format!(":{:04X} ", agent.rpc_port);
    let rpc: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
        .filter_map(|l| l.split_whitespace().nth(1).map(|s| format!("{s} ")))
        .filter(|local| local.ends_with(&rpc_port))
        .collect();
    assert_eq!(rpc, vec![format!("00000000{rpc_port}")], "{rpc:?}");
}

#[test]
fn log_level_and_log_json_from_the_config_are_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(&cfg, "log_level = \"DEBUG\"\nlog_json = true\n").unwrap();
    let mut child = Command::new(drover_bin())
        .args(["agent", "-dev", "-config", cfg.to_str().unwrap()])
        .args(["-http-port", &free_port().to_string()])
        .args(["-rpc-port", &free_port().to_string()])
        .args(["-dns-port", "0"])
        .env_remove("DROVER_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut lines = Vec::new();
    let mut found = false;
    while Instant::now() < deadline && !found {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            found = serde_json::from_str::<Value>(&l).is_ok_and(|v| v["level"] == "DEBUG");
            lines.push(l);
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert!(found, "no JSON debug line in:\n{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "not every line is JSON:\n{}",
        lines.join("\n")
    );
}

#[test]
fn periodic_and_parameterized_parents_are_never_placed() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let task = "  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sleep\"\n        args = [\"300\"]\n      }\n    }\n  }\n";
    let periodic = write_job(
        tmp.path(),
        "cron",
        &format!(
            "job \"cron\" {{\n  type = \"batch\"\n  periodic {{\n    crons = [\"*/15 * * * *\"]\n  }}\n{task}}}\n"
        ),
    );
    let out = agent.cli(&["job", "run", periodic.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("parent"), "{text}");
    let (code, body) = post_json(
        &agent,
        "/v1/jobs",
        &json!({ "Job": { "ID": "dispatchme", "Type": "batch", "Datacenters": ["*"],
            "ParameterizedJob": { "Payload": "optional" },
            "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{ "Name": "t", "Driver": "raw_exec",
                "Config": { "command": "/bin/sleep", "args": ["300"] } }] }] } }),
    );
    assert_eq!(code, 200, "{body}");
    let resp: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(resp["EvalID"], "", "{body}");
    // A normal job registered after them is placed: the scheduler has had its chance.
    let (code, body) = post_json(&agent, "/v1/jobs", &sleeper("after", 1));
    assert_eq!(code, 200, "{body}");
    agent.wait_alloc_status("after", "running", WAIT);
    std::thread::sleep(Duration::from_secs(1));
    for id in ["cron", "dispatchme"] {
        assert_eq!(agent.allocs(id).len(), 0, "{id} was placed");
        let evals = agent.get(&format!("/v1/job/{id}/evaluations")).unwrap();
        assert_eq!(evals.as_array().unwrap().len(), 0, "{id}: {evals}");
        let job = agent.get(&format!("/v1/job/{id}")).unwrap();
        assert_eq!(job["Status"], "running", "{id}: {job}");
    }
    let out = agent.cli(&["job", "status", "cron"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Periodic      = true"), "{text}");
    assert!(text.contains("periodic parent"), "{text}");
}

#[test]
fn what_a_node_reports_is_bounded_before_it_enters_raft() {
    use drover_proto::node::node_service_client::NodeServiceClient;
    use drover_proto::node::{AllocUpdate, AllocUpdates, ClientMessage, Register, client_message};

    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let (code, body) = post_json(&agent, "/v1/jobs", &sleeper("chatty", 1));
    assert_eq!(code, 200, "{body}");
    let alloc = agent.wait_alloc_status("chatty", "running", WAIT);
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    let node_id = alloc["NodeID"].as_str().unwrap().to_string();
    let data_dir = agent.data_dir_alloc(&alloc_id);
    let data_dir = data_dir.parent().unwrap().parent().unwrap();
    let secret = std::fs::read_to_string(data_dir.join("client/node-secret")).unwrap();
    let mut node = agent.get(&format!("/v1/node/{node_id}")).unwrap();
    node["SecretID"] = json!(secret.trim());

    // The node (its secret proves it) reports a task it does not run, thousands of events
    // and megabyte-sized messages.
    // (Under the 1 MiB an update may have at all: larger ones are dropped whole.)
    let big = "x".repeat(100_000);
    let events: Vec<Value> = (0..2000)
        .map(|i| json!({ "Type": format!("Event {i}"), "Time": i, "Message": if i % 1000 == 999 { big.clone() } else { String::new() } }))
        .collect();
    let update = json!({
        "AllocID": alloc_id,
        "Seq": 1u64 << 40,
        "ClientStatus": "running",
        "ClientDescription": big,
        "TaskStates": {
            "t": { "State": "running", "Events": events },
            "not-a-task": { "State": "running", "Events": [] },
        },
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rpc = agent.rpc_addr();
    rt.block_on(async move {
        let mut c = NodeServiceClient::connect(format!("http://{rpc}"))
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(ClientMessage {
            msg: Some(client_message::Msg::Register(Register {
                node_json: serde_json::to_vec(&node).unwrap(),
                last_index: 0,
            })),
            // As a client from before versions sends it (0).
            ..Default::default()
        })
        .await
        .unwrap();
        tx.send(ClientMessage {
            msg: Some(client_message::Msg::AllocUpdates(AllocUpdates {
                updates: vec![AllocUpdate {
                    alloc_id: alloc_id.clone(),
                    seq: 1 << 40,
                    update_json: serde_json::to_vec(&update).unwrap(),
                }],
            })),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut inbound = c
            .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        // Wait for the acknowledgement of the update.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, inbound.message())
                .await
                .expect("no UpdatesAck")
                .unwrap()
                .expect("stream ended");
            if matches!(
                m.msg,
                Some(drover_proto::node::server_message::Msg::UpdatesAck(_))
            ) {
                break;
            }
        }
        drop(tx);
    });
    let a = wait_for("the update to be committed", WAIT, || {
        let a = agent.alloc(alloc["ID"].as_str().unwrap())?;
        (a["TaskStates"]["t"]["Events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["Type"] == "Event 1999")))
        .then_some(a)
    });
    let events = a["TaskStates"]["t"]["Events"].as_array().unwrap();
    assert!(events.len() <= 10, "{} events kept", events.len());
    assert!(
        events
            .iter()
            .all(|e| e["Message"].as_str().unwrap_or("").len() <= 1024),
        "an event message was kept whole"
    );
    assert!(a["ClientDescription"].as_str().unwrap().len() <= 1024);
    assert!(
        a["TaskStates"].get("not-a-task").is_none(),
        "{}",
        a["TaskStates"]
    );
}

#[test]
fn plugin_files_others_can_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, mode) in [("opendrv", 0o777), ("groupdrv", 0o775)] {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let p = dir.join("openmod.wasm");
    std::fs::write(&p, b"\0asm\x01\0\0\0").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o646)).unwrap();
    // Owned by another user (possible to arrange only as root).
    let foreign = dir.join("foreigndrv");
    std::fs::write(&foreign, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chowned = nix::unistd::geteuid().is_root()
        && std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).is_ok();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(&cfg, format!("plugin_dir = \"{}\"\n", dir.display())).unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let plugins = agent.get("/v1/agent/plugins").unwrap();
    for (name, who) in [
        ("opendrv", "its group and others"),
        ("groupdrv", "its group"),
        ("openmod", "others"),
    ] {
        let p = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["Name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {plugins:#}"));
        let e = p["LastError"].as_str().unwrap_or("");
        assert!(e.contains(&format!("writable by {who}")), "{name}: {p}");
        assert_eq!(p["Healthy"], false, "{name}: {p}");
    }
    if chowned {
        let p = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["Name"] == "foreigndrv")
            .unwrap_or_else(|| panic!("foreigndrv not listed: {plugins:#}"));
        let e = p["LastError"].as_str().unwrap_or("");
        assert!(e.contains("owned by uid 65534, not root"), "{p}");
    }
}

#[test]
fn a_plugin_handshake_line_is_bounded() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("chatty-plugin");
    std::fs::write(
        &p,
        "#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' x\necho\nsleep 30\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(drover_bin())
        .args(["plugin", "inspect", p.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("longer than 4096 bytes"), "{text}");
}

#[test]
fn honest_values_warnings_diffs_and_raft_state() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let mut job = sleeper("honest", 0);
    job["Job"]["Update"] = json!({ "MaxParallel": 1 });
    let (code, body) = post_json(&agent, "/v1/jobs", &job);
    assert_eq!(code, 200, "{body}");
    let resp: Value = serde_json::from_str(&body).unwrap();
    let w = resp["Warnings"].as_str().unwrap();
    assert!(
        w.contains("block \"update\" is parsed but not acted on yet"),
        "{body}"
    );
    job["Job"]["Meta"] = json!({ "v": "2" });
    let (code, body) = post_json(&agent, "/v1/jobs", &job);
    assert_eq!(code, 200, "{body}");
    let versions = agent.get("/v1/job/honest/versions?diffs=true").unwrap();
    let diffs = versions["Diffs"].as_array().expect("Diffs");
    assert_eq!(diffs.len(), 1, "{versions}");
    assert_eq!(diffs[0]["Type"], "Edited", "{versions}");
    let me = agent.get("/v1/agent/self").unwrap();
    assert_eq!(me["stats"]["raft"]["state"], "Leader", "{me}");
    assert_eq!(me["member"]["Status"], "alive", "{me}");
}

#[test]
fn silent_connections_and_trickled_headers_are_closed() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let addr = format!("127.0.0.1:{}", agent.http_port);
    let silent = std::net::TcpStream::connect(&addr).unwrap();
    let mut trickle = std::net::TcpStream::connect(&addr).unwrap();
    trickle
        .write_all(b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let closed_within = |mut s: std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        let mut buf = [0u8; 256];
        // 0 bytes (closed) or a reset: the server gave up on it. A timeout: it did not.
        !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut)
    };
    let t = std::thread::spawn(move || closed_within(silent));
    assert!(closed_within(trickle), "a trickled request was kept open");
    assert!(t.join().unwrap(), "a silent connection was kept open");
    // The agent still serves others.
    assert!(agent.get("/v1/jobs").is_some());
}

#[test]
fn request_bodies_are_bounded_per_route() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let json_ct = [("Content-Type", "application/json")];
    let task = json!({ "Task": "x".repeat(64 * 1024) }).to_string();
    let (code, body) = send(
        &agent,
        reqwest::Method::POST,
        "/v1/client/allocation/0123456789abcdef/signal",
        &json_ct,
        Some(task),
    );
    assert_eq!(code, 413, "{body}");
    let var = json!({ "Items": { "k": "x".repeat(300 * 1024) } }).to_string();
    let (code, body) = send(
        &agent,
        reqwest::Method::PUT,
        "/v1/var/big",
        &json_ct,
        Some(var),
    );
    assert_eq!(code, 413, "{body}");
    let job = json!({ "Job": { "ID": "x".repeat(3 * 1024 * 1024) } }).to_string();
    let (code, body) = send(
        &agent,
        reqwest::Method::POST,
        "/v1/jobs",
        &json_ct,
        Some(job),
    );
    assert_eq!(code, 413, "{body}");
    // Ordinary bodies pass.
    let (code, body) = post_json(&agent, "/v1/jobs", &sleeper("small", 0));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn event_streams_at_once_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let client = http();
    let url = format!("{}/v1/event/stream", agent.address());
    // 128 readers are served (the responses are held open)...
    let open: Vec<reqwest::blocking::Response> = (0..128)
        .map(|i| {
            let r = client.get(&url).send().unwrap();
            assert_eq!(r.status().as_u16(), 200, "stream {i}");
            r
        })
        .collect();
    // ...the next one is told to come back later.
    let r = client.get(&url).send().unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.text().unwrap().contains("too many event streams"));
    // A reader that leaves gives its slot back.
    drop(open);
    wait_for("a freed event stream slot", WAIT, || {
        let r = client.get(&url).send().ok()?;
        (r.status().as_u16() == 200).then_some(())
    });
}
