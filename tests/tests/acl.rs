//! ACLs end to end, on real agents with `acl { enabled = true }`: an ACL matrix over every
//! route of the route table (generated from it: a route whose capability the matrix does
//! not know does not compile, one without a capability fails), the bootstrap once and its
//! reset file, a namespace-scoped token confined to its namespace (lists, reads, variables,
//! search, the event stream, exec, and raw_exec needing `alloc-node-exec`), exec's token
//! in the first WebSocket frame, a task that cannot use the API without a token,
//! python-nomad with a token, and the CLI reading `NOMAD_TOKEN`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use drover_api::routes::{Capability, Verb, table};
use drover_tests::*;
use serde_json::{Value, json};

/// An agent with ACLs on, bootstrapped: `root` is the management token's secret.
struct Secured {
    agent: Agent,
    root: String,
    data_dir: std::path::PathBuf,
}

fn start(tmp: &Path) -> Secured {
    let data_dir = tmp.join("data");
    let cfg = tmp.join("acl.hcl");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nacl {{\n  enabled = true\n}}\n",
            data_dir.display()
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
    let (code, boot) = call(&agent, "POST", "/v1/acl/bootstrap", None, None);
    assert_eq!(code, 200, "{boot}");
    let root = boot["SecretID"].as_str().unwrap().to_string();
    let s = Secured {
        agent,
        root,
        data_dir,
    };
    wait_for("a ready client node", Duration::from_secs(30), || {
        let (_, nodes) = s.call("GET", "/v1/nodes", Some(&s.root.clone()), None);
        nodes
            .as_array()?
            .iter()
            .find(|n| n["Status"] == "ready")
            .cloned()
    });
    s
}

/// One request: its status and its body (JSON, or the text as a JSON string).
fn call(
    agent: &Agent,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http().request(method, format!("{}{path}", agent.address()));
    if let Some(t) = token {
        req = req.header("X-Nomad-Token", t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().unwrap();
    let code = resp.status().as_u16();
    // Streams (events, logs) answer their headers at once: the status is what counts.
    let ndjson = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("ndjson"));
    if ndjson {
        return (code, Value::Null);
    }
    let text = resp.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, v)
}

impl Secured {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        call(&self.agent, method, path, token, body)
    }

    fn root_call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (code, v) = self.call(method, path, Some(&self.root), body);
        assert_eq!(code, 200, "{method} {path}: {v}");
        v
    }

    fn policy(&self, name: &str, rules: &str) {
        let body = json!({ "Name": name, "Rules": rules });
        self.root_call("POST", &format!("/v1/acl/policy/{name}"), Some(&body));
    }

    /// A client token with these policies; its secret.
    fn token(&self, policies: &[&str]) -> String {
        let body = json!({ "Name": "t", "Type": "client", "Policies": policies });
        let t = self.root_call("POST", "/v1/acl/token", Some(&body));
        t["SecretID"].as_str().unwrap().to_string()
    }

    /// The CLI with `NOMAD_TOKEN` (if any) and nothing else of ours in its environment.
    fn cli(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut c = Command::new(drover_bin());
        c.args(args)
            .env("NOMAD_ADDR", self.agent.address())
            .env_remove("DROVER_TOKEN")
            .env_remove("NOMAD_TOKEN");
        if let Some(t) = token {
            c.env("NOMAD_TOKEN", t);
        }
        c.output().unwrap()
    }

    /// Registers an HCL job as root and waits for its allocation to be `status`.
    fn run(&self, tmp: &Path, name: &str, hcl: &str, status: &str) -> Value {
        let file = write_job(tmp, name, hcl);
        let out = self.cli(
            Some(&self.root),
            &["job", "run", "-detach", file.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out));
        let ns = if hcl.contains("namespace = \"team\"") {
            "team"
        } else {
            "default"
        };
        wait_for(
            &format!("{name} to be {status}"),
            Duration::from_secs(60),
            || {
                let (_, allocs) = self.call(
                    "GET",
                    &format!("/v1/job/{name}/allocations?namespace={ns}"),
                    Some(&self.root.clone()),
                    None,
                );
                allocs
                    .as_array()?
                    .iter()
                    .find(|a| a["ClientStatus"] == status)
                    .cloned()
            },
        )
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// No token, and no `anonymous` policy.
    NoToken,
    /// No token, with an `anonymous` policy reading namespace default.
    AnonymousRead,
    /// A token writing namespace `team` (reading nodes and the agent).
    Team,
    Management,
}

