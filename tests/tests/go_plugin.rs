//! go-plugin wire compatibility, both directions, with real processes: a host written with
//! HashiCorp's go-plugin (1.0.1, Debian's) loads Drover's SDK plugins, and Drover's host loads
//! a plugin written with go-plugin. Also the SDK plugin's own side of the handshake: the
//! cookie, the protocol version, the stdin lifeline.
//!
//! Needs `cargo build --bins` and the Go packages tests/run.sh installs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch, connect_plugin};
use drover_plugin_sdk::handshake::{
    ENV_PROTOCOL_VERSIONS, ENV_STDIN_LIFELINE, ENV_UNIX_SOCKET_DIR, HandshakeLine,
    MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE,
};
use drover_tests::go::{go_bins, raw_exec_bin};
use drover_tests::{drover_bin, find_process};

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the Go host's `check` on a Drover plugin command, with no stdin at all (go-plugin
/// hands its own stdin to the plugin).
fn go_host_check(extra: &[&str], plugin: &[&Path], plugin_args: &[&str]) -> Output {
    let bins = go_bins();
    let mut cmd = Command::new(&bins.host);
    cmd.arg("check").args(extra).args(plugin).args(plugin_args);
    for var in [
        ENV_STDIN_LIFELINE,
        MAGIC_COOKIE_KEY,
        ENV_PROTOCOL_VERSIONS,
        ENV_UNIX_SOCKET_DIR,
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null()).output().expect("run the Go host")
}

fn assert_go_host_ok(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", show(out));
    for step in [
        "HANDSHAKE OK protocol=grpc version=1",
        "PING OK",
        "SHUTDOWN OK",
        "LOG OK",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{}", show(out));
    }
    // go-plugin's host parsed every JSON log line (it panics on a bad one) and forwarded
    // the plugin's info line at INFO.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("[INFO]") && l.contains("plugin serving")),
        "{}",
        show(out)
    );
    assert!(!stderr.contains("panic"), "{}", show(out));
}

#[test]
fn the_go_programs_use_the_documented_cookie() {
    for f in ["tests/go/host/main.go", "tests/go/plugin/main.go"] {
        let src = std::fs::read_to_string(drover_tests::repo_root().join(f)).unwrap();
        assert!(
            src.contains(&format!("cookieKey = \"{MAGIC_COOKIE_KEY}\""))
                && src.contains(&format!("cookieValue = \"{MAGIC_COOKIE_VALUE}\"")),
            "{f} must use drover_plugin_sdk's magic cookie"
        );
    }
}

#[test]
fn go_host_loads_the_standalone_sdk_plugin() {
    let out = go_host_check(&["-expect-log", "plugin serving"], &[&raw_exec_bin()], &[]);
    assert_go_host_ok(&out);
}

#[test]
fn go_host_loads_plugins_served_by_drover() {
    let out = go_host_check(
        &["-expect-log", "plugin serving"],
        &[&drover_bin()],
        &["plugin", "serve", "raw_exec"],
    );
    assert_go_host_ok(&out);
}

