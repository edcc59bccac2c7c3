//! A TLS endpoint: the engine behind a mutual-TLS listener (in front of the engine's socket,
//! certificates from openssl made for the test). With the `tls { cert key ca }`
//! block the driver is healthy and runs a task; a client certificate the listener's CA did
//! not sign leaves it unhealthy with the reason.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use serde_json::json;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.pem`) and a certificate it signs (`<name>.pem`, `<name>.key`) for
/// 127.0.0.1.
fn certificates(dir: &Path, name: &str) {
    let ca = format!("{name}-ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A mutual-TLS listener on 127.0.0.1:`port` (server certificate `server`, clients must be
/// signed by `client-ca`) forwarding to the engine's socket: Python's ssl module, which
/// (unlike socat 1.7.4 on OpenSSL 3) handles a client that resumes its TLS sessions.
fn tls_listener(dir: &Path, port: i32) -> KillOnDrop {
    const PROXY: &str = r#"
import asyncio, ssl, sys
cert, key, ca, port, sock = sys.argv[1:]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
async def pipe(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except Exception:
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass
async def handle(r, w):
    try:
        ur, uw = await asyncio.open_unix_connection(sock)
    except Exception:
        w.close()
        return
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(port), ssl=ctx)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"#;
    let d = dir.display().to_string();
    let mut child = Command::new("python3")
        .args(["-c", PROXY])
        .args([
            format!("{d}/server.pem"),
            format!("{d}/server.key"),
            format!("{d}/client-ca.pem"),
            port.to_string(),
            "/var/run/docker.sock".into(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready", "the TLS listener did not start");
    KillOnDrop(child)
}

fn tls_config(dir: &Path, port: i32, client: &str) -> serde_json::Value {
    let d = dir.display();
    json!({
        "endpoint": format!("tcp://127.0.0.1:{port}"),
        "tls": {
            "cert": format!("{d}/{client}.pem"),
            "key": format!("{d}/{client}.key"),
            "ca": format!("{d}/server-ca.pem"),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_endpoint_with_the_right_certificates_is_healthy_and_runs_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for name in ["server", "client", "stranger"] {
        certificates(&certs, name);
    }
    let port = free_port();
    let _listener = tls_listener(&certs, port);

    let data = tmp.path().join("ok");
    let host = host(&data, tls_config(&certs, port, "client"));
    let fp = fingerprint_until(&host, Duration::from_secs(30), healthy).await;
    assert!(
        fp.attributes["driver.docker.version"].starts_with("20.10"),
        "{fp:?}"
    );
    let id = task_id("tls", "t");
    let _rm = RemoveContainers(vec![id.clone()]);
    try_start(&host, task(&id, &data, sh("exit 5")))
        .await
        .unwrap();
    assert_eq!(wait(&host, &id).await.exit_code, 5);
    host.shutdown().await;

    // A client certificate from a CA the listener does not trust.
    let data = tmp.path().join("stranger");
    let host = common::host(&data, tls_config(&certs, port, "stranger"));
    let fp = fingerprint_until(&host, Duration::from_secs(30), unhealthy).await;
    assert!(
        fp.health_description.contains("127.0.0.1"),
        "the reason names the endpoint: {fp:?}"
    );
    host.shutdown().await;
}
