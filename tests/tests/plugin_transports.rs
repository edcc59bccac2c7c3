//! Secret providers over the three transports, loaded from a plugin_dir by the plugin host as
//! the agent wires it: Extism modules and native libraries built from `examples/plugins` with
//! the SDK's `export_secret_provider!`, and a gRPC plugin process served by the SDK
//! (`src/bin/grpc-secrets.rs`). Also what must be refused: a native library of another ABI
//! version, a task driver offered as a .wasm or .so, a module running past its time limit,
//! and HTTP from a module that was not granted the host.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_plugin_host::{
    HostConfig, PluginHost, PluginSettings, Sandbox, SecretsErrorKind, Transport,
};
use drover_tests::example_plugins;
use serde_json::json;

fn settings(config: serde_json::Value) -> PluginSettings {
    PluginSettings {
        config_json: config,
        ..PluginSettings::default()
    }
}

fn static_config() -> serde_json::Value {
    json!({
        "ttl": "1h",
        "secrets": {
            "db": { "user": "app", "password": "hunter2" },
            "dns/key": { "value": "k1" },
        },
    })
}

async fn open(
    data_dir: &Path,
    plugin_dir: &Path,
    settings: BTreeMap<String, PluginSettings>,
) -> PluginHost {
    PluginHost::open(
        HostConfig {
            data_dir: data_dir.to_path_buf(),
            node_id: "node-1".into(),
            plugin_dir: Some(plugin_dir.to_path_buf()),
            settings,
            handshake_timeout: Duration::from_secs(20),
            ..HostConfig::default()
        },
        Some(drover_plugin_wasm::loader()),
    )
    .await
}

fn copy(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    to
}

