//! Task templates, rendered by the client before the task starts: variables read from the
//! servers, a secret from a provider plugin, the task's environment, an env file; a missing
//! variable keeps the task waiting until it exists; a bad template fails the task, naming
//! the template's line.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use drover_tests::*;

const WAIT: Duration = Duration::from_secs(30);

/// A -dev agent with the example native secret provider as plugin "vault", holding
/// `db.password = s3cret`.
fn agent_with_vault(tmp: &Path) -> Agent {
    let built = example_plugins();
    let dir = tmp.join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(&built.native, dir.join("vault.so")).unwrap();
    let cfg = tmp.join("agent.hcl");
    std::fs::write(
        &cfg,
        format!(
            "plugin_dir = \"{}\"\nplugin \"vault\" {{\n  config {{\n    secrets = {{ db = {{ password = \"s3cret\" }} }}\n  }}\n}}\n",
            dir.display()
        ),
    )
    .unwrap();
    Agent::dev_with_config(tmp, &cfg)
}

fn put_var(agent: &Agent, args: &[&str]) {
    let mut all = vec!["var", "put"];
    all.extend_from_slice(args);
    let out = agent.cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const WEB: &str = r#"
job "web" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo pw=$DB_PASSWORD; sleep 600"]
      }
      template {
        data        = <<EOT
user={{ with nomadVar "nomad/jobs/web" }}{{ .user }}:{{ .port }}{{ end }}
alloc={{ env "NOMAD_ALLOC_ID" }}
{{ range nomadVarList "nomad/jobs" }}var={{ .Path }}
{{ end }}{{ if nomadVarExists "nomad/jobs/web/g/t" }}unexpected{{ end -}}
EOT
        destination = "local/app.conf"
        perms       = "0600"
      }
      template {
        data        = "DB_PASSWORD={{ with secret \"vault/db\" }}{{ .Data.password }}{{ end }}\n"
        destination = "secrets/db.env"
        env         = true
      }
    }
  }
}
"#;

#[test]
fn templates_render_variables_secrets_and_env_before_the_task_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = agent_with_vault(tmp.path());
    put_var(&agent, &["nomad/jobs/web", "user=app", "port=5432"]);
    agent.run_job(&write_job(tmp.path(), "web", WEB));
    let alloc = agent.wait_alloc_status("web", "running", WAIT);
    let id = alloc["ID"].as_str().unwrap();
    let task_dir = agent.data_dir_alloc(id).join("t");

    let conf = task_dir.join("local/app.conf");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        format!("user=app:5432\nalloc={id}\nvar=nomad/jobs/web\n")
    );
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(task_dir.join("secrets/db.env")).unwrap(),
        "DB_PASSWORD=s3cret\n"
    );
    // `env = true`: the task started with the rendered variables in its environment.
    wait_for("the task to print its password", WAIT, || {
        let out = agent.cli(&["alloc", "logs", id, "t"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("pw=s3cret")
            .then_some(())
    });
    agent.terminate();
}

#[test]
fn a_missing_variable_holds_the_task_and_a_bad_template_fails_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = agent_with_vault(tmp.path());
    let waiter = r#"
job "waiter" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "sleep 600"]
      }
      template {
        data        = "token={{ with nomadVar \"nomad/jobs/waiter\" }}{{ .token }}{{ end }}\n"
        destination = "local/later.txt"
      }
    }
  }
}
"#;
    agent.run_job(&write_job(tmp.path(), "waiter", waiter));
    let alloc = wait_for("the template to report what it waits for", WAIT, || {
        let a = agent.allocs("waiter").into_iter().next()?;
        (!task_events(&a, "t", "Template").is_empty()).then_some(a)
    });
    let events = task_events(&alloc, "t", "Template");
    let msg = events[0]["DisplayMessage"].as_str().unwrap();
    assert_eq!(msg, "Missing: nomad.var.block(nomad/jobs/waiter@default)");
    assert!(task_events(&alloc, "t", "Started").is_empty());
    assert_eq!(alloc["ClientStatus"], "pending", "{alloc:#}");

    put_var(&agent, &["nomad/jobs/waiter", "token=t0k"]);
    let alloc = agent.wait_alloc_status("waiter", "running", WAIT);
    let file = agent
        .data_dir_alloc(alloc["ID"].as_str().unwrap())
        .join("t/local/later.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "token=t0k\n");

    // A template that does not parse fails the task (no restarts here), naming its line.
    let broken = r#"
job "broken" {
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
      template {
        data        = "ok\n{{ if true }}never closed\n"
        destination = "local/broken.txt"
      }
    }
  }
}
"#;
    agent.run_job(&write_job(tmp.path(), "broken", broken));
    let alloc = agent.wait_alloc_status("broken", "failed", WAIT);
    let failed = task_events(&alloc, "t", "Task hook failed");
    let msg = failed[0]["DisplayMessage"].as_str().unwrap();
    assert_eq!(
        msg,
        "prestart hook \"template\" failed: local/broken.txt:3:1: missing {{end}} for {{if}} opened at 2:4"
    );
    agent.terminate();
}

