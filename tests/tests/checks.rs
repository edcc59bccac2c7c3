//! Service checks run by the client, end to end on real agents: an http check against a
//! real server passes and a failing one turns the instance critical (the `healthy` filter
//! drops it) — with only health transitions written to the catalog; a script check runs in
//! the task through its driver; the results answer `/v1/client/allocation/:id/checks`;
//! `check_restart` restarts a task whose check keeps failing, through the restart policy;
//! a tcp check of a bridge-mode group reaches the task inside the allocation's namespace.

use std::time::Duration;

use drover_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// An HTTP server serving the task's `local/` (where `health` exists until the test removes
/// it), with an http check on `/health` and a script check on the file `ok`.
const BACKEND: &str = r#"
job "backend" {
  group "g" {
    network {
      port "http" {}
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "touch $NOMAD_TASK_DIR/health; exec /usr/bin/python3 -m http.server $NOMAD_PORT_http --bind 0.0.0.0 --directory $NOMAD_TASK_DIR"]
      }
      service {
        name     = "backend"
        port     = "http"
        provider = "nomad"
        check {
          name     = "alive"
          type     = "http"
          path     = "/health"
          interval = "1s"
          timeout  = "1s"
        }
      }
      service {
        name     = "backend-script"
        port     = "http"
        provider = "nomad"
        check {
          name     = "ok-file"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "test -f ${NOMAD_TASK_DIR}/ok || exit 1"]
          interval = "1s"
          timeout  = "5s"
        }
      }
    }
  }
}
"#;

