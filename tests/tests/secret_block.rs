//! The `secret` block (Nomad 1.11) on a real -dev agent: secrets from a gRPC secret provider
//! plugin, from a Nomad exec provider written as a shell script (in
//! `common_plugin_dir/secrets/`) and from the built-in `nomad` provider (a variable) reach a
//! raw_exec task through `${secret.<name>.<key>}` in its `env` block and its args — and not
//! the agent's log. Hostile exec providers (a flood of output, a hang, an answer that is not
//! JSON) fail the task's prestart with an event naming the secret and the provider.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use drover_tests::{Agent, http, task_events, wait_for, write_job};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Writes an executable shell script.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A -dev agent with the gRPC test provider as plugin "gsec" (secret `db`), and exec
/// providers in `<tmp>/common/secrets`: `shellp` (a well-behaved one that reports its argv
/// and environment in its answer), `flood`, `hang` and `garbled`.
fn agent(tmp: &Path) -> Agent {
    let plugins = tmp.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_grpc-secrets"), plugins.join("gsec")).unwrap();
    let common = tmp.join("common");
    let secrets = common.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    script(
        &secrets.join("shellp"),
        r#"case "$1" in
fingerprint) echo '{"type": "secrets", "version": "0.3.1"}' ;;
fetch)
  # What the plugin was given: its argv and the names in its environment.
  names=$(env | cut -d= -f1 | sort | tr '\n' ' ')
  echo "{\"result\": {\"token\": \"exec-tok-8812\", \"path\": \"$2\", \"region\": \"$REGION\", \"ns\": \"$NOMAD_NAMESPACE\", \"job\": \"$NOMAD_JOB_ID\", \"names\": \"$names\"}}" ;;
*) echo '{"error": "unknown operation"}'; exit 1 ;;
esac
"#,
    );
    script(
        &secrets.join("flood"),
        "[ \"$1\" = fingerprint ] && { echo '{\"type\":\"secrets\",\"version\":\"1.0.0\"}'; exit 0; }\nexec yes '{\"result\": {\"a\": \"b\"}}'\n",
    );
    script(
        &secrets.join("hang"),
        "[ \"$1\" = fingerprint ] && { echo '{\"type\":\"secrets\",\"version\":\"1.0.0\"}'; exit 0; }\nexec sleep 613\n",
    );
    script(
        &secrets.join("garbled"),
        "[ \"$1\" = fingerprint ] && { echo 'not json'; exit 0; }\necho 'leaked-value-5521 is not json'\n",
    );
    // Not a secret provider: answers another type, and is not advertised.
    script(
        &secrets.join("other"),
        "echo '{\"type\": \"device\", \"version\": \"1.0.0\"}'\n",
    );
    let cfg = tmp.join("agent.hcl");
    std::fs::write(
        &cfg,
        format!(
            r#"plugin_dir = "{}"
plugin "gsec" {{
  config {{
    secrets = {{
      db = {{ password = "grpc-pw-4471" }}
    }}
  }}
}}
client {{
  common_plugin_dir = "{}"
}}
"#,
            plugins.display(),
            common.display()
        ),
    )
    .unwrap();
    Agent::dev_with_config(tmp, &cfg)
}

fn put_variable(agent: &Agent, path: &str, items: Value) {
    let r = http()
        .put(format!("{}/v1/var/{path}", agent.address()))
        .json(&json!({ "Items": items }))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
}

#[test]
fn secrets_from_grpc_exec_and_nomad_providers_reach_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = agent(tmp.path());

    // The exec providers are fingerprinted and advertised as Nomad does; `other` is not a
    // secret provider and `garbled` answers no JSON.
    let nodes = agent.get("/v1/nodes").unwrap();
    let node = agent
        .get(&format!("/v1/node/{}", nodes[0]["ID"].as_str().unwrap()))
        .unwrap();
    let attrs = &node["Attributes"];
    assert_eq!(attrs["plugins.secrets.shellp.version"], "0.3.1", "{attrs}");
    assert_eq!(attrs["plugins.secrets.nomad.version"], "1.0.0", "{attrs}");
    assert!(
        attrs.get("plugins.secrets.other.version").is_none(),
        "{attrs}"
    );
    assert!(
        attrs.get("plugins.secrets.garbled.version").is_none(),
        "{attrs}"
    );

    put_variable(&agent, "app/config", json!({ "api_key": "var-key-3390" }));
    let job = r#"
