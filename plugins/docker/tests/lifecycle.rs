//! docker end to end: the real plugin binary under the real host, against the real engine
//! (Debian's 20.10, API 1.41). Start, wait, stop, ports, mounts, refusals, OOM, recovery.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use drover_proto::driver::{
    InspectTaskRequest, RecoverTaskRequest, SignalTaskRequest, StopTaskRequest,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_exit_code_env_and_task_dirs_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("batch", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let mut t = task(
        &id,
        tmp.path(),
        sh(
            "cat /local/in.txt > /alloc/out; echo foo=$FOO >> /alloc/out; echo dir=$NOMAD_TASK_DIR alloc=$NOMAD_ALLOC_DIR >> /alloc/out; exit 42",
        ),
    );
    t.env.insert("FOO".into(), "bar".into());
    std::fs::write(tmp.path().join("web/local/in.txt"), "from-local\n").unwrap();
    try_start(&host, t).await.unwrap();
    let exit = wait(&host, &id).await;
    assert_eq!(exit.exit_code, 42, "{exit:?}");
    assert!(!exit.oom_killed);
    let out = std::fs::read_to_string(tmp.path().join("alloc/out")).unwrap();
    assert!(out.contains("from-local"), "local/ is /local: {out}");
    assert!(out.contains("foo=bar"), "the task env is passed: {out}");
    assert!(
        out.contains("dir=/local alloc=/alloc"),
        "NOMAD_*_DIR are paths inside: {out}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_port_answers_and_an_unlisted_one_is_not_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("ports", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let (http, admin) = (free_port(), free_port());
    let mut cfg = sh("exec httpd -f -p 8080 -h /local");
    cfg["ports"] = json!(["http"]);
    let mut t = task(&id, tmp.path(), cfg);
    t.ports = vec![port("http", http, 8080), port("admin", admin, 0)];
    std::fs::write(
        tmp.path().join("web/local/index.html"),
        "hello-from-docker\n",
    )
    .unwrap();
    let started = try_start(&host, t).await.unwrap();
    let cid = container_id(&started);
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", http as u16)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            Ok(buf)
        });
        match got {
            Ok(b) if b.contains("hello-from-docker") => break b,
            other => assert!(
                Instant::now() < deadline,
                "the port never answered: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("200"), "{body}");
    let bindings = inspect(&cid, "{{json .HostConfig.PortBindings}}");
    assert!(
        bindings.contains("8080/tcp") && bindings.contains("8080/udp"),
        "{bindings}"
    );
    assert!(
        bindings.contains(&format!("\"HostPort\":\"{http}\"")),
        "{bindings}"
    );
    assert!(bindings.contains("\"HostIp\":\"127.0.0.1\""), "{bindings}");
    assert!(
        !bindings.contains(&admin.to_string()),
        "admin is not listed: {bindings}"
    );
    driver_stop(&host, &id, 5000).await;
    host.shutdown().await;
}

async fn driver_stop(host: &drover_plugin_host::PluginHost, id: &str, timeout_ms: u64) {
    host.driver("docker")
        .await
        .unwrap()
        .stop_task(StopTaskRequest {
            task_id: id.into(),
            signal: "SIGTERM".into(),
            timeout_ms,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_the_signal_then_kills_after_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let polite = task_id("stop", "polite");
    let stubborn = task_id("stop", "stubborn");
    let _rm = RemoveContainers(vec![polite.clone(), stubborn.clone()]);
    try_start(
        &host,
        task(
            &polite,
            tmp.path(),
            sh("trap 'exit 3' TERM; while true; do sleep 0.1; done"),
        ),
    )
    .await
    .unwrap();
    try_start(
        &host,
        task(
            &stubborn,
            tmp.path(),
            sh("trap '' TERM; while true; do sleep 0.1; done"),
        ),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    driver_stop(&host, &polite, 10_000).await;
    assert_eq!(
        wait(&host, &polite).await.exit_code,
        3,
        "SIGTERM reached the trap"
    );
    driver_stop(&host, &stubborn, 1000).await;
    assert_eq!(
        wait(&host, &stubborn).await.exit_code,
        137,
        "SIGKILL after the timeout"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_is_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let id = task_id("priv", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let mut cfg = sh("sleep 30");
    cfg["privileged"] = json!(true);
    let refusing = host(tmp.path(), json!({}));
    let e = try_start(&refusing, task(&id, tmp.path(), cfg.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("allow_privileged"), "{e:?}");
    refusing.shutdown().await;

    let tmp2 = tempfile::tempdir().unwrap();
    let allowing = host(tmp2.path(), json!({"allow_privileged": true}));
    match try_start(&allowing, task(&id, tmp2.path(), cfg)).await {
        Ok(started) => {
            assert_eq!(
                inspect(&container_id(&started), "{{.HostConfig.Privileged}}"),
                "true"
            );
            driver_stop(&allowing, &id, 1000).await;
        }
        // A host whose own bounding set lacks capabilities (CAP_SYS_MODULE in some CI
        // sandboxes) cannot start any privileged container, `docker run --privileged`
        // included: the driver accepted the task and created the container; runc refused.
        Err(e) => {
            assert!(!e.message().contains("allow_privileged"), "{e:?}");
            assert!(
                e.message().contains("cannot start the container") && e.message().contains("caps"),
                "{e:?}"
            );
        }
    }
    allowing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_binds_need_volumes_enabled_and_load_stays_under_local() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("binds", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let mut cfg = sh("true");
    cfg["volumes"] = json!(["/etc:/host-etc"]);
    let e = try_start(&host, task(&id, tmp.path(), cfg))
        .await
        .unwrap_err();
    assert!(e.message().contains("volumes.enabled"), "{e:?}");
    let mut cfg = sh("true");
    cfg["load"] = json!("../../img.tar");
    let e = try_start(&host, task(&id, tmp.path(), cfg))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("no .."), "{e:?}");
    // A link planted in local/ does not lead a relative bind out of the task directory.
    std::os::unix::fs::symlink("/etc", tmp.path().join("web/local/etc-link")).unwrap();
    let mut cfg = sh("true");
    cfg["volumes"] = json!(["local/etc-link:/x"]);
    let e = try_start(&host, task(&id, tmp.path(), cfg))
        .await
        .unwrap_err();
    assert!(e.message().contains("etc-link"), "{e:?}");
    // A relative bind that stays inside works.
    std::fs::create_dir_all(tmp.path().join("web/local/data")).unwrap();
    std::fs::write(tmp.path().join("web/local/data/f"), "inside\n").unwrap();
    let mut cfg = sh("cat /data/f > /alloc/bound");
    cfg["volumes"] = json!(["local/data:/data:ro"]);
    try_start(&host, task(&id, tmp.path(), cfg)).await.unwrap();
    assert_eq!(wait(&host, &id).await.exit_code, 0);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("alloc/bound")).unwrap(),
        "inside\n"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_loaded_from_a_tarball_under_local() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("load", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let tag = format!("drover-test/loaded:{}", std::process::id());
    let t = task(
        &id,
        tmp.path(),
        json!({
            "image": tag, "load": "img.tar", "command": "/bin/sh", "args": ["-c", "exit 5"],
        }),
    );
    images::save_busybox(&tag, &tmp.path().join("web/local/img.tar"));
    docker(&["rmi", &tag]);
    try_start(&host, t).await.unwrap();
    assert_eq!(wait(&host, &id).await.exit_code, 5);
    drop(_rm);
    docker(&["rmi", &tag]);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("oom", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let mut cfg = sh("x=a; while true; do x=$x$x; done");
    cfg["memory_hard_limit"] = json!(8);
    let mut t = task(&id, tmp.path(), cfg);
    t.resources.as_mut().unwrap().memory_mb = 8;
    try_start(&host, t).await.unwrap();
    let exit = wait(&host, &id).await;
    assert!(exit.oom_killed, "{exit:?}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_name_fails_quickly_and_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("badimage", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let began = Instant::now();
    let e = try_start(
        &host,
        task(&id, tmp.path(), json!({"image": "Bad Image!!:1"})),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("invalid image reference"), "{e:?}");
    // A well-formed name the (unreachable) registry cannot serve: an error, not a hang.
    let e = try_start(
        &host,
        task(
            &id,
            tmp.path(),
            json!({"image": "127.0.0.1:1/nope/nothing:1"}),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        e.message()
            .contains("failed to pull image 127.0.0.1:1/nope/nothing:1"),
        "{e:?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_plugin_recovers_running_and_exited_containers() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let long = task_id("recover", "long");
    let short = task_id("recover", "short");
    let _rm = RemoveContainers(vec![long.clone(), short.clone()]);
    let long_started = try_start(&host, task(&long, tmp.path(), sh("sleep 1000")))
        .await
        .unwrap();
    let short_started = try_start(&host, task(&short, tmp.path(), sh("sleep 2; exit 7")))
        .await
        .unwrap();
    let long_cid = container_id(&long_started);
    let short_cid = container_id(&short_started);
    driver(&host).kill_plugin().await;
    // The short task exits while no plugin watches it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while inspect(&short_cid, "{{.State.Running}}") == "true" {
        assert!(Instant::now() < deadline, "the short task never exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        inspect(&long_cid, "{{.State.Running}}"),
        "true",
        "the plugin's death left it alone"
    );
    let mut client = host.driver("docker").await.unwrap();
    for started in [&long_started, &short_started] {
        client
            .recover_task(RecoverTaskRequest {
                handle: started.handle.clone(),
            })
            .await
            .unwrap();
    }
    let info = client
        .inspect_task(InspectTaskRequest {
            task_id: long.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, "running");
    assert_eq!(
        info.pid.to_string(),
        inspect(&long_cid, "{{.State.Pid}}"),
        "the same container"
    );
    assert_eq!(
        wait(&host, &short).await.exit_code,
        7,
        "the exit while the plugin was down"
    );
    driver_stop(&host, &long, 1000).await;
    let exit = wait(&host, &long).await;
    assert_eq!(
        exit.exit_code, 137,
        "sh ignores SIGTERM as pid 1; killed after the timeout"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_container_of_the_same_allocation_lends_its_network() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let server = task_id("netns", "server");
    let friend = task_id("netns", "friend");
    let other_alloc = format!("netns-other-{}/intruder/0", std::process::id());
    let _rm = RemoveContainers(vec![server.clone(), friend.clone(), other_alloc.clone()]);
    let started = try_start(
        &host,
        task(&server, tmp.path(), sh("exec httpd -f -p 8081 -h /local")),
    )
    .await
    .unwrap();
    std::fs::write(tmp.path().join("server/local/index.html"), "shared-netns\n").unwrap();
    let cid = container_id(&started);
    let mut cfg = sh(
        "for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 8081 </dev/null >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1",
    );
    cfg["network_mode"] = json!(format!("container:{cid}"));
    let other_dir = tmp.path().join("other");
    let e = try_start(&host, task(&other_alloc, &other_dir, cfg.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("same allocation"), "{e:?}");
    try_start(&host, task(&friend, tmp.path(), cfg))
        .await
        .unwrap();
    assert_eq!(
        wait(&host, &friend).await.exit_code,
        0,
        "the friend reached the server on 127.0.0.1"
    );
    driver_stop(&host, &server, 1000).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_and_inspect_a_running_task() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("signal", "web");
    let _rm = RemoveContainers(vec![id.clone()]);
    let started = try_start(
        &host,
        task(
            &id,
            tmp.path(),
            sh("trap 'echo got-usr1 > /alloc/sig; exit 9' USR1; while true; do sleep 0.1; done"),
        ),
    )
    .await
    .unwrap();
    let mut client = host.driver("docker").await.unwrap();
    let info = client
        .inspect_task(InspectTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, "running");
    assert_eq!(info.pid, started.pid);
    assert!(info.started_at_unix_nanos > 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .signal_task(SignalTaskRequest {
            task_id: id.clone(),
            signal: "SIGUSR1".into(),
        })
        .await
        .unwrap();
    assert_eq!(wait(&host, &id).await.exit_code, 9);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("alloc/sig")).unwrap(),
        "got-usr1\n"
    );
    let info = client
        .inspect_task(InspectTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state, "exited");
    assert_eq!(info.result.unwrap().exit_code, 9);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedulers_core_ids_are_the_containers_cpuset() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("cores", "pinned");
    let _rm = RemoveContainers(vec![id.clone()]);
    let mut t = task(
        &id,
        tmp.path(),
        sh("cat /sys/fs/cgroup/cpuset/cpuset.cpus > /alloc/cpus; exit 0"),
    );
    let res = t.resources.as_mut().unwrap();
    res.cores = 1;
    res.core_ids = vec![0];
    let started = try_start(&host, t).await.unwrap();
    assert_eq!(wait(&host, &id).await.exit_code, 0);
    assert_eq!(
        inspect(&container_id(&started), "{{.HostConfig.CpusetCpus}}"),
        "0"
    );
    let inside = std::fs::read_to_string(tmp.path().join("alloc/cpus")).unwrap();
    assert_eq!(inside.trim(), "0", "the container's cpuset cgroup");
    host.shutdown().await;
}
