//! Against the real engine. The reaper's tests only ever count their own containers as
//! untracked: other tests' containers on the same engine are never theirs to remove.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;
use crate::test_engine::{self, Spec};

fn spec<'a>(labels: &'a [(&'a str, &'a str)]) -> Spec<'a> {
    Spec {
        labels,
        ..Spec::busybox(&["sleep", "300"])
    }
}

async fn has_image(docker: &Docker, image: &str) -> bool {
    docker.inspect_image(image).await.is_ok()
}

/// A fresh tag of the busybox image, removed when dropped if a test failed before.
struct Tag(String);

impl Tag {
    fn new() -> Tag {
        let tag = format!(
            "drover-test/gc-{}:1",
            test_engine::unique("img").replace("drover-test-", "")
        );
        drover_driver_testkit::docker::build_busybox(&tag);
        Tag(tag)
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_shared_by_two_tasks_goes_delay_after_the_last() {
    let docker = test_engine::docker().await;
    let tag = Tag::new();
    let image = tag.0.as_str();
    let delay = Duration::from_secs(3);
    let refs = ImageRefs::new(
        docker.clone(),
        ImageGc {
            enabled: true,
            delay,
        },
    );
    refs.acquire(image);
    refs.acquire(image);
    refs.release(image);
    assert_eq!(refs.tasks_on(image), 1);
    tokio::time::sleep(delay + Duration::from_secs(1)).await;
    assert!(
        has_image(&docker, image).await,
        "removed while a task holds it"
    );
    refs.release(image);
    let released = Instant::now();
    tokio::time::sleep(delay - Duration::from_secs(1)).await;
    assert!(has_image(&docker, image).await, "removed before the delay");
    while has_image(&docker, image).await {
        assert!(
            released.elapsed() < delay * 5,
            "not removed after the delay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released.elapsed() >= delay);
    // The content stays under its other names.
    assert!(has_image(&docker, drover_driver_testkit::docker::busybox_image()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_during_the_delay_cancels_the_removal() {
    let docker = test_engine::docker().await;
    let tag = Tag::new();
    let image = tag.0.as_str();
    let delay = Duration::from_secs(1);
    let refs = ImageRefs::new(
        docker.clone(),
        ImageGc {
            enabled: true,
            delay,
        },
    );
    refs.acquire(image);
    refs.release(image);
    refs.acquire(image);
    tokio::time::sleep(delay * 3).await;
    assert!(
        has_image(&docker, image).await,
        "removed though a task took it again"
    );
    // With image GC off, the last release leaves it too.
    let off = ImageRefs::new(
        docker.clone(),
        ImageGc {
            enabled: false,
            delay: Duration::ZERO,
        },
    );
    off.acquire(image);
    off.release(image);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(has_image(&docker, image).await, "removed with image GC off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_containers_are_reaped_after_the_grace() {
    let docker = test_engine::docker().await;
    let managed = [(MANAGED_LABEL, "true")];
    let old = test_engine::create(&docker, &test_engine::unique("reap-old"), &spec(&managed)).await;
    let kept =
        test_engine::create(&docker, &test_engine::unique("reap-kept"), &spec(&managed)).await;
    let unlabelled =
        test_engine::create(&docker, &test_engine::unique("reap-plain"), &spec(&[])).await;
    let ours: BTreeSet<String> = [&old.id, &kept.id, &unlabelled.id]
        .map(|s| s.clone())
        .into();
    let untracked = Arc::new(Mutex::new(ours.clone()));
    untracked.lock().unwrap().remove(&kept.id);
    let u = untracked.clone();
    let tracked: Arc<dyn Fn(&str) -> bool + Send + Sync> =
        Arc::new(move |id: &str| !u.lock().unwrap().contains(id));
    let grace = Duration::from_secs(3);
    let settings = DanglingConfig {
        enabled: true,
        period: Duration::from_millis(300),
        creation_grace: grace,
        dry_run: true,
    };
    tokio::time::sleep(grace + Duration::from_secs(1)).await;
    let found = reap_once(&docker, "", &settings, tracked.as_ref())
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![old.id.clone()],
        "dry run found other than the old one"
    );
    assert!(
        test_engine::exists(&docker, &old.id).await,
        "dry run removed it"
    );

    let reaper = spawn_reaper(
        docker.clone(),
        String::new(),
        DanglingConfig {
            dry_run: false,
            ..settings
        },
        tracked,
    );
    let young =
        test_engine::create(&docker, &test_engine::unique("reap-young"), &spec(&managed)).await;
    untracked.lock().unwrap().insert(young.id.clone());
    let young_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while test_engine::exists(&docker, &old.id).await {
        assert!(
            Instant::now() < deadline,
            "the old untracked container was not reaped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        test_engine::exists(&docker, &kept.id).await,
        "a tracked container was reaped"
    );
    assert!(
        test_engine::exists(&docker, &unlabelled.id).await,
        "an unlabelled one was reaped"
    );
    while test_engine::exists(&docker, &young.id).await {
        assert!(
            Instant::now() < deadline,
            "the young container was never reaped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `Created` is in whole seconds: the young one lived at least the grace less one.
    assert!(
        young_at.elapsed() >= grace - Duration::from_secs(1),
        "reaped within its grace"
    );
    assert!(test_engine::exists(&docker, &kept.id).await);
    reaper.abort();
}
