//! Pulls from a real local registry with basic auth: credentials (the task's and the
//! plugin's auth.config), auth_soft_fail, force_pull, `:latest` always pulled, and
//! image_pull_timeout.

mod common;

use std::time::{Duration, Instant};

use common::*;
use drover_driver_testkit::docker::Registry;
use serde_json::json;

fn pull_task(image: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut cfg = json!({"image": image, "command": "/bin/sh", "args": ["-c", "exit 0"]});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    cfg
}

fn rmi(reference: &str) {
    let _ = std::process::Command::new("docker")
        .args(["rmi", reference])
        .output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_with_credentials_force_pull_and_latest() {
    let reg = Registry::start("drover", "s3cret");
    let pinned = reg.push_busybox("drover/bb:1.0");
    let latest = reg.push_busybox("drover/bb:latest");
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let ids: Vec<String> = (0..6).map(|i| task_id("pull", &format!("t{i}"))).collect();
    let _rm = RemoveContainers(ids.clone());
    let good = json!({"auth": {"username": "drover", "password": "s3cret"}});
    let bad = json!({"auth": {"username": "drover", "password": "wrong"}});

    // Wrong credentials fail, with or without auth_soft_fail (the registry wants them).
    let e = try_start(
        &host,
        task(&ids[0], tmp.path(), pull_task(&pinned, bad.clone())),
    )
    .await
    .unwrap_err();
    assert!(e.message().contains("failed to pull image"), "{e:?}");
    let mut soft = bad.clone();
    soft["auth_soft_fail"] = json!(true);
    assert!(
        try_start(&host, task(&ids[0], tmp.path(), pull_task(&pinned, soft)))
            .await
            .is_err()
    );

    // The right ones pull, with events.
    let mut ev = events(&host).await;
    try_start(
        &host,
        task(&ids[1], tmp.path(), pull_task(&pinned, good.clone())),
    )
    .await
    .unwrap();
    assert_eq!(wait(&host, &ids[1]).await.exit_code, 0);
    let msgs = messages_within(&mut ev, &ids[1], Duration::from_millis(500)).await;
    assert!(msgs.iter().any(|m| m == "Downloading image"), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m == &format!("Image {pinned} pulled")),
        "{msgs:?}"
    );

    // Present with a pinned tag: not pulled again, unless force_pull.
    try_start(
        &host,
        task(&ids[2], tmp.path(), pull_task(&pinned, json!({}))),
    )
    .await
    .unwrap();
    assert_eq!(wait(&host, &ids[2]).await.exit_code, 0);
    let msgs = messages_within(&mut ev, &ids[2], Duration::from_millis(500)).await;
    assert!(!msgs.iter().any(|m| m == "Downloading image"), "{msgs:?}");
    let mut forced = good.clone();
    forced["force_pull"] = json!(true);
    try_start(&host, task(&ids[3], tmp.path(), pull_task(&pinned, forced)))
        .await
        .unwrap();
    assert_eq!(wait(&host, &ids[3]).await.exit_code, 0);
    let msgs = messages_within(&mut ev, &ids[3], Duration::from_millis(500)).await;
    assert!(
        msgs.iter().any(|m| m == "Downloading image"),
        "force_pull pulls: {msgs:?}"
    );

    // :latest is pulled every time: with no credentials now, the pull fails although present.
    try_start(
        &host,
        task(&ids[4], tmp.path(), pull_task(&latest, good.clone())),
    )
    .await
    .unwrap();
    assert_eq!(wait(&host, &ids[4]).await.exit_code, 0);
    let e = try_start(
        &host,
        task(&ids[5], tmp.path(), pull_task(&latest, json!({}))),
    )
    .await
    .unwrap_err();
    assert!(
        e.message().contains("failed to pull image"),
        ":latest is pulled again: {e:?}"
    );
    host.shutdown().await;
    drop(_rm);
    rmi(&pinned);
    rmi(&latest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugins_auth_config_file_supplies_credentials() {
    let reg = Registry::start("cfguser", "cfgpass");
    let image = reg.push_busybox("drover/cfg:2.0");
    let tmp = tempfile::tempdir().unwrap();
    let host = host(
        tmp.path(),
        json!({"auth": {"config": reg.auth_config_file().display().to_string()}}),
    );
    let id = task_id("authcfg", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    try_start(&host, task(&id, tmp.path(), pull_task(&image, json!({}))))
        .await
        .unwrap();
    assert_eq!(wait(&host, &id).await.exit_code, 0);
    host.shutdown().await;
    drop(_rm);
    rmi(&image);
}

/// A "registry" that accepts connections and never answers; returns its address.
fn silent_registry() -> std::net::SocketAddr {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_activity_timeout_ends_a_pull_without_progress() {
    let addr = silent_registry();
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({"pull_activity_timeout": "2s"}));
    let id = task_id("pullstall", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let image = format!("{addr}/drover/stalled:1");
    let began = Instant::now();
    let e = try_start(
        &host,
        task(
            &id,
            tmp.path(),
            pull_task(&image, json!({"image_pull_timeout": "60s"})),
        ),
    )
    .await
    .unwrap_err();
    assert!(e.message().contains("pull_activity_timeout"), "{e:?}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_timeout_ends_a_pull_that_never_answers() {
    let addr = silent_registry();
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("pulltimeout", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let image = format!("{addr}/drover/slow:1");
    let began = Instant::now();
    let e = try_start(
        &host,
        task(
            &id,
            tmp.path(),
            pull_task(&image, json!({"image_pull_timeout": "2s"})),
        ),
    )
    .await
    .unwrap_err();
    assert!(e.message().contains("image_pull_timeout"), "{e:?}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    host.shutdown().await;
}
