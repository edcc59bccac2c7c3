//! The CNI runtime: runs CNI plugins per the spec's execution protocol
//! (<https://github.com/containernetworking/cni/blob/main/SPEC.md>, versions 1.0.0 and
//! 0.4.0) to attach a container (here: an allocation's network namespace) to a network.
//!
//! - [`conflist`]: network configuration lists (`*.conflist`, and a single `.conf` as a
//!   one-plugin list), loaded from `cni_config_dir`.
//! - [`plugins`]: finding a plugin binary by its `type` on `cni_path`.
//! - [`attachment`]: the runtime parameters of one attachment (container id, netns,
//!   interface, `CNI_ARGS`, capability arguments such as `portMappings`).
//! - [`exec`]: running one plugin (environment, stdin, bounded output, timeout).
//! - [`result`]: the spec's result and error types.
//! - [`network`]: ADD / CHECK / DEL of a whole list, with rollback on a failed ADD.
//! - [`cache`]: each ADD's result and parameters on disk, so DEL works after a crash.
//!
//! The spec types are our own serde types: the crates.io CNI crates (`cni-plugin`,
//! `rust-cni`, `cni`) are unmaintained or cover only the plugin side or only old spec
//! versions, and none keeps unknown keys of a result for passing it on as `prevResult`.

pub mod attachment;
pub mod cache;
pub mod conflist;
mod error;
pub mod exec;
pub mod network;
pub mod plugins;
mod quirks;
pub mod result;

pub use attachment::Attachment;
pub use cache::{CachedAttachment, ResultCache};
pub use conflist::{
    ConfigFileError, LoadedConfigs, NetworkConfigList, PluginConfig, load_dir, load_dir_async,
};
pub use error::Error;
pub use exec::{Command, PluginRunner, VersionInfo};
pub use network::CniRuntime;
pub use plugins::{DEFAULT_CNI_PATH, PluginPath};
pub use result::{CniResult, Dns, Interface, IpConfig, PluginErrorReply, Route};

/// The spec versions this runtime speaks.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["1.0.0", "0.4.0"];
