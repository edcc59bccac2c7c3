//! Write Drover plugins.
//!
//! - [`TaskDriver`]: the async trait a task driver implements.
//! - [`main`]: the whole `main()` of a standalone plugin binary (task-shim dispatch, cookie
//!   check, runtime, [`serve_driver`]).
//! - [`serve_driver`]: the go-plugin-compatible gRPC server, for binaries that have their own
//!   runtime (`drover plugin serve NAME`).
//! - [`shim`]: the per-task shim that keeps tasks alive across plugin and agent restarts.
//! - [`handshake`]: the handshake constants and line format, shared with the host.
//! - [`logging`]: hclog-shaped JSON logs on stderr, which hosts forward into their own logs.
//! - [`SecretProvider`]: the sync trait a secret provider implements; served over gRPC by
//!   [`serve_secrets`] / [`main_secrets`], or compiled unchanged to an Extism module (`*.wasm`)
//!   or a native library (`*.so`) with [`export_secret_provider!`] (see [`abi`]).
//!
//! Features: `grpc` (default) is everything that needs tokio and tonic (plugin processes,
//! drivers, the task shim); `wasm` and `native` make [`export_secret_provider!`] emit the
//! exports of an Extism module (on `wasm32`) or of a native library (elsewhere). A plugin
//! built for `wasm32-unknown-unknown` uses `default-features = false, features = ["wasm"]`.

pub mod abi;
#[cfg(feature = "grpc")]
pub mod driver;
pub mod handshake;
#[cfg(feature = "grpc")]
pub mod logging;
pub mod secrets;
#[cfg(feature = "grpc")]
mod secrets_grpc;
#[cfg(feature = "grpc")]
pub mod serve;
#[cfg(feature = "grpc")]
pub mod shim;

#[cfg(feature = "grpc")]
pub use driver::{DriverError, PluginInfo, TaskDriver, exit_result};
pub use handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
#[cfg(feature = "grpc")]
pub use logging::init_logging;
pub use secrets::{ProviderInfo, Secret, SecretError, SecretProvider};
#[cfg(feature = "grpc")]
pub use secrets_grpc::{main_secrets, serve_secrets};
#[cfg(feature = "grpc")]
pub use serve::{ServeError, check_cookie_or_exit, serve_driver};

/// The wire types, re-exported so plugins need not depend on `drover-proto` themselves.
pub use drover_proto as proto;

/// The complete `main()` of a standalone driver plugin binary:
///
/// 1. `<exe> task-shim ...` runs the task shim synchronously, before any thread or runtime
///    exists, and exits with its status;
/// 2. otherwise checks the magic cookie (exits 1 with an explanation when run by hand),
///    installs hclog logging, builds a tokio runtime and serves the driver until the host
///    stops it.
///
/// ```ignore
/// fn main() {
///     drover_plugin_sdk::main(MyDriver::default)
/// }
/// ```
#[cfg(feature = "grpc")]
pub fn main<D: TaskDriver>(make: impl FnOnce() -> D) -> ! {
    shim::exit_if_invoked();
    check_cookie_or_exit();
    let driver = make();
    init_logging(&driver.plugin_info().name);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(serve_driver(driver));
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(error = %e, "plugin failed");
            eprintln!("plugin failed: {e}");
            std::process::exit(1);
        }
    }
}
