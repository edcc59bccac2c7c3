//! Plugin launch and RPC figures, with real processes (release build):
//!
//! - launch to ready (spawn, handshake line, socket dialled, `grpc.health.v1` SERVING), p50,
//!   under Drover's host, of (a) a plugin built on the plugin SDK alone (the standalone
//!   `drover-raw-exec`, as `cargo build` links it, and (a') linked static and
//!   position-dependent as plugin-sdk's docs recommend shipping it, built by this bench into
//!   `target/static-plugins`), (b) a first-party plugin served by the `drover` binary
//!   (`drover plugin serve raw_exec`), (c) a Go go-plugin plugin; and (d) the same Go plugin
//!   launched by a Go go-plugin host (timed inside the Go host: `Client()` + `Ping()`);
//! - the SDK plugin's launch time over the Go pair's;
//! - a unary driver RPC (Capabilities) round trip over the plugin's socket, p50 and p99.
//!
//! `cargo build --release --bins && cargo bench -p drover-tests --bench plugins`
//! (`BENCH_LAUNCHES` sets the launches per kind, default 60.)

use std::path::Path;
use std::time::{Duration, Instant};

use drover_plugin_host::{HostConfig, LaunchTimings, PluginLaunch, connect_plugin};
use drover_proto::driver::CapabilitiesRequest;
use drover_proto::driver::driver_client::DriverClient;
use drover_tests::go::{go_bins, raw_exec_bin};
use drover_tests::{drover_bin, percentile};

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Launches `command` `n` times under Drover's host (after 3 unmeasured launches); the
/// launch-to-ready times.
async fn drover_host_launches(
    data_dir: &Path,
    command: &Path,
    args: &[&str],
    n: usize,
) -> Vec<LaunchTimings> {
    let config = HostConfig {
        data_dir: data_dir.to_path_buf(),
        node_id: "bench".into(),
        ..HostConfig::default()
    };
    let launch = PluginLaunch {
        name: "bench".into(),
        command: command.to_path_buf(),
        args: args.iter().map(|s| s.to_string()).collect(),
        config_json: serde_json::json!({}),
        ..PluginLaunch::default()
    };
    let mut samples = Vec::new();
    for i in 0..n + 3 {
        let plugin = connect_plugin(&config, &launch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if i >= 3 {
            samples.push(plugin.timings);
        }
        plugin.stop(Duration::from_secs(5)).await;
    }
    samples
}

/// Prints the p50 of each step (from the spawn) and returns the launch-to-ready p50.
fn report_steps(name: &str, samples: &[LaunchTimings]) -> Duration {
    let step = |f: fn(&LaunchTimings) -> Duration| {
        let mut v: Vec<Duration> = samples.iter().map(f).collect();
        percentile(&mut v, 0.5)
    };
    println!(
        "# {name}: p50 from the spawn: spawned {:.0} us, handshake line {:.0} us, dialled {:.0} us",
        us(step(|t| t.spawned)),
        us(step(|t| t.handshake)),
        us(step(|t| t.dialled)),
    );
    let mut ready: Vec<Duration> = samples.iter().map(|t| t.ready).collect();
    report_launch(name, &mut ready)
}

fn report_launch(name: &str, samples: &mut [Duration]) -> Duration {
    let p50 = percentile(samples, 0.5);
    let p90 = percentile(samples, 0.9);
    println!("BENCH {name}_p50 {:.0} us", us(p50));
    println!("BENCH {name}_p90 {:.0} us", us(p90));
    p50
}

/// Builds `drover-raw-exec` the way plugin-sdk's docs recommend shipping a plugin: a static,
/// position-dependent executable (`-C target-feature=+crt-static -C relocation-model=static`
/// for `x86_64-unknown-linux-gnu`), as Go links its plugins. Into `target/static-plugins`.
fn static_raw_exec() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .join("static-plugins");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "drover-plugin-raw-exec",
            "--target",
            triple,
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(drover_tests::repo_root())
        .env_remove("CARGO_TARGET_DIR")
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the static drover-raw-exec failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join(triple).join("release/drover-raw-exec")
}

