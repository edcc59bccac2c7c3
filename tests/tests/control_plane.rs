//! The control plane on real agents: snapshots compact the Raft log and restore on restart,
//! every jobspec block round-trips through the API, bad JSON names its field, and agent
//! shutdown keeps (or, in -dev, stops) tasks.

use std::time::Duration;

use drover_tests::*;
use serde_json::json;

fn post(agent: &Agent, path: &str, body: &serde_json::Value) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}{path}", agent.address()))
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn job_json(id: &str) -> serde_json::Value {
    json!({ "Job": { "ID": id, "TaskGroups": [{ "Name": "g", "Count": 0, "Tasks": [{ "Name": "t", "Driver": "raw_exec" }] }] } })
}

#[test]
fn snapshots_compact_the_log_and_restore_after_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("server.hcl");
    std::fs::write(
        &cfg,
        "server {\n  enabled = true\n  raft_snapshot_threshold = 20\n  raft_trailing_logs = 5\n}\n",
    )
    .unwrap();
    let data = tmp.path().join("server");
    let mut server = Agent::start(
        &["-config", cfg.to_str().unwrap()],
        &data,
        free_port(),
        free_port(),
    );
    server.wait_ready();
    for i in 0..60 {
        let (code, body) = post(&server, "/v1/jobs", &job_json(&format!("j{i}")));
        assert_eq!(code, 200, "{body}");
    }
    let raft_dir = data.join("server/raft");
    wait_for("a Raft snapshot on disk", Duration::from_secs(20), || {
        raft_dir.join("snapshot").exists().then_some(())
    });
    // Compaction: the log no longer holds the first registrations; only the snapshot does.
    let first = br#""ID":"j0""#;
    wait_for("the log to be compacted", Duration::from_secs(20), || {
        let log = std::fs::read(raft_dir.join("log")).ok()?;
        (!log.windows(first.len()).any(|w| w == first)).then_some(())
    });
    let snapshot = std::fs::read(raft_dir.join("snapshot")).unwrap();
    assert!(
        snapshot.windows(first.len()).any(|w| w == first),
        "the snapshot lacks the first job"
    );
    server.restart();
    server.wait_ready();
    let jobs = wait_for("all 60 jobs after restart", Duration::from_secs(20), || {
        let v = server.get("/v1/jobs")?;
        (v.as_array()?.len() == 60).then_some(v)
    });
    assert!(jobs.as_array().unwrap().iter().any(|j| j["ID"] == "j59"));
    let some = server.get("/v1/jobs?prefix=j5").unwrap();
    assert_eq!(
        some.as_array().unwrap().len(),
        11,
        "prefix j5 matches j5 and j50..j59: {some}"
    );
    let other_ns = server.get("/v1/jobs?namespace=prod").unwrap();
    assert_eq!(other_ns.as_array().unwrap().len(), 0);
    let all_ns = server.get("/v1/jobs?namespace=*").unwrap();
    assert_eq!(all_ns.as_array().unwrap().len(), 60);
    // Registering still works after restoring from the snapshot.
    let (code, body) = post(&server, "/v1/jobs", &job_json("after"));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn every_jobspec_block_round_trips_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let hcl = std::fs::read_to_string(repo_root().join("examples/full.hcl")).unwrap();
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/jobs/parse", agent.address()))
        .json(&json!({ "JobHCL": hcl }))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let parsed: serde_json::Value = r.json().unwrap();
    assert_eq!(
        parsed["TaskGroups"][0]["Networks"][0]["ReservedPorts"][0]["Value"],
        9090
    );
    let (code, body) = post(&agent, "/v1/jobs", &json!({ "Job": parsed }));
    assert_eq!(code, 200, "{body}");
    let stored = agent.get("/v1/job/full").unwrap();
    for key in [
        "TaskGroups",
        "Constraints",
        "Affinities",
        "Spreads",
        "Update",
        "Meta",
        "Datacenters",
        "Priority",
    ] {
        assert_eq!(
            stored[key], parsed[key],
            "{key} changed on its way through the API"
        );
    }
    // Durations travel as integer nanoseconds.
    assert_eq!(
        stored["TaskGroups"][0]["Tasks"][0]["KillTimeout"],
        30_000_000_000i64
    );
}

