//! The CA made for you rotated with a job running, and leaves renewing themselves: a server
//! with `tls { rpc = true leaf_lifetime = "30s" }`, a client whose leaf is the CA's
//! (`<data_dir>/tls/client.pem`), real processes.

use std::path::Path;
use std::time::Duration;

use drover_proto::certificates::SyncRequest;
use drover_proto::certificates::certificates_client::CertificatesClient;
use drover_tests::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);

/// An agent of the configuration `hcl` (written to `<dir>/<name>.hcl`), data in
/// `<dir>/<name>`, with `args`.
fn agent(dir: &Path, name: &str, hcl: &str, args: &[&str]) -> Agent {
    let cfg = dir.join(format!("{name}.hcl"));
    std::fs::write(&cfg, hcl).unwrap();
    let mut all = vec!["-config", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    Agent::start(&all, &dir.join(name), free_port(), free_port())
}

/// `head` and a `tls { rpc = true }` block naming the operator's files.
fn files_block(head: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "{head}tls {{\n  rpc = true\n  ca_file = \"{}\"\n  cert_file = \"{}\"\n  key_file = \"{}\"\n}}\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// A client leaf of the CA in `ca_dir`, made by `drover tls cert create` in `pki`.
fn client_leaf(ca_dir: &Path, pki: &Path) -> (String, String) {
    std::fs::create_dir_all(pki).unwrap();
    drover_ok(
        pki,
        &[
            "tls",
            "cert",
            "create",
            "-client",
            "-ca",
            ca_dir.join("ca.pem").to_str().unwrap(),
            "-key",
            ca_dir.join("ca-key.pem").to_str().unwrap(),
        ],
    );
    (
        std::fs::read_to_string(pki.join("global-client-nomad.pem")).unwrap(),
        std::fs::read_to_string(pki.join("global-client-nomad-key.pem")).unwrap(),
    )
}

fn leaf_of(pem: &str) -> Vec<u8> {
    drover_tls::pem::certs(pem.as_bytes(), "leaf", "client.pem").unwrap()[0]
        .as_ref()
        .to_vec()
}

/// (not before, not after) of a certificate, seconds since the epoch.
fn validity(der: &[u8]) -> (i64, i64) {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    (
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    )
}

fn status(server: &Agent) -> Value {
    server
        .get("/v1/operator/tls/rotate-ca")
        .expect("rotation status")
}

fn rotate(server: &Agent) -> std::process::Output {
    server.cli(&["operator", "tls", "rotate-ca"])
}

/// A Sync call with this identity: whether the server let it through.
fn sync_with(addr: &str, roots: &str, chain: &str, key: &str) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let id = drover_tls::Identity::from_pem(roots, chain, key, "global")
            .map_err(|e| e.to_string())?;
        let dialer = drover_tls::Dialer::tls(id.client_config().map_err(|e| e.to_string())?);
        let ep = dialer
            .endpoint(addr)
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5));
        let ch = dialer.connect(ep).await.map_err(|e| format!("{e:?}"))?;
        CertificatesClient::new(ch)
            .sync(SyncRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    })
}