/// Whether `who` may use a route needing `cap`, asked in namespace `default` (the
/// request's) or, for a route naming an allocation or evaluation that does not exist, in
/// any namespace (`object_route`). A client token reads only the ACL objects it holds, and
/// the ones the matrix names do not exist (`names_acl_object`). Every capability is named:
/// a new one does not compile until the matrix says who may use it.
fn allowed(who: Who, cap: Capability, object_route: bool, names_acl_object: bool) -> bool {
    use Capability as C;
    use Who::*;
    match cap {
        C::Unassigned => false,
        C::Public | C::AclBootstrap | C::ReadEvents | C::Search => true,
        _ if who == Management => true,
        C::Management | C::AgentWrite | C::OperatorRead | C::OperatorWrite => false,
        C::AclSelf => who == Team && !names_acl_object,
        C::NodeRead | C::AgentRead => who == Team,
        C::ListJobs | C::ReadJob | C::ParseJob => {
            who == AnonymousRead || (who == Team && object_route)
        }
        C::SubmitJob | C::AllocLifecycle | C::AllocExec | C::ReadLogs | C::ReadFs => {
            who == Team && object_route
        }
        C::ListVariables | C::ReadVariables | C::WriteVariables | C::DestroyVariables => false,
    }
}

/// A concrete path for a route: every parameter names nothing that exists.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with("{*") {
                "nonexistent/x".to_string()
            } else if seg.starts_with('{') {
                "nonexistent-0000".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn run_matrix(s: &Secured, who: Who, token: Option<&str>) -> Vec<String> {
    let mut wrong = Vec::new();
    for r in table() {
        let object_route = ["/v1/allocation/", "/v1/client/", "/v1/evaluation/"]
            .iter()
            .any(|p| r.path.starts_with(p));
        for verb in r.verbs {
            let (method, body) = match verb {
                Verb::Get => ("GET", None),
                Verb::Put => ("PUT", Some(json!({}))),
                Verb::Post => ("POST", Some(json!({}))),
                Verb::Delete => ("DELETE", None),
            };
            let path = concrete(r.path);
            let (code, v) = s.call(method, &path, token, body.as_ref());
            let expect = allowed(who, r.capability, object_route, r.path.contains('{'));
            if expect == (code == 403) {
                wrong.push(format!(
                    "{who:?} {method} {path} ({:?}): {code} {v}, expected {}",
                    r.capability,
                    if expect { "allowed" } else { "403" }
                ));
            }
        }
    }
    wrong
}

#[test]
fn acl_matrix_over_every_route() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path());
    s.policy(
        "team",
        r#"
namespace "team" {
  policy = "write"
  variables {
    path "*" { capabilities = ["read", "write", "list", "destroy"] }
  }
}
node { policy = "read" }
agent { policy = "read" }
"#,
    );
    let team = s.token(&["team"]);
    let mut wrong = run_matrix(&s, Who::NoToken, None);
    wrong.extend(run_matrix(&s, Who::Team, Some(&team)));
    wrong.extend(run_matrix(&s, Who::Management, Some(&s.root.clone())));
    s.policy("anonymous", r#"namespace "default" { policy = "read" }"#);
    wrong.extend(run_matrix(&s, Who::AnonymousRead, None));
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // An unknown or overlong token is refused outright; public routes look at none.
    let (code, v) = s.call("GET", "/v1/jobs", Some("not-a-token"), None);
    assert_eq!((code, v.as_str()), (403, Some("ACL token not found")));
    assert_eq!(
        s.call("GET", "/v1/status/leader", Some("not-a-token"), None)
            .0,
        200
    );
    let long = "x".repeat(10_000);
    assert_eq!(s.call("GET", "/v1/jobs", Some(&long), None).0, 403);
    // Authorization: Bearer works as X-Nomad-Token does.
    let resp = http()
        .get(format!("{}/v1/acl/token/self", s.agent.address()))
        .bearer_auth(&team)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn bootstrap_works_once_and_again_through_the_reset_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path());
    let (code, v) = s.call("POST", "/v1/acl/bootstrap", None, None);
    assert_eq!(code, 400, "{v}");
    let msg = v.as_str().unwrap().to_string();
    let index: u64 = msg
        .strip_prefix("ACL bootstrap already done (reset index: ")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{msg}"))
        .parse()
        .unwrap();
    let reset = s.data_dir.join("server").join("acl-bootstrap-reset");
    std::fs::write(&reset, "12345\n").unwrap();
    let (code, v) = s.call("POST", "/v1/acl/bootstrap", None, None);
    assert_eq!(code, 400, "a wrong reset index: {v}");
    std::fs::write(&reset, format!("{index}\n")).unwrap();
    let (code, again) = s.call("POST", "/v1/acl/bootstrap", None, None);
    assert_eq!(code, 200, "{again}");
    let second = again["SecretID"].as_str().unwrap();
    assert_ne!(second, s.root);
    // Both management tokens work; the secret is not readable back.
    for t in [s.root.as_str(), second] {
        let (code, me) = s.call("GET", "/v1/acl/token/self", Some(t), None);
        assert_eq!((code, me["Type"].as_str()), (200, Some("management")));
        assert_eq!(me["SecretID"], "");
    }
    let (_, list) = s.call("GET", "/v1/acl/tokens", Some(second), None);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["SecretID"] == "" && t.get("SecretHash").is_none()),
        "{list}"
    );
    // The same reset index does not open it a third time.
    assert_eq!(s.call("POST", "/v1/acl/bootstrap", None, None).0, 400);
}