fn instances(agent: &Agent, path: &str) -> Vec<Value> {
    agent
        .get(path)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The one instance of `service` once its health is `health`.
fn wait_health(agent: &Agent, service: &str, health: &str) -> Value {
    wait_for(&format!("{service} to be {health}"), WAIT, || {
        let mut v = instances(agent, &format!("/v1/service/{service}"));
        (v.len() == 1 && v[0]["Health"] == health).then(|| v.remove(0))
    })
}

/// The allocation's check results (check id -> result), by check name.
fn results(agent: &Agent, alloc_id: &str) -> Vec<(String, Value)> {
    let v = agent
        .get(&format!("/v1/client/allocation/{alloc_id}/checks"))
        .unwrap_or(Value::Null);
    v.as_object()
        .map(|m| {
            m.values()
                .map(|r| (r["Check"].as_str().unwrap_or("").to_string(), r.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn result_of(agent: &Agent, alloc_id: &str, check: &str) -> Option<Value> {
    results(agent, alloc_id)
        .into_iter()
        .find(|(n, _)| n == check)
        .map(|(_, r)| r)
}

#[test]
fn http_and_script_checks_set_the_instances_health_and_only_transitions_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = write_job(tmp.path(), "backend.hcl", BACKEND);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("backend", "running", WAIT);
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    let local = agent.data_dir_alloc(&alloc_id).join("t").join("local");

    // The http check passes against the real server.
    let passing = wait_health(&agent, "backend", "passing");
    assert_eq!(
        instances(&agent, "/v1/service/backend?healthy=true").len(),
        1
    );
    let r = wait_for("the http check's result", WAIT, || {
        result_of(&agent, &alloc_id, "alive").filter(|r| r["Status"] == "success")
    });
    assert_eq!(r["StatusCode"], 200);
    assert_eq!(r["Service"], "backend");
    assert_eq!(r["Task"], "t");
    assert_eq!(r["Mode"], "healthiness");
    assert_eq!(r["JobID"], "backend");
    assert_eq!(r["Health"], "passing");
    assert!(r["Output"].as_str().unwrap().contains("/health"), "{r}");
    assert_eq!(r["ID"].as_str().unwrap().len(), 32);

    // A steady check writes nothing: the registration's index stays put over several runs.
    let index = passing["ModifyIndex"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let later = instances(&agent, "/v1/service/backend").pop().unwrap();
    assert_eq!(later["ModifyIndex"].as_u64(), Some(index), "{later}");
    assert_eq!(later["Health"], "passing");

    // The script runs in the task: exit 1 (no file) is a warning, then it passes.
    wait_health(&agent, "backend-script", "warning");
    assert_eq!(
        instances(&agent, "/v1/service/backend-script?healthy=true").len(),
        1,
        "a warning is still healthy"
    );
    std::fs::write(local.join("ok"), "").unwrap();
    wait_health(&agent, "backend-script", "passing");

    // The http check fails (404): the instance turns critical and `healthy` drops it.
    std::fs::remove_file(local.join("health")).unwrap();
    let critical = wait_health(&agent, "backend", "critical");
    assert!(critical["ModifyIndex"].as_u64().unwrap() > index);
    assert!(instances(&agent, "/v1/service/backend?healthy=true").is_empty());
    assert_eq!(
        instances(&agent, "/v1/service/backend").len(),
        1,
        "all by default"
    );
    let r = result_of(&agent, &alloc_id, "alive").unwrap();
    assert_eq!(
        (r["Status"].as_str(), r["StatusCode"].as_u64()),
        (Some("failure"), Some(404))
    );
    let bad = http()
        .get(format!(
            "{}/v1/service/backend?healthy=maybe",
            agent.address()
        ))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // And back.
    std::fs::write(local.join("health"), "").unwrap();
    wait_health(&agent, "backend", "passing");

    // Stopped, the allocation has no check results any more.
    agent.cli(&["job", "stop", "backend"]);
    agent.wait_alloc_status("backend", "complete", WAIT);
    wait_for("the results to go", WAIT, || {
        results(&agent, &alloc_id).is_empty().then_some(())
    });
}

const FLAKY: &str = r#"
job "flaky" {
  group "g" {
    network {
      port "http" {}
    }
    restart {
      attempts = 3
      delay    = "1s"
      interval = "10m"
      mode     = "fail"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 0.1; done"]
      }
      service {
        name     = "flaky"
        port     = "http"
        provider = "nomad"
        check {
          type     = "tcp"
          interval = "1s"
          timeout  = "1s"
          check_restart {
            limit = 2
            grace = "2s"
          }
        }
      }
    }
  }
}
"#;

#[test]
fn check_restart_restarts_a_task_whose_check_keeps_failing() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = write_job(tmp.path(), "flaky.hcl", FLAKY);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("flaky", "running", WAIT);
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    // Nothing listens on the port: the tcp check fails, and after the grace and two
    // failures in a row the task is restarted, counted against its restart policy.
    let a = wait_for("the task to be restarted by its check", WAIT, || {
        let a = agent.alloc(&alloc_id)?;
        let restarts = a["TaskStates"]["t"]["Restarts"].as_u64()?;
        (restarts >= 1).then_some(a)
    });
    let signaled = task_events(&a, "t", "Restart Signaled");
    assert!(
        signaled.iter().any(|e| e["DisplayMessage"]
            .as_str()
            .is_some_and(|m| m.contains("healthcheck: check") && m.contains("\"flaky\""))),
        "{:?}",
        a["TaskStates"]["t"]["Events"]
    );
    let restarting = task_events(&a, "t", "Restarting");
    assert!(!restarting.is_empty(), "the restart policy decided");
    // The policy's attempts run out: the task fails (mode = "fail").
    wait_for(
        "the restart policy to give up",
        Duration::from_secs(90),
        || {
            let a = agent.alloc(&alloc_id)?;
            (a["TaskStates"]["t"]["State"] == "dead" && a["TaskStates"]["t"]["Failed"] == true)
                .then_some(())
        },
    );
}

const BRIDGE: &str = r#"
job "db" {
  group "g" {
    network {
      mode = "bridge"
      port "db" {
        to = 7000
      }
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/usr/bin/python3"
        args    = ["-c", "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',7000))\ns.listen(8)\nwhile True:\n  c,_=s.accept()\n  c.close()\n"]
      }
      service {
        name         = "db"
        port         = "db"
        provider     = "nomad"
        address_mode = "alloc"
        check {
          name     = "listening"
          type     = "tcp"
          interval = "1s"
          timeout  = "1s"
        }
      }
    }
  }
}
"#;

#[test]
fn a_tcp_check_of_a_bridge_group_reaches_the_task_in_its_namespace() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the bridge check test needs root: run it as root");
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("cni.hcl");
    std::fs::write(&config, "client {\n  cni_path = \"/usr/lib/cni\"\n}\n").unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &config);
    let job = write_job(tmp.path(), "db.hcl", BRIDGE);
    agent.run_job(&job);
    let alloc = wait_for("the allocation with its network", WAIT, || {
        let a = agent.allocs("db").into_iter().next()?;
        let a = agent.alloc(a["ID"].as_str()?)?;
        (a["ClientStatus"] == "running" && a["NetworkStatus"]["Address"].is_string()).then_some(a)
    });
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    let address = alloc["NetworkStatus"]["Address"]
        .as_str()
        .unwrap()
        .to_string();
    let inst = wait_health(&agent, "db", "passing");
    assert_eq!(inst["Address"], address.as_str());
    assert_eq!(inst["Port"], 7000);
    let r = result_of(&agent, &alloc_id, "listening").unwrap();
    assert!(
        r["Output"]
            .as_str()
            .unwrap()
            .contains(&format!("{address}:7000")),
        "the check went to the allocation's address inside its namespace: {r}"
    );
    agent.cli(&["job", "stop", "db"]);
    agent.wait_alloc_status("db", "complete", WAIT);
}

/// A group service whose script check (run in task `t`, as its `task` says) always fails,
/// with `check_restart`.
const GROUP_FLAKY: &str = r#"
job "gflaky" {
  group "g" {
    restart {
      attempts = 3
      delay    = "1s"
      interval = "10m"
      mode     = "fail"
    }
    service {
      name     = "gflaky"
      provider = "nomad"
      check {
        name     = "never"
        type     = "script"
        task     = "t"
        command  = "/bin/sh"
        args     = ["-c", "exit 2"]
        interval = "1s"
        timeout  = "1s"
        check_restart {
          limit = 2
          grace = "2s"
        }
      }
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 0.1; done"]
      }
    }
    task "other" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 0.1; done"]
      }
    }
  }
}
"#;

