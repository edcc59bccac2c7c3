//! Workload identities end to end (issue 22 points 4-5), on a real agent with ACLs on: a
//! task's default identity (`NOMAD_TOKEN`, `secrets/nomad_token`) is an API token that
//! reads its own job's variables and is refused another job's — including job `a/web`
//! against job `a`'s group `web` — and stops working once its allocation is stopped; a
//! template's `nomadVar` of another job's path is refused; PyJWT verifies the task's JWT,
//! a named identity renewed before its TTL, and the identity a gRPC secret provider is
//! shown, against `/.well-known/jwks.json` found through `/.well-known/openid-configuration`;
//! the provider scopes what a job may read by that identity.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use drover_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(40);

struct Secured {
    agent: Agent,
    root: String,
}

impl Secured {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = http().request(method, format!("{}{path}", self.agent.address()));
        if let Some(t) = token {
            req = req.header("X-Nomad-Token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().unwrap();
        let code = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn root(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (code, v) = self.call(method, path, Some(&self.root.clone()), body);
        assert_eq!(code, 200, "{method} {path}: {v}");
        v
    }

    fn run_job(&self, hcl: &str) {
        let parsed = self.root(
            "POST",
            "/v1/jobs/parse",
            Some(&json!({ "JobHCL": hcl, "Canonicalize": true })),
        );
        self.root("POST", "/v1/jobs", Some(&json!({ "Job": parsed })));
    }

    fn alloc_of(&self, job: &str, status: &str) -> Value {
        let path = format!("/v1/job/{}/allocations", job.replace('/', "%2F"));
        wait_for(&format!("job {job}'s allocation {status}"), WAIT, || {
            let (_, allocs) = self.call("GET", &path, Some(&self.root.clone()), None);
            allocs
                .as_array()?
                .iter()
                .find(|a| a["ClientStatus"] == status)
                .cloned()
        })
    }
}

/// An agent with ACLs on and the test gRPC secret provider as plugin `gsec`.
fn start(tmp: &Path) -> Secured {
    let plugins = tmp.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_grpc-secrets"), plugins.join("gsec")).unwrap();
    let cfg = tmp.join("agent.hcl");
    std::fs::write(
        &cfg,
        format!(
            "acl {{\n  enabled = true\n}}\nplugin_dir = \"{}\"\nplugin \"gsec\" {{\n  config {{\n    secrets = {{}}\n  }}\n}}\n",
            plugins.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(
        &["-dev", "-config", cfg.to_str().unwrap()],
        &tmp.join("dev"),
        free_port(),
        free_port(),
    );
    agent.wait_ready();
    let mut s = Secured {
        agent,
        root: String::new(),
    };
    let (code, boot) = s.call("POST", "/v1/acl/bootstrap", None, None);
    assert_eq!(code, 200, "{boot}");
    s.root = boot["SecretID"].as_str().unwrap().to_string();
    wait_for("a ready client node", WAIT, || {
        let (_, nodes) = s.call("GET", "/v1/nodes", Some(&s.root.clone()), None);
        nodes
            .as_array()?
            .iter()
            .find(|n| n["Status"] == "ready")
            .cloned()
    });
    s
}

/// Job `a`, group `web`: the default identity in its environment and its secrets
/// directory, a named identity renewed every few seconds, its own variables and the
/// provider's answers rendered by templates.
const JOB_A: &str = r#"
job "a" {
  group "web" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "printf %s \"$NOMAD_TOKEN\" > $NOMAD_TASK_DIR/env_token; sleep 600"]
      }
      identity {
        env  = true
        file = true
      }
      identity "short" {
        aud  = ["example.org"]
        ttl  = "3s"
        file = true
      }
      template {
        data        = "{{ with nomadVar \"nomad/jobs/a/web\" }}{{ .k }}{{ end }}"
        destination = "local/own.txt"
      }
      template {
        data        = "{{ with secret \"gsec/whoami\" }}{{ .Data.jwt }}{{ end }}"
        destination = "local/provider_jwt"
      }
      template {
        data        = "{{ with secret \"gsec/scoped/a\" }}{{ .Data.ok }}{{ end }}"
        destination = "local/scoped.txt"
      }
    }
  }
}
"#;

