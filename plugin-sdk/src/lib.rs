//! Write Drover plugins.
//!
//! - [`TaskDriver`]: the async trait a task driver implements.
//! - [`main`]: the whole `main()` of a standalone plugin binary (task-shim dispatch, cookie
//!   check, runtime, [`serve_driver`]).
//! - [`serve_driver`]: the go-plugin-compatible gRPC server, for binaries that have their own
//!   runtime (`drover plugin serve NAME`).
//! - [`shim`]: the per-task shim that keeps tasks alive across plugin and agent restarts (the
//!   `drover-shim` crate, re-exported, with the drivers' task table [`shim::ShimTasks`]).
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
//!
//! # The handshake (HashiCorp go-plugin's gRPC flavour, on the wire)
//!
//! A Drover plugin is an executable that Drover's plugin host, or any host written with
//! HashiCorp's go-plugin, starts and talks to over gRPC on a Unix socket:
//!
//! 1. The host sets the magic cookie `DROVER_PLUGIN_MAGIC_COOKIE` ([`MAGIC_COOKIE_KEY`]) to
//!    the fixed value
//!    `5e3f1c0a9b7d4e2f8a6c1b3d5f7e9a0c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f`
//!    ([`MAGIC_COOKIE_VALUE`]). It is not a secret: it only tells the binary that a host started
//!    it. Without it the plugin prints an explanation on stderr and exits 1.
//! 2. `PLUGIN_PROTOCOL_VERSIONS` lists the application protocol versions the host offers
//!    (comma-separated); the plugin picks the newest one it also speaks, or explains on
//!    stderr that there is none and exits 1.
//! 3. The plugin listens on a fresh socket in `PLUGIN_UNIX_SOCKET_DIR` (else `TMPDIR`, else
//!    `/tmp`; the path must stay under 108 bytes) and prints one line on stdout:
//!    `1|<version>|unix|<socket path>|grpc|` (six fields, the last, go-plugin's AutoMTLS
//!    certificate, empty).
//! 4. It serves `grpc.health.v1.Health` (service `"plugin"` is SERVING), go-plugin's
//!    `plugin.GRPCController` (`Shutdown` stops it), and Drover's `BasePlugin` and `Driver`.
//!    It does not need the host to call go-plugin's broker or stdio services.
//! 5. It logs hclog JSON lines on stderr ([`logging`]), which the host forwards into its own
//!    log at their level.
//! 6. It stops on `Shutdown`, on SIGTERM, and, when the host sets
//!    `DROVER_PLUGIN_STDIN_LIFELINE=1` (Drover's host does, and holds the other end of the
//!    pipe), when its stdin closes, so a plugin never outlives a crashed agent. Other
//!    go-plugin hosts hand the plugin their own stdin, which may be closed from the start;
//!    without the variable stdin is ignored. SIGINT is ignored, as go-plugin plugins do.
//!
//! A go-plugin host loads a Drover plugin with
//!
//! ```go
//! plugin.NewClient(&plugin.ClientConfig{
//!     HandshakeConfig: plugin.HandshakeConfig{
//!         ProtocolVersion:  1,
//!         MagicCookieKey:   "DROVER_PLUGIN_MAGIC_COOKIE",
//!         MagicCookieValue: "5e3f1c0a9b7d4e2f8a6c1b3d5f7e9a0c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f",
//!     },
//!     AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
//!     // ...
//! })
//! ```
//!
//! (tests/go/host in the repository does, against go-plugin 1.0.1.)
//!
//! # Shipping a plugin
//!
//! Link the plugin binary static and position-dependent, as Go links its plugins:
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
//!     cargo build --release --target x86_64-unknown-linux-gnu
//! ```
//!
//! (`--target` keeps the flags off build scripts and proc macros.) A host starts a plugin on
//! every agent start and relaunch, and each task shim is another exec of it; a static,
//! non-PIE binary skips the dynamic loader and its relocations, which are most of a
//! dynamically linked plugin's launch time (see docs/BENCHMARKS.md). glibc's `files` lookups
//! of users and groups (`/etc/passwd`, `/etc/group`) work in a static binary; NSS modules
//! such as LDAP or sssd need the dynamic build.

pub mod abi;
#[cfg(feature = "grpc")]
pub mod driver;
#[cfg(feature = "grpc")]
pub mod exec;
/// The go-plugin handshake, shared with the host (`drover_plugin_abi::handshake`).
pub use drover_plugin_abi::handshake;
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
    crate::serve::serve_to_exit(serve_driver(driver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crate_docs_state_the_cookie() {
        let docs = include_str!("lib.rs");
        assert!(docs.contains(&format!("`{MAGIC_COOKIE_KEY}`")));
        assert!(docs.contains(&format!("`{MAGIC_COOKIE_VALUE}`")));
        assert!(docs.contains(&format!("MagicCookieValue: \"{MAGIC_COOKIE_VALUE}\"")));
    }
}
