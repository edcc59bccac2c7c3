//! The operator's view of plugins: config blocks checked against the plugin's schema with
//! the config file's line, `drover plugin status`, and `drover plugin inspect PATH`.

use std::process::Command;

use drover_tests::*;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts `drover agent -dev -config FILE` and returns how it failed.
fn refused(dir: &std::path::Path, config: &str) -> String {
    let path = dir.join("agent.hcl");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(drover_bin())
        .args(["agent", "-dev", "-config", path.to_str().unwrap()])
        .args(["-http-port", &free_port().to_string()])
        .args(["-rpc-port", &free_port().to_string()])
        .args(["-dns-port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the agent started: {}", text(&out));
    text(&out)
}

#[test]
fn plugin_config_errors_name_the_plugin_the_key_and_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let err = refused(
        tmp.path(),
        "plugin \"raw_exec\" {\n  config {\n    enabled = true\n    enabeld = true\n  }\n}\n",
    );
    assert!(err.contains("\"raw_exec\""), "{err}");
    assert!(err.contains("agent.hcl:4:"), "{err}");
    assert!(err.contains("unknown key \"enabeld\""), "{err}");

    let err = refused(
        tmp.path(),
        "plugin \"raw_exec\" {\n  config {\n    enabled = \"yes\"\n  }\n}\n",
    );
    assert!(err.contains("agent.hcl:3:"), "{err}");
    assert!(err.contains("\"enabled\" must be a bool"), "{err}");
}

#[test]
fn plugin_status_and_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let out = agent.cli(&["plugin", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("raw_exec"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no raw_exec row: {}", text(&out)));
    for word in ["driver", "grpc", "running", "true"] {
        assert!(line.split_whitespace().any(|w| w == word), "{word}: {line}");
    }
    let out = agent.cli(&["plugin", "status", "-json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Restarts"], 0, "{v:#}");

    // Inspect a standalone SDK plugin binary, and a built-in one served by `drover`.
    let standalone = drover_bin().with_file_name("drover-raw-exec");
    let out = agent.cli(&["plugin", "inspect", standalone.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("Name              = raw_exec"), "{t}");
    assert!(t.contains("Kind              = driver"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("enabled") && l.contains("bool")),
        "{t}"
    );
    let out = agent.cli(&[
        "plugin",
        "inspect",
        "-json",
        drover_bin().to_str().unwrap(),
        "plugin",
        "serve",
        "raw_exec",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Name"], "raw_exec");
    assert_eq!(v["ConfigSchema"][0]["Name"], "enabled");

    // Something that is not a plugin is explained, naming the file.
    let out = agent.cli(&["plugin", "inspect", "/bin/true"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/bin/true"), "{}", text(&out));
}

#[test]
fn a_third_party_driver_from_plugin_dir_runs_a_job() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        drover_bin().with_file_name("drover-hello-driver"),
        dir.join("hello"),
    )
    .unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(
        &cfg,
        format!(
            "plugin_dir = \"{}\"\nplugin \"hello\" {{\n  config {{\n    greeting = \"Howdy\"\n  }}\n}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let job = write_job(
        tmp.path(),
        "greet",
        "job \"greet\" {\n type = \"batch\"\n group \"g\" {\n  task \"t\" {\n   driver = \"hello\"\n   config {\n    name = \"e2e\"\n    count = 2\n    interval_ms = 10\n   }\n  }\n }\n}\n",
    );
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("greet", "complete", std::time::Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let out = agent.cli(&["alloc", "logs", id, "t"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Howdy, e2e! (1)\nHowdy, e2e! (2)\n",
        "{}",
        text(&out)
    );
    let out = agent.cli(&["plugin", "status"]);
    let t = text(&out);
    assert!(
        t.lines()
            .any(|l| l.starts_with("hello") && l.contains("driver") && l.contains("running")),
        "{t}"
    );
}

#[test]
fn a_drivers_events_are_the_tasks_driver_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        drover_bin().with_file_name("drover-hello-driver"),
        dir.join("hello"),
    )
    .unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(&cfg, format!("plugin_dir = \"{}\"\n", dir.display())).unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let job = write_job(
        tmp.path(),
        "events",
        "job \"events\" {\n group \"g\" {\n  task \"t\" {\n   driver = \"hello\"\n   config {\n    name = \"events\"\n    interval_ms = 100\n   }\n  }\n }\n}\n",
    );
    agent.run_job(&job);
    let running = agent.wait_alloc_status("events", "running", std::time::Duration::from_secs(60));
    let id = running["ID"].as_str().unwrap().to_string();
    let alloc = wait_for(
        "the driver's event",
        std::time::Duration::from_secs(30),
        || {
            let a = agent.alloc(&id)?;
            (!task_events(&a, "t", "Driver").is_empty()).then_some(a)
        },
    );
    let ev = task_events(&alloc, "t", "Driver")[0];
    assert_eq!(
        ev["DriverMessage"], "Preparing to greet events",
        "{alloc:#}"
    );
    assert_eq!(ev["DisplayMessage"], "Preparing to greet events");

    // The plugin dies: its relaunched instance's events are followed too.
    let pid = |agent: &Agent| {
        let v = agent.get("/v1/agent/plugins")?;
        v.as_array()?.iter().find(|p| p["Name"] == "hello")?["Pid"].as_i64()
    };
    let first = wait_for(
        "the hello plugin",
        std::time::Duration::from_secs(10),
        || pid(&agent),
    );
    // SAFETY: kill(2).
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    wait_for(
        "the relaunched plugin",
        std::time::Duration::from_secs(30),
        || pid(&agent).filter(|p| *p != first),
    );
    let job = write_job(
        tmp.path(),
        "again",
        "job \"again\" {\n group \"g\" {\n  task \"t\" {\n   driver = \"hello\"\n   config {\n    name = \"again\"\n    interval_ms = 100\n   }\n  }\n }\n}\n",
    );
    agent.run_job(&job);
    let running = agent.wait_alloc_status("again", "running", std::time::Duration::from_secs(60));
    let id = running["ID"].as_str().unwrap().to_string();
    let alloc = wait_for(
        "the relaunched driver's event",
        std::time::Duration::from_secs(30),
        || {
            let a = agent.alloc(&id)?;
            (!task_events(&a, "t", "Driver").is_empty()).then_some(a)
        },
    );
    assert_eq!(
        task_events(&alloc, "t", "Driver")[0]["DriverMessage"],
        "Preparing to greet again"
    );
}
