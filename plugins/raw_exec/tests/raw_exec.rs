//! raw_exec end to end: the real plugin binary, launched by the real host, running real tasks
//! under real shims. These tests kill processes and expect to be able to (they run as root in CI).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_driver_testkit::{
    self as testkit, Driver, KillOnDrop, is_dead, shim_state, stat_field, until,
};
use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch};
use drover_proto::driver::{
    InspectTaskRequest, RecoverTaskRequest, StartTaskRequest, StartTaskResponse, StopTaskRequest,
    TaskConfig, WaitTaskRequest,
};
use serde_json::json;

const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-raw-exec");

fn host_config(data_dir: &Path, command: &Path) -> HostConfig {
    testkit::host_config(data_dir, "raw_exec", command, json!({ "enabled": true }))
}

fn host(data_dir: &Path) -> PluginHost {
    PluginHost::new(host_config(data_dir, Path::new(PLUGIN)))
}

fn raw_exec(host: &PluginHost) -> Driver<'_> {
    Driver {
        host,
        name: "raw_exec",
    }
}

fn task(id: &str, dir: &Path, command: &str, args: &[&str]) -> TaskConfig {
    let task_dir = dir.join("task");
    std::fs::create_dir_all(&task_dir).unwrap();
    TaskConfig {
        id: id.into(),
        name: "web".into(),
        alloc_id: "alloc-1".into(),
        driver_config_json: serde_json::to_vec(&json!({ "command": command, "args": args }))
            .unwrap(),
        env: [("PATH".to_string(), "/usr/bin:/bin".to_string())]
            .into_iter()
            .collect(),
        task_dir: task_dir.to_string_lossy().into_owned(),
        stdout_path: dir.join("logs/web.stdout").to_string_lossy().into_owned(),
        stderr_path: dir.join("logs/web.stderr").to_string_lossy().into_owned(),
        ..TaskConfig::default()
    }
}

async fn start(host: &PluginHost, t: TaskConfig) -> StartTaskResponse {
    raw_exec(host).start(t).await
}

async fn wait(host: &PluginHost, id: &str) -> drover_proto::driver::ExitResult {
    raw_exec(host).wait(id).await
}

async fn kill_plugin(host: &PluginHost) -> u32 {
    raw_exec(host).kill_plugin().await
}

/// Kills a task's process group when a test ends, even by a failed assertion, so a failing
/// test leaves no task behind.
fn kill_group_on_drop(pid: i64) -> KillOnDrop {
    KillOnDrop { pid, group: true }
}

