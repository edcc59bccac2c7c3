//! The allocation's network through the plugin, against the real engine: CreateNetwork makes
//! the infra container `nomad_init_<alloc>` (network none, the host name asked, the offline
//! pause image as `infra_image`) and returns its namespace; a task with that namespace shares
//! it; a second CreateNetwork finds it (created = false); a dead one is replaced;
//! DestroyNetwork removes it and is idempotent; the reaper and image GC leave a live infra
//! container and its image alone; a restarted plugin finds its infra containers again.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use drover_plugin_host::PluginHost;
use drover_proto::driver::{
    CapabilitiesRequest, CreateNetworkRequest, CreateNetworkResponse, DestroyNetworkRequest,
};
use serde_json::json;

/// Removes an allocation's infra container whatever the test's outcome.
struct RemoveInfra(String);

impl Drop for RemoveInfra {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &format!("nomad_init_{}", self.0)])
            .output();
    }
}

fn alloc(test: &str) -> (String, RemoveInfra) {
    let id = format!("{test}-{}", std::process::id());
    (id.clone(), RemoveInfra(id))
}

fn net_host(dir: &Path, node: &str, extra: serde_json::Value) -> PluginHost {
    let mut config = json!({ "infra_image": images::pause_image() });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    host_on(dir, node, config)
}

async fn create(host: &PluginHost, alloc_id: &str, hostname: &str) -> CreateNetworkResponse {
    try_create(host, alloc_id, hostname).await.unwrap()
}

