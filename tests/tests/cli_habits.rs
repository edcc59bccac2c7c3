//! Nomad users' CLI habits: every global flag and its NOMAD_*/DROVER_* variable reaches the
//! request (a real listener records it, over plain HTTP and over TLS with a client
//! certificate), ids by prefix against a real agent (an ambiguous one listed), `node status
//! NODE`, `-json`/`-t`, `job init`, and Nomad's exit codes.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use drover_tests::*;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The CLI with only the environment given (no NOMAD_* or DROVER_* of the caller's).
fn drover_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(drover_bin());
    c.args(args).env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run drover")
}

/// A recorded request: the request line and the headers, lower-cased names.
#[derive(Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 request, records it, answers `[]` (or `{}` for a search).
fn answer(stream: &mut (impl Read + Write), seen: &Sender<Seen>) {
    let mut r = BufReader::new(&mut *stream);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k, v.trim().to_string()));
        }
    }
    let mut body = vec![0; length];
    let _ = r.read_exact(&mut body);
    let reply = if line.contains("/v1/search") {
        r#"{"Matches":{},"Truncations":{}}"#
    } else {
        "[]"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
    let _ = seen.send(Seen {
        line: line.trim_end().to_string(),
        headers,
    });
}

/// A plain HTTP listener that records every request.
fn plain_server() -> (u16, Receiver<Seen>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            answer(&mut s, &tx);
        }
    });
    (port, rx)
}

fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the CLI's request reached the listener")
}