const SLEEPER: &str = r#"
job "NAME" {
  NAMESPACE
  datacenters = ["*"]
  group "g" {
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

fn sleeper(name: &str, ns: Option<&str>) -> String {
    SLEEPER
        .replace(
            "NAMESPACE",
            &ns.map(|n| format!("namespace = \"{n}\""))
                .unwrap_or_default(),
        )
        .replace("NAME", name)
}

/// The NDJSON event stream from `index` for a few seconds, with `token`.
fn events(s: &Secured, token: &str) -> Vec<Value> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut resp = client
        .get(format!(
            "{}/v1/event/stream?namespace=*&index=1",
            s.agent.address()
        ))
        .header("X-Nomad-Token", token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut buf = Vec::new();
    let _ = resp.read_to_end(&mut buf); // ends with the client's timeout
    String::from_utf8_lossy(&buf)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|f| f["Events"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn a_namespace_token_sees_and_touches_only_its_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path());
    // Namespaces are objects: "team" exists before a job goes in it.
    s.root_call(
        "POST",
        "/v1/namespace/team",
        Some(&json!({ "Name": "team" })),
    );
    let theirs = s.run(
        tmp.path(),
        "in-default",
        &sleeper("in-default", None),
        "running",
    );
    let ours = s.run(
        tmp.path(),
        "in-team",
        &sleeper("in-team", Some("team")),
        "running",
    );
    let (their_alloc, our_alloc) = (theirs["ID"].as_str().unwrap(), ours["ID"].as_str().unwrap());
    s.root_call(
        "PUT",
        "/v1/var/secret/db",
        Some(&json!({ "Items": { "password": "hunter2" } })),
    );
    s.policy(
        "team",
        r#"namespace "team" {
  policy = "write"
  variables {
    path "*" { capabilities = ["read", "write", "list", "destroy"] }
  }
}"#,
    );
    let team = s.token(&["team"]);
    let t = Some(team.as_str());
    let ids = |v: &Value, k: &str| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x[k].as_str().unwrap().to_string())
            .collect()
    };

    // Lists: every namespace asked, only its own answered; another namespace asked: 403.
    let (code, jobs) = s.call("GET", "/v1/jobs?namespace=*", t, None);
    assert_eq!((code, ids(&jobs, "ID")), (200, vec!["in-team".to_string()]));
    assert_eq!(s.call("GET", "/v1/jobs", t, None).0, 403);
    let (_, allocs) = s.call("GET", "/v1/allocations?namespace=*", t, None);
    assert_eq!(ids(&allocs, "ID"), vec![our_alloc.to_string()]);
    let (_, evals) = s.call("GET", "/v1/evaluations?namespace=*", t, None);
    assert!(
        evals
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["Namespace"] == "team"),
        "{evals}"
    );
    let node = ours["NodeID"].as_str().unwrap();
    let (_, on_node) = s.call(
        "GET",
        &format!("/v1/node/{node}/allocations"),
        Some(&s.root.clone()),
        None,
    );
    assert_eq!(on_node.as_array().unwrap().len(), 2);

    // Reads by id: its own allocation, not theirs (whatever namespace the request names).
    assert_eq!(
        s.call("GET", &format!("/v1/allocation/{our_alloc}"), t, None)
            .0,
        200
    );
    assert_eq!(
        s.call("GET", &format!("/v1/allocation/{their_alloc}"), t, None)
            .0,
        403
    );
    assert_eq!(
        s.call(
            "GET",
            &format!("/v1/allocation/{their_alloc}?namespace=team"),
            t,
            None
        )
        .0,
        403
    );
    assert_eq!(s.call("GET", "/v1/job/in-default", t, None).0, 403);
    assert_eq!(
        s.call("GET", "/v1/job/in-team?namespace=team", t, None).0,
        200
    );
    assert_eq!(
        s.call(
            "GET",
            &format!("/v1/client/fs/logs/{their_alloc}?task=t&type=stdout"),
            t,
            None
        )
        .0,
        403
    );
    // A job whose body names another namespace is refused, whatever the request says.
    let job = |ns: &str| {
        json!({ "Job": { "ID": "sneaky", "Name": "sneaky", "Namespace": ns,
        "Type": "batch", "Datacenters": ["*"], "TaskGroups": [{ "Name": "g", "Count": 1,
        "Tasks": [{ "Name": "t", "Driver": "raw_exec", "Config": { "command": "/bin/true" } }] }] } })
    };
    let (code, v) = s.call("POST", "/v1/jobs?namespace=team", t, Some(&job("default")));
    assert_eq!(code, 403, "{v}");

    // Variables.
    let item = json!({ "Items": { "k": "v" } });
    assert_eq!(
        s.call("PUT", "/v1/var/app/x?namespace=team", t, Some(&item))
            .0,
        200
    );
    assert_eq!(s.call("PUT", "/v1/var/app/x", t, Some(&item)).0, 403);
    assert_eq!(s.call("GET", "/v1/var/secret/db", t, None).0, 403);
    let (_, vars) = s.call("GET", "/v1/vars?namespace=*", t, None);
    assert_eq!(ids(&vars, "Path"), vec!["app/x".to_string()]);

    // Search.
    let q = json!({ "Prefix": "", "Context": "all", "Namespace": "*" });
    let (_, found) = s.call("POST", "/v1/search", t, Some(&q));
    assert_eq!(found["Matches"]["allocs"], json!([our_alloc]), "{found}");
    assert_eq!(found["Matches"]["jobs"], json!(["in-team"]), "{found}");
    assert_eq!(found["Matches"]["variables"], json!(["app/x"]), "{found}");
    assert_eq!(found["Matches"]["nodes"], json!([]), "{found}");

    // The event stream hides the other namespace's events.
    let seen = events(&s, &team);
    assert!(!seen.is_empty(), "no events at all");
    assert!(seen.iter().all(|e| e["Namespace"] == "team"), "{seen:?}");
    let all = events(&s, &s.root);
    assert!(all.iter().any(|e| e["Namespace"] == "default"));

    // Exec: never into theirs; into its own raw_exec task only with alloc-node-exec.
    let out = s.cli(t, &["alloc", "exec", "-i=false", their_alloc, "echo", "hi"]);
    assert!(
        !out.status.success() && !text(&out).contains("hi\n"),
        "{}",
        text(&out)
    );
    let theirs_url = format!(
        "ws://127.0.0.1:{}/v1/client/allocation/{their_alloc}/exec?task=t&command=%5B%22echo%22%2C%22hi%22%5D",
        s.agent.http_port
    );
    let (stdout, exit) =
        exec_with_first_frame(&theirs_url, &json!({ "version": 1, "auth_token": team }));
    assert_eq!(
        (stdout.as_str(), &exit["result"]["error"]),
        ("", &json!("Permission denied")),
        "{exit}"
    );
    let out = s.cli(
        t,
        &[
            "alloc",
            "exec",
            "-namespace",
            "team",
            "-i=false",
            our_alloc,
            "echo",
            "hi",
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("403"),
        "raw_exec without alloc-node-exec: {}",
        text(&out)
    );
    s.policy(
        "team",
        r#"namespace "team" {
  policy = "write"
  capabilities = ["alloc-node-exec"]
}"#,
    );
    let out = s.cli(
        t,
        &[
            "alloc",
            "exec",
            "-namespace",
            "team",
            "-i=false",
            our_alloc,
            "echo",
            "hi",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // The exec WebSocket also takes its token in its first frame, as Nomad's clients send it.
    let url = format!(
        "ws://127.0.0.1:{}/v1/client/allocation/{our_alloc}/exec?task=t&command=%5B%22echo%22%2C%22framed%22%5D",
        s.agent.http_port
    );
    let (stdout, exit) = exec_with_first_frame(&url, &json!({ "version": 1, "auth_token": team }));
    assert_eq!(
        (stdout.as_str(), exit["result"]["exit_code"].as_i64()),
        ("framed\n", Some(0)),
        "{exit}"
    );
    let (stdout, exit) =
        exec_with_first_frame(&url, &json!({ "version": 1, "auth_token": "wrong" }));
    assert_eq!(stdout, "");
    assert_eq!(exit["result"]["error"], "ACL token not found", "{exit}");
    let (_, exit) = exec_with_first_frame(&url, &json!({ "stdin": { "close": true } }));
    assert_eq!(
        exit["result"]["error"], "Permission denied",
        "anonymous: {exit}"
    );
    // Its own namespace it may write.
    let (code, v) = s.call("POST", "/v1/jobs?namespace=team", t, Some(&job("team")));
    assert_eq!(code, 200, "{v}");
}

/// Opens the exec WebSocket without a token header, sends `first`, and returns what the
/// command wrote to stdout and the last frame.
fn exec_with_first_frame(url: &str, first: &Value) -> (String, Value) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::Text(first.to_string().into()))
            .await
            .unwrap();
        let _ = ws
            .send(Message::Text(
                json!({ "stdin": { "close": true } }).to_string().into(),
            ))
            .await;
        let mut stdout = Vec::new();
        let mut last = Value::Null;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            if let Some(d) = v["stdout"]["data"].as_str() {
                use base64::Engine;
                stdout.extend(base64::engine::general_purpose::STANDARD.decode(d).unwrap());
            }
            if v["exited"] == true {
                last = v;
                break;
            }
        }
        (String::from_utf8_lossy(&stdout).into_owned(), last)
    })
}