#[test]
fn variables_reach_only_a_node_that_proves_it_runs_the_allocation_for_the_tasks_identity() {
    use drover_proto::node::node_service_client::NodeServiceClient;
    use drover_proto::node::{SignIdentitiesRequest, VariablesRequest};

    let tmp = tempfile::tempdir().unwrap();
    let mut agent = Agent::dev(tmp.path());
    put_var(&agent, &["nomad/jobs/web", "user=app"]);
    put_var(&agent, &["nomad/jobs/other", "user=them"]);
    let sleeper = |job: &str| {
        format!(
            "job \"{job}\" {{\n group \"g\" {{\n  task \"t\" {{\n   driver = \"raw_exec\"\n   config {{\n    command = \"/bin/sleep\"\n    args = [\"600\"]\n   }}\n  }}\n }}\n}}\n"
        )
    };
    agent.run_job(&write_job(tmp.path(), "web", &sleeper("web")));
    agent.run_job(&write_job(tmp.path(), "other", &sleeper("other")));
    let alloc = agent.wait_alloc_status("web", "running", WAIT);
    let other = agent.wait_alloc_status("other", "running", WAIT);
    let alloc_id = alloc["ID"].as_str().unwrap().to_string();
    let other_id = other["ID"].as_str().unwrap().to_string();
    let node_id = alloc["NodeID"].as_str().unwrap().to_string();
    let data_dir = agent.data_dir_alloc(&alloc_id);
    let data_dir = data_dir.parent().unwrap().parent().unwrap();
    let secret = std::fs::read_to_string(data_dir.join("client/node-secret")).unwrap();
    let secret = secret.trim().to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let rpc = agent.rpc_addr();
    rt.block_on(async move {
        let mut c = NodeServiceClient::connect(format!("http://{rpc}"))
            .await
            .unwrap();
        let sign = |secret: &str, alloc_id: &str| SignIdentitiesRequest {
            node_id: node_id.clone(),
            node_secret: secret.to_string(),
            alloc_id: alloc_id.to_string(),
            task: "t".into(),
            names: vec!["default".into()],
        };
        let e = c
            .sign_identities(sign("guess", &alloc_id))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let identity = |alloc: String| {
            let mut c = c.clone();
            let req = sign(&secret, &alloc);
            async move {
                c.sign_identities(req)
                    .await
                    .unwrap()
                    .into_inner()
                    .identities[0]
                    .jwt
                    .clone()
            }
        };
        let own = identity(alloc_id.clone()).await;
        let theirs = identity(other_id.clone()).await;
        let req = |secret: &str, alloc_id: &str, identity: &str| VariablesRequest {
            node_id: node_id.clone(),
            node_secret: secret.to_string(),
            alloc_id: alloc_id.to_string(),
            path: "nomad/jobs/web".into(),
            list: false,
            min_index: 0,
            wait_ms: 0,
            identity: identity.to_string(),
        };
        let e = c
            .read_variables(req("guess", &alloc_id, &own))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("wrong secret"), "{}", e.message());
        let e = c
            .read_variables(req(&secret, "not-here", &own))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("not placed on node"),
            "{}",
            e.message()
        );
        // The node secret alone no longer reads a task's variables: the task's identity
        // must come with it, and be that allocation's.
        for bad in ["", "eyJhbGciOiJub25lIn0.e30.", theirs.as_str()] {
            let e = c
                .read_variables(req(&secret, &alloc_id, bad))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{bad}");
        }
        // Another job's variable is refused, even to its own node.
        let mut steal = req(&secret, &alloc_id, &own);
        steal.path = "nomad/jobs/other".into();
        let e = c.read_variables(steal).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("may not read variable"),
            "{}",
            e.message()
        );
        let reply = c
            .read_variables(req(&secret, &alloc_id, &own))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.variables_json.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&reply.variables_json[0]).unwrap();
        assert_eq!(v["Items"]["user"], "app");
        // Listing gives paths, not items, and only those the task may read.
        let mut list = req(&secret, &alloc_id, &own);
        list.path = "nomad/".into();
        list.list = true;
        let reply = c.read_variables(list).await.unwrap().into_inner();
        assert_eq!(reply.variables_json.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&reply.variables_json[0]).unwrap();
        assert_eq!(v["Path"], "nomad/jobs/web");
        assert!(v["Items"].as_object().is_none_or(|m| m.is_empty()), "{v}");
    });
    agent.terminate();
}

