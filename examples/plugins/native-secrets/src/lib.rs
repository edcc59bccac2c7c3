//! A secret provider compiled to a native library (`libnative_secrets.so`): its secrets come
//! from its own `config` block. Drop the library in the agent's `plugin_dir` (renamed as you
//! want the plugin to be called, e.g. `static.so`) and configure it:
//!
//! ```hcl
//! plugin "static" {
//!   config {
//!     ttl     = "1h"
//!     secrets = { "db" = { user = "app", password = "hunter2" } }
//!   }
//! }
//! ```
//!
//! A native library runs inside the agent: use it only for code you trust as much as the agent.

drover_plugin_sdk::export_secret_provider!(
    static_secrets::StaticSecrets,
    static_secrets::StaticSecrets::new("native-secrets", false)
);