#[test]
fn a_task_cannot_use_the_api_without_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path());
    let port = s.agent.http_port;
    let job = format!(
        r#"
job "probe" {{
  datacenters = ["*"]
  type        = "batch"
  group "g" {{
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/bash"
        args    = ["-c", "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /v1/jobs HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3; head -c 200 <&3 > $NOMAD_ALLOC_DIR/probe.txt"]
      }}
    }}
  }}
}}
"#
    );
    let alloc = s.run(tmp.path(), "probe", &job, "complete");
    let id = alloc["ID"].as_str().unwrap();
    let probe = s
        .data_dir
        .join("alloc")
        .join(id)
        .join("alloc")
        .join("probe.txt");
    let answer = std::fs::read_to_string(&probe).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 403") || answer.starts_with("HTTP/1.1 403"),
        "{answer}"
    );
}

#[test]
fn python_nomad_with_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let cfg = tmp.path().join("acl.hcl");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nacl {{\n  enabled = true\n}}\n",
            data_dir.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(
        &["-dev", "-config", cfg.to_str().unwrap()],
        &tmp.path().join("dev"),
        free_port(),
        free_port(),
    );
    agent.wait_ready();
    let script = repo_root().join("tests/python/nomad_acl.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(agent.http_port.to_string())
        .env_remove("NOMAD_TOKEN")
        .output()
        .expect("python3 must be installed (tests/run.sh installs python-nomad)");
    assert!(
        out.status.success(),
        "python-nomad acl test failed:\n{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python-nomad acl: ok"));
}