#[test]
fn the_ca_rotates_under_a_running_job_and_leaves_renew_before_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = agent(
        dir,
        "server",
        "server {\n  enabled = true\n}\ntls {\n  rpc = true\n  leaf_lifetime = \"30s\"\n}\n",
        &[],
    );
    server.wait_ready();
    let ca_dir = dir.join("server").join("tls");
    let old_ca = std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap();

    // A client on the CA made for you: its leaf (a year, longer than the servers' 30 s)
    // and the roots under its data_dir.
    let (cert, key) = client_leaf(&ca_dir, &dir.join("pki"));
    let client_tls = dir.join("client").join("tls");
    std::fs::create_dir_all(&client_tls).unwrap();
    std::fs::write(client_tls.join("ca.pem"), &old_ca).unwrap();
    std::fs::write(client_tls.join("client.pem"), format!("{cert}{key}")).unwrap();
    let _client = agent(
        dir,
        "client",
        "client {\n  enabled = true\n}\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\ntls {\n  rpc = true\n}\n",
        &["-servers", &server.rpc_addr(), "-node", "renewing"],
    );
    server.wait_node_ready();

    // A job that keeps running through it all.
    let job = write_job(
        dir,
        "sleeper",
        "job \"sleeper\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sleep\"\n        args = [\"3607\"]\n      }\n    }\n  }\n}\n",
    );
    server.run_job(&job);
    server.wait_alloc_status("sleeper", "running", LONG);
    let pid = wait_for("the job's process", LONG, || find_process("sleep 3607"));

    // Leaves renew themselves: the client's year-long leaf is replaced at once by one of
    // 30 s, which is renewed again before it expires.
    let first = leaf_of(&cert);
    let read_leaf = || leaf_of(&std::fs::read_to_string(client_tls.join("client.pem")).unwrap());
    let second = wait_for(
        "the client's leaf renewed to the servers' lifetime",
        LONG,
        || {
            let l = read_leaf();
            (l != first).then_some(l)
        },
    );
    let (from, to) = validity(&second);
    assert!(
        to - from <= 30 + 8,
        "a 30 s leaf (and its backdating): {from}..{to}"
    );
    let third = wait_for("the 30 s leaf renewed before it expires", LONG, || {
        let l = read_leaf();
        (l != second).then_some(l)
    });
    let (renewed_from, _) = validity(&third);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        now < to + 2,
        "renewed before the old leaf expired ({now} vs {to})"
    );
    assert!(renewed_from <= to);

    // Phase 1: every agent learns the new root.
    let out = rotate(&server);
    assert!(out.status.success(), "{out:?}");
    let s = status(&server);
    assert_eq!(s["Phase"], "trust", "{s}");
    let next_hash = s["NextCA"].as_str().unwrap().to_string();
    wait_for("every leaf trusting the new CA", LONG, || {
        let s = status(&server);
        (s["Leaves"].as_u64()? >= 2 && s["LeavesTrustingNext"] == s["Leaves"]).then_some(())
    });
    let roots = std::fs::read_to_string(client_tls.join("ca.pem")).unwrap();
    assert_eq!(
        drover_tls::pem::certs(roots.as_bytes(), "roots", "ca.pem")
            .unwrap()
            .len(),
        2,
        "the client trusts old + new"
    );

    // Phase 2: new leaves with the new CA cross-signed by the old.
    let out = rotate(&server);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status(&server)["Phase"], "issue");
    let served = std::fs::read_to_string(ca_dir.join("server.pem")).unwrap();
    assert_eq!(
        drover_tls::pem::certs(served.as_bytes(), "chain", "server.pem")
            .unwrap()
            .len(),
        2,
        "the server's new leaf and the cross-signed CA"
    );
    // An agent that still trusts only the old root (its files from before) accepts them:
    // a client started now with those files registers and is ready.
    let pki = dir.join("pki");
    let old_ca_file = pki.join("old-ca.pem");
    std::fs::write(&old_ca_file, &old_ca).unwrap();
    let _old = agent(
        dir,
        "old",
        &files_block(
            "client {\n  enabled = true\n}\n",
            &old_ca_file,
            &pki.join("global-client-nomad.pem"),
            &pki.join("global-client-nomad-key.pem"),
        ),
        &["-servers", &server.rpc_addr(), "-node", "trusts-old-root"],
    );
    wait_for("the old-root client ready mid-rotation", LONG, || {
        server
            .get("/v1/nodes")?
            .as_array()?
            .iter()
            .find(|n| n["Name"] == "trusts-old-root" && n["Status"] == "ready")
            .cloned()
    });
    sync_with(&server.rpc_addr(), &old_ca, &cert, &key).expect(
        "an agent trusting only the old root accepts the new leaf plus the cross-signed CA",
    );

    // Finishing waits for every leaf to be the new CA's.
    wait_for("every leaf issued by the new CA", LONG, || {
        let s = status(&server);
        (s["LeavesIssuedByNext"] == s["Leaves"]).then_some(())
    });
    let out = rotate(&server);
    assert!(out.status.success(), "{out:?}");
    let s = status(&server);
    assert_eq!(s["Phase"], "stable", "{s}");
    assert_eq!(s["ActiveCA"], next_hash.as_str());

    // Phase 3: the old root is dropped; an old CA's leaf is refused, the renewed one works.
    let new_roots = wait_for("the client trusting the new CA alone", LONG, || {
        let r = std::fs::read_to_string(client_tls.join("ca.pem")).ok()?;
        (drover_tls::pem::certs(r.as_bytes(), "roots", "ca.pem")
            .ok()?
            .len()
            == 1)
            .then_some(r)
    });
    let e = sync_with(&server.rpc_addr(), &new_roots, &cert, &key)
        .expect_err("an old CA's leaf is refused");
    assert!(!e.is_empty());
    let managed = std::fs::read_to_string(client_tls.join("client.pem")).unwrap();
    sync_with(&server.rpc_addr(), &new_roots, &managed, &managed).expect("the renewed leaf");

    // The job never noticed: same process, no restart, the node still ready.
    assert_eq!(
        find_process("sleep 3607"),
        Some(pid),
        "the task's process is the same"
    );
    let alloc = &server.allocs("sleeper")[0];
    assert_eq!(alloc["ClientStatus"], "running", "{alloc}");
    assert_eq!(alloc["TaskStates"]["t"]["Restarts"], 0, "{alloc}");
    let nodes = server.get("/v1/nodes").unwrap();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Name"] == "renewing" && n["Status"] == "ready"),
        "{nodes}"
    );
}