#[test]
fn bad_json_and_bad_hcl_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let bad = json!({ "Job": { "ID": "x", "TaskGroups": [{ "Name": "g", "Count": "two" }] } });
    let (code, body) = post(&agent, "/v1/jobs", &bad);
    assert_eq!(code, 400);
    assert!(body.contains("Job.TaskGroups[0].Count"), "{body}");
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/jobs", agent.address()))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (code, body) = post(
        &agent,
        "/v1/jobs/parse",
        &json!({ "JobHCL": "job \"x\" {\n  group \"g\" {\n    cuont = 1\n    task \"t\" {\n      driver = \"raw_exec\"\n    }\n  }\n}\n" }),
    );
    assert_eq!(code, 400);
    assert!(
        body.contains("<JobHCL>:3:5") && body.contains("unknown key \"cuont\""),
        "{body}"
    );
}

fn sleeper(tmp: &std::path::Path, marker: &str) -> std::path::PathBuf {
    write_job(
        tmp,
        "sleeper",
        &format!(
            "job \"sleeper\" {{\n group \"g\" {{\n  task \"t\" {{\n   driver = \"raw_exec\"\n   config {{\n    command = \"/bin/sh\"\n    args = [\"-c\", \"while true; do sleep 0.2; done # {marker}\"]\n   }}\n  }}\n }}\n}}\n"
        ),
    )
}

fn task_pid(marker: &str) -> i32 {
    wait_for("the task process", Duration::from_secs(20), || {
        find_process(marker).filter(|p| proc_cmdline(*p).starts_with("/bin/sh"))
    })
}

#[test]
fn client_shutdown_keeps_tasks_and_dev_shutdown_stops_them() {
    let tmp = tempfile::tempdir().unwrap();
    // -dev: SIGTERM stops the tasks.
    let mut dev = Agent::dev(tmp.path());
    let marker = format!("dev-{}", std::process::id());
    dev.run_job(&sleeper(tmp.path(), &marker));
    let pid = task_pid(&marker);
    dev.terminate();
    wait_for(
        "the dev agent's task to stop",
        Duration::from_secs(20),
        || proc_stat(pid).is_none().then_some(()),
    );

    // A client agent's SIGTERM leaves its tasks running; they are reattached on restart.
    let dir = tmp.path();
    std::fs::write(dir.join("client.hcl"), "client {\n  enabled = true\n}\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n").unwrap();
    let server = Agent::start(&["-server"], &dir.join("server"), free_port(), free_port());
    server.wait_ready();
    let client_cfg = dir.join("client.hcl");
    let servers = server.rpc_addr();
    let mut client = Agent::start(
        &[
            "-config",
            client_cfg.to_str().unwrap(),
            "-servers",
            &servers,
        ],
        &dir.join("client"),
        free_port(),
        free_port(),
    );
    wait_for(
        "the client node to be ready",
        Duration::from_secs(30),
        || {
            server
                .get("/v1/nodes")?
                .as_array()?
                .iter()
                .find(|n| n["Status"] == "ready")
                .cloned()
        },
    );
    let marker = format!("client-{}", std::process::id());
    server.run_job(&sleeper(tmp.path(), &marker));
    let alloc = server.wait_alloc_status("sleeper", "running", Duration::from_secs(30));
    let pid = task_pid(&marker);
    let start = proc_stat(pid).unwrap().1;
    client.terminate();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        proc_stat(pid).map(|s| s.1),
        Some(start),
        "a client agent's shutdown stopped its task"
    );
    client.restart();
    let id = alloc["ID"].as_str().unwrap();
    let a = wait_for("the task to be reattached", Duration::from_secs(30), || {
        let a = server.alloc(id)?;
        (!task_events(&a, "t", "Reattached").is_empty()).then_some(a)
    });
    assert_eq!(
        task_events(&a, "t", "Started").len(),
        1,
        "the task was started again: {a:#}"
    );
    assert_eq!(proc_stat(pid).map(|s| s.1), Some(start));
    // Leave nothing running: the reattached task is stopped through the cluster.
    let out = server.cli(&["job", "stop", "-detach", "sleeper"]);
    assert!(out.status.success());
    wait_for("the task to be stopped", Duration::from_secs(30), || {
        proc_stat(pid).is_none().then_some(())
    });
}

