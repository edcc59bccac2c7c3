//! The example third-party driver, launched by the real host: its tasks run under the SDK's
//! task shim like first-party drivers' tasks, configured through its plugin block.

use std::path::Path;
use std::time::Duration;

use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch};
use drover_proto::driver::{StartTaskRequest, StopTaskRequest, TaskConfig, WaitTaskRequest};

const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-hello-driver");

fn task(id: &str, dir: &Path, config: serde_json::Value) -> TaskConfig {
    let task_dir = dir.join(id.replace('/', "_"));
    std::fs::create_dir_all(&task_dir).unwrap();
    TaskConfig {
        id: id.into(),
        name: "greeter".into(),
        driver_config_json: serde_json::to_vec(&config).unwrap(),
        task_dir: task_dir.display().to_string(),
        stdout_path: task_dir.join("out").display().to_string(),
        stderr_path: task_dir.join("err").display().to_string(),
        ..TaskConfig::default()
    }
}

fn parent_of(pid: i64) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    std::fs::read(format!("/proc/{ppid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_driver_runs_tasks_under_the_shim() {
    let tmp = tempfile::tempdir().unwrap();
    let host = PluginHost::new(HostConfig {
        data_dir: tmp.path().to_path_buf(),
        plugins: vec![PluginLaunch {
            name: "hello".into(),
            command: PLUGIN.into(),
            config_json: serde_json::json!({ "greeting": "Howdy" }),
            ..PluginLaunch::default()
        }],
        ..HostConfig::default()
    });
    assert_eq!(host.info("hello").await.unwrap().name, "hello");
    let mut d = host.driver("hello").await.unwrap();

    // A finite task: greets three times and exits with its configured code.
    let t = task(
        "a/greeter/0",
        tmp.path(),
        serde_json::json!({ "name": "world", "count": 3, "interval_ms": 10, "exit_code": 7 }),
    );
    let out = std::path::PathBuf::from(&t.stdout_path);
    d.start_task(StartTaskRequest { task: Some(t) })
        .await
        .unwrap();
    let exit = d
        .wait_task(WaitTaskRequest {
            task_id: "a/greeter/0".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(exit.exit_code, 7, "{exit:?}");
    let log = std::fs::read_to_string(format!("{}.0", out.display())).unwrap();
    assert_eq!(
        log,
        "Howdy, world! (1)\nHowdy, world! (2)\nHowdy, world! (3)\n"
    );

    // A long one: its parent is a task shim, and SIGTERM ends it.
    let t = task(
        "b/greeter/0",
        tmp.path(),
        serde_json::json!({ "name": "shim", "interval_ms": 50 }),
    );
    let pid = d
        .start_task(StartTaskRequest { task: Some(t) })
        .await
        .unwrap()
        .into_inner()
        .pid;
    let parent = parent_of(pid);
    assert!(parent.contains("task-shim"), "parent: {parent}");
    d.stop_task(StopTaskRequest {
        task_id: "b/greeter/0".into(),
        signal: "SIGTERM".into(),
        timeout_ms: 5000,
    })
    .await
    .unwrap();
    let exit = d
        .wait_task(WaitTaskRequest {
            task_id: "b/greeter/0".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(exit.signal, libc::SIGTERM, "{exit:?}");

    // Its config block is checked against its schema.
    let bad = PluginHost::new(HostConfig {
        data_dir: tmp.path().to_path_buf(),
        plugins: vec![PluginLaunch {
            name: "hello".into(),
            command: PLUGIN.into(),
            config_json: serde_json::json!({ "greting": "typo" }),
            ..PluginLaunch::default()
        }],
        handshake_timeout: Duration::from_secs(20),
        ..HostConfig::default()
    });
    let e = bad.driver("hello").await.unwrap_err().to_string();
    assert!(e.contains("unknown key \"greting\""), "{e}");
    bad.shutdown().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_stream_and_capabilities_are_cached_per_launch() {
    let tmp = tempfile::tempdir().unwrap();
    let host = PluginHost::new(HostConfig {
        data_dir: tmp.path().to_path_buf(),
        plugins: vec![PluginLaunch {
            name: "hello".into(),
            command: PLUGIN.into(),
            ..PluginLaunch::default()
        }],
        ..HostConfig::default()
    });
    let caps = host.capabilities("hello").await.unwrap();
    assert_eq!(caps.fs_isolation, "none");
    assert!(caps.send_signals);
    let pid = host.plugin_pid("hello").await.unwrap();
    assert_eq!(host.capabilities("hello").await.unwrap(), caps);
    assert_eq!(
        host.plugin_pid("hello").await,
        Some(pid),
        "asked, not relaunched"
    );

    // The driver's events stream: what it reports while starting a task.
    let mut d = host.driver("hello").await.unwrap();
    let mut events = d
        .task_events(drover_proto::driver::TaskEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut t = task(
        "c/greeter/0",
        tmp.path(),
        serde_json::json!({ "name": "events", "count": 1, "interval_ms": 10 }),
    );
    t.alloc_id = "c".into();
    d.start_task(StartTaskRequest { task: Some(t) })
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), events.message())
        .await
        .expect("an event within 20s")
        .unwrap()
        .expect("the stream stays open");
    assert_eq!(
        (
            e.alloc_id.as_str(),
            e.task_name.as_str(),
            e.task_id.as_str()
        ),
        ("c", "greeter", "c/greeter/0")
    );
    assert_eq!(e.message, "Preparing to greet events");
    d.wait_task(WaitTaskRequest {
        task_id: "c/greeter/0".into(),
    })
    .await
    .unwrap();

    // A relaunched plugin is asked again (and answers the same).
    // SAFETY: kill(2).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let again = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(c) = host.capabilities("hello").await
                && host.plugin_pid("hello").await.is_some_and(|p| p != pid)
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the plugin is relaunched");
    assert_eq!(again, caps);
    host.shutdown().await;
}
