//! The cost of one call into an in-process secret provider: the example plugins of
//! `examples/plugins` (release builds), configured with two secrets, answering `fetch`.
//!
//! - `extism_call_p50`: the Extism transport (drover-plugin-wasm), one synchronous call
//!   (encode the request, call the export, decode the CallResult and the FetchResponse).
//!   Target <= 100 us.
//! - `native_call_p50`: the same through a native library's function table. Target <= 2 us.
//! - `*_fetch_async_p50`: the host's async handle (`SecretsClient::fetch`), which adds the hop
//!   to tokio's blocking pool that keeps these calls off the runtime.
//!
//! `cargo bench -p drover-tests --bench plugin_calls`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drover_plugin_host::{
    HostConfig, ModuleCall, NativeLibrary, PluginHost, PluginSettings, Sandbox,
};
use drover_plugin_wasm::WasmModule;
use drover_proto::base::{CallResult, SetConfigRequest, call_result};
use drover_proto::secrets::{FetchRequest, FetchResponse};
use prost::Message;

const CALLS: usize = 20_000;

fn config() -> serde_json::Value {
    serde_json::json!({
        "ttl": "1h",
        "secrets": {
            "db": { "user": "app", "password": "hunter2" },
            "api": { "token": "t0k3n" },
        },
    })
}

fn fetch(module: &dyn ModuleCall) -> FetchResponse {
    let out = module
        .call(
            "fetch",
            &FetchRequest {
                path: "db".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        )
        .expect("fetch");
    match CallResult::decode(out.as_slice())
        .expect("CallResult")
        .result
    {
        Some(call_result::Result::Ok(b)) => {
            FetchResponse::decode(b.as_slice()).expect("FetchResponse")
        }
        other => panic!("fetch failed: {other:?}"),
    }
}

fn configure(module: &dyn ModuleCall) {
    let req = SetConfigRequest {
        config_json: serde_json::to_vec(&config()).unwrap(),
        ..Default::default()
    };
    let out = module
        .call("set_config", &req.encode_to_vec())
        .expect("set_config");
    match CallResult::decode(out.as_slice()).unwrap().result {
        Some(call_result::Result::Ok(_)) => {}
        other => panic!("set_config failed: {other:?}"),
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    let mut at = |q: f64| drover_tests::percentile(&mut samples, q).as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

fn measure(name: &str, module: &dyn ModuleCall) {
    configure(module);
    assert_eq!(fetch(module).data["password"], "hunter2");
    for _ in 0..1_000 {
        fetch(module);
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        std::hint::black_box(fetch(module));
        samples.push(t.elapsed());
    }
    let (p50, p99) = percentiles(samples);
    println!("BENCH {name}_call_p50 {p50:.2} us");
    println!("BENCH {name}_call_p99 {p99:.2} us");
}

fn main() {
    let built = drover_tests::example_plugins_release();
    let wasm = WasmModule::load("bench", &built.wasm, &Sandbox::default()).expect("load wasm");
    measure("extism", &wasm);
    let native = NativeLibrary::open(&built.native).expect("load native");
    measure("native", &native);

    // Through the host's async handle, as the client would call it.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(&built.wasm, tmp.path().join("w.wasm")).unwrap();
    std::fs::copy(&built.native, tmp.path().join("n.so")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let settings = |_: ()| PluginSettings {
            config_json: config(),
            ..PluginSettings::default()
        };
        let host = PluginHost::open(
            HostConfig {
                data_dir: tmp.path().to_path_buf(),
                plugin_dir: Some(tmp.path().to_path_buf()),
                settings: BTreeMap::from([
                    ("w".to_string(), settings(())),
                    ("n".to_string(), settings(())),
                ]),
                ..HostConfig::default()
            },
            Some(drover_plugin_wasm::loader()),
        )
        .await;
        for (label, name) in [("extism", "w"), ("native", "n")] {
            let s = host.secrets(name).await.expect("loaded");
            let mut samples = Vec::with_capacity(CALLS / 4);
            for _ in 0..CALLS / 4 {
                let t = Instant::now();
                std::hint::black_box(s.fetch("db").await.expect("fetch"));
                samples.push(t.elapsed());
            }
            let (p50, p99) = percentiles(samples);
            println!("BENCH {label}_fetch_async_p50 {p50:.2} us");
            println!("BENCH {label}_fetch_async_p99 {p99:.2} us");
        }
    });
}
