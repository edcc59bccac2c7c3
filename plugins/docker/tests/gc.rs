//! Garbage through the plugin: an image two tasks share survives the first task's destroy
//! and goes `image_delay` after the second's; a container of this node that the plugin does
//! not track is reaped after `creation_grace`, while the tasks' own containers and another
//! node's are left alone.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_image_goes_image_delay_after_its_last_task() {
    let image = format!("drover-test/gc-shared-{}:1", std::process::id());
    images::build_busybox(&image);
    let _rmi = RemoveImage(image.clone());
    let tmp = tempfile::tempdir().unwrap();
    let node = format!("gc-image-{}", std::process::id());
    let host = host_on(tmp.path(), &node, json!({ "gc": { "image_delay": "2s" } }));
    let (a, b) = (task_id("gcimg", "a"), task_id("gcimg", "b"));
    let _rm = RemoveContainers(vec![a.clone(), b.clone()]);
    let sleeper = json!({ "image": image, "command": "sleep", "args": ["300"] });
    for id in [&a, &b] {
        try_start(&host, task(id, tmp.path(), sleeper.clone()))
            .await
            .unwrap();
    }
    driver(&host).destroy(&a).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        images::has_image(&image),
        "the image went while a task still uses it"
    );
    driver(&host).destroy(&b).await;
    assert!(images::has_image(&image), "removed before image_delay");
    let deadline = Instant::now() + Duration::from_secs(20);
    while images::has_image(&image) {
        assert!(
            Instant::now() < deadline,
            "the unused image was not removed after image_delay"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_containers_of_this_node_are_reaped_and_tracked_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let node = format!("gc-reap-{pid}");
    let config = json!({ "gc": { "dangling_containers": {
        "period": "1s", "creation_grace": "2s" } } });
    let host = host_on(tmp.path(), &node, config);
    let tracked = task_id("gcreap", "kept");
    let _rm = RemoveContainers(vec![tracked.clone()]);
    let started = try_start(&host, task(&tracked, tmp.path(), sh("sleep 300")))
        .await
        .unwrap();
    let kept = container_id(&started);
    // A container of this node the plugin does not track, and one of another node.
    let run = |name: &str, node_label: &str| {
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--label",
            "drover.managed=true",
            "--label",
            &format!("drover.node_id={node_label}"),
            images::busybox_image(),
            "sleep",
            "300",
        ])
        .trim()
        .to_string()
    };
    let stray = run(&format!("drover-stray-{pid}"), &node);
    let other = run(&format!("drover-other-node-{pid}"), "some-other-node");
    let _cleanup = RemoveByName(vec![
        format!("drover-stray-{pid}"),
        format!("drover-other-node-{pid}"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while images::docker_ok(&["inspect", &stray]) {
        assert!(
            Instant::now() < deadline,
            "the dangling container was not reaped"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        images::docker_ok(&["inspect", &kept]),
        "a tracked task's container was reaped"
    );
    assert!(
        images::docker_ok(&["inspect", &other]),
        "another node's container was reaped"
    );
    host.shutdown().await;
}

/// Force-removes containers by name at the end of a test.
struct RemoveByName(Vec<String>);

impl Drop for RemoveByName {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", n])
                .output();
        }
    }
}
