//! Task lifecycle on a dev agent: prestart, prestart sidecar, main, poststop in order;
//! sidecars stop when the main task finishes; assigned ports reach the task's environment.

use std::time::Duration;

use drover_tests::*;

fn sh(name: &str, hook: Option<(&str, bool)>, script: &str) -> String {
    let lifecycle = hook
        .map(|(h, sidecar)| {
            format!("    lifecycle {{\n      hook = \"{h}\"\n      sidecar = {sidecar}\n    }}\n")
        })
        .unwrap_or_default();
    format!(
        "  task \"{name}\" {{\n    driver = \"raw_exec\"\n{lifecycle}    config {{\n      command = \"/bin/sh\"\n      args = [\"-c\", \"{script}\"]\n    }}\n  }}\n"
    )
}

#[test]
fn prestart_sidecar_main_poststop_order_and_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let log = "$NOMAD_ALLOC_DIR/order.log";
    let mut spec = String::from(
        "job \"life\" {\n type = \"batch\"\n group \"g\" {\n  network {\n   port \"http\" {}\n  }\n  restart {\n   attempts = 0\n   mode = \"fail\"\n  }\n",
    );
    spec.push_str(&sh(
        "init",
        Some(("prestart", false)),
        &format!("sleep 0.3; echo init >> {log}"),
    ));
    spec.push_str(&sh(
        "helper",
        Some(("prestart", true)),
        &format!("echo helper >> {log}; while true; do sleep 0.1; done"),
    ));
    spec.push_str(&sh(
        "main",
        None,
        &format!("echo main port=$NOMAD_PORT_http addr=$NOMAD_ADDR_http >> {log}; sleep 0.3"),
    ));
    spec.push_str(&sh(
        "cleanup",
        Some(("poststop", false)),
        &format!("echo cleanup >> {log}"),
    ));
    spec.push_str(" }\n}\n");
    let job = write_job(tmp.path(), "life", &spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("life", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let full = agent.alloc(id).unwrap();
    let states = &full["TaskStates"];
    for t in ["init", "helper", "main", "cleanup"] {
        assert_eq!(states[t]["State"], "dead", "{t}: {full:#}");
        assert_eq!(states[t]["Failed"], false, "{t}: {full:#}");
    }
    assert!(
        !task_events(&full, "helper", "Killed").is_empty(),
        "the sidecar was not stopped: {full:#}"
    );
    let order = std::fs::read_to_string(agent.data_dir_alloc(id).join("alloc/order.log")).unwrap();
    let lines: Vec<&str> = order.lines().collect();
    let pos = |w: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("{w} did not run: {order}"))
    };
    assert!(pos("init") < pos("main"), "{order}");
    assert!(pos("helper") < pos("main"), "{order}");
    assert!(pos("main") < pos("cleanup"), "{order}");
    let main_line = lines[pos("main")];
    let port: u16 = main_line
        .split("port=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20000..=32000).contains(&port), "{main_line}");
    // The address is the node's (its fingerprinted network), the port's HostIP.
    let host_ip = full["SharedResources"]["Ports"][0]["HostIP"]
        .as_str()
        .unwrap_or_default();
    assert!(!host_ip.is_empty(), "{full:#}");
    assert!(
        main_line.contains(&format!("addr={host_ip}:{port}")),
        "{main_line}"
    );
    assert_eq!(full["SharedResources"]["Ports"][0]["Value"], port);
}

#[test]
fn a_failing_prestart_task_keeps_the_main_task_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let mut spec = String::from(
        "job \"gate\" {\n type = \"batch\"\n group \"g\" {\n  restart {\n   attempts = 0\n   mode = \"fail\"\n  }\n  reschedule {\n   attempts = 0\n  }\n",
    );
    spec.push_str(&sh("check", Some(("prestart", false)), "exit 3"));
    spec.push_str(&sh("main", None, "echo should-not-run"));
    spec.push_str(" }\n}\n");
    let job = write_job(tmp.path(), "gate", &spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("gate", "failed", Duration::from_secs(60));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    assert!(task_events(&full, "main", "Started").is_empty(), "{full:#}");
    assert_eq!(full["TaskStates"]["main"]["State"], "dead");
}

