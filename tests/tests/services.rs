//! The built-in service catalog on a real agent: a job's group and task services are
//! registered by the client that runs them with the port it was given, answered by Nomad's
//! service API (names and tags, instances with `tag` and `choose`, per job and allocation,
//! blocking queries) and `drover service`; a registration can be deleted; at stop the
//! registration is gone before the task is signalled, which comes `shutdown_delay` later.

use std::time::Duration;

use drover_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const BACKEND: &str = r#"
job "backend" {
  group "g" {
    network {
      port "http" {}
    }
    shutdown_delay = "4s"
    service {
      name     = "backend"
      port     = "http"
      tags     = ["v1", "i${NOMAD_ALLOC_INDEX}"]
      provider = "nomad"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo $NOMAD_HOST_PORT_http > $NOMAD_ALLOC_DIR/port; trap 'touch $NOMAD_ALLOC_DIR/term; exit 0' TERM; while true; do sleep 0.1; done"]
      }
      service {
        name     = "backend-admin"
        port     = "http"
        provider = "nomad"
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

fn cli_ok(agent: &Agent, args: &[&str]) -> String {
    let out = agent.cli(args);
    assert!(
        out.status.success(),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn services_register_answer_the_api_and_leave_before_the_task_is_signalled() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    agent.wait_node_ready();
    let job = write_job(tmp.path(), "backend.hcl", BACKEND);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("backend", "running", WAIT);
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    let alloc_dir = agent.data_dir_alloc(&alloc_id).join("alloc");
    let port: u64 = wait_for("the task to write its port", WAIT, || {
        std::fs::read_to_string(alloc_dir.join("port"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });

    // The group's service and the task's, with the port the task was given.
    let backend = wait_for("the group service to be registered", WAIT, || {
        instances(&agent, "/v1/service/backend").pop()
    });
    assert_eq!(
        backend["ID"],
        format!("_nomad-task-{alloc_id}-group-g-backend-http")
    );
    assert_eq!(backend["Port"].as_u64(), Some(port));
    assert_eq!(backend["JobID"], "backend");
    assert_eq!(backend["AllocID"], alloc_id.as_str());
    assert_eq!(backend["Namespace"], "default");
    assert!(!backend["Address"].as_str().unwrap().is_empty());
    assert_eq!(backend["Tags"], serde_json::json!(["v1", "i0"]));
    let admin = wait_for("the task service to be registered", WAIT, || {
        instances(&agent, "/v1/service/backend-admin").pop()
    });
    assert_eq!(
        admin["ID"],
        format!("_nomad-task-{alloc_id}-t-backend-admin-http")
    );

    // Names and tags per namespace; filters; per job and allocation.
    let list = agent.get("/v1/services").unwrap();
    assert_eq!(list[0]["Namespace"], "default");
    let names: Vec<&str> = list[0]["Services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ServiceName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["backend", "backend-admin"]);
    assert_eq!(instances(&agent, "/v1/service/backend?tag=v1").len(), 1);
    assert_eq!(instances(&agent, "/v1/service/backend?tag=v2").len(), 0);
    assert_eq!(
        instances(&agent, "/v1/service/backend?choose=1|me").len(),
        1
    );
    assert_eq!(
        instances(&agent, "/v1/service/backend?namespace=other").len(),
        0
    );
    let bad = http()
        .get(format!("{}/v1/service/backend?choose=x", agent.address()))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(instances(&agent, "/v1/job/backend/services").len(), 2);
    let short = &alloc_id[..8];
    assert_eq!(
        instances(&agent, &format!("/v1/allocation/{short}/services")).len(),
        2
    );

    // A blocking query returns once the table changes: the delete below.
    let index: u64 = http()
        .get(format!("{}/v1/service/backend-admin", agent.address()))
        .send()
        .unwrap()
        .headers()["X-Nomad-Index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let addr = agent.address();
    let blocked = std::thread::spawn(move || {
        let url = format!("{addr}/v1/service/backend-admin?index={index}&wait=60s");
        http().get(url).send().unwrap().json::<Value>().unwrap()
    });

    // The CLI.
    let out = cli_ok(&agent, &["service", "list"]);
    assert!(out.contains("backend") && out.contains("[i0,v1]"), "{out}");
    let out = cli_ok(&agent, &["service", "info", "backend"]);
    assert!(out.contains(&format!(":{port}")), "{out}");

    // Deleting a registration: under another service name it is not found.
    let admin_id = admin["ID"].as_str().unwrap();
    let out = agent.cli(&["service", "delete", "backend", admin_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    cli_ok(&agent, &["service", "delete", "backend-admin", admin_id]);
    assert!(instances(&agent, "/v1/service/backend-admin").is_empty());
    let after = blocked.join().unwrap();
    assert_eq!(
        after,
        serde_json::json!([]),
        "the blocking query saw the delete"
    );

    // At stop the group's registration leaves first; the task gets its signal only after
    // the shutdown delay.
    cli_ok(&agent, &["job", "stop", "backend"]);
    wait_for("the registration to leave", WAIT, || {
        instances(&agent, "/v1/service/backend")
            .is_empty()
            .then_some(())
    });
    assert!(
        !alloc_dir.join("term").exists(),
        "the task was signalled before its registration left the catalog"
    );
    wait_for("the task to be signalled after the delay", WAIT, || {
        alloc_dir.join("term").exists().then_some(())
    });
    agent.wait_alloc_status("backend", "complete", WAIT);
    assert!(
        agent
            .get("/v1/services")
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );
}