fn main() {
    let n: usize = std::env::var("BENCH_LAUNCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let go = go_bins();
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let raw = raw_exec_bin();
    let raw_static = static_raw_exec();
    let drover = drover_bin();
    let (sdk, sdk_static, served, go_under_drover) = rt.block_on(async {
        let sdk = drover_host_launches(tmp.path(), &raw, &[], n).await;
        let sdk_static = drover_host_launches(tmp.path(), &raw_static, &[], n).await;
        let served =
            drover_host_launches(tmp.path(), &drover, &["plugin", "serve", "raw_exec"], n).await;
        let go_plugin = drover_host_launches(tmp.path(), &go.plugin, &[], n).await;
        (
            report_steps("plugin_launch_ready_sdk_binary", &sdk),
            report_steps("plugin_launch_ready_sdk_static_binary", &sdk_static),
            report_steps("plugin_launch_ready_drover_plugin_serve", &served),
            report_steps("plugin_launch_ready_go_plugin_drover_host", &go_plugin),
        )
    });

    // (d) The Go pair, timed inside the Go host.
    let out = std::process::Command::new(&go.host)
        .arg("bench")
        .arg((n + 3).to_string())
        .arg(&go.plugin)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the Go host");
    assert!(
        out.status.success(),
        "the Go host failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut go_pair: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("LAUNCH_NS "))
        .filter_map(|v| v.trim().parse().ok())
        .map(Duration::from_nanos)
        .skip(3)
        .collect();
    assert!(
        !go_pair.is_empty(),
        "the Go host printed no LAUNCH_NS lines"
    );
    let go_p50 = report_launch("plugin_launch_ready_go_plugin_go_host", &mut go_pair);
    println!(
        "BENCH plugin_launch_ratio_sdk_binary_over_go_pair {:.2} x",
        us(sdk) / us(go_p50)
    );
    println!(
        "BENCH plugin_launch_ratio_sdk_static_binary_over_go_pair {:.2} x",
        us(sdk_static) / us(go_p50)
    );
    println!(
        "BENCH plugin_launch_ratio_drover_plugin_serve_over_go_pair {:.2} x",
        us(served) / us(go_p50)
    );
    println!(
        "BENCH plugin_launch_ratio_go_plugin_drover_host_over_go_pair {:.2} x",
        us(go_under_drover) / us(go_p50)
    );

    // A unary driver RPC over the socket, from a task on a runtime worker as the agent's
    // calls are (a future under `block_on` runs on the main thread, and every reply would
    // then cost one more cross-thread wake-up: ~30 us each on this VM).
    let data_dir = tmp.path().to_path_buf();
    let rpc = rt.spawn(async move {
        let config = HostConfig {
            data_dir,
            ..HostConfig::default()
        };
        let launch = PluginLaunch {
            name: "raw_exec".into(),
            command: raw.clone(),
            args: vec![],
            config_json: serde_json::json!({}),
            ..PluginLaunch::default()
        };
        let plugin = connect_plugin(&config, &launch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut driver = DriverClient::new(plugin.channel.clone());
        let mut samples = Vec::with_capacity(5_000);
        for i in 0..5_500 {
            let t = Instant::now();
            driver
                .capabilities(CapabilitiesRequest {})
                .await
                .expect("Capabilities");
            if i >= 500 {
                samples.push(t.elapsed());
            }
        }
        println!(
            "BENCH plugin_rpc_capabilities_p50 {:.1} us",
            us(percentile(&mut samples, 0.5))
        );
        println!(
            "BENCH plugin_rpc_capabilities_p99 {:.1} us",
            us(percentile(&mut samples, 0.99))
        );
        plugin.stop(Duration::from_secs(5)).await;
    });
    rt.block_on(rpc).expect("the RPC benchmark task");
}