job "sec" {
  type = "batch"
  secret "cfg" {
    provider = "nomad"
    path     = "app/config"
  }
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = "raw_exec"
      secret "db" {
        provider = "gsec"
        path     = "db"
      }
      secret "ex" {
        provider = "shellp"
        path     = "kv/app"
        env {
          REGION = "eu-${NOMAD_TASK_NAME}"
        }
      }
      env {
        FROM_GRPC = "${secret.db.password}"
        FROM_EXEC = "${secret.ex.token}"
        FROM_VAR  = "${secret.cfg.api_key}"
        EXEC_SAW  = "${secret.ex.path}|${secret.ex.region}|${secret.ex.ns}|${secret.ex.job}"
        EXEC_ENV  = "${secret.ex.names}"
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "env > \"$NOMAD_TASK_DIR/env.txt\"; echo \"$1\" > \"$NOMAD_TASK_DIR/arg.txt\"", "sh", "arg=${secret.db.password}"]
      }
    }
  }
}
"#;
    agent.run_job(&write_job(tmp.path(), "sec", job));
    let alloc = agent.wait_alloc_status("sec", "complete", WAIT);
    let dir = agent
        .data_dir_alloc(alloc["ID"].as_str().unwrap())
        .join("t/local");
    let env = std::fs::read_to_string(dir.join("env.txt")).unwrap();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in the task's env:\n{env}"))
            .to_string()
    };
    assert_eq!(var("FROM_GRPC"), "grpc-pw-4471");
    assert_eq!(var("FROM_EXEC"), "exec-tok-8812");
    assert_eq!(var("FROM_VAR"), "var-key-3390");
    // The exec provider got the path as its argument, the block's env (interpolated), the
    // job's namespace and id — and nothing else (no PATH, no agent environment).
    assert_eq!(var("EXEC_SAW"), "kv/app|eu-t|default|sec");
    let names: Vec<&str> = var("EXEC_ENV").leak().split_whitespace().collect();
    let expected = [
        "CPI_OPERATION",
        "DROVER_WORKLOAD_IDENTITY",
        "NOMAD_JOB_ID",
        "NOMAD_NAMESPACE",
        "REGION",
    ];
    for n in &names {
        // The shell itself may add PWD, SHLVL and `_`.
        assert!(
            expected.contains(n) || ["PWD", "SHLVL", "_", "OLDPWD"].contains(n),
            "the exec provider saw {n}: {names:?}"
        );
    }
    for n in expected {
        assert!(
            names.contains(&n),
            "the exec provider did not see {n}: {names:?}"
        );
    }
    // The secrets are interpolation names, not environment variables of the task.
    assert!(!env.contains("secret."), "{env}");
    assert_eq!(
        std::fs::read_to_string(dir.join("arg.txt")).unwrap(),
        "arg=grpc-pw-4471\n"
    );
    // No value reaches the agent's log.
    let log = agent.log_text();
    for value in ["grpc-pw-4471", "exec-tok-8812", "var-key-3390"] {
        assert!(!log.contains(value), "{value} is in the agent's log");
    }
}

/// Runs a one-task batch job whose secret comes from exec provider `provider`, without
/// restarts, and returns the message of its "Task hook failed" event.
fn failed_fetch(agent: &Agent, tmp: &Path, provider: &str) -> String {
    let job = format!(
        r#"
job "{provider}" {{
  type = "batch"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "t" {{
      driver = "raw_exec"
      secret "s" {{
        provider = "{provider}"
        path     = "x"
      }}
      config {{
        command = "/bin/true"
      }}
    }}
  }}
}}
"#
    );
    agent.run_job(&write_job(tmp, provider, &job));
    let alloc = agent.wait_alloc_status(provider, "failed", WAIT);
    let id = alloc["ID"].as_str().unwrap().to_string();
    wait_for("the task hook failure event", WAIT, || {
        let a = agent.alloc(&id)?;
        task_events(&a, "t", "Task hook failed")
            .first()
            .map(|e| e["DisplayMessage"].as_str().unwrap_or_default().to_string())
    })
}

#[test]
fn hostile_exec_providers_fail_the_task_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = agent(tmp.path());

    let m = failed_fetch(&agent, tmp.path(), "flood");
    assert!(m.contains("secret \"s\" from provider \"flood\""), "{m}");
    assert!(m.contains("more than 1048576 bytes"), "{m}");

    let m = failed_fetch(&agent, tmp.path(), "garbled");
    assert!(m.contains("secret \"s\" from provider \"garbled\""), "{m}");
    assert!(m.contains("not JSON"), "{m}");
    // The answer is never quoted: it may hold a secret.
    assert!(!m.contains("leaked-value-5521"), "{m}");
    assert!(!agent.log_text().contains("leaked-value-5521"));

    let m = failed_fetch(&agent, tmp.path(), "hang");
    assert!(m.contains("secret \"s\" from provider \"hang\""), "{m}");
    assert!(m.contains("did not answer within 10s"), "{m}");
    // The hung plugin was stopped.
    let hung = std::process::Command::new("pgrep")
        .args(["-f", "sleep 613"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&hung.stdout).trim().is_empty(),
        "the hung provider still runs"
    );

    // A provider that is neither built in, an exec plugin nor a plugin.
    let m = failed_fetch(&agent, tmp.path(), "nosuch");
    assert!(m.contains("secret \"s\" from provider \"nosuch\""), "{m}");
}
