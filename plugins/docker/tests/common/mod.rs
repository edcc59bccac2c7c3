//! What the docker driver's end-to-end tests share: the real plugin binary under the real
//! host, tasks with their directories, and cleanup of the containers a test made.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

pub use drover_driver_testkit::docker::{self as images, RemoveContainers, docker};
use drover_driver_testkit::{self as testkit, Driver};
use drover_plugin_host::PluginHost;
use drover_proto::driver::{
    FingerprintRequest, FingerprintResponse, HealthState, PortMapping, Resources, StartTaskRequest,
    StartTaskResponse, TaskConfig, TaskEvent, TaskEventsRequest,
};
use tokio_stream::StreamExt;

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-docker");

/// Fails loudly when the engine is missing: these tests never skip.
pub fn require_engine() {
    docker(&["version", "--format", "{{.Server.APIVersion}}"]);
}

pub fn host(data_dir: &Path, config: serde_json::Value) -> PluginHost {
    require_engine();
    PluginHost::new(testkit::host_config(
        data_dir,
        "docker",
        Path::new(PLUGIN),
        config,
    ))
}

/// A host whose docker plugin believes it runs on node `node`.
pub fn host_on(data_dir: &Path, node: &str, config: serde_json::Value) -> PluginHost {
    require_engine();
    let mut cfg = testkit::host_config(data_dir, "docker", Path::new(PLUGIN), config);
    cfg.node_id = node.to_string();
    PluginHost::new(cfg)
}

pub fn driver(host: &PluginHost) -> Driver<'_> {
    Driver {
        host,
        name: "docker",
    }
}

/// A unique task id for this test run: `<test>-<pid>/<name>/0`.
pub fn task_id(test: &str, name: &str) -> String {
    format!("{test}-{}/{name}/0", std::process::id())
}

/// A task in `<dir>/<name>/` with its local/, secrets/ and a shared alloc/.
pub fn task(id: &str, dir: &Path, config: serde_json::Value) -> TaskConfig {
    let mut parts = id.split('/');
    let alloc_id = parts.next().unwrap_or("alloc").to_string();
    let name = parts.next().unwrap_or("web").to_string();
    let task_dir = dir.join(&name);
    for d in ["local", "secrets"] {
        std::fs::create_dir_all(task_dir.join(d)).unwrap();
    }
    let alloc = dir.join("alloc");
    std::fs::create_dir_all(alloc.join("logs")).unwrap();
    TaskConfig {
        id: id.into(),
        name: name.clone(),
        alloc_id,
        job_name: "job".into(),
        group_name: "group".into(),
        driver_config_json: serde_json::to_vec(&config).unwrap(),
        env: [
            ("PATH".to_string(), "/bin".to_string()),
            (
                "NOMAD_TASK_DIR".to_string(),
                task_dir.join("local").display().to_string(),
            ),
            ("NOMAD_ALLOC_DIR".to_string(), alloc.display().to_string()),
        ]
        .into_iter()
        .collect(),
        resources: Some(Resources {
            cpu_mhz: 100,
            memory_mb: 64,
            ..Default::default()
        }),
        task_dir: task_dir.display().to_string(),
        alloc_dir: alloc.display().to_string(),
        stdout_path: alloc
            .join(format!("logs/{name}.stdout"))
            .display()
            .to_string(),
        stderr_path: alloc
            .join(format!("logs/{name}.stderr"))
            .display()
            .to_string(),
        ..TaskConfig::default()
    }
}

/// A busybox task running `sh -c script`.
pub fn sh(script: &str) -> serde_json::Value {
    serde_json::json!({
        "image": images::busybox_image(),
        "command": "/bin/sh",
        "args": ["-c", script],
    })
}

/// StartTask, returning the error's status on failure.
pub async fn try_start(
    host: &PluginHost,
    t: TaskConfig,
) -> Result<StartTaskResponse, tonic::Status> {
    host.driver("docker")
        .await
        .unwrap()
        .start_task(StartTaskRequest { task: Some(t) })
        .await
        .map(|r| r.into_inner())
}

/// Waits (at most 60 s) for the task's exit.
pub async fn wait(host: &PluginHost, id: &str) -> drover_proto::driver::ExitResult {
    tokio::time::timeout(Duration::from_secs(60), driver(host).wait(id))
        .await
        .expect("the task ends within 60s")
}

/// The fingerprint once `pred` holds for it (at most `timeout`).
pub async fn fingerprint_until(
    host: &PluginHost,
    timeout: Duration,
    pred: impl Fn(&FingerprintResponse) -> bool,
) -> FingerprintResponse {
    let mut stream = host
        .driver("docker")
        .await
        .unwrap()
        .fingerprint(FingerprintRequest {})
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        match next {
            Ok(Some(Ok(fp))) => {
                if pred(&fp) {
                    return fp;
                }
                last = Some(fp);
            }
            Ok(other) => panic!("the fingerprint stream ended: {other:?}"),
            Err(_) => panic!("timed out waiting for the fingerprint; last: {last:?}"),
        }
    }
}

pub fn healthy(fp: &FingerprintResponse) -> bool {
    fp.health == HealthState::Healthy as i32
}

pub fn unhealthy(fp: &FingerprintResponse) -> bool {
    fp.health == HealthState::Unhealthy as i32
}

/// The driver's task events, from now on.
pub async fn events(host: &PluginHost) -> tonic::Streaming<TaskEvent> {
    host.driver("docker")
        .await
        .unwrap()
        .task_events(TaskEventsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The messages of the events that arrive within `window`.
pub async fn messages_within(
    stream: &mut tonic::Streaming<TaskEvent>,
    task_id: &str,
    window: Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(e))) = tokio::time::timeout_at(deadline, stream.next()).await {
        if e.task_id == task_id {
            out.push(e.message);
        }
    }
    out
}

/// `docker inspect -f <format> <container>`.
pub fn inspect(container: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, container])
        .trim()
        .to_string()
}

/// The container id in a StartTask's handle.
pub fn container_id(started: &StartTaskResponse) -> String {
    let state: serde_json::Value =
        serde_json::from_slice(&started.handle.as_ref().unwrap().driver_state).unwrap();
    state["container_id"].as_str().unwrap().to_string()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> i32 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port() as i32
}

pub fn port(label: &str, value: i32, to: i32) -> PortMapping {
    PortMapping {
        label: label.into(),
        value,
        to,
        host_ip: "127.0.0.1".into(),
    }
}

/// Removes an image tag whatever the test's outcome.
pub struct RemoveImage(pub String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", &self.0])
            .output();
    }
}
