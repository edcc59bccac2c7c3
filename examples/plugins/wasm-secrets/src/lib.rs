//! A secret provider compiled to an Extism module (`wasm_secrets.wasm`, built with
//! `--target wasm32-unknown-unknown`): its secrets come from its own `config` block, and the
//! secret at path `remote` is fetched over HTTP from `remote_url` — which the sandbox allows
//! only when the plugin block grants the host. Drop the module in the agent's `plugin_dir`
//! (named as you want the plugin to be called, e.g. `static.wasm`) and configure it:
//!
//! ```hcl
//! plugin "static" {
//!   allowed_hosts = ["vault.internal"]
//!   config {
//!     ttl        = "1h"
//!     secrets    = { "db" = { user = "app", password = "hunter2" } }
//!     remote_url = "http://vault.internal/v1/token"
//!   }
//! }
//! ```

drover_plugin_sdk::export_secret_provider!(
    static_secrets::StaticSecrets,
    static_secrets::StaticSecrets::new("wasm-secrets", true)
);