/// The shell loop used by tests that decide when the task exits.
fn exit_when(file: &Path) -> String {
    format!(
        "while [ ! -f {} ]; do sleep 0.05; done; exit 42",
        file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_a_task_and_logs_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let info = host.info("raw_exec").await.unwrap();
    assert_eq!(info.name, "raw_exec");
    let started = start(
        &host,
        task(
            "a/web/0",
            tmp.path(),
            "/bin/sh",
            &["-c", "echo hello; echo err >&2; exit 42"],
        ),
    )
    .await;
    assert!(started.pid > 0);
    let result = wait(&host, "a/web/0").await;
    assert_eq!(result.exit_code, 42, "{result:?}");
    assert_eq!(result.signal, 0);
    assert!(result.err.is_empty());
    let out = std::fs::read_to_string(tmp.path().join("logs/web.stdout.0")).unwrap();
    let err = std::fs::read_to_string(tmp.path().join("logs/web.stderr.0")).unwrap();
    assert_eq!(out, "hello\n");
    assert_eq!(err, "err\n");
    // The shim recorded the exit durably.
    let dir = PathBuf::from(
        shim_state(started.handle.as_ref().unwrap())["shim_dir"]
            .as_str()
            .unwrap(),
    );
    let exit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("exit.json")).unwrap()).unwrap();
    assert_eq!(exit["exit"]["exit_code"], 42);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_task_survives_plugin_crash_and_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let file = tmp.path().join("exit-now");
    let started = start(
        &host,
        task("b/web/0", tmp.path(), "/bin/sh", &["-c", &exit_when(&file)]),
    )
    .await;
    let handle = started.handle.clone().unwrap();
    let pid = started.pid;
    let _guard = kill_group_on_drop(pid);

    let plugin_pid = host.plugin_pid("raw_exec").await.unwrap();
    let parent: i64 = stat_field(pid, 4).parse().unwrap();
    assert_ne!(
        parent,
        i64::from(plugin_pid),
        "the task must not be the plugin's child"
    );
    let cmdline = std::fs::read(format!("/proc/{parent}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("task-shim"),
        "the task's parent is {cmdline:?}"
    );
    assert_eq!(shim_state(&handle)["shim_pid"].as_i64().unwrap(), parent);

    let mut driver = host.driver("raw_exec").await.unwrap();
    let before = driver
        .inspect_task(InspectTaskRequest {
            task_id: "b/web/0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.state, "running");
    assert_eq!(before.pid, pid);
    let start_ticks = stat_field(pid, 22);

    // A WaitTask in flight fails when the plugin dies: that is the caller's cue to recover.
    let pending = tokio::spawn(async move {
        driver
            .wait_task(WaitTaskRequest {
                task_id: "b/web/0".into(),
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Kill it and, like a task runner would, ask the host again as soon as the RPC fails,
    // without waiting for the host to notice the death on its own.
    let old = host.plugin_pid("raw_exec").await.unwrap();
    // SAFETY: kill(2) on the host's child.
    assert_eq!(unsafe { libc::kill(old as i32, libc::SIGKILL) }, 0);
    let failed = pending.await.unwrap();
    assert!(failed.is_err(), "WaitTask must fail when the plugin dies");
    assert!(!is_dead(pid), "the task died with the plugin");

    let mut driver = host.driver("raw_exec").await.unwrap();
    let new = host.plugin_pid("raw_exec").await.unwrap();
    assert_ne!(old, new);
    driver
        .recover_task(RecoverTaskRequest {
            handle: Some(handle),
        })
        .await
        .unwrap();
    let after = driver
        .inspect_task(InspectTaskRequest {
            task_id: "b/web/0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.state, "running");
    assert_eq!(after.pid, pid);
    assert_eq!(after.started_at_unix_nanos, before.started_at_unix_nanos);
    assert_eq!(stat_field(pid, 22), start_ticks);

    std::fs::write(&file, "").unwrap();
    let result = wait(&host, "b/web/0").await;
    assert_eq!(result.exit_code, 42, "{result:?}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_exit_while_no_plugin_runs_is_read_from_exit_file() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let file = tmp.path().join("exit-now");
    let started = start(
        &host,
        task("c/web/0", tmp.path(), "/bin/sh", &["-c", &exit_when(&file)]),
    )
    .await;
    let handle = started.handle.clone().unwrap();
    let _guard = kill_group_on_drop(started.pid);
    let state = shim_state(&handle);
    let shim_pid = state["shim_pid"].as_i64().unwrap();
    let shim_dir = PathBuf::from(state["shim_dir"].as_str().unwrap());

    kill_plugin(&host).await;
    std::fs::write(&file, "").unwrap();
    until("the task to exit", Duration::from_secs(10), || {
        is_dead(started.pid)
    })
    .await;
    until("the shim to exit", Duration::from_secs(15), || {
        is_dead(shim_pid)
    })
    .await;
    assert!(shim_dir.join("exit.json").exists());
    assert!(!shim_dir.join("shim.sock").exists());

    let mut driver = host.driver("raw_exec").await.unwrap();
    driver
        .recover_task(RecoverTaskRequest {
            handle: Some(handle),
        })
        .await
        .unwrap();
    let result = wait(&host, "c/web/0").await;
    assert_eq!(result.exit_code, 42, "{result:?}");
    assert!(result.err.is_empty(), "{result:?}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_stop_escalates_to_sigkill_after_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let ready = tmp.path().join("ready");
    let script = format!(
        "trap '' TERM; touch {}; while true; do sleep 0.05; done",
        ready.display()
    );
    let stubborn = start(
        &host,
        task("d/stubborn/0", tmp.path(), "/bin/sh", &["-c", &script]),
    )
    .await;
    let _guard = kill_group_on_drop(stubborn.pid);
    until("the trap to be set", Duration::from_secs(10), || {
        ready.exists()
    })
    .await;
    let t0 = Instant::now();
    host.driver("raw_exec")
        .await
        .unwrap()
        .stop_task(StopTaskRequest {
            task_id: "d/stubborn/0".into(),
            signal: "SIGTERM".into(),
            timeout_ms: 500,
        })
        .await
        .unwrap();
    let result = wait(&host, "d/stubborn/0").await;
    assert_eq!(result.signal, 9, "{result:?}");
    assert_eq!(result.exit_code, 128 + 9);
    assert!(t0.elapsed() >= Duration::from_millis(450));

    let sleeper = start(&host, task("d/sleep/0", tmp.path(), "sleep", &["1000"])).await;
    let _guard2 = kill_group_on_drop(sleeper.pid);
    host.driver("raw_exec")
        .await
        .unwrap()
        .stop_task(StopTaskRequest {
            task_id: "d/sleep/0".into(),
            signal: "SIGTERM".into(),
            timeout_ms: 10_000,
        })
        .await
        .unwrap();
    let result = wait(&host, "d/sleep/0").await;
    assert_eq!(result.signal, 15, "{result:?}");
    host.shutdown().await;
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn launch_error(dir: &Path, plugin: &Path, timeout: Duration) -> String {
    let mut config = host_config(dir, plugin);
    config.handshake_timeout = timeout;
    let host = PluginHost::new(config);
    let err = host
        .driver("raw_exec")
        .await
        .expect_err("the launch must fail")
        .to_string();
    assert!(
        err.contains(&plugin.display().to_string()),
        "the error must name the file: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_bad_handshakes_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Duration::from_secs(10);

    let garbage = script(
        tmp.path(),
        "garbage",
        "echo 'hello there, I am not a plugin'; sleep 5",
    );
    let err = launch_error(tmp.path(), &garbage, t).await;
    assert!(
        err.contains("bad handshake") && err.contains("hello there"),
        "{err}"
    );

    let early = script(
        tmp.path(),
        "early",
        "echo 'boom: the config file is missing' >&2; exit 3",
    );
    let err = launch_error(tmp.path(), &early, t).await;
    assert!(
        err.contains("exited before completing the handshake"),
        "{err}"
    );
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("boom: the config file is missing"), "{err}");

    let silent = script(tmp.path(), "silent", "echo 'still thinking' >&2; sleep 30");
    let t0 = Instant::now();
    let err = launch_error(tmp.path(), &silent, Duration::from_millis(500)).await;
    assert!(
        err.contains("did not print its handshake line within 500ms"),
        "{err}"
    );
    assert!(err.contains("still thinking"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));

    let version = script(
        tmp.path(),
        "version",
        "echo '1|7|unix|/tmp/x.sock|grpc|'; sleep 5",
    );
    let err = launch_error(tmp.path(), &version, t).await;
    assert!(err.contains("protocol version 7"), "{err}");

    let tcp = script(
        tmp.path(),
        "tcp",
        "echo '1|1|tcp|127.0.0.1:1234|grpc|'; sleep 5",
    );
    let err = launch_error(tmp.path(), &tcp, t).await;
    assert!(err.contains("unix socket"), "{err}");
}

#[test]
fn e_running_the_plugin_by_hand_explains_itself() {
    let out = std::process::Command::new(PLUGIN)
        .env_remove("DROVER_PLUGIN_MAGIC_COOKIE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "This binary is a Drover plugin; it is started by the drover agent, not by hand"
        ),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_exec_failure_names_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let mut driver = host.driver("raw_exec").await.unwrap();
    for (cmd, expected) in [
        (
            "/nonexistent/bin/x",
            "executable not found: /nonexistent/bin/x",
        ),
        (
            "no-such-command-xyz",
            "executable not found: no-such-command-xyz",
        ),
    ] {
        let err = driver
            .start_task(StartTaskRequest {
                task: Some(task("f/web/0", tmp.path(), cmd, &[])),
            })
            .await
            .expect_err("StartTask must fail");
        assert!(err.message().contains(expected), "{}", err.message());
    }
    let not_exec = script(tmp.path(), "not-exec", "true");
    std::fs::write(&not_exec, "plain text").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = driver
        .start_task(StartTaskRequest {
            task: Some(task("f/web/1", tmp.path(), not_exec.to_str().unwrap(), &[])),
        })
        .await
        .expect_err("StartTask must fail");
    assert!(
        err.message().contains("permission denied"),
        "{}",
        err.message()
    );

    // No state directory is left behind by failed starts.
    let shims = std::fs::read_dir(tmp.path().join("shims")).unwrap().count();
    assert_eq!(shims, 0);

    // A missing command in the task config is explained.
    let mut t = task("f/web/2", tmp.path(), "x", &[]);
    t.driver_config_json = br#"{"args":["a"]}"#.to_vec();
    let err = driver
        .start_task(StartTaskRequest { task: Some(t) })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("needs \"command\""),
        "{}",
        err.message()
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_raw_exec_refuses_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = host_config(tmp.path(), Path::new(PLUGIN));
    config.plugins[0].config_json = json!({});
    let host = PluginHost::new(config);
    let err = host
        .driver("raw_exec")
        .await
        .unwrap()
        .start_task(StartTaskRequest {
            task: Some(task("g/web/0", tmp.path(), "/bin/true", &[])),
        })
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("raw_exec is disabled: set enabled = true"),
        "{}",
        err.message()
    );
    host.shutdown().await;
}

#[tokio::test]
async fn g_stats_stream_and_exec_inside_a_running_task() {
    use drover_proto::driver::{
        ExecTaskRequest, ExecTaskSetup, TaskStatsRequest, exec_task_request, exec_task_response,
    };
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path());
    let mut t = task(
        "g/web/0",
        tmp.path(),
        "/bin/sh",
        &["-c", "while :; do :; done"],
    );
    t.env.insert("GREETING".into(), "from-the-task".into());
    start(&host, t).await;
    let mut driver = host.driver("raw_exec").await.unwrap();
    assert!(
        driver
            .capabilities(drover_proto::driver::CapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner()
            .exec
    );

    // Two samples of a busy loop: the second carries a CPU percentage derived from the first.
    let mut stats = driver
        .task_stats(TaskStatsRequest {
            task_id: "g/web/0".into(),
            interval_ms: 300,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stats.message().await.unwrap().unwrap();
    assert!(first.memory.unwrap().rss > 0);
    let second = stats.message().await.unwrap().unwrap();
    let cpu = second.cpu.unwrap();
    assert!(cpu.percent > 5.0, "a busy loop uses CPU: {cpu:?}");
    assert!(cpu.measured.iter().any(|m| m == "Percent"));

    // Exec runs in the task's directory with the task's environment, stdin included.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let msg = |m| ExecTaskRequest { msg: Some(m) };
    tx.send(msg(exec_task_request::Msg::Setup(ExecTaskSetup {
        task_id: "g/web/0".into(),
        command: [
            "sh",
            "-c",
            "read line; echo \"$GREETING $line $(pwd)\"; exit 7",
        ]
        .map(String::from)
        .to_vec(),
        tty: false,
        size: None,
    })))
    .await
    .unwrap();
    tx.send(msg(exec_task_request::Msg::Stdin(b"and-stdin\n".to_vec())))
        .await
        .unwrap();
    let mut out = driver
        .exec_task(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut stdout = Vec::new();
    let mut exit = None;
    while let Some(m) = out.message().await.unwrap() {
        match m.msg.unwrap() {
            exec_task_response::Msg::Stdout(b) => stdout.extend(b),
            exec_task_response::Msg::Stderr(_) => {}
            exec_task_response::Msg::Exited(e) => exit = Some(e),
        }
    }
    drop(tx);
    let task_dir = tmp.path().join("task");
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        format!("from-the-task and-stdin {}\n", task_dir.display())
    );
    assert_eq!(exit.unwrap().exit_code, 7);

    // A caller that goes away takes its command along.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(msg(exec_task_request::Msg::Setup(ExecTaskSetup {
        task_id: "g/web/0".into(),
        command: ["sh", "-c", "echo $$; exec sleep 1000"]
            .map(String::from)
            .to_vec(),
        tty: false,
        size: None,
    })))
    .await
    .unwrap();
    let mut out = driver
        .exec_task(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let pid: i32 = match out.message().await.unwrap().unwrap().msg.unwrap() {
        exec_task_response::Msg::Stdout(b) => String::from_utf8_lossy(&b).trim().parse().unwrap(),
        other => panic!("expected the pid, got {other:?}"),
    };
    assert!(!is_dead(pid as i64));
    drop(out);
    drop(tx);
    until(
        "the abandoned exec command to die",
        Duration::from_secs(10),
        || is_dead(pid as i64),
    )
    .await;

    // Exec of an unknown task is an error that names it.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(msg(exec_task_request::Msg::Setup(ExecTaskSetup {
        task_id: "nope".into(),
        command: vec!["true".into()],
        ..Default::default()
    })))
    .await
    .unwrap();
    let mut out = driver
        .exec_task(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = out.message().await.unwrap_err();
    assert!(err.message().contains("nope"), "{err}");

    driver
        .stop_task(StopTaskRequest {
            task_id: "g/web/0".into(),
            signal: "SIGKILL".into(),
            timeout_ms: 0,
        })
        .await
        .unwrap();
    wait(&host, "g/web/0").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_supervision_restarts_a_killed_plugin_and_flags_a_crash_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let crasher = script(tmp.path(), "crasher", "echo 'about to die' >&2; exit 3");
    let mut config = host_config(tmp.path(), Path::new(PLUGIN));
    config.max_backoff = Duration::from_millis(400);
    config.plugins.push(PluginLaunch {
        name: "crasher".into(),
        command: crasher.clone(),
        ..PluginLaunch::default()
    });
    let host = std::sync::Arc::new(PluginHost::new(config));
    // A plugin that cannot start is not a configuration error: the host starts anyway.
    host.start_all().await.unwrap();
    host.supervise(Duration::from_millis(100));
    let status = |name: &str, all: &[drover_plugin_host::PluginStatus]| {
        all.iter().find(|p| p.name == name).cloned().unwrap()
    };

    let all = host.status().await;
    let raw = status("raw_exec", &all);
    assert_eq!(
        (raw.state.as_str(), raw.healthy),
        ("running", true),
        "{raw:?}"
    );
    assert_eq!(
        (raw.kind.as_str(), raw.transport.as_str()),
        ("driver", "grpc")
    );
    assert_eq!(raw.restarts, 0);

    // kill -9: supervision relaunches it without anyone asking for the driver.
    let old = raw.pid.unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(old as i32, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let raw = status("raw_exec", &host.status().await);
        if raw.state == "running" && raw.pid.is_some_and(|p| p != old) {
            assert_eq!(raw.restarts, 1, "{raw:?}");
            break;
        }
        assert!(Instant::now() < deadline, "not relaunched: {raw:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The crasher keeps failing: crash-looping, unhealthy, its stderr in the last error.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = status("crasher", &host.status().await);
        if c.state == "crash-looping" && c.restarts >= 3 {
            assert!(!c.healthy);
            let err = c.last_error.unwrap_or_default();
            assert!(err.contains("about to die"), "{err}");
            assert!(err.contains(&crasher.display().to_string()), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "no crash loop seen: {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and the healthy plugin is untouched by it.
    assert!(status("raw_exec", &host.status().await).healthy);
    host.shutdown().await;
}