/// The leaf the RPC port presents to a new connection (no client certificate sent).
fn presented_leaf(addr: &str, ca: &Path) -> Vec<u8> {
    use tokio_rustls::rustls;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for c in drover_tls::pem::cert_file(ca, "ca").unwrap() {
            roots.add(c).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(drover_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect("server.global.drover".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    })
}

#[test]
fn sighup_reloads_the_operators_certificate_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = dir.join("pki");
    std::fs::create_dir(&pki).unwrap();
    drover_ok(&pki, &["tls", "ca", "create"]);
    drover_ok(&pki, &["tls", "cert", "create", "-server"]);
    let (ca, cert, key) = (
        pki.join("nomad-agent-ca.pem"),
        pki.join("global-server-nomad.pem"),
        pki.join("global-server-nomad-key.pem"),
    );
    let server = agent(
        dir,
        "server",
        &files_block("server {\n  enabled = true\n}\n", &ca, &cert, &key),
        &[],
    );
    server.wait_ready();
    let pid = server.pid();
    let before = presented_leaf(&server.rpc_addr(), &ca);
    assert_eq!(before, leaf_of(&std::fs::read_to_string(&cert).unwrap()));

    // A new certificate in place of the files; SIGHUP; new connections get it.
    let again = dir.join("again");
    std::fs::create_dir(&again).unwrap();
    drover_ok(
        &again,
        &[
            "tls",
            "cert",
            "create",
            "-server",
            "-ca",
            ca.to_str().unwrap(),
            "-key",
            pki.join("nomad-agent-ca-key.pem").to_str().unwrap(),
        ],
    );
    std::fs::copy(again.join("global-server-nomad.pem"), &cert).unwrap();
    std::fs::copy(again.join("global-server-nomad-key.pem"), &key).unwrap();
    let after = leaf_of(&std::fs::read_to_string(&cert).unwrap());
    assert_ne!(before, after);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("the new certificate served", LONG, || {
        (presented_leaf(&server.rpc_addr(), &ca) == after).then_some(())
    });
    assert_eq!(server.pid(), pid);
    assert!(
        server.get("/v1/status/leader").is_some(),
        "the agent still serves"
    );

    // Files that do not load leave the certificate in use.
    std::fs::write(&key, "not a key").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("the refused reload logged", LONG, || {
        server
            .log_text()
            .contains("the TLS certificates were not reloaded")
            .then_some(())
    });
    assert_eq!(presented_leaf(&server.rpc_addr(), &ca), after);
}