async fn try_create(
    host: &PluginHost,
    alloc_id: &str,
    hostname: &str,
) -> Result<CreateNetworkResponse, tonic::Status> {
    host.driver("docker")
        .await
        .unwrap()
        .create_network(CreateNetworkRequest {
            alloc_id: alloc_id.into(),
            hostname: hostname.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn destroy_network(host: &PluginHost, alloc_id: &str, path: &str) {
    host.driver("docker")
        .await
        .unwrap()
        .destroy_network(DestroyNetworkRequest {
            alloc_id: alloc_id.into(),
            namespace_path: path.into(),
        })
        .await
        .unwrap();
}

fn infra(alloc_id: &str) -> String {
    format!("nomad_init_{alloc_id}")
}

/// The inode of a network namespace file.
fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_network_makes_an_infra_container_that_tasks_join() {
    let tmp = tempfile::tempdir().unwrap();
    let node = format!("net-create-{}", std::process::id());
    let host = net_host(tmp.path(), &node, json!({}));
    let caps = host
        .driver("docker")
        .await
        .unwrap()
        .capabilities(CapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(caps.must_create_network);

    let (alloc_id, _rm) = alloc("netcreate");
    let made = create(&host, &alloc_id, "web-host").await;
    assert!(made.created);
    let name = infra(&alloc_id);
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(inspect(&name, "{{.HostConfig.NetworkMode}}"), "none");
    assert_eq!(inspect(&name, "{{.Config.Hostname}}"), "web-host");
    assert_eq!(inspect(&name, "{{.Config.Image}}"), images::PAUSE);
    assert_eq!(
        inspect(&name, "{{.NetworkSettings.SandboxKey}}"),
        made.namespace_path
    );
    assert_eq!(
        inspect(
            &name,
            "{{index .Config.Labels \"com.hashicorp.nomad.alloc_id\"}}"
        ),
        alloc_id
    );
    assert_eq!(
        inspect(&name, "{{index .Config.Labels \"drover.node_id\"}}"),
        node
    );
    // The returned path is the infra container's namespace.
    let pid = inspect(&name, "{{.State.Pid}}");
    let infra_ns = ns_inode(&format!("/proc/{pid}/ns/net"));
    assert_eq!(ns_inode(&made.namespace_path), infra_ns);

    // A task of the allocation with that namespace shares it.
    let id = format!("{alloc_id}/web/0");
    let _rmc = RemoveContainers(vec![id.clone()]);
    let mut t = task(
        &id,
        tmp.path(),
        sh(
            "readlink /proc/self/ns/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; sleep 300",
        ),
    );
    t.network_ns_path = made.namespace_path.clone();
    let started = try_start(&host, t).await.unwrap();
    let cid = container_id(&started);
    assert_eq!(
        inspect(&cid, "{{.HostConfig.NetworkMode}}"),
        format!("container:{}", inspect(&name, "{{.Id}}"))
    );
    let log = tmp.path().join("alloc/logs/web.stdout.0");
    drover_driver_testkit::until("the task's probe", Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.lines().count() >= 2)
    })
    .await;
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        out,
        format!("net:[{infra_ns}]\nlo\n"),
        "the task is in the infra's namespace"
    );

    // Its own network settings are refused, naming the key.
    for (key, config) in [
        (
            "network_mode",
            json!({"image": images::busybox_image(), "network_mode": "bridge"}),
        ),
        (
            "ports",
            json!({"image": images::busybox_image(), "ports": ["http"]}),
        ),
    ] {
        let id = format!("{alloc_id}/{key}/0");
        let mut t = task(&id, tmp.path(), config);
        t.network_ns_path = made.namespace_path.clone();
        t.ports = vec![port("http", free_port(), 80)];
        let e = try_start(&host, t).await.unwrap_err();
        assert!(
            e.message().starts_with(&format!("{key}:")),
            "{key}: {}",
            e.message()
        );
    }
    // A namespace that is not the allocation's infra's is refused.
    let other = format!("{alloc_id}/other/0");
    let mut t = task(&other, tmp.path(), sh("true"));
    t.network_ns_path = "/proc/1/ns/net".into();
    let e = try_start(&host, t).await.unwrap_err();
    assert!(
        e.message().contains("is not that of allocation"),
        "{}",
        e.message()
    );

    // Again: found, not made.
    let again = create(&host, &alloc_id, "web-host").await;
    assert!(!again.created);
    assert_eq!(again.namespace_path, made.namespace_path);

    driver(&host).destroy(&id).await;
    destroy_network(&host, &alloc_id, &made.namespace_path).await;
    assert!(
        !images::docker_ok(&["inspect", &name]),
        "the infra container is gone"
    );
    // Idempotent.
    destroy_network(&host, &alloc_id, &made.namespace_path).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_infra_container_is_replaced_and_bad_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let host = net_host(
        tmp.path(),
        &format!("net-dead-{}", std::process::id()),
        json!({}),
    );
    let (alloc_id, _rm) = alloc("netdead");
    let first = create(&host, &alloc_id, "").await;
    let old_id = inspect(&infra(&alloc_id), "{{.Id}}");
    docker(&["kill", &infra(&alloc_id)]);
    let second = create(&host, &alloc_id, "").await;
    assert!(second.created, "a dead infra container is replaced");
    assert_ne!(inspect(&infra(&alloc_id), "{{.Id}}"), old_id);
    assert_eq!(inspect(&infra(&alloc_id), "{{.State.Running}}"), "true");
    assert_ne!(second.namespace_path, first.namespace_path);

    let e = try_create(&host, "../etc", "").await.unwrap_err();
    assert!(
        e.message().contains("allocation id \"../etc\""),
        "{}",
        e.message()
    );
    let e = try_create(&host, &alloc_id, "bad host").await.unwrap_err();
    assert!(
        e.message().contains("hostname \"bad host\""),
        "{}",
        e.message()
    );
    // A container that took the name but is not an infra container is not ours to use.
    let (squatter, _rm2) = alloc("netsquat");
    docker(&[
        "run",
        "-d",
        "--name",
        &infra(&squatter),
        images::busybox_image(),
        "sleep",
        "300",
    ]);
    let e = try_create(&host, &squatter, "").await.unwrap_err();
    assert!(e.message().contains("is not allocation"), "{}", e.message());
    destroy_network(&host, &alloc_id, &second.namespace_path).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_a_live_infra_container_and_its_image_across_a_plugin_restart() {
    let pid = std::process::id();
    let pause = format!("drover-test/pause-gc-{pid}:1");
    images::build_pause(&pause);
    let _rmi = RemoveImage(pause.clone());
    let tmp = tempfile::tempdir().unwrap();
    let node = format!("net-gc-{pid}");
    let gc = json!({
        "infra_image": pause,
        "gc": { "image_delay": "1s",
                "dangling_containers": { "period": "1s", "creation_grace": "1s" } }
    });
    let host = net_host(tmp.path(), &node, gc);
    let (alloc_id, _rm) = alloc("netgc");
    let made = create(&host, &alloc_id, "").await;
    let infra_id = inspect(&infra(&alloc_id), "{{.Id}}");

    // A task on the same image comes and goes: the image stays while the infra holds it.
    let id = format!("{alloc_id}/web/0");
    let _rmc = RemoveContainers(vec![id.clone()]);
    let mut t = task(
        &id,
        tmp.path(),
        json!({ "image": pause, "entrypoint": ["/bin/sh", "-c", "exit 0"] }),
    );
    t.network_ns_path = made.namespace_path.clone();
    try_start(&host, t).await.unwrap();
    wait(&host, &id).await;
    driver(&host).destroy(&id).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        inspect(&infra_id, "{{.State.Running}}"),
        "true",
        "reaped a live infra container"
    );
    assert!(
        images::has_image(&pause),
        "removed the live infra container's image"
    );

    // A new plugin finds the infra container again by its labels: its reaper leaves it
    // alone, and create/destroy keep working.
    driver(&host).kill_plugin().await;
    let again = create(&host, &alloc_id, "").await;
    assert!(!again.created);
    assert_eq!(again.namespace_path, made.namespace_path);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        inspect(&infra_id, "{{.State.Running}}"),
        "true",
        "reaped after a restart"
    );
    assert!(images::has_image(&pause));
    driver(&host).kill_plugin().await;
    // Only adopted (no CreateNetwork this time), it survives the reaper too.
    let _ = host.driver("docker").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        inspect(&infra_id, "{{.State.Running}}"),
        "true",
        "reaped after a restart"
    );
    destroy_network(&host, &alloc_id, &made.namespace_path).await;
    assert!(!images::docker_ok(&["inspect", &infra_id]));
    // Its image goes image_delay after the last holder.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while images::has_image(&pause) {
        assert!(
            std::time::Instant::now() < deadline,
            "the infra image was not released after DestroyNetwork"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.shutdown().await;
}