#[test]
fn a_group_checks_check_restart_restarts_the_task_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    agent.run_job(&write_job(tmp.path(), "gflaky.hcl", GROUP_FLAKY));
    let alloc = agent.wait_alloc_status("gflaky", "running", WAIT);
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    let a = wait_for("task t restarted by the group's check", WAIT, || {
        let a = agent.alloc(&alloc_id)?;
        (a["TaskStates"]["t"]["Restarts"].as_u64()? >= 1).then_some(a)
    });
    let signaled = task_events(&a, "t", "Restart Signaled");
    assert!(
        signaled.iter().any(|e| e["DisplayMessage"]
            .as_str()
            .is_some_and(|m| m.contains("healthcheck: check") && m.contains("\"gflaky\""))),
        "{:?}",
        a["TaskStates"]["t"]["Events"]
    );
    // The task the check does not name runs on, never restarted.
    assert_eq!(
        a["TaskStates"]["other"]["Restarts"].as_u64().unwrap_or(0),
        0
    );
    assert_eq!(a["TaskStates"]["other"]["State"], "running");
    agent.cli(&["job", "stop", "gflaky"]);
    agent.wait_alloc_status("gflaky", "complete", WAIT);
}

/// A script check whose command outlives its timeout, and starts a child of its own.
const SLOW_SCRIPT: &str = r#"
job "slow" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 0.1; done"]
      }
      service {
        name     = "slow"
        provider = "nomad"
        check {
          name     = "hangs"
          type     = "script"
          command  = "/bin/sh"
          args     = ["-c", "sleep 1371; true"]
          interval = "2s"
          timeout  = "1s"
        }
      }
    }
  }
}
"#;

/// Processes whose command line is `sleep 1371`.
fn slow_sleeps() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| proc_cmdline(*pid).trim() == "sleep 1371")
        .filter(|pid| {
            // A zombie is gone already.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()
                        .map(|r| !r.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn a_timed_out_script_check_leaves_nothing_running() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    agent.run_job(&write_job(tmp.path(), "slow.hcl", SLOW_SCRIPT));
    let alloc = agent.wait_alloc_status("slow", "running", WAIT);
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    wait_for("the check to time out", WAIT, || {
        let r = result_of(&agent, &alloc_id, "hangs")?;
        r["Output"].as_str()?.contains("timed out").then_some(())
    });
    // Several runs later, at most the current run's sleep is alive: each timed-out run's
    // command was killed with what it started.
    std::thread::sleep(Duration::from_secs(7));
    let alive = slow_sleeps();
    assert!(alive <= 1, "{alive} script check commands left running");
    agent.cli(&["job", "stop", "slow"]);
    agent.wait_alloc_status("slow", "complete", WAIT);
    wait_for("no check command left", WAIT, || {
        (slow_sleeps() == 0).then_some(())
    });
}
