//! The engine connection: fingerprint attributes, and health that follows the engine
//! (through a unix-socket proxy to the real engine the test can stop) without touching
//! containers.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use drover_proto::driver::StopTaskRequest;
use serde_json::json;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_is_healthy_with_nomads_attributes() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({"allow_privileged": true}));
    let fp = fingerprint_until(&host, Duration::from_secs(20), healthy).await;
    let a = &fp.attributes;
    assert_eq!(a["driver.docker"], "1");
    assert!(a["driver.docker.version"].starts_with("20.10"), "{a:?}");
    assert!(
        a["driver.docker.runtimes"].split(',').any(|r| r == "runc"),
        "{a:?}"
    );
    assert_eq!(a["driver.docker.os_type"], "linux");
    let bridge: std::net::Ipv4Addr = a["driver.docker.bridge_ip"].parse().expect("an address");
    let ip = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .unwrap();
    let ip = String::from_utf8_lossy(&ip.stdout);
    assert!(
        ip.contains(&format!("inet {bridge}/")),
        "docker0's address: {ip}"
    );
    assert_eq!(a["driver.docker.privileged.enabled"], "true");
    assert!(
        !a.contains_key("driver.docker.volumes.enabled"),
        "volumes are off by default"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_does_not_exist_is_unhealthy_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("missing.sock");
    let host = host(
        tmp.path(),
        json!({"endpoint": format!("unix://{}", sock.display())}),
    );
    let fp = fingerprint_until(&host, Duration::from_secs(20), unhealthy).await;
    assert!(
        fp.health_description.contains(&sock.display().to_string()),
        "{fp:?}"
    );
    assert!(fp.attributes.is_empty());
    let id = task_id("noengine", "web");
    let e = try_start(&host, task(&id, tmp.path(), sh("true")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    host.shutdown().await;
}

/// A unix-socket proxy at `path` to the real engine; `stop` closes it and every connection.
struct Proxy {
    path: PathBuf,
    tasks: JoinSet<()>,
}

impl Proxy {
    fn start(path: &Path) -> Proxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        });
        Proxy {
            path: path.to_path_buf(),
            tasks,
        }
    }

    async fn stop(mut self) {
        self.tasks.shutdown().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_engine_and_containers_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("engine.sock");
    let proxy = Proxy::start(&sock);
    let host = host(
        tmp.path(),
        json!({"endpoint": format!("unix://{}", sock.display())}),
    );
    fingerprint_until(&host, Duration::from_secs(20), healthy).await;
    let id = task_id("health", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let started = try_start(&host, task(&id, tmp.path(), sh("sleep 1000")))
        .await
        .unwrap();
    let cid = container_id(&started);

    proxy.stop().await;
    let fp = fingerprint_until(&host, Duration::from_secs(20), unhealthy).await;
    assert!(
        fp.health_description.contains(&sock.display().to_string()),
        "{fp:?}"
    );
    assert_eq!(
        inspect(&cid, "{{.State.Running}}"),
        "true",
        "the container runs on"
    );

    let proxy = Proxy::start(&sock);
    fingerprint_until(&host, Duration::from_secs(20), healthy).await;
    assert_eq!(inspect(&cid, "{{.State.Running}}"), "true");
    host.driver("docker")
        .await
        .unwrap()
        .stop_task(StopTaskRequest {
            task_id: id.clone(),
            signal: "SIGTERM".into(),
            timeout_ms: 500,
        })
        .await
        .unwrap();
    assert_eq!(
        wait(&host, &id).await.exit_code,
        137,
        "the watch on its exit survived the outage"
    );
    host.shutdown().await;
    proxy.stop().await;
}