#[test]
fn a_changed_variable_re_renders_and_signals_or_restarts_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = Agent::dev(tmp.path());
    put_var(&agent, &["nomad/jobs/live", "v=1"]);
    let job = r#"
job "live" {
  group "g" {
    task "sig" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo hup; cat $NOMAD_TASK_DIR/v.txt' HUP; cat $NOMAD_TASK_DIR/v.txt; while true; do sleep 0.2; done"]
      }
      template {
        data          = "v={{ with nomadVar \"nomad/jobs/live\" }}{{ .v }}{{ end }}\n"
        destination   = "local/v.txt"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        splay         = "0s"
      }
    }
    task "re" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat $NOMAD_TASK_DIR/v.txt; sleep 600"]
      }
      template {
        data        = "v={{ with nomadVar \"nomad/jobs/live\" }}{{ .v }}{{ end }}\n"
        destination = "local/v.txt"
        splay       = "0s"
      }
    }
  }
}
"#;
    agent.run_job(&write_job(tmp.path(), "live", job));
    let alloc = agent.wait_alloc_status("live", "running", WAIT);
    let id = alloc["ID"].as_str().unwrap().to_string();
    let logs = |task: &str| {
        let out = agent.cli(&["alloc", "logs", &id, task]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_for("both tasks to print v=1", WAIT, || {
        (logs("sig").contains("v=1") && logs("re").contains("v=1")).then_some(())
    });

    put_var(&agent, &["nomad/jobs/live", "v=2"]);
    // change_mode "signal": the file is rewritten and the task gets SIGHUP, still running.
    wait_for("the signalled task to read v=2", WAIT, || {
        logs("sig").contains("hup\nv=2").then_some(())
    });
    let dir = agent.data_dir_alloc(&id);
    assert_eq!(
        std::fs::read_to_string(dir.join("sig/local/v.txt")).unwrap(),
        "v=2\n"
    );
    // change_mode "restart" (the default): the task is restarted and reads the new file.
    let a = wait_for("the other task to restart with v=2", WAIT, || {
        let a = agent.alloc(&id)?;
        let re = &a["TaskStates"]["re"];
        (logs("re").contains("v=2") && re["State"] == "running" && re["Restarts"] == 1).then_some(a)
    });
    assert!(
        !task_events(&a, "re", "Restart Signaled").is_empty(),
        "{a:#}"
    );
    assert_eq!(a["TaskStates"]["sig"]["Restarts"], 0, "{a:#}");
    assert!(!task_events(&a, "sig", "Signaling").is_empty(), "{a:#}");
    assert_eq!(a["ClientStatus"], "running");
    agent.terminate();
}

#[test]
fn leased_secrets_are_fetched_again_before_their_lease_runs_out() {
    // A gRPC secret provider whose `fetches` secret counts its fetches, leased for 3 s: the
    // template is rendered again with a fresh secret at two thirds of the lease.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_grpc-secrets"), dir.join("gsec")).unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(
        &cfg,
        format!(
            "plugin_dir = \"{}\"\nplugin \"gsec\" {{\n  config {{\n    secrets  = {{}}\n    ttl_secs = 3\n  }}\n}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut agent = Agent::dev_with_config(tmp.path(), &cfg);
    let job = r#"
job "lease" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
      template {
        data        = "n={{ with secret \"gsec/fetches\" }}{{ .Data.n }} lease={{ .LeaseDuration }}{{ end }}\n"
        destination = "secrets/n.txt"
        change_mode = "noop"
      }
    }
  }
}
"#;
    agent.run_job(&write_job(tmp.path(), "lease", job));
    let alloc = agent.wait_alloc_status("lease", "running", WAIT);
    let file = agent
        .data_dir_alloc(alloc["ID"].as_str().unwrap())
        .join("t/secrets/n.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "n=1 lease=3\n");
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&file).unwrap() == "n=1 lease=3\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the secret was not fetched again:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // No variable exists here, so the watcher's blocking read of the variables table waits
    // (it once answered at once, and the watcher spun): the agent stays idle meanwhile. A
    // spinning watcher burns a whole core, 3 s of CPU in these 3 s.
    let cpu = |pid: i32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    };
    let before = cpu(agent.pid());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu(agent.pid()) - before;
    assert!(
        used < 1.5,
        "the agent used {used} s of CPU in 3 s while idle"
    );
    // change_mode "noop": the task kept running, not restarted.
    let a = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    assert_eq!(a["TaskStates"]["t"]["Restarts"], 0, "{a:#}");
    agent.terminate();
}