#[test]
fn the_cli_reads_nomad_token_and_manages_acls() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(tmp.path());
    let root = Some(s.root.as_str());
    let out = s.cli(None, &["acl", "token", "self"]);
    assert!(
        !out.status.success() && text(&out).contains("403"),
        "{}",
        text(&out)
    );
    let out = s.cli(root, &["acl", "token", "self"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Type         = management"),
        "{}",
        text(&out)
    );

    let rules = tmp.path().join("read.hcl");
    std::fs::write(&rules, "namespace \"default\" {\n  policy = \"read\"\n}\n").unwrap();
    let out = s.cli(
        root,
        &[
            "acl",
            "policy",
            "apply",
            "-description",
            "reads",
            "readers",
            rules.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&rules, "namespace \"default\" {\n  policy = \"admin\"\n}\n").unwrap();
    let out = s.cli(
        root,
        &["acl", "policy", "apply", "bad", rules.to_str().unwrap()],
    );
    assert!(
        !out.status.success() && text(&out).contains("\"admin\" is not one of"),
        "{}",
        text(&out)
    );
    let out = s.cli(root, &["acl", "policy", "list"]);
    assert!(text(&out).contains("readers"), "{}", text(&out));
    let out = s.cli(
        root,
        &[
            "acl", "role", "create", "-name", "ro", "-policy", "readers", "-json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let role: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = s.cli(root, &["acl", "role", "info", "-by-name", "ro"]);
    assert!(
        text(&out).contains(role["ID"].as_str().unwrap()),
        "{}",
        text(&out)
    );

    // A token through a role, with a TTL.
    let out = s.cli(
        root,
        &[
            "acl",
            "token",
            "create",
            "-name",
            "ci",
            "-role-name",
            "ro",
            "-ttl",
            "1h",
            "-json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let tok: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tok["ExpirationTime"].is_string(), "{tok}");
    let secret = tok["SecretID"].as_str().unwrap();
    let out = s.cli(Some(secret), &["job", "status"]);
    assert!(
        out.status.success(),
        "a role's policy reads jobs: {}",
        text(&out)
    );
    let out = s.cli(Some(secret), &["acl", "token", "list"]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = s.cli(root, &["acl", "token", "list"]);
    assert!(text(&out).contains("ci"), "{}", text(&out));
    let accessor = tok["AccessorID"].as_str().unwrap();
    let out = s.cli(root, &["acl", "token", "update", "-name", "ci-2", accessor]);
    assert!(text(&out).contains("ci-2"), "{}", text(&out));
    // A TTL outside the bounds is refused; deleting the role takes its grant away.
    let out = s.cli(
        root,
        &["acl", "token", "create", "-policy", "readers", "-ttl", "1s"],
    );
    assert!(
        !out.status.success() && text(&out).contains("ExpirationTTL"),
        "{}",
        text(&out)
    );
    let out = s.cli(
        root,
        &["acl", "role", "delete", role["ID"].as_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = s.cli(Some(secret), &["job", "status"]);
    assert!(!out.status.success(), "{}", text(&out));
    let out = s.cli(root, &["acl", "token", "delete", accessor]);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.cli(Some(secret), &["acl", "token", "self"]);
    assert!(text(&out).contains("ACL token not found"), "{}", text(&out));
}
