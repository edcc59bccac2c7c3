//! The walking skeleton, end to end on real processes: `drover agent -dev` runs a raw_exec
//! job; a batch job's exit code is recorded; a server and a client agent survive kill -9.

use std::time::Duration;

use drover_tests::*;

#[test]
fn dev_agent_runs_hello_and_shows_its_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let out = agent.cli(&["job", "run", "examples/hello.hcl"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "job run failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("finished with status \"complete\""),
        "{stdout}"
    );
    let alloc = agent.wait_alloc_status("hello", "running", Duration::from_secs(30));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let logs = wait_for(
        "the greeting in alloc logs",
        Duration::from_secs(20),
        || {
            let out = agent.cli(&["alloc", "logs", &id, "say"]);
            let s = String::from_utf8_lossy(&out.stdout).to_string();
            s.contains("hello from Drover").then_some(s)
        },
    );
    // ${NOMAD_ALLOC_ID} reached the task's environment.
    assert!(logs.contains(&id), "{logs}");
    // The task name may be left out when the group has one task.
    let out = agent.cli(&["alloc", "logs", &id[..8]]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from Drover"));
    let status = agent.cli(&["job", "status", "hello"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("running"));
}

#[test]
fn batch_exit_code_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = write_job(
        tmp.path(),
        "exit42",
        r#"
job "exit42" {
  type = "batch"
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo bye; exit 42"]
      }
    }
  }
}
"#,
    );
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("exit42", "failed", Duration::from_secs(30));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    let term = task_events(&full, "t", "Terminated");
    assert_eq!(term.len(), 1, "{full:#}");
    assert_eq!(term[0]["ExitCode"], 42);
    assert!(!task_events(&full, "t", "Not Restarting").is_empty());

    let ok = write_job(
        tmp.path(),
        "ok",
        "job \"ok\" {\n type = \"batch\"\n group \"g\" {\n task \"t\" {\n driver = \"raw_exec\"\n config {\n command = \"/bin/true\"\n }\n }\n }\n}\n",
    );
    agent.run_job(&ok);
    let alloc = agent.wait_alloc_status("ok", "complete", Duration::from_secs(30));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    assert_eq!(task_events(&full, "t", "Terminated")[0]["ExitCode"], 0);
}

fn task_pid(marker: &str) -> i32 {
    wait_for(
        &format!("a task process with {marker}"),
        Duration::from_secs(20),
        || find_process(marker).filter(|pid| proc_cmdline(*pid).starts_with("/bin/sh")),
    )
}

fn assert_under_shim(pid: i32) {
    let (ppid, _) = proc_stat(pid).expect("task is alive");
    let parent = proc_cmdline(ppid);
    assert!(
        parent.contains("task-shim"),
        "the task's parent {ppid} is not a task shim: {parent:?}"
    );
}

#[test]
fn server_and_client_survive_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("server.hcl"),
        "server {\n  enabled = true\n  heartbeat_grace = \"60s\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.hcl"), "client {\n  enabled = true\n}\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n").unwrap();
    let (sh, sr) = (free_port(), free_port());
    let server_cfg = dir.join("server.hcl");
    let mut server = Agent::start(
        &["-config", server_cfg.to_str().unwrap()],
        &dir.join("server"),
        sh,
        sr,
    );
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

    let marker_track = dir.join("track-marker");
    let marker_exit = dir.join("exit-marker");
    let spec = |name: &str, script: String| {
        format!(
            "job \"{name}\" {{\n group \"g\" {{\n  restart {{\n   attempts = 0\n   mode = \"fail\"\n  }}\n  task \"t\" {{\n   driver = \"raw_exec\"\n   config {{\n    command = \"/bin/sh\"\n    args = [\"-c\", \"{script}\"]\n   }}\n  }}\n }}\n}}\n"
        )
    };
    let track = write_job(
        dir,
        "track",
        &spec(
            "track",
            format!(
                "echo tracking {}; while true; do sleep 0.2; done",
                marker_track.display()
            ),
        ),
    );
    let exit = write_job(
        dir,
        "exit42",
        &spec(
            "exit42",
            format!(
                "while [ ! -f {} ]; do sleep 0.1; done; exit 42",
                marker_exit.display()
            ),
        ),
    );
    server.run_job(&track);
    server.run_job(&exit);
    server.wait_alloc_status("track", "running", Duration::from_secs(30));
    let exit_alloc = server.wait_alloc_status("exit42", "running", Duration::from_secs(30));
    let track_pid = task_pid(&marker_track.display().to_string());
    let exit_pid = task_pid(&marker_exit.display().to_string());
    let track_start = proc_stat(track_pid).unwrap().1;
    assert_under_shim(track_pid);
    assert_under_shim(exit_pid);

    // kill -9 the server: state is on disk, the task does not notice.
    server.restart();
    server.wait_ready();
    assert!(
        server.get("/v1/job/track").is_some(),
        "job lost across a server crash"
    );
    assert!(
        server.get("/v1/job/exit42").is_some(),
        "job lost across a server crash"
    );
    let evals = server.get("/v1/job/track/evaluations").unwrap();
    assert!(
        evals
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["Status"] == "complete")),
        "evaluations lost: {evals}"
    );
    assert_eq!(
        server.allocs("track").len(),
        1,
        "allocations lost across a server crash"
    );
    assert_eq!(
        proc_stat(track_pid).map(|s| s.1),
        Some(track_start),
        "task restarted by a server crash"
    );

    // kill -9 the client; the task that waits for the marker exits 42 while the client is down.
    client.kill9();
    std::fs::write(&marker_exit, "go").unwrap();
    wait_for("the exit42 task to exit", Duration::from_secs(20), || {
        proc_stat(exit_pid).is_none().then_some(())
    });
    assert_eq!(
        proc_stat(track_pid).map(|s| s.1),
        Some(track_start),
        "task died with its client agent"
    );

    client.restart();
    let failed = wait_for(
        "exit code 42 recorded after the client came back",
        Duration::from_secs(60),
        || {
            let a = server.alloc(exit_alloc["ID"].as_str().unwrap())?;
            (a["ClientStatus"] == "failed").then_some(a)
        },
    );
    let term = task_events(&failed, "t", "Terminated");
    assert_eq!(term.len(), 1, "{failed:#}");
    assert_eq!(term[0]["ExitCode"], 42);

    // The tracked task kept its pid and start time and is still under its shim ...
    assert_eq!(
        proc_stat(track_pid).map(|s| s.1),
        Some(track_start),
        "task was restarted"
    );
    assert_under_shim(track_pid);
    // ... and the restarted client tracks it: stopping the job kills it.
    let out = server.cli(&["job", "stop", "-detach", "track"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the tracked task to be stopped",
        Duration::from_secs(30),
        || proc_stat(track_pid).is_none().then_some(()),
    );
    let a = server.wait_alloc_status("track", "complete", Duration::from_secs(30));
    let full = server.alloc(a["ID"].as_str().unwrap()).unwrap();
    assert!(!task_events(&full, "t", "Killed").is_empty(), "{full:#}");
}
