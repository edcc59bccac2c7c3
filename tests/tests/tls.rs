//! TLS between agents (issue 21), on real agents: certificates made by `drover tls`, a
//! server with `tls { http rpc verify_https_client ... }`, a client on mTLS running a job;
//! what is refused (plaintext, another CA, a client certificate on Raft); the CA a lone
//! server makes for you.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use drover_proto::raft::RaftMessage;
use drover_proto::raft::raft_client::RaftClient;
use drover_tests::*;
use serde_json::Value;

/// A CA and server, client and CLI certificates made by `drover tls` in `dir`.
fn make_pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let out = drover_ok(dir, &["tls", "ca", "create"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sha256:"),
        "the CA's hash is printed"
    );
    for kind in ["-server", "-client", "-cli"] {
        drover_ok(dir, &["tls", "cert", "create", kind]);
    }
    use std::os::unix::fs::PermissionsExt;
    for key in [
        "nomad-agent-ca-key.pem",
        "global-server-nomad-key.pem",
        "global-client-nomad-key.pem",
    ] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // An existing file is never replaced.
    let again = Command::new(drover_bin())
        .args(["tls", "cert", "create", "-server"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
}

/// A blocking HTTPS client trusting `ca`, presenting `cert`/`key` when given.
fn https(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn https_get(c: &reqwest::blocking::Client, agent: &Agent, path: &str) -> Result<Value, String> {
    let r = c
        .get(format!("https://127.0.0.1:{}{path}", agent.http_port))
        .send()
        .map_err(|e| format!("{e:?}"))?;
    if !r.status().is_success() {
        return Err(format!("{}", r.status()));
    }
    r.json().map_err(|e| e.to_string())
}

fn tls_block(pki: &Path, cert: &str) -> String {
    let p = |f: &str| pki.join(f).display().to_string();
    format!(
        "tls {{\n  http = true\n  rpc = true\n  ca_file = \"{}\"\n  cert_file = \"{}\"\n  key_file = \"{}\"\n  verify_server_hostname = true\n  verify_https_client = true\n}}\n",
        p("nomad-agent-ca.pem"),
        p(&format!("global-{cert}-nomad.pem")),
        p(&format!("global-{cert}-nomad-key.pem")),
    )
}

/// `dir/client.hcl`: a client with raw_exec, on mTLS with the client certificate.
fn write_client_config(dir: &Path, pki: &Path) {
    std::fs::write(
        dir.join("client.hcl"),
        format!(
            "client {{\n  enabled = true\n}}\nplugin \"raw_exec\" {{\n  config {{\n    enabled = true\n  }}\n}}\n{}",
            tls_block(pki, "client")
        ),
    )
    .unwrap();
}

/// A gRPC channel to `addr` over TLS with this identity (the server must prove its role).
async fn grpc(
    addr: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<tonic::transport::Channel, String> {
    let id =
        drover_tls::Identity::from_files(ca, cert, key, "global").map_err(|e| e.to_string())?;
    let dialer = drover_tls::Dialer::tls(id.client_config().map_err(|e| e.to_string())?);
    let ep = dialer
        .endpoint(addr)
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    dialer.connect(ep).await.map_err(|e| format!("{e:?}"))
}

/// A Raft `Cluster` status request; the gRPC status on refusal.
async fn raft_status(ch: tonic::transport::Channel) -> Result<(), tonic::Status> {
    RaftClient::new(ch)
        .cluster(RaftMessage {
            json: br#""Status""#.to_vec(),
            error: String::new(),
            encoding_version: 2,
        })
        .await
        .map(|_| ())
}

struct TlsCluster {
    _tmp: tempfile::TempDir,
    pki: PathBuf,
    server: Agent,
    client: Agent,
}

fn start_cluster() -> TlsCluster {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let pki = dir.join("pki");
    make_pki(&pki);
    std::fs::write(
        dir.join("server.hcl"),
        format!(
            "server {{\n  enabled = true\n}}\n{}",
            tls_block(&pki, "server")
        ),
    )
    .unwrap();
    write_client_config(&dir, &pki);
    let server = Agent::start(
        &["-config", dir.join("server.hcl").to_str().unwrap()],
        &dir.join("server"),
        free_port(),
        free_port(),
    );
    let admin = https(
        &pki.join("nomad-agent-ca.pem"),
        Some((
            &pki.join("global-cli-nomad.pem"),
            &pki.join("global-cli-nomad-key.pem"),
        )),
    );
    wait_for(
        "the HTTPS API and a leader",
        Duration::from_secs(30),
        || https_get(&admin, &server, "/v1/status/leader").ok(),
    );
    let client = Agent::start(
        &[
            "-config",
            dir.join("client.hcl").to_str().unwrap(),
            "-servers",
            &server.rpc_addr(),
            "-node",
            "tls-client",
        ],
        &dir.join("client"),
        free_port(),
        free_port(),
    );
    wait_for(
        "the client ready over mTLS",
        Duration::from_secs(30),
        || {
            https_get(&admin, &server, "/v1/nodes")
                .ok()?
                .as_array()?
                .iter()
                .find(|n| n["Name"] == "tls-client" && n["Status"] == "ready")
                .cloned()
        },
    );
    TlsCluster {
        _tmp: tmp,
        pki,
        server,
        client,
    }
}

#[test]
fn files_made_by_drover_tls_run_a_job_over_mtls_with_the_cli_on_https() {
    let c = start_cluster();
    let p = |f: &str| c.pki.join(f).display().to_string();
    let job = write_job(
        c._tmp.path(),
        "tlsjob",
        "job \"tlsjob\" {\n group \"g\" {\n  task \"t\" {\n   driver = \"raw_exec\"\n   config {\n    command = \"/bin/sh\"\n    args = [\"-c\", \"echo over-mtls; sleep 600\"]\n   }\n  }\n }\n}\n",
    );
    let address = format!("https://127.0.0.1:{}", c.server.http_port);
    let cli = |args: &[&str]| {
        Command::new(drover_bin())
            .args([
                "-address",
                &address,
                "-ca-cert",
                &p("nomad-agent-ca.pem"),
                "-client-cert",
                &p("global-cli-nomad.pem"),
                "-client-key",
                &p("global-cli-nomad-key.pem"),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["job", "run", "-detach", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = https(
        &c.pki.join("nomad-agent-ca.pem"),
        Some((
            &c.pki.join("global-cli-nomad.pem"),
            &c.pki.join("global-cli-nomad-key.pem"),
        )),
    );
    // The allocation runs on the client, which reports it over the mTLS node stream.
    wait_for(
        "the job running on the mTLS client",
        Duration::from_secs(30),
        || {
            https_get(&admin, &c.server, "/v1/job/tlsjob/allocations")
                .ok()?
                .as_array()?
                .iter()
                .find(|a| a["ClientStatus"] == "running")
                .cloned()
        },
    );
    let out = cli(&["job", "status", "tlsjob"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // NOMAD_* variables work as the flags do.
    let out = Command::new(drover_bin())
        .args(["node", "status"])
        .env("NOMAD_ADDR", &address)
        .env("NOMAD_CACERT", p("nomad-agent-ca.pem"))
        .env("NOMAD_CLIENT_CERT", p("global-cli-nomad.pem"))
        .env("NOMAD_CLIENT_KEY", p("global-cli-nomad-key.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tls-client"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(c.client);
}

#[test]
fn plaintext_another_ca_and_a_client_certificate_on_raft_are_refused() {
    let c = start_cluster();
    let pki = &c.pki;
    let ca = pki.join("nomad-agent-ca.pem");
    // Another CA, with its own client and server certificates.
    let other = c._tmp.path().join("other");
    make_pki(&other);

    // HTTP: plaintext, no client certificate, another CA's client certificate: refused.
    let plain = http()
        .get(format!(
            "http://127.0.0.1:{}/v1/status/leader",
            c.server.http_port
        ))
        .send();
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plaintext HTTP must not be served"
    );
    assert!(https_get(&https(&ca, None), &c.server, "/v1/status/leader").is_err());
    let foreign = https(
        &ca,
        Some((
            &other.join("global-cli-nomad.pem"),
            &other.join("global-cli-nomad-key.pem"),
        )),
    );
    assert!(https_get(&foreign, &c.server, "/v1/status/leader").is_err());
    let good = https(
        &ca,
        Some((
            &pki.join("global-client-nomad.pem"),
            &pki.join("global-client-nomad-key.pem"),
        )),
    );
    https_get(&good, &c.server, "/v1/status/leader").expect("a certificate of the CA is let in");
    // A server certificate of another CA is not trusted by the HTTPS client either.
    assert!(
        https_get(
            &https(&other.join("nomad-agent-ca.pem"), None),
            &c.server,
            "/v1/status/leader"
        )
        .is_err()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = c.server.rpc_addr();
        // RPC in plaintext: no answer.
        let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .connect()
            .await;
        if let Ok(ch) = plain {
            let r = raft_status(ch).await;
            assert!(r.is_err(), "plaintext RPC must fail");
        }
        // Another CA's server certificate as a client certificate: the handshake fails.
        let foreign = match grpc(
            &addr,
            &ca,
            &other.join("global-server-nomad.pem"),
            &other.join("global-server-nomad-key.pem"),
        )
        .await
        {
            Ok(ch) => raft_status(ch).await.map_err(|s| s.to_string()),
            Err(e) => Err(e),
        };
        assert!(foreign.is_err(), "another CA's certificate must be refused");
        // A client certificate of the CA: the handshake succeeds, Raft refuses it — no
        // status, no join, no votes.
        let ch = grpc(
            &addr,
            &ca,
            &pki.join("global-client-nomad.pem"),
            &pki.join("global-client-nomad-key.pem"),
        )
        .await
        .expect("a client certificate of the CA completes the handshake");
        let e = raft_status(ch.clone()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("server.global.drover"), "{e:?}");
        let e = RaftClient::new(ch)
            .vote(RaftMessage {
                json: b"{}".to_vec(),
                error: String::new(),
                encoding_version: 2,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        // The CLI's certificate cannot attach as a node either.
        let ch = grpc(
            &addr,
            &ca,
            &pki.join("global-cli-nomad.pem"),
            &pki.join("global-cli-nomad-key.pem"),
        )
        .await
        .unwrap();
        let e = drover_proto::node::node_service_client::NodeServiceClient::new(ch)
            .read_variables(drover_proto::node::VariablesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        // A server certificate passes the role check (the request itself is then served).
        let ch = grpc(
            &addr,
            &ca,
            &pki.join("global-server-nomad.pem"),
            &pki.join("global-server-nomad-key.pem"),
        )
        .await
        .unwrap();
        raft_status(ch)
            .await
            .expect("a server certificate speaks Raft");
    });
}

#[test]
fn a_lone_server_makes_its_ca_and_a_client_certificate_from_it_joins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("server.hcl"),
        "server {\n  enabled = true\n}\ntls {\n  http = true\n  rpc = true\n}\n",
    )
    .unwrap();
    let server = Agent::start(
        &["-config", dir.join("server.hcl").to_str().unwrap()],
        &dir.join("server"),
        free_port(),
        free_port(),
    );
    let tls_dir = dir.join("server").join("tls");
    let ca = tls_dir.join("ca.pem");
    wait_for("the CA made for you", Duration::from_secs(30), || {
        ca.exists().then_some(())
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls_dir.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // The key is outside the Raft directory.
    assert!(!tls_dir.starts_with(dir.join("server").join("server")));
    // HTTPS with the CA (no client certificate asked: verify_https_client is off).
    let c = https(&ca, None);
    wait_for(
        "the HTTPS API and a leader",
        Duration::from_secs(30),
        || https_get(&c, &server, "/v1/status/leader").ok(),
    );
    // A client certificate made from the CA's files, and a client on mTLS.
    let pki = dir.join("pki");
    std::fs::create_dir(&pki).unwrap();
    drover_ok(
        &pki,
        &[
            "tls",
            "cert",
            "create",
            "-client",
            "-ca",
            ca.to_str().unwrap(),
            "-key",
            tls_dir.join("ca-key.pem").to_str().unwrap(),
        ],
    );
    std::fs::write(
        dir.join("client.hcl"),
        format!(
            "client {{\n  enabled = true\n}}\ntls {{\n  rpc = true\n  ca_file = \"{}\"\n  cert_file = \"{}\"\n  key_file = \"{}\"\n}}\n",
            ca.display(),
            pki.join("global-client-nomad.pem").display(),
            pki.join("global-client-nomad-key.pem").display()
        ),
    )
    .unwrap();
    let _client = Agent::start(
        &[
            "-config",
            dir.join("client.hcl").to_str().unwrap(),
            "-servers",
            &server.rpc_addr(),
            "-node",
            "made-for-you",
        ],
        &dir.join("client"),
        free_port(),
        free_port(),
    );
    wait_for(
        "the client ready over mTLS",
        Duration::from_secs(30),
        || {
            https_get(&c, &server, "/v1/nodes")
                .ok()?
                .as_array()?
                .iter()
                .find(|n| n["Name"] == "made-for-you" && n["Status"] == "ready")
                .cloned()
        },
    );
}

#[test]
fn three_servers_form_a_cluster_forward_writes_and_node_requests_over_mtls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = dir.join("pki");
    make_pki(&pki);
    let tls = tls_block(&pki, "server");
    let servers = drover_tests::servers::start_cluster(
        dir,
        3,
        drover_tests::servers::Extra {
            server: "",
            top: &tls,
        },
    );
    let admin = https(
        &pki.join("nomad-agent-ca.pem"),
        Some((
            &pki.join("global-cli-nomad.pem"),
            &pki.join("global-cli-nomad-key.pem"),
        )),
    );
    // Every server sees three voters and one leader: votes and entries travel over mTLS.
    for s in &servers {
        wait_for(
            "three servers and a leader",
            Duration::from_secs(60),
            || {
                let peers = https_get(&admin, s, "/v1/operator/raft/configuration").ok()?;
                let servers = peers["Servers"].as_array()?;
                (servers.len() == 3 && servers.iter().any(|p| p["Leader"] == true)).then_some(())
            },
        );
    }
    // A write on each server (followers forward theirs to the leader) is read everywhere.
    for (i, s) in servers.iter().enumerate() {
        let r = admin
            .put(format!("https://127.0.0.1:{}/v1/var/tls/s{i}", s.http_port))
            .json(&serde_json::json!({"Items": {"v": format!("{i}")}}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    }
    for s in &servers {
        wait_for(
            "every write on every server",
            Duration::from_secs(30),
            || {
                let list = https_get(&admin, s, "/v1/vars?prefix=tls/").ok()?;
                (list.as_array()?.len() == 3).then_some(())
            },
        );
    }
    // A client on mTLS runs a task; a follower forwards node-bound requests to the leader
    // over HTTPS with its own certificate (the HTTP API requires one here).
    write_client_config(dir, &pki);
    let rpcs: Vec<String> = servers.iter().map(|s| s.rpc_addr()).collect();
    let _client = Agent::start(
        &[
            "-config",
            dir.join("client.hcl").to_str().unwrap(),
            "-servers",
            &rpcs.join(","),
        ],
        &dir.join("client"),
        free_port(),
        free_port(),
    );
    let leader = https_get(&admin, &servers[0], "/v1/status/leader").unwrap();
    let leader = leader.as_str().unwrap();
    assert_eq!(
        servers.iter().filter(|s| s.rpc_addr() == leader).count(),
        1,
        "the leader {leader} is one of the servers"
    );
    let follower = servers.iter().find(|s| s.rpc_addr() != leader).unwrap();
    let job = serde_json::json!({ "Job": { "ID": "hello", "Datacenters": ["dc1"], "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{ "Name": "t", "Driver": "raw_exec", "Config": { "command": "/bin/sh", "args": ["-c", "echo over-https; sleep 300"] } }] }] } });
    let r = admin
        .post(format!("https://127.0.0.1:{}/v1/jobs", follower.http_port))
        .json(&job)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    let alloc = wait_for("the task running", Duration::from_secs(60), || {
        https_get(&admin, follower, "/v1/job/hello/allocations")
            .ok()?
            .as_array()?
            .iter()
            .find(|a| a["ClientStatus"] == "running")
            .cloned()
    });
    let id = alloc["ID"].as_str().unwrap();
    let logs = wait_for(
        "the logs through a follower",
        Duration::from_secs(30),
        || {
            let r = admin
                .get(format!(
                    "https://127.0.0.1:{}/v1/client/fs/logs/{id}?task=t&type=stdout&plain=true",
                    follower.http_port
                ))
                .send()
                .ok()?;
            assert!(r.headers().get("location").is_none());
            let text = r.text().ok()?;
            text.contains("over-https").then_some(text)
        },
    );
    assert_eq!(logs, "over-https\n");
}
