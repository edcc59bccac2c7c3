//! The CLI against a real dev agent: plan, run, validate, history, eval status, config
//! validate, and variables.

use std::time::Duration;

use drover_tests::*;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const JOB: &str = r#"
variable "n" {
  type    = number
  default = 1
}

job "planned" {
  group "g" {
    count = var.n
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["300"]
      }
      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"#;

#[test]
fn plan_run_history_and_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = write_job(tmp.path(), "planned", JOB);
    let path = job.to_str().unwrap();

    let out = agent.cli(&["job", "plan", path]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "plan with changes exits 1: {t}");
    assert!(t.contains("+ Job: \"planned\""), "{t}");
    assert!(t.contains("Task Group \"g\": 1 create"), "{t}");
    assert!(
        agent.get("/v1/job/planned").is_none(),
        "plan must not register the job"
    );

    let out = agent.cli(&["job", "run", path]);
    assert!(out.status.success(), "{}", text(&out));
    agent.wait_alloc_status("planned", "running", Duration::from_secs(30));

    let out = agent.cli(&["job", "plan", path]);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "an unchanged job plans no changes: {t}"
    );
    assert!(t.contains("Task Group \"g\": 1 ignore"), "{t}");

    let out = agent.cli(&["job", "plan", "-var", "n=3", path]);
    let t = text(&out);
    assert!(t.contains("+/- TaskGroups[g].Count: \"1\" => \"3\""), "{t}");
    assert!(t.contains("2 create, 1 in-place update"), "{t}");

    let out = agent.cli(&["job", "run", "-detach", "-var", "n=2", path]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("two allocations", Duration::from_secs(30), || {
        (agent.allocs("planned").len() == 2).then_some(())
    });
    let out = agent.cli(&["job", "history", "planned"]);
    let t = text(&out);
    assert!(
        t.contains("Version     = 0") && t.contains("Version     = 1"),
        "{t}"
    );
}

#[test]
fn placement_failures_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = write_job(
        tmp.path(),
        "huge",
        "job \"huge\" {\n group \"g\" {\n  task \"t\" {\n   driver = \"raw_exec\"\n   config {\n    command = \"/bin/true\"\n   }\n   resources {\n    memory = 100000000\n   }\n  }\n }\n}\n",
    );
    let out = agent.cli(&["job", "run", job.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a placement failure exits 2: {t}"
    );
    assert!(t.contains("out of memory"), "{t}");
    assert!(t.contains("nearest miss: node"), "{t}");
    let evals = agent.get("/v1/job/huge/evaluations").unwrap();
    let registered = evals
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["TriggeredBy"] == "job-register")
        .unwrap();
    let id = registered["ID"].as_str().unwrap().to_string();
    // What could not be placed waits in a blocked evaluation. A node update just after the
    // agent starts (a fingerprint settling) retries it, as Nomad does; the retry fails the
    // same way and blocks again, so poll rather than read once.
    wait_for("a blocked evaluation", Duration::from_secs(30), || {
        let evals = agent.get("/v1/job/huge/evaluations").unwrap();
        evals
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["Status"] == "blocked")
            .then_some(())
    });
    let out = agent.cli(&["eval", "status", &id]);
    let t = text(&out);
    assert!(t.contains("Placement Failures = true"), "{t}");
    assert!(t.contains("lacks memory: needs 100000000 MB"), "{t}");
}

#[test]
fn validate_jobspecs_and_agent_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let drover = |args: &[&str]| {
        std::process::Command::new(drover_bin())
            .args(args)
            .current_dir(repo_root())
            .output()
            .unwrap()
    };
    let out = drover(&["job", "validate", "examples/full.hcl"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("Job validation successful"), "{t}");
    assert!(
        t.contains("block \"vault\" is parsed but not acted on yet")
            && !t.contains("block \"constraint\""),
        "{t}"
    );

    let bad = write_job(
        tmp.path(),
        "bad",
        "job \"bad\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      imgae = \"x\"\n    }\n  }\n}\n",
    );
    let out = drover(&["job", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .contains("bad.hcl:5:7: job \"bad\" > group \"g\" > task \"t\": unknown key \"imgae\""),
        "{}",
        text(&out)
    );

    // A task config is checked against its driver's schema, at the key's line.
    let bad = write_job(
        tmp.path(),
        "badcfg",
        "job \"badcfg\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n        argz = [\"x\"]\n      }\n    }\n  }\n}\n",
    );
    let out = drover(&["job", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "badcfg.hcl:7:9: job \"badcfg\" > group \"g\" > task \"t\" > config: unknown key \"argz\" (it accepts: command, args, cap_add, cap_drop, pids_limit)"
        ),
        "{}",
        text(&out)
    );

    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(&cfg, "data_dir = \"/var/lib/drover\"\nconsul {\n  address = \"127.0.0.1:8500\"\n}\nserver {\n  enabled = true\n  encrypt = \"k\"\n}\n").unwrap();
    let out = drover(&["config", "validate", cfg.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("Configuration is valid!")
            && t.contains("consul is ignored")
            && t.contains("no gossip ring"),
        "{t}"
    );
    // Values are checked as the agent checks them at start, and the data_dir is not created.
    std::fs::write(
        &cfg,
        "data_dir = \"/nonexistent/drover\"\nserver {\n  enabled = true\n  job_gc_threshold = \"soon\"\n}\n",
    )
    .unwrap();
    let out = drover(&["config", "validate", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("server.job_gc_threshold \"soon\" is not a duration"),
        "{}",
        text(&out)
    );
    assert!(!std::path::Path::new("/nonexistent/drover").exists());
    std::fs::write(&cfg, "server {\n  enabled = true\n}\n").unwrap();
    let out = drover(&["config", "validate", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("data_dir is required"),
        "{}",
        text(&out)
    );
    std::fs::write(
        &cfg,
        "server {\n  enabled = true\n  bootstrap_expectt = 3\n}\n",
    )
    .unwrap();
    let out = drover(&["config", "validate", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("agent.hcl:3:3: server.bootstrap_expectt: unknown field"),
        "{}",
        text(&out)
    );
}
