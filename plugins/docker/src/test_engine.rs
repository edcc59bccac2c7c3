//! The real engine for this crate's tests: a client negotiated down to the engine's API
//! version, containers of the offline busybox image, and guards that remove them even when a
//! test fails. A missing engine fails the test loudly.

use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};

/// A client of the local engine, its API version negotiated down (the engine is 20.10).
pub(crate) async fn docker() -> Docker {
    Docker::connect_with_local_defaults()
        .expect("cannot reach the docker engine")
        .negotiate_version()
        .await
        .expect("the docker engine does not answer /version")
}

/// A name no other test (of this or a parallel run) uses.
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "drover-test-{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes its container (forcibly) when dropped.
pub(crate) struct ContainerGuard {
    pub(crate) id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        // Drop cannot await: the CLI does the removal, whatever state the runtime is in.
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.id])
            .output();
    }
}

/// What a test container is made of.
pub(crate) struct Spec<'a> {
    pub(crate) image: &'a str,
    pub(crate) cmd: &'a [&'a str],
    pub(crate) tty: bool,
    pub(crate) labels: &'a [(&'a str, &'a str)],
    /// The engine's logging driver (its default, json-file, when `None`).
    pub(crate) log_driver: Option<&'a str>,
}

impl<'a> Spec<'a> {
    /// A container of the busybox test image running `cmd`.
    pub(crate) fn busybox(cmd: &'a [&'a str]) -> Self {
        Spec {
            image: drover_driver_testkit::docker::busybox_image(),
            cmd,
            tty: false,
            labels: &[],
            log_driver: None,
        }
    }
}

/// Creates (not starts) a container named `name` from `spec`.
pub(crate) async fn create(docker: &Docker, name: &str, spec: &Spec<'_>) -> ContainerGuard {
    let labels = spec
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = ContainerCreateBody {
        image: Some(spec.image.to_string()),
        cmd: Some(spec.cmd.iter().map(|s| s.to_string()).collect()),
        tty: Some(spec.tty),
        labels: Some(labels),
        host_config: spec.log_driver.map(|driver| HostConfig {
            log_config: Some(HostConfigLogConfig {
                typ: Some(driver.to_string()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(opts), body)
        .await
        .expect("create a test container");
    ContainerGuard { id: created.id }
}

/// Creates and starts a container named `name` from `spec`.
pub(crate) async fn run(docker: &Docker, name: &str, spec: &Spec<'_>) -> ContainerGuard {
    let guard = create(docker, name, spec).await;
    docker
        .start_container(
            &guard.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .expect("start a test container");
    guard
}

/// Whether the engine still has the container.
pub(crate) async fn exists(docker: &Docker, id: &str) -> bool {
    docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .is_ok()
}

/// Removes a container now (tests that check removal clean up what is left this way too).
pub(crate) async fn remove(docker: &Docker, id: &str) {
    let _ = docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
}