#[test]
fn every_global_flag_and_its_variables_reach_the_request() {
    let (port, rx) = plain_server();
    let addr = format!("http://127.0.0.1:{port}");
    // The flags, before and after the command.
    let out = drover_env(
        &[
            "-address",
            &addr,
            "-namespace=ns-flag",
            "job",
            "status",
            "-region=r-flag",
            "-token=t-flag",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = next(&rx);
    assert_eq!(
        s.line,
        "GET /v1/jobs?region=r-flag&namespace=ns-flag HTTP/1.1"
    );
    assert_eq!(s.header("x-nomad-token"), Some("t-flag"));

    // Nomad's variables (an address without a scheme is http).
    let nomad = [
        ("NOMAD_ADDR", format!("127.0.0.1:{port}")),
        ("NOMAD_NAMESPACE", "ns-nomad".into()),
        ("NOMAD_REGION", "r-nomad".into()),
        ("NOMAD_TOKEN", "t-nomad".into()),
    ];
    let env: Vec<(&str, &str)> = nomad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = drover_env(&["job", "status"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let s = next(&rx);
    assert_eq!(
        s.line,
        "GET /v1/jobs?region=r-nomad&namespace=ns-nomad HTTP/1.1"
    );
    assert_eq!(s.header("x-nomad-token"), Some("t-nomad"));

    // DROVER_* win over NOMAD_*, and a flag over both.
    let mut env = env.clone();
    env.extend([
        ("DROVER_ADDR", addr.as_str()),
        ("DROVER_NAMESPACE", "ns-drover"),
        ("DROVER_REGION", "r-drover"),
        ("DROVER_TOKEN", "t-drover"),
    ]);
    env.retain(|(k, _)| *k != "NOMAD_ADDR");
    env.push(("NOMAD_ADDR", "127.0.0.1:1"));
    let out = drover_env(&["job", "status", "-region", "r-flag"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let s = next(&rx);
    assert_eq!(
        s.line,
        "GET /v1/jobs?region=r-flag&namespace=ns-drover HTTP/1.1"
    );
    assert_eq!(s.header("x-nomad-token"), Some("t-drover"));

    // Prefix searches carry them too, in Nomad's search request.
    let out = drover_env(
        &["alloc", "status", "-address", &addr, "-token=t", "3f2a"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("No allocations with prefix or id \"3f2a\" found"),
        "{}",
        text(&out)
    );
    let s = next(&rx);
    assert_eq!(s.line, "POST /v1/search HTTP/1.1");
    assert_eq!(s.header("x-nomad-token"), Some("t"));

    // A usage error exits 1, as Nomad's.
    let out = drover_env(&["job", "status", "-no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A bad NOMAD_SKIP_VERIFY is named.
    let out = drover_env(&["job", "status"], &[("NOMAD_SKIP_VERIFY", "maybe")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("SKIP_VERIFY=\"maybe\""),
        "{}",
        text(&out)
    );
}

/// A CA, a server certificate for `drover.test` only, and a client certificate, made with
/// the openssl command.
fn make_pki(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command (needed to make the test's certificates) runs");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=drover test CA",
    ]);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:drover.test\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}

/// An HTTPS listener that requires a client certificate signed by the CA and records every
/// request that gets through the handshake.
fn tls_server(dir: &Path) -> (u16, Receiver<Seen>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            s.set_nonblocking(true).unwrap();
            let acceptor = acceptor.clone();
            let tls = rt.block_on(async move {
                let s = tokio::net::TcpStream::from_std(s).unwrap();
                acceptor.accept(s).await
            });
            let Ok(tls) = tls else { continue };
            // Serve the request on a blocking thread over the established session.
            let (tcp, session) = tls.into_inner();
            let tcp = tcp.into_std().unwrap();
            tcp.set_nonblocking(false).unwrap();
            let mut conn = rustls::StreamOwned::new(session, tcp);
            answer(&mut conn, &tx);
            conn.conn.send_close_notify();
            let _ = conn.flush();
        }
    });
    (port, rx)
}

#[test]
fn tls_flags_and_variables_reach_a_tls_server_that_checks_the_client() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir);
    let (port, rx) = tls_server(dir);
    let addr = format!("https://127.0.0.1:{port}");
    let p = |f: &str| dir.join(f).display().to_string();
    let cadir = dir.join("cas");
    std::fs::create_dir(&cadir).unwrap();
    std::fs::copy(dir.join("ca.pem"), cadir.join("ca.pem")).unwrap();

    // Flags: the CA, the client certificate, and the name the server's certificate has.
    let flags = [
        "-address",
        &addr,
        "-ca-cert",
        &p("ca.pem"),
        "-client-cert",
        &p("client.pem"),
        "-client-key",
        &p("client.key"),
        "-tls-server-name",
        "drover.test",
        "-token=t-tls",
    ];
    let mut args = flags.to_vec();
    args.extend(["job", "status"]);
    let out = drover_env(&args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let s = next(&rx);
    assert!(s.line.starts_with("GET /v1/jobs"), "{s:?}");
    assert_eq!(s.header("x-nomad-token"), Some("t-tls"));

    // Without -tls-server-name the certificate (for drover.test) does not match 127.0.0.1.
    let out = drover_env(&[&flags[..8], &["job", "status"][..]].concat(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Without the client certificate the server refuses the handshake.
    let mut no_client: Vec<&str> = flags[..4].to_vec();
    no_client.extend(["-tls-server-name", "drover.test", "job", "status"]);
    let out = drover_env(&no_client, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Nomad's variables, with the CA as a directory.
    let (cacert, ckey) = (p("client.pem"), p("client.key"));
    let capath = cadir.display().to_string();
    let out = drover_env(
        &["job", "status"],
        &[
            ("NOMAD_ADDR", &addr),
            ("NOMAD_CAPATH", &capath),
            ("NOMAD_CLIENT_CERT", &cacert),
            ("NOMAD_CLIENT_KEY", &ckey),
            ("NOMAD_TLS_SERVER_NAME", "drover.test"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    next(&rx);
    // DROVER_* twins, and NOMAD_CACERT.
    let ca = p("ca.pem");
    let out = drover_env(
        &["job", "status"],
        &[
            ("DROVER_ADDR", &addr),
            ("NOMAD_CACERT", &ca),
            ("DROVER_CLIENT_CERT", &cacert),
            ("DROVER_CLIENT_KEY", &ckey),
            ("DROVER_TLS_SERVER_NAME", "drover.test"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    next(&rx);
    // Skip-verify: no CA and no server name, the client certificate still sent.
    for skip in [
        (vec!["-tls-skip-verify"], vec![]),
        (vec![], vec![("NOMAD_SKIP_VERIFY", "true")]),
        (vec![], vec![("DROVER_SKIP_VERIFY", "1")]),
    ] {
        let mut args = vec![
            "-address",
            &addr,
            "-client-cert",
            &cacert,
            "-client-key",
            &ckey,
        ];
        args.extend(skip.0.iter().copied());
        args.extend(["job", "status"]);
        let out = drover_env(&args, &skip.1);
        assert!(out.status.success(), "{skip:?}: {}", text(&out));
        next(&rx);
    }
}

const TWO_JOBS: &str = r#"
job "JOB" {
  group "g" {
    count = 2
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
fn ids_by_prefix_node_status_templates_and_job_init_against_a_real_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    agent.wait_node_ready();
    for name in ["web-a", "web-b"] {
        let f = write_job(tmp.path(), name, &TWO_JOBS.replace("JOB", name));
        let out = agent.cli(&["job", "run", "-detach", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    }
    agent.wait_alloc_status("web-a", "running", Duration::from_secs(60));
    agent.wait_alloc_status("web-b", "running", Duration::from_secs(60));
    let allocs = agent.allocs("web-a");
    let alloc_id = allocs[0]["ID"].as_str().unwrap().to_string();

    // An 8-character allocation id, as the CLI prints them.
    let out = agent.cli(&[
        "alloc",
        "status",
        "-t",
        "{{.ID}} {{.JobID}}",
        &alloc_id[..8],
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{alloc_id} web-a")
    );
    // An ambiguous job prefix lists the matches and exits 1; an exact id wins.
    let out = agent.cli(&["job", "status", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Prefix \"web\" matched multiple jobs:\n  web-a\n  web-b"),
        "{}",
        text(&out)
    );
    let out = agent.cli(&["job", "status", "-json", "web-b"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Job"]["ID"], "web-b");
    // Nomad's search API answers with its shapes.
    let v: serde_json::Value = http()
        .post(format!("{}/v1/search", agent.address()))
        .json(&serde_json::json!({"Prefix": &alloc_id[..6], "Context": "all"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        v["Matches"]["allocs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == alloc_id.as_str()),
        "{v}"
    );
    assert_eq!(v["Truncations"]["allocs"], false);
    assert_eq!(v["Matches"]["deployment"], serde_json::json!([]));
    let v: serde_json::Value = http()
        .post(format!("{}/v1/search/fuzzy", agent.address()))
        .json(&serde_json::json!({"Text": "EB-", "Context": "jobs"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["Matches"]["jobs"],
        serde_json::json!([{"ID": "web-a", "Scope": ["default"]}, {"ID": "web-b", "Scope": ["default"]}])
    );

    // node status NODE: its drivers and its allocations.
    let node_id = allocs[0]["NodeID"].as_str().unwrap().to_string();
    let out = agent.cli(&["node", "status", &node_id[..8]]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("ID ") && l.ends_with(&format!("= {node_id}"))),
        "{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("Drivers ") && l.contains("raw_exec")),
        "{t}"
    );
    assert_eq!(t.matches("web-a").count(), 2, "{t}");
    assert_eq!(t.matches("web-b").count(), 2, "{t}");
    let out = agent.cli(&["node", "status", "-t", "{{.Name}}", &node_id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!out.stdout.is_empty());
    let out = agent.cli(&["node", "status", "-json", "-t", "{{.Name}}", &node_id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // job init writes an example that validates, and does not overwrite it.
    let work = tmp.path().join("init");
    std::fs::create_dir(&work).unwrap();
    let init = |args: &[&str]| {
        Command::new(drover_bin())
            .args(args)
            .current_dir(&work)
            .output()
            .unwrap()
    };
    let out = init(&["job", "init"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = init(&["job", "validate", "example.nomad.hcl"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = init(&["job", "init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("Job 'example.nomad.hcl' already exists"),
        "{}",
        text(&out)
    );
    // job plan exits 255 on an error (1 means "changes").
    let out = init(&["job", "plan", "missing.nomad.hcl"]);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out));
}

#[test]
fn nomads_example_agent_configs_validate_with_the_expected_warnings() {
    let fixtures = repo_root().join("core/agent/src/config/fixtures");
    let validate = |f: &str| {
        drover_env(
            &["config", "validate", fixtures.join(f).to_str().unwrap()],
            &[],
        )
    };
    let out = validate("server.hcl");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for w in [
        "Warning: server.retry_join is deprecated: use server { server_join { retry_join } }",
        "Warning: server.start_join",
        "Warning: server.encrypt is ignored: Drover has no gossip ring",
        "Warning: server.rejoin_after_leave is ignored: Drover has no gossip ring",
        "Configuration is valid!",
    ] {
        assert_eq!(
            t.contains(w),
            w != "Warning: server.start_join",
            "{w:?} in {t}"
        );
    }
    let out = validate("client.hcl");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("Warning: client.network_speed is deprecated")
            && t.contains("Warning: client.options \"driver.raw_exec.enable\" is deprecated"),
        "{t}"
    );
    let out = validate("client.json");
    assert!(out.status.success(), "{}", text(&out));
    // Three files merge in order, as Nomad's -config flags.
    let out = drover_env(
        &[
            "config",
            "validate",
            fixtures.join("server.hcl").to_str().unwrap(),
            fixtures.join("client.hcl").to_str().unwrap(),
            fixtures.join("client.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_client_with_disable_remote_exec_refuses_exec_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(&cfg, "client {\n  disable_remote_exec = true\n}\n").unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let f = write_job(tmp.path(), "web-a", &TWO_JOBS.replace("JOB", "web-a"));
    agent.run_job(&f);
    let a = agent.wait_alloc_status("web-a", "running", Duration::from_secs(60));
    let id = a["ID"].as_str().unwrap();
    let out = agent.cli(&["alloc", "exec", "-i=false", id, "/bin/true"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("exec is disabled on this client"),
        "{}",
        text(&out)
    );
}
