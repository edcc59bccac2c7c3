//! kill -9 of a driver plugin while its task runs: the host relaunches the plugin, the task
//! runner reattaches (same pid and start time, still under its shim), and the task's later
//! exit code is recorded.

use std::time::Duration;

use drover_tests::*;

#[test]
fn a_killed_plugin_is_relaunched_and_its_task_reattached() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let marker = tmp.path().join("exit-now");
    let job = write_job(
        tmp.path(),
        "late42",
        &format!(
            "job \"late42\" {{\n type = \"batch\"\n group \"g\" {{\n  restart {{\n   attempts = 0\n   mode = \"fail\"\n  }}\n  task \"t\" {{\n   driver = \"raw_exec\"\n   config {{\n    command = \"/bin/sh\"\n    args = [\"-c\", \"while [ ! -f {} ]; do sleep 0.1; done; exit 42\"]\n   }}\n  }}\n }}\n}}\n",
            marker.display()
        ),
    );
    agent.run_job(&job);
    agent.wait_alloc_status("late42", "running", Duration::from_secs(30));
    let task = wait_for("the task process", Duration::from_secs(20), || {
        find_process(&marker.display().to_string())
            .filter(|p| proc_cmdline(*p).starts_with("/bin/sh"))
    });
    let (shim, started) = proc_stat(task).unwrap();
    assert!(proc_cmdline(shim).contains("task-shim"));

    let plugin = wait_for("the raw_exec plugin", Duration::from_secs(10), || {
        let v = agent.get("/v1/agent/plugins")?;
        v.as_array()?.iter().find(|p| p["Name"] == "raw_exec")?["Pid"].as_i64()
    }) as i32;
    assert!(proc_cmdline(plugin).contains("plugin serve raw_exec"));
    // SAFETY: kill(2).
    assert_eq!(unsafe { libc::kill(plugin, libc::SIGKILL) }, 0);

    // Supervision relaunches it; the task never noticed.
    let relaunched = wait_for(
        "the plugin to be relaunched",
        Duration::from_secs(30),
        || {
            let v = agent.get("/v1/agent/plugins")?;
            let p = v
                .as_array()?
                .iter()
                .find(|p| p["Name"] == "raw_exec")?
                .clone();
            (p["State"] == "running" && p["Pid"].as_i64()? as i32 != plugin).then_some(p)
        },
    );
    assert_eq!(relaunched["Restarts"], 1, "{relaunched:#}");
    assert_eq!(
        proc_stat(task),
        Some((shim, started)),
        "the task was replaced"
    );

    // The runner reattached: the exit the task makes now is recorded.
    std::fs::write(&marker, b"").unwrap();
    let alloc = agent.wait_alloc_status("late42", "failed", Duration::from_secs(30));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    let terminated = task_events(&full, "t", "Terminated");
    assert_eq!(terminated.len(), 1, "{full:#}");
    assert_eq!(terminated[0]["ExitCode"], 42, "{full:#}");
    assert!(
        !task_events(&full, "t", "Reattached").is_empty(),
        "no reattach event: {full:#}"
    );
}
