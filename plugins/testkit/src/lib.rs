//! What the task drivers' end-to-end tests share (a dev-dependency of plugins/raw_exec,
//! plugins/exec and plugins/docker): the real host running one real plugin binary, starting
//! a task and waiting for its exit through it, watching the processes a task leaves, network
//! namespaces made with `ip netns` ([`netns`]), and offline docker images ([`docker`]).

pub mod docker;
pub mod netns;

pub use netns::NetNs;

use std::path::Path;
use std::time::{Duration, Instant};

use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch};
use drover_proto::driver::{
    ExitResult, StartTaskRequest, StartTaskResponse, TaskHandle, WaitTaskRequest,
};

/// A host configuration that runs `command` as the plugin `name` with `config` as its
/// plugin block (20 s to hand shake, 3 s to stop).
pub fn host_config(
    data_dir: &Path,
    name: &str,
    command: &Path,
    config: serde_json::Value,
) -> HostConfig {
    HostConfig {
        data_dir: data_dir.to_path_buf(),
        node_id: "node-1".into(),
        plugins: vec![PluginLaunch {
            name: name.into(),
            command: command.to_path_buf(),
            args: vec![],
            config_json: config,
            config_locations: Default::default(),
            inspect_only: false,
        }],
        handshake_timeout: Duration::from_secs(20),
        stop_grace: Duration::from_secs(3),
        ..HostConfig::default()
    }
}

/// A plugin, as seen through its host.
#[derive(Clone, Copy)]
pub struct Driver<'a> {
    pub host: &'a PluginHost,
    pub name: &'a str,
}

impl Driver<'_> {
    /// StartTask; panics on an error.
    pub async fn start(&self, task: drover_proto::driver::TaskConfig) -> StartTaskResponse {
        self.host
            .driver(self.name)
            .await
            .unwrap()
            .start_task(StartTaskRequest { task: Some(task) })
            .await
            .unwrap()
            .into_inner()
    }

    /// WaitTask: the task's exit; panics on an error.
    pub async fn wait(&self, id: &str) -> ExitResult {
        self.host
            .driver(self.name)
            .await
            .unwrap()
            .wait_task(WaitTaskRequest { task_id: id.into() })
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap()
    }

    /// ExecTask without a terminal or input: the command's stdout and stderr and its exit;
    /// panics on an error.
    pub async fn exec(&self, task_id: &str, argv: &[&str]) -> (String, String, ExitResult) {
        use drover_proto::driver::{
            ExecTaskRequest, ExecTaskSetup, exec_task_request, exec_task_response,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(ExecTaskRequest {
            msg: Some(exec_task_request::Msg::Setup(ExecTaskSetup {
                task_id: task_id.into(),
                command: argv.iter().map(|a| a.to_string()).collect(),
                tty: false,
                size: None,
            })),
        })
        .await
        .unwrap();
        let mut session = self
            .host
            .driver(self.name)
            .await
            .unwrap()
            .exec_task(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let (mut out, mut err, mut exit) = (Vec::new(), Vec::new(), None);
        while let Some(m) = session.message().await.unwrap() {
            match m.msg {
                Some(exec_task_response::Msg::Stdout(b)) => out.extend(b),
                Some(exec_task_response::Msg::Stderr(b)) => err.extend(b),
                Some(exec_task_response::Msg::Exited(e)) => exit = Some(e),
                None => {}
            }
        }
        drop(tx);
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
            exit.expect("the exec session ends with the command's exit"),
        )
    }

    /// DestroyTask with force (the task is killed if it still runs); panics on an error.
    pub async fn destroy(&self, id: &str) {
        self.host
            .driver(self.name)
            .await
            .unwrap()
            .destroy_task(drover_proto::driver::DestroyTaskRequest {
                task_id: id.into(),
                force: true,
            })
            .await
            .unwrap();
    }

    /// SIGKILLs the plugin process and waits until the host has noticed; returns its pid.
    pub async fn kill_plugin(&self) -> u32 {
        let pid = self
            .host
            .plugin_pid(self.name)
            .await
            .expect("plugin running");
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.host.plugin_pid(self.name).await.is_some() {
            assert!(
                Instant::now() < deadline,
                "the host did not notice the plugin's death"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pid
    }
}

/// The shim handle a task handle carries, as JSON.
pub fn shim_state(handle: &TaskHandle) -> serde_json::Value {
    serde_json::from_slice(&handle.driver_state).unwrap()
}

/// Field `n` (1-based, as proc(5) numbers them) of `/proc/<pid>/stat`.
pub fn stat_field(pid: i64, n: usize) -> String {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &raw[raw.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(n - 3).unwrap().to_string()
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped).
pub fn is_dead(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(raw) => {
            let after = &raw[raw.rfind(')').unwrap() + 1..];
            after.trim_start().starts_with('Z')
        }
    }
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after `timeout`.
pub async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGKILLs a process when a test ends, even by a failed assertion, so a failing test leaves
/// nothing behind: `group` kills the process group it leads (an unisolated task), else the
/// process alone (an isolated task's init, whose pid namespace dies with it).
pub struct KillOnDrop {
    pub pid: i64,
    pub group: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = if self.group { -self.pid } else { self.pid };
        // SAFETY: kill(2) of a process (group) the test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}