#[test]
fn the_leader_deletes_finished_evaluations_after_eval_gc_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("server.hcl");
    std::fs::write(
        &cfg,
        "server {\n  enabled = true\n  eval_gc_threshold = \"2s\"\n}\n",
    )
    .unwrap();
    let server = Agent::start(
        &["-config", cfg.to_str().unwrap()],
        &tmp.path().join("server"),
        free_port(),
        free_port(),
    );
    server.wait_ready();
    let (code, body) = post(&server, "/v1/jobs", &job_json("gc-me"));
    assert_eq!(code, 200, "{body}");
    let eval_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["EvalID"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(
        "the evaluation to complete",
        Duration::from_secs(20),
        || {
            let e = server.get(&format!("/v1/evaluation/{eval_id}"))?;
            (e["Status"] == "complete").then_some(())
        },
    );
    wait_for(
        "the finished evaluation to be collected",
        Duration::from_secs(30),
        || {
            server
                .get(&format!("/v1/evaluation/{eval_id}"))
                .is_none()
                .then_some(())
        },
    );
    // The job stays.
    assert!(server.get("/v1/job/gc-me").is_some());

    // A threshold that is not a duration stops the agent, naming the key.
    std::fs::write(
        &cfg,
        "server {\n  enabled = true\n  eval_gc_threshold = \"soon\"\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new("timeout")
        .arg("20")
        .arg(drover_bin())
        .args(["agent", "-config", cfg.to_str().unwrap(), "-data-dir"])
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("server.eval_gc_threshold"),
        "{err}"
    );
}

fn raw_exec_job(
    tmp: &std::path::Path,
    name: &str,
    job_type: &str,
    script: &str,
) -> std::path::PathBuf {
    write_job(
        tmp,
        name,
        &format!(
            "job \"{name}\" {{\n type = \"{job_type}\"\n group \"g\" {{\n  task \"t\" {{\n   driver = \"raw_exec\"\n   config {{\n    command = \"/bin/sh\"\n    args = [\"-c\", \"{script}\"]\n   }}\n  }}\n }}\n}}\n"
        ),
    )
}

#[test]
fn system_gc_collects_dead_jobs_with_their_allocations_and_keeps_live_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = Agent::dev(tmp.path());
    let marker = format!("gc-keep-{}", std::process::id());
    agent.run_job(&raw_exec_job(tmp.path(), "once", "batch", "exit 0"));
    agent.run_job(&raw_exec_job(tmp.path(), "stopped", "service", "sleep 600"));
    let keep = format!("while true; do sleep 0.2; done # {marker}");
    agent.run_job(&raw_exec_job(tmp.path(), "keep", "service", &keep));
    let once = agent.wait_alloc_status("once", "complete", Duration::from_secs(30));
    agent.wait_alloc_status("stopped", "running", Duration::from_secs(30));
    let kept = agent.wait_alloc_status("keep", "running", Duration::from_secs(30));
    let out = agent.cli(&["job", "stop", "-detach", "stopped"]);
    assert!(out.status.success());
    let stopped = wait_for(
        "the stopped job's allocation to end",
        Duration::from_secs(30),
        || {
            agent
                .allocs("stopped")
                .into_iter()
                .find(|a| a["ClientStatus"] == "complete" || a["ClientStatus"] == "failed")
        },
    );
    wait_for("both jobs to be dead", Duration::from_secs(20), || {
        let dead = |id: &str| {
            agent
                .get(&format!("/v1/job/{id}"))
                .is_some_and(|j| j["Status"] == "dead")
        };
        (dead("once") && dead("stopped")).then_some(())
    });
    let evals_of = |job: &str| {
        agent
            .get("/v1/evaluations")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["JobID"] == job)
            .count()
    };
    assert!(evals_of("once") > 0 && evals_of("stopped") > 0);
    let stopped_dir = agent.data_dir_alloc(stopped["ID"].as_str().unwrap());
    assert!(stopped_dir.exists());

    // The default thresholds (4h for jobs) keep everything; a forced collection does not.
    let out = agent.cli(&["system", "gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for job in ["once", "stopped"] {
        assert!(
            agent.get(&format!("/v1/job/{job}")).is_none(),
            "{job} survived"
        );
        assert_eq!(evals_of(job), 0, "the evaluations of {job} survived");
    }
    for alloc in [&once, &stopped] {
        let id = alloc["ID"].as_str().unwrap();
        assert!(agent.alloc(id).is_none(), "allocation {id} survived");
    }
    // The client lets go of what the servers no longer have: its directory goes.
    wait_for(
        "the collected allocation's directory to be removed",
        Duration::from_secs(20),
        || (!stopped_dir.exists()).then_some(()),
    );
    // The live job, its allocation and its task are untouched.
    assert!(agent.get("/v1/job/keep").is_some());
    let id = kept["ID"].as_str().unwrap();
    assert_eq!(agent.alloc(id).unwrap()["ClientStatus"], "running");
    assert!(find_process(&marker).is_some());
    assert!(evals_of("keep") > 0);
    agent.terminate();
}