/// fetch, list and renew against a provider configured with `static_config()`.
async fn exercise(host: &PluginHost, name: &str, transport: Transport) {
    let s = host
        .secrets(name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(s.transport(), transport);
    let db = s.fetch("db").await.unwrap();
    assert_eq!(db.data.get("user").map(String::as_str), Some("app"));
    assert_eq!(db.data.get("password").map(String::as_str), Some("hunter2"));
    assert_eq!(db.ttl_ms, 3_600_000);
    assert!(db.renewable);
    assert!(db.lease_id.starts_with("db#"), "{:?}", db.lease_id);
    assert_eq!(s.list("d").await.unwrap(), vec!["db", "dns/key"]);
    assert_eq!(s.list("dns/").await.unwrap(), vec!["dns/key"]);
    assert_eq!(
        s.renew(&db.lease_id, Duration::from_secs(30))
            .await
            .unwrap(),
        Duration::from_secs(30)
    );
    assert_eq!(
        s.renew(&db.lease_id, Duration::from_secs(7200))
            .await
            .unwrap(),
        Duration::from_secs(3600),
        "renewal is capped at the configured ttl"
    );
    let e = s.fetch("nope").await.unwrap_err();
    assert_eq!(e.kind, SecretsErrorKind::NotFound);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("secret provider \"{name}\""))
            && msg.contains("no secret at \"nope\""),
        "{msg}"
    );
    let e = s.renew("bogus", Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(e.kind, SecretsErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_native_providers_from_plugin_dir_answer_fetch_list_renew() {
    let built = example_plugins();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    copy(&built.wasm, &dir, "vault-wasm.wasm");
    copy(&built.native, &dir, "vault-native.so");
    // A file that is no plugin is skipped.
    std::fs::write(dir.join("README.md"), "not a plugin").unwrap();
    let host = open(
        tmp.path(),
        &dir,
        BTreeMap::from([
            ("vault-wasm".to_string(), settings(static_config())),
            ("vault-native".to_string(), settings(static_config())),
        ]),
    )
    .await;
    assert!(host.refused().is_empty(), "{:?}", host.refused());
    let loaded: Vec<(String, Transport)> = host
        .modules()
        .into_iter()
        .map(|m| (m.name, m.transport))
        .collect();
    assert_eq!(
        loaded,
        vec![
            ("vault-native".to_string(), Transport::Native),
            ("vault-wasm".to_string(), Transport::Wasm),
        ]
    );
    exercise(&host, "vault-wasm", Transport::Wasm).await;
    exercise(&host, "vault-native", Transport::Native).await;

    // Configured as a driver (a job's `driver = "vault-wasm"`): refused, saying why.
    let e = host.driver("vault-wasm").await.unwrap_err().to_string();
    assert!(
        e.contains("vault-wasm.wasm") && e.contains("a task driver cannot be an Extism module"),
        "{e}"
    );
    let e = host.driver("vault-native").await.unwrap_err().to_string();
    assert!(e.contains("would die with the agent"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_block_config_the_schema_refuses_is_reported() {
    let built = example_plugins();
    let tmp = tempfile::tempdir().unwrap();
    copy(&built.wasm, tmp.path(), "typo.wasm");
    let host = open(
        tmp.path(),
        tmp.path(),
        BTreeMap::from([("typo".to_string(), settings(json!({ "secretz": {} })))]),
    )
    .await;
    let e = host.secrets("typo").await.unwrap_err().to_string();
    assert!(
        e.contains("typo.wasm") && e.contains("unknown key \"secretz\""),
        "{e}"
    );
}

/// A native library (C, built with the system compiler) whose table says `version`/`kind`.
fn c_library(dir: &Path, name: &str, magic: &str, version: u32, kind: i32) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(
        &src,
        format!(
            r#"
#include <stdint.h>
#include <stddef.h>
struct buf {{ uint8_t *ptr; size_t len; size_t cap; }};
static int32_t call(const uint8_t *m, size_t ml, const uint8_t *i, size_t il, struct buf *out) {{ return 7; }}
static void release(struct buf b) {{ }}
struct table {{
  uint64_t magic; uint32_t abi_version; uint32_t table_size; int32_t kind;
  int32_t (*call)(const uint8_t *, size_t, const uint8_t *, size_t, struct buf *);
  void (*free)(struct buf);
}};
static const struct table TABLE = {{ {magic}ULL, {version}, sizeof(struct table), {kind}, call, release }};
const struct table *drover_plugin_entry(void) {{ return &TABLE; }}
"#
        ),
    )
    .unwrap();
    let so = dir.join(format!("{name}.so"));
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .output()
        .expect("run cc (a C compiler is needed to build the bad libraries)");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&src).unwrap();
    so
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_libraries_of_another_abi_or_kind_are_refused_before_any_call() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    // "DROVERPL" little endian.
    let magic = "0x4c505245564f5244";
    let v99 = c_library(&dir, "future", magic, 99, 2);
    let driver = c_library(&dir, "nativedrv", magic, 1, 1);
    let not_ours = c_library(&dir, "stranger", "0x1234", 1, 2);
    std::fs::write(dir.join("empty.so"), b"").unwrap();
    let host = open(tmp.path(), &dir, BTreeMap::new()).await;
    assert!(host.modules().is_empty());

    let e = host.secrets("future").await.unwrap_err().to_string();
    assert!(
        e.contains(&v99.display().to_string())
            && e.contains("speaks plugin ABI version 99, this agent speaks version 1"),
        "{e}"
    );
    // The library's `call` answers 7 to everything: it was never called, or loading would
    // have failed with "return code 7" instead.
    let e = host.secrets("nativedrv").await.unwrap_err().to_string();
    assert!(
        e.contains(&driver.display().to_string())
            && e.contains("a task driver cannot be a native library"),
        "{e}"
    );
    let e = host.secrets("stranger").await.unwrap_err().to_string();
    assert!(
        e.contains(&not_ours.display().to_string()) && e.contains("not a Drover plugin library"),
        "{e}"
    );
    let e = host.secrets("empty").await.unwrap_err().to_string();
    assert!(e.contains("cannot load the library"), "{e}");
    assert_eq!(host.refused().len(), 4);
}

/// A module in WebAssembly text: the ABI version export, and `plugin_info` doing `body`.
fn wat_module(plugin_info_body: &str) -> String {
    format!(
        r#"(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (func (export "drover_abi_version") (result i32)
    (local $p i64)
    (local.set $p (call $alloc (i64.const 16)))
    (call $store_u64 (local.get $p) (i64.const 0x4c505245564f5244))
    (call $store_u64 (i64.add (local.get $p) (i64.const 8)) (i64.const 1))
    (call $output_set (local.get $p) (i64.const 12))
    (i32.const 0))
  (func (export "plugin_info") (result i32)
    (local $p i64)
    {plugin_info_body})
)"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_driver_is_refused_and_a_module_past_its_time_limit_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    // CallResult { ok: PluginInfoResponse { name: "d", kind: PLUGIN_KIND_DRIVER } }
    // = 0a 05 | 0a 01 64 10 01, stored as one little-endian u64.
    std::fs::write(
        dir.join("wasmdrv.wasm"),
        wat_module(
            "(local.set $p (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $p) (i64.const 0x00011064010a050a))
    (call $output_set (local.get $p) (i64.const 7))
    (i32.const 0)",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("spin.wasm"),
        wat_module("(loop $forever (br $forever)) (i32.const 0)"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let host = open(
        tmp.path(),
        &dir,
        BTreeMap::from([(
            "spin".to_string(),
            PluginSettings {
                config_json: json!({}),
                sandbox: Sandbox {
                    call_timeout: Duration::from_millis(300),
                    ..Sandbox::default()
                },
                ..PluginSettings::default()
            },
        )]),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the spinning module was not stopped in time"
    );
    let e = host.secrets("wasmdrv").await.unwrap_err().to_string();
    assert!(
        e.contains("wasmdrv.wasm") && e.contains("a task driver cannot be an Extism module"),
        "{e}"
    );
    let e = host.driver("wasmdrv").await.unwrap_err().to_string();
    assert!(
        e.contains("a task driver cannot be an Extism module"),
        "{e}"
    );
    let e = host.secrets("spin").await.unwrap_err().to_string();
    assert!(
        e.contains("spin.wasm")
            && e.contains("\"plugin_info\" exceeded the time limit of 300ms and was stopped"),
        "{e}"
    );
}

/// Serves `body` to every HTTP request on 127.0.0.1 (for `limit` connections).
fn http_server(body: &'static str, limit: usize) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(limit) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_module_reaches_http_hosts_only_when_granted() {
    let built = example_plugins();
    let port = http_server("s3cr3t", 8);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    copy(&built.wasm, &dir, "closed.wasm");
    copy(&built.wasm, &dir, "granted.wasm");
    let config = json!({ "remote_url": format!("http://127.0.0.1:{port}/token") });
    let host = open(
        tmp.path(),
        &dir,
        BTreeMap::from([
            ("closed".to_string(), settings(config.clone())),
            (
                "granted".to_string(),
                PluginSettings {
                    config_json: config,
                    sandbox: Sandbox {
                        allowed_hosts: vec!["127.0.0.1".into()],
                        ..Sandbox::default()
                    },
                    ..PluginSettings::default()
                },
            ),
        ]),
    )
    .await;
    let closed = host.secrets("closed").await.unwrap();
    let e = closed.fetch("remote").await.unwrap_err();
    assert_eq!(e.kind, SecretsErrorKind::PermissionDenied, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("closed.wasm")
            && msg.contains("is not allowed")
            && msg.contains("allowed_hosts"),
        "{msg}"
    );
    // The module still answers after a refused call.
    assert!(closed.list("").await.unwrap().is_empty());

    let granted = host.secrets("granted").await.unwrap();
    let s = granted.fetch("remote").await.unwrap();
    assert_eq!(s.data.get("value").map(String::as_str), Some("s3cr3t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_secret_provider_served_by_the_sdk_works_through_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    let exe = copy(
        Path::new(env!("CARGO_BIN_EXE_grpc-secrets")),
        &dir,
        "vault-grpc",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut config = static_config();
    config["ttl_secs"] = json!(3600);
    config.as_object_mut().unwrap().remove("ttl");
    let host = open(
        tmp.path(),
        &dir,
        BTreeMap::from([("vault-grpc".to_string(), settings(config))]),
    )
    .await;
    assert!(host.plugin_names().contains(&"vault-grpc".to_string()));
    let s = host.secrets("vault-grpc").await.unwrap();
    assert_eq!(s.transport(), Transport::Grpc);
    let db = s.fetch("db").await.unwrap();
    assert_eq!(db.data.get("password").map(String::as_str), Some("hunter2"));
    assert_eq!(db.ttl_ms, 3_600_000);
    assert_eq!(s.list("dns").await.unwrap(), vec!["dns/key"]);
    assert_eq!(
        s.renew(&db.lease_id, Duration::from_secs(60))
            .await
            .unwrap(),
        Duration::from_secs(60)
    );
    let e = s.fetch("nope").await.unwrap_err();
    assert_eq!(e.kind, SecretsErrorKind::NotFound);
    assert!(e.to_string().contains("no secret at \"nope\""), "{e}");
    let info = host.info("vault-grpc").await.unwrap();
    assert_eq!(info.kind(), drover_proto::base::PluginKind::Secrets);
    // Not a driver: the host says so instead of failing on a missing service.
    let e = host.driver("vault-grpc").await.unwrap_err().to_string();
    assert!(
        e.contains("is a PLUGIN_KIND_SECRETS plugin, not a task driver"),
        "{e}"
    );
    host.shutdown().await;
}

#[test]
fn the_agent_loads_plugin_dir_with_its_plugin_blocks_and_lists_refusals() {
    let built = example_plugins();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    copy(&built.wasm, &dir, "vault.wasm");
    copy(&built.native, &dir, "fastvault.so");
    std::fs::write(
        dir.join("wasmdrv.wasm"),
        wat_module(
            "(local.set $p (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $p) (i64.const 0x00011064010a050a))
    (call $output_set (local.get $p) (i64.const 7))
    (i32.const 0)",
        ),
    )
    .unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(
        &cfg,
        format!(
            r#"plugin_dir = "{}"
plugin "vault" {{
  allowed_hosts = ["127.0.0.1"]
  call_timeout  = "2s"
  config {{
    ttl     = "1h"
    secrets = {{ db = {{ user = "app" }} }}
  }}
}}
plugin "fastvault" {{
  config {{
    secretz = {{}}
  }}
}}
"#,
            dir.display()
        ),
    )
    .unwrap();
    let (h, r) = (drover_tests::free_port(), drover_tests::free_port());
    let agent = drover_tests::Agent::start(
        &["-dev", "-config", cfg.to_str().unwrap()],
        &tmp.path().join("dev"),
        h,
        r,
    );
    agent.wait_ready();
    let plugins = agent
        .get("/v1/agent/plugins")
        .expect("GET /v1/agent/plugins");
    let by_name = |n: &str| {
        plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["Name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} not listed: {plugins:#}\n{}", agent.log_text()))
    };
    let vault = by_name("vault");
    assert_eq!(vault["Transport"], "wasm", "{vault}");
    assert_eq!(vault["Healthy"], true, "{vault}");
    assert_eq!(vault["Kind"], "secrets", "{vault}");
    let fast = by_name("fastvault");
    assert_eq!(fast["Healthy"], false, "{fast}");
    let e = fast["LastError"].as_str().unwrap();
    assert!(e.contains("unknown key \"secretz\""), "{e}");
    let drv = by_name("wasmdrv");
    let e = drv["LastError"].as_str().unwrap();
    assert!(
        e.contains("a task driver cannot be an Extism module"),
        "{e}"
    );
    // The built-in driver is still there.
    assert_eq!(by_name("raw_exec")["Transport"], "grpc");
}