#[test]
fn alloc_restart_signal_and_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    // The task counts its starts and records the signals it gets.
    let script = "echo start >> $NOMAD_ALLOC_DIR/starts; trap 'echo got-hup >> $NOMAD_ALLOC_DIR/signals' HUP; while true; do sleep 0.1; done";
    let spec = format!(
        "job \"ctl\" {{\n group \"g\" {{\n{}\n }}\n}}\n",
        sh("t", None, script)
    );
    let job = write_job(tmp.path(), "ctl", &spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("ctl", "running", Duration::from_secs(30));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let dir = agent.data_dir_alloc(&id).join("alloc");
    wait_for("the first start", Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("starts"))
            .ok()
            .filter(|s| s.lines().count() == 1)
    });

    let out = agent.cli(&["alloc", "signal", "-s", "SIGHUP", &id, "t"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the task to get SIGHUP", Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("signals"))
            .ok()
            .filter(|s| s.contains("got-hup"))
    });

    let out = agent.cli(&["alloc", "restart", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("a second start", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.join("starts"))
            .ok()
            .filter(|s| s.lines().count() == 2)
    });
    let a = wait_for(
        "the restarted task running",
        Duration::from_secs(30),
        || {
            let a = agent.alloc(&id)?;
            // The update that reports the restart may trail the second start.
            (a["TaskStates"]["t"]["State"] == "running"
                && a["TaskStates"]["t"]["Restarts"] == 1
                && !task_events(&a, "t", "Restart Signaled").is_empty())
            .then_some(a)
        },
    );
    assert_eq!(a["TaskStates"]["t"]["Restarts"], 1);

    let out = agent.cli(&["alloc", "signal", "-s", "SIGHUP", &id, "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("task \"nope\" is not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = agent.cli(&["alloc", "stop", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = agent.alloc(&id).unwrap();
    assert_eq!(a["DesiredStatus"], "stop");
    let replacement = wait_for("a replacement allocation", Duration::from_secs(30), || {
        agent
            .allocs("ctl")
            .into_iter()
            .find(|a| a["ID"] != id.as_str() && a["ClientStatus"] == "running")
    });
    assert_eq!(replacement["DesiredStatus"], "run");
}

#[test]
fn a_crash_looping_task_follows_its_restart_policy_then_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let spec = "job \"crash\" {\n group \"g\" {\n  restart {\n   attempts = 2\n   interval = \"1m\"\n   delay = \"100ms\"\n   mode = \"fail\"\n  }\n  reschedule {\n   attempts = 0\n   unlimited = false\n  }\n  task \"t\" {\n   driver = \"raw_exec\"\n   config {\n    command = \"/bin/sh\"\n    args = [\"-c\", \"exit 7\"]\n   }\n  }\n }\n}\n";
    let job = write_job(tmp.path(), "crash", spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("crash", "failed", Duration::from_secs(60));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    assert_eq!(task_events(&full, "t", "Terminated").len(), 3, "{full:#}");
    assert_eq!(task_events(&full, "t", "Restarting").len(), 2, "{full:#}");
    assert_eq!(
        task_events(&full, "t", "Not Restarting").len(),
        1,
        "{full:#}"
    );
    assert_eq!(full["TaskStates"]["t"]["Restarts"], 2);
    assert!(
        task_events(&full, "t", "Terminated")
            .iter()
            .all(|e| e["ExitCode"] == 7)
    );
}

#[test]
fn logs_rotate_by_size_and_count() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    // ~3.5 MB of output with 1 MB files, at most 2 kept.
    let spec = "job \"chatty\" {\n type = \"batch\"\n group \"g\" {\n  task \"t\" {\n   driver = \"raw_exec\"\n   config {\n    command = \"/bin/sh\"\n    args = [\"-c\", \"i=0; while [ $i -lt 3500 ]; do head -c 1023 /dev/zero | tr '\\\\0' x; echo; i=$((i+1)); done; echo last-line\"]\n   }\n   logs {\n    max_files = 2\n    max_file_size = 1\n   }\n  }\n }\n}\n";
    let job = write_job(tmp.path(), "chatty", spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("chatty", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let logs = agent.data_dir_alloc(id).join("alloc/logs");
    let files: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("t.stdout."))
        .collect();
    assert_eq!(files.len(), 2, "max_files = 2: {files:?}");
    for f in &files {
        let len = std::fs::metadata(logs.join(f)).unwrap().len();
        assert!(len <= 1024 * 1024, "{f} is {len} bytes, over max_file_size");
    }
    let out = agent.cli(&["alloc", "logs", "-tail", "-n", "1", id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "last-line");
}

#[test]
fn alloc_fs_lists_and_reads_inside_the_allocation_only() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let spec = format!(
        "job \"files\" {{\n group \"g\" {{\n{}\n }}\n}}\n",
        sh(
            "t",
            None,
            "echo hello-fs > $NOMAD_TASK_DIR/note.txt; while true; do sleep 0.2; done"
        )
    );
    let job = write_job(tmp.path(), "files", &spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("files", "running", Duration::from_secs(30));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let out = wait_for("the file", Duration::from_secs(10), || {
        let out = agent.cli(&["alloc", "fs", &id, "t/local/note.txt"]);
        out.status.success().then_some(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-fs\n");
    let out = agent.cli(&["alloc", "fs", &id]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("alloc/") && listing.contains("t/"),
        "{listing}"
    );
    let out = agent.cli(&["alloc", "fs", &id, "../../../../etc/passwd"]);
    assert!(
        !out.status.success(),
        "a path outside the allocation must be refused"
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("outside the allocation directory") || e.contains("No such file"),
        "{e}"
    );
}

#[test]
fn terminal_allocations_are_garbage_collected_beyond_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gc.hcl");
    // Only the count limit: the disk threshold depends on the machine's disk.
    std::fs::write(
        &cfg,
        "client {\n  gc_max_allocs = 1\n  gc_disk_usage_threshold = 100\n}\n",
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let mut ids = Vec::new();
    for i in 0..3 {
        let job = write_job(
            tmp.path(),
            &format!("b{i}"),
            &format!(
                "job \"b{i}\" {{\n type = \"batch\"\n group \"g\" {{\n{}\n }}\n}}\n",
                sh("t", None, "true")
            ),
        );
        agent.run_job(&job);
        let a = agent.wait_alloc_status(&format!("b{i}"), "complete", Duration::from_secs(30));
        ids.push(a["ID"].as_str().unwrap().to_string());
    }
    wait_for(
        "all but one terminal allocation collected",
        Duration::from_secs(20),
        || {
            let left = ids
                .iter()
                .filter(|id| agent.data_dir_alloc(id).exists())
                .count();
            (left == 1).then_some(())
        },
    );
    // The servers keep the records.
    for id in &ids {
        assert_eq!(agent.alloc(id).unwrap()["ClientStatus"], "complete");
    }
}

#[test]
fn shutdown_delay_holds_the_kill_signal() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let marker = format!("delay-{}", std::process::id());
    let spec = format!(
        "job \"slow\" {{\n group \"g\" {{\n  shutdown_delay = \"1500ms\"\n{}\n }}\n}}\n",
        sh(
            "t",
            None,
            &format!("while true; do sleep 0.1; done # {marker}")
        )
    );
    let job = write_job(tmp.path(), "slow", &spec);
    agent.run_job(&job);
    agent.wait_alloc_status("slow", "running", Duration::from_secs(30));
    let pid = wait_for("the task", Duration::from_secs(10), || {
        find_process(&marker)
    });
    let t = std::time::Instant::now();
    let out = agent.cli(&["job", "stop", "-detach", "slow"]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        proc_stat(pid).is_some(),
        "the task was killed before its shutdown delay"
    );
    wait_for("the task to stop", Duration::from_secs(20), || {
        proc_stat(pid).is_none().then_some(())
    });
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "stopped after {:?}",
        t.elapsed()
    );
    let a = agent.wait_alloc_status("slow", "complete", Duration::from_secs(20));
    let full = agent.alloc(a["ID"].as_str().unwrap()).unwrap();
    let killing = task_events(&full, "t", "Killing");
    assert!(
        killing[0]["DisplayMessage"]
            .as_str()
            .unwrap()
            .contains("shutdown delay"),
        "{full:#}"
    );
}
