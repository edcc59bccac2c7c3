//! exec end to end: the real plugin binary, launched by the real host, running real isolated
//! tasks (namespaces, cgroups, bind mounts) under real shims. Root only: they run as root in
//! CI, and fail loudly — never skip — without it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use drover_driver_testkit::{self as testkit, Driver, KillOnDrop, NetNs, stat_field, until};
use drover_plugin_host::PluginHost;
use drover_proto::driver::{
    ExecTaskRequest, ExecTaskSetup, ExitResult, InspectTaskRequest, RecoverTaskRequest, Resources,
    SignalTaskRequest, StartTaskRequest, StartTaskResponse, StopTaskRequest, TaskConfig,
    TaskStatsRequest, exec_task_request, exec_task_response,
};
use serde_json::json;

const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-exec");

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the exec driver's tests need root (namespaces, cgroups, mounts): run them as root"
    );
}

fn host(data_dir: &Path, config: serde_json::Value) -> PluginHost {
    require_root();
    PluginHost::new(testkit::host_config(
        data_dir,
        "exec",
        Path::new(PLUGIN),
        config,
    ))
}

fn exec(host: &PluginHost) -> Driver<'_> {
    Driver { host, name: "exec" }
}

/// A task in `<dir>/<name>/` with its local/, secrets/, tmp/ and a shared alloc/.
fn task(id: &str, dir: &Path, config: serde_json::Value) -> TaskConfig {
    let name = id.split('/').nth(1).unwrap_or("web");
    let task_dir = dir.join(name);
    for d in ["local", "secrets", "tmp"] {
        std::fs::create_dir_all(task_dir.join(d)).unwrap();
    }
    std::fs::set_permissions(
        task_dir.join("tmp"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    let alloc = dir.join("alloc");
    std::fs::create_dir_all(alloc.join("logs")).unwrap();
    TaskConfig {
        id: id.into(),
        name: name.into(),
        alloc_id: "alloc-1".into(),
        driver_config_json: serde_json::to_vec(&config).unwrap(),
        env: [
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            (
                "NOMAD_TASK_DIR".to_string(),
                task_dir.join("local").display().to_string(),
            ),
        ]
        .into_iter()
        .collect(),
        resources: Some(Resources {
            cpu_mhz: 100,
            memory_mb: 64,
            memory_max_mb: 0,
            cores: 0,
            core_ids: vec![],
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

/// The capability mask (as /proc/<pid>/status prints it) of the default set.
fn default_caps_mask() -> String {
    use drover_plugin_sdk::shim::isolate::caps;
    let names: Vec<String> = caps::DEFAULT.iter().map(|s| s.to_string()).collect();
    let mask = caps::numbers(&names)
        .unwrap()
        .into_iter()
        .fold(0u64, |m, c| m | (1 << c));
    format!("{mask:016x}")
}

/// The value of `key:` in the status lines a task printed.
fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

fn sh(script: &str) -> serde_json::Value {
    json!({ "command": "/bin/sh", "args": ["-c", script] })
}

async fn start(host: &PluginHost, t: TaskConfig) -> StartTaskResponse {
    exec(host).start(t).await
}

async fn wait(host: &PluginHost, id: &str) -> ExitResult {
    exec(host).wait(id).await
}

fn output(dir: &Path, name: &str) -> (String, String) {
    let read = |s: &str| {
        std::fs::read_to_string(dir.join(format!("alloc/logs/{name}.{s}.0"))).unwrap_or_default()
    };
    (read("stdout"), read("stderr"))
}

/// Runs a task to its end; returns its exit, stdout and stderr.
async fn run(host: &PluginHost, dir: &Path, t: TaskConfig) -> (ExitResult, String, String) {
    let id = t.id.clone();
    let name = t.name.clone();
    start(host, t).await;
    let exit = tokio::time::timeout(Duration::from_secs(60), wait(host, &id))
        .await
        .expect("the task ends");
    let (out, err) = output(dir, &name);
    (exit, out, err)
}

/// SIGKILLs a task's init (and so its whole pid namespace) when a test ends.
fn kill_on_drop(pid: i64) -> KillOnDrop {
    KillOnDrop { pid, group: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_sees_only_the_task_as_nobody() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let (exit, out, err) = run(
        &host,
        tmp.path(),
        task(
            "a/web/0",
            tmp.path(),
            sh("sleep 30 & ps -eo pid,user,args; echo ps-exit=$?; id -un; hostname; echo dir=$NOMAD_TASK_DIR; grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status; kill $!"),
        ),
    )
    .await;
    assert_eq!(exit.exit_code, 0, "{exit:?} {out} {err}");
    assert!(out.contains("ps-exit=0"), "{out}\n{err}");
    assert!(out.contains("sleep 30"), "ps lists the task's child: {out}");
    assert!(
        out.contains("/bin/sh -c sleep 30"),
        "ps lists the task: {out}"
    );
    for host_process in ["drover-exec", "plugin serve", "drover agent", "cargo"] {
        assert!(
            !out.contains(host_process),
            "the task sees a host process {host_process:?}: {out}"
        );
    }
    // pid 1 is the shim's init; the task's processes are its children.
    let pid1 = out
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    assert!(pid1.contains("task-shim init"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"nobody"),
        "the default user is nobody: {out}"
    );
    assert!(lines.contains(&"web"), "the host name is the task's: {out}");
    assert!(
        lines.contains(&"dir=/local"),
        "task dirs are paths inside: {out}"
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
    assert_eq!(
        status_field(&out, "CapEff"),
        "0000000000000000",
        "nobody has no capabilities"
    );
    assert_eq!(status_field(&out, "CapBnd"), default_caps_mask());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_cannot_write_the_read_only_root_and_the_hosts_tmp_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(
        tmp.path(),
        json!({ "denied_host_uids": "", "denied_host_gids": "" }),
    );
    let marker = format!("drover-exec-test-{}", std::process::id());
    let mut t = task(
        "b/web/0",
        tmp.path(),
        sh(&format!(
            "touch /usr/drover-x; echo usr=$?; touch /x; echo root=$?; echo hi > /tmp/{marker}; echo tmp=$?; echo hi > /local/f; echo local=$?; id -u; grep -E 'CapEff|CapBnd' /proc/self/status"
        )),
    );
    t.user = "root".into();
    let (exit, out, err) = run(&host, tmp.path(), t).await;
    assert_eq!(exit.exit_code, 0, "{exit:?} {out} {err}");
    assert!(out.contains("usr=1"), "{out}\n{err}");
    assert!(out.contains("root=1"), "{out}\n{err}");
    assert!(err.contains("Read-only file system"), "EROFS: {err}");
    assert!(
        out.contains("tmp=0") && out.contains("local=0"),
        "{out}\n{err}"
    );
    assert!(out.lines().any(|l| l == "0"), "runs as root: {out}");
    assert_eq!(
        status_field(&out, "CapEff"),
        default_caps_mask(),
        "root keeps only the default capabilities"
    );
    assert_eq!(status_field(&out, "CapBnd"), default_caps_mask());
    assert!(!Path::new("/usr/drover-x").exists());
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "the host's /tmp was written"
    );
    assert!(tmp.path().join("web/tmp").join(&marker).exists());
    assert!(tmp.path().join("web/local/f").exists());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_kills_and_says_oom_while_a_plain_sigkill_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let mut t = task(
        "c/hog/0",
        tmp.path(),
        json!({ "command": "/usr/bin/tail", "args": ["/dev/zero"] }),
    );
    t.resources = Some(Resources {
        cpu_mhz: 100,
        memory_mb: 32,
        memory_max_mb: 0,
        cores: 0,
        core_ids: vec![],
    });
    let (exit, out, err) = run(&host, tmp.path(), t).await;
    assert_eq!(exit.signal, 9, "{exit:?} {out} {err}");
    assert!(exit.oom_killed, "an OOM kill is reported as such: {exit:?}");

    let started = start(&host, task("c/web/0", tmp.path(), sh("sleep 1000"))).await;
    let _guard = kill_on_drop(started.pid);
    host.driver("exec")
        .await
        .unwrap()
        .signal_task(SignalTaskRequest {
            task_id: "c/web/0".into(),
            signal: "SIGKILL".into(),
        })
        .await
        .unwrap();
    let exit = wait(&host, "c/web/0").await;
    assert_eq!(exit.signal, 9, "{exit:?}");
    assert!(
        !exit.oom_killed,
        "a SIGKILL under the limit is no OOM: {exit:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pids_limit_holds_and_stats_come_from_the_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({ "pids_limit": 100 }));
    // The inner shell gives up at its first failed fork; the outer one goes on.
    let mut config = sh("sh -c 'for i in $(seq 1 20); do sleep 60 & done'; echo spawned; sleep 60");
    config["pids_limit"] = json!(6);
    let started = start(&host, task("d/web/0", tmp.path(), config)).await;
    let _guard = kill_on_drop(started.pid);
    until("the task to try its forks", Duration::from_secs(10), || {
        output(tmp.path(), "web").0.contains("spawned")
    })
    .await;
    let mut driver = host.driver("exec").await.unwrap();
    let mut stats = driver
        .task_stats(TaskStatsRequest {
            task_id: "d/web/0".into(),
            interval_ms: 200,
        })
        .await
        .unwrap()
        .into_inner();
    let s = stats.message().await.unwrap().unwrap();
    assert!(
        s.pids <= 6 && s.pids >= 2,
        "pids {} under a limit of 6",
        s.pids
    );
    let mem = s.memory.unwrap();
    assert!(
        mem.usage > 0 && mem.measured.iter().any(|m| m == "Usage"),
        "{mem:?}"
    );
    let (_, err) = output(tmp.path(), "web");
    assert!(
        err.to_lowercase().contains("fork"),
        "forks beyond the limit fail: {err}"
    );
    driver
        .stop_task(StopTaskRequest {
            task_id: "d/web/0".into(),
            signal: "SIGTERM".into(),
            timeout_ms: 5000,
        })
        .await
        .unwrap();
    wait(&host, "d/web/0").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_through_init_and_the_task_dies_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let started = start(
        &host,
        task(
            "e/web/0",
            tmp.path(),
            json!({ "command": "sleep", "args": ["1000"] }),
        ),
    )
    .await;
    let _guard = kill_on_drop(started.pid);
    let t0 = Instant::now();
    host.driver("exec")
        .await
        .unwrap()
        .stop_task(StopTaskRequest {
            task_id: "e/web/0".into(),
            signal: "SIGTERM".into(),
            timeout_ms: 60_000,
        })
        .await
        .unwrap();
    let exit = wait(&host, "e/web/0").await;
    assert_eq!(exit.signal, 15, "{exit:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "not the SIGKILL after kill_timeout"
    );
    // The task's cgroups are gone with it.
    let shim: serde_json::Value =
        serde_json::from_slice(&started.handle.unwrap().driver_state).unwrap();
    let id = shim["shim_id"].as_str().unwrap();
    until("the cgroup to be removed", Duration::from_secs(5), || {
        !Path::new("/sys/fs/cgroup/memory/drover").join(id).exists()
    })
    .await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_plugin_leaves_the_task_running_and_reattaches() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let started = start(&host, task("f/web/0", tmp.path(), sh("sleep 1000"))).await;
    let _guard = kill_on_drop(started.pid);
    let handle = started.handle.clone().unwrap();
    let pid = started.pid;
    let start_time = stat_field(pid, 22);

    let plugin_pid = host.plugin_pid("exec").await.unwrap();
    // SAFETY: kill(2) of the plugin the host started.
    assert_eq!(unsafe { libc::kill(plugin_pid as i32, libc::SIGKILL) }, 0);
    until("the host to notice", Duration::from_secs(10), || {
        futures_lite_now(host.plugin_pid("exec")).is_none_or(|p| p != plugin_pid)
    })
    .await;
    assert_eq!(stat_field(pid, 22), start_time, "the same task still runs");

    let mut driver = host.driver("exec").await.unwrap();
    driver
        .recover_task(RecoverTaskRequest {
            handle: Some(handle),
        })
        .await
        .unwrap();
    let info = driver
        .inspect_task(InspectTaskRequest {
            task_id: "f/web/0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, "running");
    assert_eq!(info.pid, pid);
    driver
        .stop_task(StopTaskRequest {
            task_id: "f/web/0".into(),
            signal: "SIGTERM".into(),
            timeout_ms: 5000,
        })
        .await
        .unwrap();
    assert_eq!(wait(&host, "f/web/0").await.signal, 15);
    host.shutdown().await;
}

/// Polls a future once (the host's accessors answer at once).
fn futures_lite_now<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_inside_the_tasks_namespaces() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let mut t = task(
        "g/web/0",
        tmp.path(),
        sh("echo from-task > /local/mark; sleep 1000"),
    );
    t.env.insert("GREETING".into(), "hello".into());
    let started = start(&host, t).await;
    let _guard = kill_on_drop(started.pid);
    until(
        "the task to write its mark",
        Duration::from_secs(10),
        || tmp.path().join("web/local/mark").exists(),
    )
    .await;
    let mut driver = host.driver("exec").await.unwrap();
    let run_exec = |argv: &[&str], stdin: &'static [u8]| {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let mut driver = driver.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let msg = |m| ExecTaskRequest { msg: Some(m) };
            tx.send(msg(exec_task_request::Msg::Setup(ExecTaskSetup {
                task_id: "g/web/0".into(),
                command: argv,
                tty: false,
                size: None,
            })))
            .await
            .unwrap();
            tx.send(msg(exec_task_request::Msg::Stdin(stdin.to_vec())))
                .await
                .unwrap();
            tx.send(msg(exec_task_request::Msg::StdinClose(true)))
                .await
                .unwrap();
            let mut out = driver
                .exec_task(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let (mut stdout, mut stderr, mut exit) = (Vec::new(), Vec::new(), None);
            while let Some(m) = out.message().await.unwrap() {
                match m.msg.unwrap() {
                    exec_task_response::Msg::Stdout(b) => stdout.extend(b),
                    exec_task_response::Msg::Stderr(b) => stderr.extend(b),
                    exec_task_response::Msg::Exited(e) => exit = Some(e),
                }
            }
            drop(tx);
            (
                exit.unwrap(),
                String::from_utf8_lossy(&stdout).into_owned(),
                String::from_utf8_lossy(&stderr).into_owned(),
            )
        }
    };
    let (exit, out, err) = run_exec(
        &[
            "sh",
            "-c",
            "read line; cat /local/mark; echo $GREETING $line; id -un; hostname; ps -eo args; exit 7",
        ],
        b"and-stdin\n",
    )
    .await;
    assert_eq!(exit.exit_code, 7, "{out}\n{err}");
    assert!(out.contains("from-task"), "sees the task's files: {out}");
    assert!(out.contains("hello and-stdin"), "{out}");
    assert!(out.contains("nobody"), "as the task's user: {out}");
    assert!(
        out.lines().any(|l| l == "web"),
        "in the task's uts namespace: {out}"
    );
    assert!(
        out.contains("sleep 1000"),
        "in the task's pid namespace: {out}"
    );
    assert!(!out.contains("drover-exec"), "{out}");
    let (exit, _, err) = run_exec(&["no-such-command-xyz"], b"").await;
    assert_ne!(exit.exit_code, 0);
    assert!(err.contains("no-such-command-xyz"), "{err}");
    drop(driver.clone());
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
async fn launch_errors_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let mut driver = host.driver("exec").await.unwrap();
    let e = driver
        .start_task(StartTaskRequest {
            task: Some(task(
                "h/web/0",
                tmp.path(),
                json!({ "command": "no-such-program" }),
            )),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("no-such-program"), "{e}");
    let mut t = task("h/web/1", tmp.path(), sh("true"));
    t.user = "no-such-user-xyz".into();
    let e = driver
        .start_task(StartTaskRequest { task: Some(t) })
        .await
        .unwrap_err();
    assert!(e.message().contains("no-such-user-xyz"), "{e}");
    let e = driver
        .start_task(StartTaskRequest {
            task: Some(task(
                "h/web/2",
                tmp.path(),
                json!({ "command": "true", "cap_add": ["sys_admin"] }),
            )),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("CAP_SYS_ADMIN"), "{e}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedulers_core_ids_are_the_tasks_cpuset() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let all = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus").unwrap();
    let all = drover_plugin_exec::parse_cpu_list(&all);
    // The node's last core: not the one exec would pick itself (its first free one).
    let last = *all.last().unwrap();
    let mut t = task(
        "k/web/0",
        tmp.path(),
        sh("grep Cpus_allowed_list /proc/self/status; sleep 1000"),
    );
    t.resources = Some(Resources {
        cpu_mhz: 100,
        memory_mb: 64,
        memory_max_mb: 0,
        cores: 1,
        core_ids: vec![last],
    });
    let started = start(&host, t).await;
    let _guard = kill_on_drop(started.pid);
    let shim: serde_json::Value =
        serde_json::from_slice(&started.handle.unwrap().driver_state).unwrap();
    let cpus = std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/cpuset/drover")
            .join(shim["shim_id"].as_str().unwrap())
            .join("cpuset.cpus"),
    )
    .unwrap();
    assert_eq!(cpus.trim(), last.to_string());
    until(
        "the task to print its cpus",
        Duration::from_secs(10),
        || output(tmp.path(), "web").0.contains("Cpus_allowed_list"),
    )
    .await;
    let (out, _) = output(tmp.path(), "web");
    assert_eq!(status_field(&out, "Cpus_allowed_list"), last.to_string());

    // A core the node does not have is refused, not ignored.
    let mut t = task("k/other/0", tmp.path(), sh("true"));
    t.resources = Some(Resources {
        cpu_mhz: 100,
        memory_mb: 64,
        memory_max_mb: 0,
        cores: 1,
        core_ids: vec![4096],
    });
    let e = host
        .driver("exec")
        .await
        .unwrap()
        .start_task(StartTaskRequest { task: Some(t) })
        .await
        .unwrap_err();
    assert!(e.message().contains("core 4096"), "{e}");
    let mut driver = host.driver("exec").await.unwrap();
    driver
        .stop_task(StopTaskRequest {
            task_id: "k/web/0".into(),
            signal: "SIGKILL".into(),
            timeout_ms: 0,
        })
        .await
        .unwrap();
    wait(&host, "k/web/0").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cores_pin_a_task_through_the_cpuset_and_are_not_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let all = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus").unwrap();
    let ncores = drover_plugin_exec::parse_cpu_list(&all).len() as u32;
    let mut t = task(
        "i/web/0",
        tmp.path(),
        sh("grep Cpus_allowed_list /proc/self/status; sleep 1000"),
    );
    t.resources = Some(Resources {
        cpu_mhz: 100,
        memory_mb: 64,
        memory_max_mb: 0,
        cores: 1,
        core_ids: vec![],
    });
    let started = start(&host, t).await;
    let _guard = kill_on_drop(started.pid);
    until(
        "the task to print its cpus",
        Duration::from_secs(10),
        || output(tmp.path(), "web").0.contains("Cpus_allowed_list"),
    )
    .await;
    let (out, _) = output(tmp.path(), "web");
    let allowed = status_field(&out, "Cpus_allowed_list");
    assert_eq!(
        drover_plugin_exec::parse_cpu_list(allowed).len(),
        1,
        "pinned to one core: {out}"
    );
    // The pinned core is not free: asking for all of them is refused, with the numbers.
    let mut t = task("i/other/0", tmp.path(), sh("true"));
    t.resources = Some(Resources {
        cpu_mhz: 100,
        memory_mb: 64,
        memory_max_mb: 0,
        cores: ncores,
        core_ids: vec![],
    });
    let e = host
        .driver("exec")
        .await
        .unwrap()
        .start_task(StartTaskRequest { task: Some(t) })
        .await
        .unwrap_err();
    assert!(
        e.message().contains(&format!("reserves {ncores} cores")),
        "{e}"
    );
    let mut driver = host.driver("exec").await.unwrap();
    driver
        .stop_task(StopTaskRequest {
            task_id: "i/web/0".into(),
            signal: "SIGKILL".into(),
            timeout_ms: 0,
        })
        .await
        .unwrap();
    wait(&host, "i/web/0").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_forwards_signals_reaps_orphans_and_memory_max_oversubscribes() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    // An orphan (its parent, a subshell, exits at once) ends up as init's child, and must
    // be reaped when it exits.
    let mut t = task(
        "j/web/0",
        tmp.path(),
        sh(
            "trap 'echo got-hup' HUP; (sleep 0.2 &); sleep 1; ps -eo stat,args | grep -c '^Z' ; echo ready; while true; do sleep 0.1; done",
        ),
    );
    t.resources = Some(Resources {
        cpu_mhz: 250,
        memory_mb: 32,
        memory_max_mb: 96,
        cores: 0,
        core_ids: vec![],
    });
    let started = start(&host, t).await;
    let _guard = kill_on_drop(started.pid);
    until("the task to be ready", Duration::from_secs(10), || {
        output(tmp.path(), "web").0.contains("ready")
    })
    .await;
    let (out, err) = output(tmp.path(), "web");
    assert!(out.starts_with("0\n"), "no zombie is left: {out}{err}");

    let shim: serde_json::Value =
        serde_json::from_slice(&started.handle.unwrap().driver_state).unwrap();
    let cg = |ctrl: &str, file: &str| {
        std::fs::read_to_string(
            Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join("drover")
                .join(shim["shim_id"].as_str().unwrap())
                .join(file),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(
        cg("memory", "memory.limit_in_bytes"),
        (96u64 << 20).to_string()
    );
    assert_eq!(
        cg("memory", "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(cg("cpu", "cpu.shares"), "250");

    let mut driver = host.driver("exec").await.unwrap();
    driver
        .signal_task(SignalTaskRequest {
            task_id: "j/web/0".into(),
            signal: "SIGHUP".into(),
        })
        .await
        .unwrap();
    until(
        "the task to get SIGHUP through init",
        Duration::from_secs(10),
        || output(tmp.path(), "web").0.contains("got-hup"),
    )
    .await;
    driver
        .stop_task(StopTaskRequest {
            task_id: "j/web/0".into(),
            signal: "SIGKILL".into(),
            timeout_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(wait(&host, "j/web/0").await.signal, 9);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shim_takes_its_task_along_and_the_task_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let started = start(&host, task("k/web/0", tmp.path(), sh("sleep 1000"))).await;
    let _guard = kill_on_drop(started.pid);
    let shim: serde_json::Value =
        serde_json::from_slice(&started.handle.unwrap().driver_state).unwrap();
    let shim_pid = shim["shim_pid"].as_i64().unwrap() as i32;
    let init = started.pid;
    // SAFETY: kill(2) of the task's shim.
    assert_eq!(unsafe { libc::kill(shim_pid, libc::SIGKILL) }, 0);
    let exit = wait(&host, "k/web/0").await;
    assert!(exit.err.contains("lost"), "{exit:?}");
    until(
        "the task's init to die with its shim",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(format!("/proc/{init}/stat")).map_or(true, |s| {
                s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z')
            })
        },
    )
    .await;
    let cgroup = Path::new("/sys/fs/cgroup/pids/drover").join(shim["shim_id"].as_str().unwrap());
    until(
        "the task's processes to be gone",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(cgroup.join("cgroup.procs"))
                .map_or(true, |s| s.trim().is_empty())
        },
    )
    .await;
    host.driver("exec")
        .await
        .unwrap()
        .destroy_task(drover_proto::driver::DestroyTaskRequest {
            task_id: "k/web/0".into(),
            force: true,
        })
        .await
        .unwrap();
    assert!(
        !cgroup.exists(),
        "destroy removes the cgroups the dead shim left"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_ignoring_sigterm_is_killed_after_the_timeout_with_its_whole_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let started = start(
        &host,
        task(
            "l/web/0",
            tmp.path(),
            sh("trap '' TERM; sleep 1000 & echo ready; while true; do sleep 0.1; done"),
        ),
    )
    .await;
    let _guard = kill_on_drop(started.pid);
    until("the task to be ready", Duration::from_secs(10), || {
        output(tmp.path(), "web").0.contains("ready")
    })
    .await;
    let shim: serde_json::Value =
        serde_json::from_slice(&started.handle.unwrap().driver_state).unwrap();
    let procs = Path::new("/sys/fs/cgroup/pids/drover")
        .join(shim["shim_id"].as_str().unwrap())
        .join("cgroup.procs");
    let members: Vec<i32> = std::fs::read_to_string(&procs)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(
        members.len() >= 3,
        "init, the shell, its sleeps: {members:?}"
    );
    let t0 = Instant::now();
    host.driver("exec")
        .await
        .unwrap()
        .stop_task(StopTaskRequest {
            task_id: "l/web/0".into(),
            signal: "SIGTERM".into(),
            timeout_ms: 500,
        })
        .await
        .unwrap();
    let exit = wait(&host, "l/web/0").await;
    assert_eq!(exit.signal, 9, "{exit:?}");
    assert!(!exit.oom_killed);
    assert!(t0.elapsed() >= Duration::from_millis(450));
    until(
        "every process of the task to be gone",
        Duration::from_secs(10),
        || {
            members
                .iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        },
    )
    .await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_joins_the_allocations_network_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let ns = NetNs::new(&format!("drover-exec-test-{}", std::process::id()));
    let script = "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    let mut t = task("m/web/0", tmp.path(), sh(script));
    t.network_ns_path = ns.path();
    let (exit, out, err) = run(&host, tmp.path(), t).await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    let want = std::fs::read_link(ns.path())
        .ok()
        .map(|p| p.display().to_string());
    let inode = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(ns.path()).unwrap().ino()
    };
    assert!(
        out.contains(&format!("net:[{inode}]")),
        "the task is in the allocation's namespace (inode {inode}, {want:?}): {out}"
    );
    let ifaces: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(ifaces, vec!["lo"], "only the namespace's loopback: {out}");

    // An exec session into such a task runs in the same namespace.
    let mut t = task("m/long/0", tmp.path(), sh("sleep 1000"));
    t.network_ns_path = ns.path();
    let started = start(&host, t).await;
    let _guard = kill_on_drop(started.pid);
    let (seen, _, _) = exec(&host).exec("m/long/0", &["sh", "-c", script]).await;
    assert_eq!(
        seen,
        format!("net:[{inode}]\nlo\n"),
        "the exec session is in the allocation's namespace"
    );

    // Host networking: the task sees the host's interfaces.
    let (exit, out, _) = run(&host, tmp.path(), task("m/host/0", tmp.path(), sh(script))).await;
    assert_eq!(exit.exit_code, 0);
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(out.contains(&host_ns.display().to_string()), "{out}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_exec_session_kills_its_command() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let started = start(&host, task("n/web/0", tmp.path(), sh("sleep 1000"))).await;
    let _guard = kill_on_drop(started.pid);
    let mut driver = host.driver("exec").await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ExecTaskRequest {
        msg: Some(exec_task_request::Msg::Setup(ExecTaskSetup {
            task_id: "n/web/0".into(),
            command: ["sh", "-c", "echo started; exec sleep 777"]
                .map(String::from)
                .to_vec(),
            tty: false,
            size: None,
        })),
    })
    .await
    .unwrap();
    let mut out = driver
        .exec_task(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    match out.message().await.unwrap().unwrap().msg.unwrap() {
        exec_task_response::Msg::Stdout(b) => assert_eq!(b, b"started\n"),
        other => panic!("{other:?}"),
    }
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x00777"))
        })
    };
    until(
        "the exec'd command to run",
        Duration::from_secs(10),
        running,
    )
    .await;
    // The caller goes away.
    drop(tx);
    drop(out);
    until(
        "the abandoned command to be killed",
        Duration::from_secs(10),
        || !running(),
    )
    .await;
    driver
        .stop_task(StopTaskRequest {
            task_id: "n/web/0".into(),
            signal: "SIGKILL".into(),
            timeout_ms: 0,
        })
        .await
        .unwrap();
    wait(&host, "n/web/0").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_volumes_are_bound_read_only_or_writable() {
    use drover_proto::driver::Mount;
    let tmp = tempfile::tempdir().unwrap();
    let host = host(
        tmp.path(),
        json!({ "denied_host_uids": "", "denied_host_gids": "" }),
    );
    let ro = tmp.path().join("vol-ro");
    let rw = tmp.path().join("vol-rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("hello"), "from-the-host\n").unwrap();
    let mut t = task(
        "o/web/0",
        tmp.path(),
        sh("cat /data/hello; touch /data/x; echo ro=$?; echo hi > /srv/out; echo rw=$?"),
    );
    t.user = "root".into();
    t.mounts = vec![
        Mount {
            host_path: ro.display().to_string(),
            task_path: "/data".into(),
            read_only: true,
        },
        Mount {
            host_path: rw.display().to_string(),
            task_path: "/srv".into(),
            read_only: false,
        },
    ];
    let (exit, out, err) = run(&host, tmp.path(), t).await;
    assert_eq!(exit.exit_code, 0, "{out}{err}");
    assert!(out.contains("from-the-host"), "{out}{err}");
    assert!(
        out.contains("ro=1") && err.contains("Read-only"),
        "{out}{err}"
    );
    assert!(out.contains("rw=0"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(rw.join("out")).unwrap(), "hi\n");
    assert!(!ro.join("x").exists());
    let caps = host
        .driver("exec")
        .await
        .unwrap()
        .capabilities(drover_proto::driver::CapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(caps.mounts, "exec declares mount support");
    host.shutdown().await;
}