/// Job `a/web`: its id is job `a` + group `web`'s variable path.
const JOB_A_SLASH_WEB: &str = r#"
job "a/web" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "printf %s \"$NOMAD_TOKEN\" > $NOMAD_TASK_DIR/env_token; sleep 600"]
      }
      identity {
        env = true
      }
    }
  }
}
"#;

/// Job `x`: a template reading job `b`'s variable.
const JOB_X: &str = r#"
job "x" {
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
      template {
        data        = "{{ with nomadVar \"nomad/jobs/b\" }}{{ .k }}{{ end }}"
        destination = "local/stolen.txt"
      }
    }
  }
}
"#;

/// Job `y`: asks the provider for job `a`'s scoped secret.
const JOB_Y: &str = r#"
job "y" {
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
      template {
        data        = "{{ with secret \"gsec/scoped/a\" }}{{ .Data.ok }}{{ end }}"
        destination = "local/scoped.txt"
      }
    }
  }
}
"#;

/// Verifies `jwt` with PyJWT against the keys the agent publishes (found through its
/// OpenID configuration), for audience `aud`; returns the claims.
fn pyjwt_verify(agent: &Agent, jwt: &str, aud: &str) -> Value {
    let script = r#"
import json, sys, urllib.request, jwt
base, token, aud = sys.argv[1], sys.argv[2], sys.argv[3]
conf = json.load(urllib.request.urlopen(base + "/.well-known/openid-configuration"))
assert "RS256" in conf["id_token_signing_alg_values_supported"], conf
key = jwt.PyJWKClient(conf["jwks_uri"]).get_signing_key_from_jwt(token)
print(json.dumps(jwt.decode(token, key.key, algorithms=["RS256"], audience=aud)))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &agent.address(), jwt, aud])
        .output()
        .expect("python3 (with PyJWT: see tests/run.sh)");
    assert!(
        out.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_tasks_identity_reads_its_own_variables_only_and_dies_with_its_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start(tmp.path());
    for (path, k) in [
        ("nomad/jobs/a", "job-a"),
        ("nomad/jobs/a/web", "group-web-of-a"),
        ("nomad/jobs/b", "job-b"),
    ] {
        s.root(
            "PUT",
            &format!("/v1/var/{path}"),
            Some(&json!({ "Items": { "k": k } })),
        );
    }
    s.run_job(JOB_A);
    s.run_job(JOB_A_SLASH_WEB);
    let a = s.alloc_of("a", "running");
    let a_id = a["ID"].as_str().unwrap();
    let task_dir = s.agent.data_dir_alloc(a_id).join("t");
    let token = wait_for("the task to write its NOMAD_TOKEN", WAIT, || {
        Some(read(&task_dir.join("local/env_token"))).filter(|t| !t.is_empty())
    });
    // The same token in the environment and in secrets/nomad_token (mode 0600).
    let file = task_dir.join("secrets/nomad_token");
    assert_eq!(read(&file), token);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The template read the job's own group variable with the task's identity.
    assert_eq!(read(&task_dir.join("local/own.txt")), "group-web-of-a");

    // As an API token: its own job's variables, nothing else.
    let get = |token: &str, path: &str| s.call("GET", path, Some(token), None);
    let (code, v) = get(&token, "/v1/var/nomad/jobs/a");
    assert_eq!((code, &v["Items"]["k"]), (200, &json!("job-a")), "{v}");
    let (code, v) = get(&token, "/v1/var/nomad/jobs/a/web");
    assert_eq!(
        (code, &v["Items"]["k"]),
        (200, &json!("group-web-of-a")),
        "{v}"
    );
    assert_eq!(get(&token, "/v1/var/nomad/jobs/b").0, 403);
    assert_eq!(get(&token, "/v1/jobs").0, 403);
    let (code, list) = get(&token, "/v1/vars?prefix=nomad/jobs");
    assert_eq!(code, 200, "{list}");
    let mut paths: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["nomad/jobs/a", "nomad/jobs/a/web"]);

    // Job "a/web" does not reach job "a"'s group "web" (nor job "a").
    let slash = s.alloc_of("a/web", "running");
    let slash_dir = s
        .agent
        .data_dir_alloc(slash["ID"].as_str().unwrap())
        .join("t");
    let slash_token = wait_for("job a/web's NOMAD_TOKEN", WAIT, || {
        Some(read(&slash_dir.join("local/env_token"))).filter(|t| !t.is_empty())
    });
    assert_eq!(get(&slash_token, "/v1/var/nomad/jobs/a/web").0, 403);
    assert_eq!(get(&slash_token, "/v1/var/nomad/jobs/a").0, 403);

    // A standard library verifies the JWT against the published keys; Nomad's claims.
    let claims = pyjwt_verify(&s.agent, &token, "nomadproject.io");
    assert_eq!(claims["nomad_job_id"], "a");
    assert_eq!(claims["nomad_task"], "t");
    assert_eq!(claims["nomad_namespace"], "default");
    assert_eq!(claims["nomad_allocation_id"], a_id);
    assert_eq!(claims["sub"], "global:default:a:web:t:default");
    assert!(
        claims.get("exp").is_none(),
        "the default identity has no TTL: {claims}"
    );

    // The named identity has its audience and TTL, and is renewed before it expires.
    let short_file = task_dir.join("secrets/nomad_token_short");
    let short = read(&short_file);
    let short_claims = pyjwt_verify(&s.agent, &short, "example.org");
    assert_eq!(short_claims["sub"], "global:default:a:web:t:short");
    assert_eq!(
        short_claims["exp"].as_i64().unwrap() - short_claims["iat"].as_i64().unwrap(),
        3
    );
    wait_for(
        "the short-lived identity to be renewed",
        Duration::from_secs(15),
        || {
            let now = read(&short_file);
            (!now.is_empty() && now != short).then_some(())
        },
    );
    // The named identity is no API token.
    assert_eq!(get(&read(&short_file), "/v1/var/nomad/jobs/a").0, 403);

    // The secret provider was shown the task's identity for its own audience (not the API
    // token), verifiable the same way; it scoped its answer by the job.
    let provider_jwt = read(&task_dir.join("local/provider_jwt"));
    assert_ne!(provider_jwt, token);
    let pc = pyjwt_verify(&s.agent, &provider_jwt, "drover-secrets/gsec");
    assert_eq!(
        (pc["nomad_job_id"].as_str(), pc["nomad_task"].as_str()),
        (Some("a"), Some("t"))
    );
    assert_eq!(read(&task_dir.join("local/scoped.txt")), "yes");
    // ... and the provider identity is no API token either.
    assert_eq!(get(&provider_jwt, "/v1/var/nomad/jobs/a").0, 403);

    // A token dies with its allocation.
    s.root("DELETE", "/v1/job/a", None);
    wait_for("job a's token to be refused", WAIT, || {
        let (code, v) = get(&token, "/v1/var/nomad/jobs/a");
        (code == 403).then_some(v)
    });
    s.agent.terminate();
}

#[test]
fn templates_and_providers_read_as_the_task_and_are_refused_other_jobs_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start(tmp.path());
    s.root(
        "PUT",
        "/v1/var/nomad/jobs/b",
        Some(&json!({ "Items": { "k": "job-b" } })),
    );
    s.run_job(JOB_X);
    s.run_job(JOB_Y);
    for job in ["x", "y"] {
        let failed = s.alloc_of(job, "failed");
        let events = task_events(&failed, "t", "Task hook failed");
        let msg = events
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let want = if job == "x" {
            "may not read variable"
        } else {
            "the asking task's identity is not"
        };
        assert!(msg.contains(want), "job {job}: {failed:#}");
        let dir = s
            .agent
            .data_dir_alloc(failed["ID"].as_str().unwrap())
            .join("t/local");
        assert!(!dir.join("stolen.txt").exists() && !dir.join("scoped.txt").exists());
    }
    s.agent.terminate();
}