#[test]
fn go_host_offering_only_an_unknown_protocol_version_is_refused_with_a_reason() {
    let out = go_host_check(&["-proto", "2"], &[&raw_exec_bin()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL: handshake"), "{}", show(&out));
    // The plugin's explanation reached the Go host through stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the host offers protocol versions [2] but this plugin speaks only [1]"),
        "{}",
        show(&out)
    );
}

fn host_config(data_dir: &Path, name: &str, command: &Path, args: &[&str]) -> HostConfig {
    HostConfig {
        data_dir: data_dir.to_path_buf(),
        node_id: "node-go".into(),
        plugins: vec![launch(name, command, args)],
        handshake_timeout: Duration::from_secs(30),
        stop_grace: Duration::from_secs(10),
        ..HostConfig::default()
    }
}

fn launch(name: &str, command: &Path, args: &[&str]) -> PluginLaunch {
    PluginLaunch {
        name: name.into(),
        command: command.to_path_buf(),
        args: args.iter().map(|s| s.to_string()).collect(),
        config_json: serde_json::json!({}),
        ..PluginLaunch::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drover_host_handshakes_with_a_go_plugin_and_stops_it() {
    let bins = go_bins();
    let tmp = tempfile::tempdir().unwrap();
    let config = host_config(tmp.path(), "greeter", &bins.plugin, &[]);
    let plugin = connect_plugin(&config, &config.plugins[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // go-plugin 1.0.1 puts its socket in $TMPDIR: the host's private directory.
    let h = &plugin.handshake;
    assert_eq!(
        (h.core_version, h.app_version, h.network.as_str()),
        (1, 1, "unix")
    );
    assert_eq!((h.protocol.as_str(), h.server_cert.as_str()), ("grpc", ""));
    assert!(
        Path::new(&h.address).starts_with(tmp.path().join("plugins")),
        "{h}"
    );
    assert!(plugin.timings.ready >= plugin.timings.handshake);
    // Its hclog JSON stderr reached the host.
    assert!(
        plugin.stderr_tail().contains("go plugin starting"),
        "{}",
        plugin.stderr_tail()
    );
    // The controller's Shutdown stops it: it exits 0 by itself.
    plugin.stop(Duration::from_secs(10)).await;
    let status = plugin.exit_status().expect("the plugin exited");
    assert!(status.success(), "{status}");
    assert!(!Path::new(&h.address).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drover_host_reports_a_go_plugin_lacks_drovers_services() {
    let bins = go_bins();
    let tmp = tempfile::tempdir().unwrap();
    // A name of its own (argv[0]), to find its process afterwards. A symlink, not a copy: a
    // file just written may still be open for writing in a process another test is forking
    // (ETXTBSY).
    let copy = tmp.path().join("go-greeter-plugin");
    std::os::unix::fs::symlink(&bins.plugin, &copy).unwrap();
    let host = PluginHost::new(host_config(tmp.path(), "greeter", &copy, &[]));
    let t0 = Instant::now();
    let err = match host.driver("greeter").await {
        Ok(_) => panic!("a go-plugin plugin without Drover's services must not load"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!("plugin \"greeter\" ({})", copy.display())),
        "{err}"
    );
    assert!(
        err.contains(
            "does not serve Drover's base plugin service (drover.plugin.base.v1: PluginInfo is unimplemented)"
        ),
        "{err}"
    );
    assert!(err.contains("go plugin starting"), "stderr quoted: {err}");
    // No hang: the whole thing is bounded by the host's own timeouts.
    assert!(t0.elapsed() < Duration::from_secs(60));
    // And the plugin was stopped.
    assert_eq!(find_process(&copy.display().to_string()), None);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drover_host_stops_an_sdk_plugin_with_the_controller() {
    let tmp = tempfile::tempdir().unwrap();
    let config = host_config(
        tmp.path(),
        "raw_exec",
        &drover_bin(),
        &["plugin", "serve", "raw_exec"],
    );
    let plugin = connect_plugin(&config, &config.plugins[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        HandshakeLine::parse(&plugin.handshake.to_string()).unwrap(),
        plugin.handshake
    );
    assert!(plugin.handshake.address.len() < 108);
    plugin.stop(Duration::from_secs(10)).await;
    let status = plugin.exit_status().expect("the plugin exited");
    assert!(status.success(), "{status}");
    assert!(!Path::new(&plugin.handshake.address).exists());
}

#[test]
fn sdk_plugins_run_by_hand_explain_themselves() {
    let raw = raw_exec_bin();
    let drover = drover_bin();
    let cases: [(&Path, &[&str]); 2] = [(&raw, &[]), (&drover, &["plugin", "serve", "raw_exec"])];
    for (bin, args) in cases {
        for cookie in [None, Some("not-the-cookie")] {
            let mut cmd = Command::new(bin);
            cmd.args(args)
                .stdin(Stdio::null())
                .env_remove(MAGIC_COOKIE_KEY);
            if let Some(c) = cookie {
                cmd.env(MAGIC_COOKIE_KEY, c);
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{}", show(&out));
            assert!(out.stdout.is_empty(), "{}", show(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(
                    "This binary is a Drover plugin; it is started by the drover agent, not by hand"
                ) && stderr.contains(MAGIC_COOKIE_KEY),
                "{}",
                show(&out)
            );
        }
    }
}

/// Starts the standalone SDK plugin as a host would, returns it and its handshake line.
fn start_sdk_plugin(dir: &Path, lifeline: bool, stdin: Stdio) -> (Child, HandshakeLine) {
    let mut cmd = Command::new(raw_exec_bin());
    cmd.env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env(ENV_PROTOCOL_VERSIONS, "1")
        .env(ENV_UNIX_SOCKET_DIR, dir)
        .env_remove(ENV_STDIN_LIFELINE)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if lifeline {
        cmd.env(ENV_STDIN_LIFELINE, "1");
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let h = HandshakeLine::parse(&line).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.ends_with("|grpc|\n"),
        "six fields, the last empty: {line:?}"
    );
    h.validate(&[1]).unwrap();
    assert!(Path::new(&h.address).starts_with(dir), "{h}");
    (child, h)
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sdk_plugin_exits_when_drovers_host_closes_its_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, h) = start_sdk_plugin(tmp.path(), true, Stdio::piped());
    assert!(child.try_wait().unwrap().is_none());
    drop(child.stdin.take());
    let status = wait_exit(&mut child, Duration::from_secs(30))
        .expect("the plugin must exit once its stdin lifeline closes");
    assert!(status.success(), "{status}");
    assert!(!PathBuf::from(&h.address).exists(), "socket removed");
}

#[test]
fn sdk_plugin_ignores_a_closed_stdin_without_the_lifeline() {
    let tmp = tempfile::tempdir().unwrap();
    // Other go-plugin hosts hand the plugin their own stdin, which may be /dev/null.
    let (mut child, h) = start_sdk_plugin(tmp.path(), false, Stdio::null());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the plugin must keep serving"
    );
    assert!(std::os::unix::net::UnixStream::connect(&h.address).is_ok());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("SIGTERM stops it");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drover_host_accepts_the_five_field_handshake_line() {
    let tmp = tempfile::tempdir().unwrap();
    // The SDK plugin behind a filter that drops the empty sixth field, as older go-plugin
    // plugins print it.
    // Written by a child process: a file this process held open for writing could be
    // inherited by a process another test spawns meanwhile, and exec'ing it would fail with
    // ETXTBSY.
    let wrapper = tmp.path().join("five-fields");
    let status = Command::new("/bin/sh")
        .args([
            "-c",
            "printf '#!/bin/sh\\n\"%s\" | sed -u \"s/|$//\"\\n' \"$2\" > \"$1\" && chmod 755 \"$1\"",
            "sh",
        ])
        .arg(&wrapper)
        .arg(raw_exec_bin())
        .status()
        .unwrap();
    assert!(status.success());
    let config = host_config(tmp.path(), "raw_exec", &wrapper, &[]);
    let host = PluginHost::new(config.clone());
    let info = host
        .info("raw_exec")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.name, "raw_exec");
    host.shutdown().await;

    let plugin = connect_plugin(&config, &config.plugins[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plugin.handshake.protocol, "grpc");
    assert_eq!(plugin.handshake.server_cert, "");
    plugin.stop(Duration::from_secs(10)).await;
    assert!(plugin.exit_status().is_some());
}

#[test]
fn sdk_plugin_refuses_a_socket_path_too_long_for_unix_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let long = tmp.path().join("d".repeat(100));
    std::fs::create_dir_all(&long).unwrap();
    let out = Command::new(raw_exec_bin())
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env(ENV_UNIX_SOCKET_DIR, &long)
        .env_remove(ENV_STDIN_LIFELINE)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(out.stdout.is_empty(), "no handshake line: {}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("longer than a Unix socket allows")
            && stderr.contains("set PLUGIN_UNIX_SOCKET_DIR to a shorter directory"),
        "{}",
        show(&out)
    );
}
