//! The exec driver end to end: real `drover` agents, jobspecs, isolated tasks. Root only
//! (namespaces, cgroups, mounts): CI runs these as root, and they fail loudly without it.

use std::time::Duration;

use drover_tests::*;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the exec driver's end-to-end tests need root: run them as root"
    );
}

fn exec_task(name: &str, extra: &str, command: &str, args: &[&str]) -> String {
    let args = args
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  task \"{name}\" {{\n    driver = \"exec\"\n{extra}    config {{\n      command = \"{command}\"\n      args = [{args}]\n    }}\n  }}\n"
    )
}

#[test]
fn alloc_stop_with_a_long_kill_timeout_records_sigterm() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let node = agent.get("/v1/nodes").unwrap()[0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let n = agent.get(&format!("/v1/node/{node}")).unwrap();
    assert_eq!(
        n["Drivers"]["exec"]["Healthy"], true,
        "the exec driver is enabled by default as root: {:#}",
        n["Drivers"]
    );
    let spec = format!(
        "job \"sleepy\" {{\n group \"g\" {{\n{}\n }}\n}}\n",
        exec_task("t", "    kill_timeout = \"60s\"\n", "sleep", &["1000"])
    );
    agent.run_job(&write_job(tmp.path(), "sleepy", &spec));
    let alloc = agent.wait_alloc_status("sleepy", "running", Duration::from_secs(30));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let out = agent.cli(&["alloc", "stop", "-detach", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = wait_for("the task to be killed", Duration::from_secs(40), || {
        let a = agent.alloc(&id)?;
        (!task_events(&a, "t", "Terminated").is_empty()).then_some(a)
    });
    let ev = task_events(&a, "t", "Terminated")[0];
    assert_eq!(ev["Signal"], 15, "{ev:#}");
    assert_eq!(ev["OOMKilled"], false, "{ev:#}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "SIGTERM ended it, not the SIGKILL after 60s"
    );
}

#[test]
fn exceeding_the_memory_limit_is_reported_as_an_oom_kill() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let spec = format!(
        "job \"hog\" {{\n type = \"batch\"\n group \"g\" {{\n  restart {{\n   attempts = 0\n   mode = \"fail\"\n  }}\n  reschedule {{\n   attempts = 0\n   unlimited = false\n  }}\n{}\n }}\n}}\n",
        exec_task(
            "t",
            "    resources {\n      memory = 32\n    }\n",
            "/usr/bin/tail",
            &["/dev/zero"]
        )
    );
    agent.run_job(&write_job(tmp.path(), "hog", &spec));
    let a = wait_for("the hog to be killed", Duration::from_secs(60), || {
        let a = agent.allocs("hog").into_iter().next()?;
        let a = agent.alloc(a["ID"].as_str()?)?;
        (!task_events(&a, "t", "Terminated").is_empty()).then_some(a)
    });
    let ev = task_events(&a, "t", "Terminated")[0];
    assert_eq!(ev["OOMKilled"], true, "{ev:#}");
    assert_eq!(ev["Signal"], 9, "{ev:#}");
    assert!(
        ev["DisplayMessage"]
            .as_str()
            .unwrap()
            .contains("OOM Killed"),
        "{ev:#}"
    );
}

#[test]
fn a_killed_agent_leaves_the_task_running_and_reattaches() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("agent.hcl"),
        "server {\n  enabled = true\n  bootstrap_expect = 1\n}\nclient {\n  enabled = true\n}\n",
    )
    .unwrap();
    let cfg = dir.join("agent.hcl");
    let mut agent = Agent::start(
        &["-config", cfg.to_str().unwrap()],
        &dir.join("data"),
        free_port(),
        free_port(),
    );
    agent.wait_ready();
    agent.wait_node_ready();
    let marker = format!("exec-reattach-{}", std::process::id());
    let spec = format!(
        "job \"keeper\" {{\n group \"g\" {{\n{}\n }}\n}}\n",
        exec_task(
            "t",
            "",
            "/bin/sh",
            &["-c", &format!("while true; do sleep 0.2; done # {marker}")]
        )
    );
    agent.run_job(&write_job(dir, "keeper", &spec));
    let alloc = agent.wait_alloc_status("keeper", "running", Duration::from_secs(30));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let pid = wait_for("the task", Duration::from_secs(20), || {
        find_process(&marker)
    });
    let start = proc_stat(pid).unwrap().1;

    // The exec plugin first: the agent's host restarts it and it reattaches.
    // This agent's exec plugin (other tests' agents run in parallel).
    let plugin = wait_for("the exec plugin", Duration::from_secs(10), || {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|p| {
                proc_cmdline(*p).contains("plugin serve exec")
                    && proc_stat(*p).is_some_and(|s| s.0 == agent.pid())
            })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plugin),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        proc_stat(pid).map(|s| s.1),
        Some(start),
        "the plugin's death killed the task"
    );

    // Then the agent itself.
    agent.restart();
    agent.wait_ready();
    let a = wait_for("the task to be reattached", Duration::from_secs(60), || {
        let a = agent.alloc(&id)?;
        (!task_events(&a, "t", "Reattached").is_empty()).then_some(a)
    });
    assert_eq!(
        task_events(&a, "t", "Started").len(),
        1,
        "the task was started again: {a:#}"
    );
    assert_eq!(
        proc_stat(pid).map(|s| s.1),
        Some(start),
        "same pid, same start time"
    );
    assert_eq!(a["TaskStates"]["t"]["State"], "running");

    let out = agent.cli(&["job", "stop", "-detach", "keeper"]);
    assert!(out.status.success());
    wait_for("the task to be stopped", Duration::from_secs(30), || {
        proc_stat(pid).is_none().then_some(())
    });
}

#[test]
fn alloc_exec_and_stats_reach_inside_an_exec_task() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let spec = format!(
        "job \"inside\" {{\n group \"g\" {{\n{}\n }}\n}}\n",
        exec_task("web", "", "/bin/sleep", &["1000"])
    );
    agent.run_job(&write_job(tmp.path(), "inside", &spec));
    let alloc = agent.wait_alloc_status("inside", "running", Duration::from_secs(30));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = agent.cli(&[
        "alloc",
        "exec",
        "-i=false",
        &id,
        "sh",
        "-c",
        "ps -eo pid,user,args; id -un; touch /usr/x 2>&1; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("/bin/sleep 1000"), "{}", text(&out));
    assert!(stdout.contains("task-shim init"), "{}", text(&out));
    assert!(!stdout.contains("drover agent"), "{}", text(&out));
    assert!(!stdout.contains("plugin serve"), "{}", text(&out));
    assert!(stdout.lines().any(|l| l == "nobody"), "{}", text(&out));
    assert!(stdout.contains("Read-only file system"), "{}", text(&out));

    let out = agent.cli(&[
        "alloc",
        "exec",
        "-i=false",
        "-t",
        &id,
        "sh",
        "-c",
        "test -t 1 && echo on-a-tty",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("on-a-tty"));

    let out = agent.cli(&["alloc", "status", "-stats", "-json", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let usage = &v["ResourceUsage"]["Tasks"]["web"]["ResourceUsage"];
    assert!(
        usage["MemoryStats"]["Usage"].as_u64().unwrap_or(0) > 0,
        "memory from the task's cgroup: {v:#}"
    );
}
