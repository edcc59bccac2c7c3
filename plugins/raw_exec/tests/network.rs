//! raw_exec in a group with its own network: the task and `alloc exec` commands run in the
//! allocation's network namespace (a real one, made here with `ip netns`), and a namespace
//! that is not there fails the start with its path. Root only (CI runs as root).

use std::path::Path;
use std::time::Duration;

use drover_driver_testkit::{self as testkit, Driver, NetNs, until};
use drover_plugin_host::PluginHost;
use drover_proto::driver::{StartTaskRequest, StopTaskRequest, TaskConfig};
use serde_json::json;

const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-raw-exec");

/// What a process sees: its network namespace and the interfaces in it.
const PROBE: &str = "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '; echo";

fn task(id: &str, dir: &Path, script: &str, netns: &str) -> TaskConfig {
    let task_dir = dir.join("task");
    std::fs::create_dir_all(&task_dir).unwrap();
    TaskConfig {
        id: id.into(),
        name: "web".into(),
        alloc_id: "alloc-net".into(),
        driver_config_json: serde_json::to_vec(
            &json!({ "command": "/bin/sh", "args": ["-c", script] }),
        )
        .unwrap(),
        env: [("PATH".to_string(), "/usr/bin:/bin".to_string())]
            .into_iter()
            .collect(),
        task_dir: task_dir.to_string_lossy().into_owned(),
        stdout_path: dir.join("logs/web.stdout").to_string_lossy().into_owned(),
        stderr_path: dir.join("logs/web.stderr").to_string_lossy().into_owned(),
        network_ns_path: netns.into(),
        ..TaskConfig::default()
    }
}

fn host(dir: &Path) -> PluginHost {
    PluginHost::new(testkit::host_config(
        dir,
        "raw_exec",
        Path::new(PLUGIN),
        json!({ "enabled": true }),
    ))
}

fn host_namespace() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_and_its_exec_sessions_run_in_the_allocations_namespace() {
    let ns = NetNs::new(&format!("drover-rawexec-{}", std::process::id())).with_bridge("drvtest0");
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let raw_exec = Driver {
        host: &host,
        name: "raw_exec",
    };
    let script = format!("{PROBE}; exec sleep 1000");
    let started = raw_exec
        .start(task("n/web/0", tmp.path(), &script, &ns.path()))
        .await;
    let _kill = testkit::KillOnDrop {
        pid: started.pid,
        group: true,
    };
    let stdout = tmp.path().join("logs/web.stdout.0");
    until("the task's probe", Duration::from_secs(10), || {
        // Two whole lines: the second is written in pieces.
        std::fs::read_to_string(&stdout).is_ok_and(|s| s.lines().count() >= 2 && s.ends_with('\n'))
    })
    .await;
    let seen = std::fs::read_to_string(&stdout).unwrap();
    let expected = format!("{}\ndrvtest0 lo \n", ns.link());
    assert_eq!(
        seen, expected,
        "the task sees only the namespace's interfaces"
    );
    assert_ne!(ns.link(), host_namespace());

    // An exec session into the task runs in the same namespace.
    let (out, err, exit) = raw_exec.exec("n/web/0", &["sh", "-c", PROBE]).await;
    assert_eq!(exit.exit_code, 0, "{err}");
    assert_eq!(out, expected);

    let mut driver = host.driver("raw_exec").await.unwrap();
    driver
        .stop_task(StopTaskRequest {
            task_id: "n/web/0".into(),
            signal: "SIGKILL".into(),
            timeout_ms: 0,
        })
        .await
        .unwrap();
    raw_exec.wait("n/web/0").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_namespace_fails_the_start_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let mut driver = host.driver("raw_exec").await.unwrap();
    let missing = "/var/run/netns/drover-no-such-alloc";
    let err = driver
        .start_task(StartTaskRequest {
            task: Some(task("m/web/0", tmp.path(), "exit 0", missing)),
        })
        .await
        .expect_err("a missing namespace must fail the start");
    assert!(
        err.message().contains(
            "cannot open the allocation's network namespace /var/run/netns/drover-no-such-alloc"
        ),
        "{}",
        err.message()
    );
    // A file that is not a network namespace: the kernel refuses to join it.
    let not_ns = tmp.path().join("not-a-namespace");
    std::fs::write(&not_ns, "").unwrap();
    let err = driver
        .start_task(StartTaskRequest {
            task: Some(task(
                "m/web/1",
                tmp.path(),
                "exit 0",
                not_ns.to_str().unwrap(),
            )),
        })
        .await
        .expect_err("a file that is no namespace must fail the start");
    assert!(
        err.message().contains("is not a network namespace")
            && err.message().contains("not-a-namespace"),
        "{}",
        err.message()
    );
    host.shutdown().await;
}
