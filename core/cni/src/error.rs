//! The runtime's errors: each names the plugin (its `type`) and the command where one ran.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::exec::Command;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A network configuration (list) that cannot be used.
    #[error("CNI network configuration: {0}")]
    Config(String),
    /// A plugin `type` that is not a plain file name.
    #[error("CNI plugin type {0:?} is not a plain file name")]
    BadPluginType(String),
    #[error("CNI plugin {plugin:?} not found in {cni_path}")]
    PluginNotFound { plugin: String, cni_path: String },
    /// A runtime parameter (container id, interface name, CNI_ARGS ...) that is refused.
    #[error("invalid CNI {what}: {why}")]
    Parameter { what: &'static str, why: String },
    #[error("CNI plugin {plugin} {command}: cannot start {}: {source}", binary.display())]
    Spawn {
        plugin: String,
        command: Command,
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The plugin failed and said why in the spec's error shape.
    #[error(
        "CNI plugin {plugin} {command} failed: {msg}{} (code {code})",
        details_suffix(details)
    )]
    Plugin {
        plugin: String,
        command: Command,
        code: u32,
        msg: String,
        details: Option<String>,
    },
    /// The plugin failed without a readable error on stdout.
    #[error("CNI plugin {plugin} {command} failed ({status}): {stderr}")]
    Failed {
        plugin: String,
        command: Command,
        status: String,
        stderr: String,
    },
    #[error("CNI plugin {plugin} {command} timed out after {after:?}")]
    Timeout {
        plugin: String,
        command: Command,
        after: Duration,
    },
    #[error("CNI plugin {plugin} {command}: {stream} exceeds {limit} bytes")]
    OutputTooLarge {
        plugin: String,
        command: Command,
        stream: &'static str,
        limit: usize,
    },
    #[error("CNI plugin {plugin} {command}: reading its output: {source}")]
    Io {
        plugin: String,
        command: Command,
        #[source]
        source: io::Error,
    },
    #[error("CNI plugin {plugin} {command}: unreadable result: {source}")]
    BadResult {
        plugin: String,
        command: Command,
        #[source]
        source: serde_json::Error,
    },
    #[error("CNI result cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cached CNI result for network {network:?}, container {container_id:?}")]
    NotCached {
        network: String,
        container_id: String,
    },
    /// ADD failed; what had been added was deleted again (`rollback` lists what failed then).
    #[error(
        "CNI ADD of network {network:?}: {source}{}",
        rollback_suffix(rollback)
    )]
    Add {
        network: String,
        #[source]
        source: Box<Error>,
        rollback: Vec<Error>,
    },
    /// DEL ran every plugin; these failed.
    #[error("CNI DEL of network {network:?}: {}", join(errors))]
    Del { network: String, errors: Vec<Error> },
    #[error("CNI runtime task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// The plugin that failed and its message, for a task event: the first plugin failure
    /// inside this error (an ADD's cause, a DEL's first error).
    pub fn plugin_failure(&self) -> Option<(&str, &str)> {
        match self {
            Error::Plugin { plugin, msg, .. } => Some((plugin, msg)),
            Error::Failed { plugin, stderr, .. } => Some((plugin, stderr)),
            Error::Add { source, .. } => source.plugin_failure(),
            Error::Del { errors, .. } => errors.iter().find_map(Error::plugin_failure),
            _ => None,
        }
    }
}

fn details_suffix(details: &Option<String>) -> String {
    match details {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

fn rollback_suffix(rollback: &[Error]) -> String {
    if rollback.is_empty() {
        String::new()
    } else {
        format!(" (and deleting it again: {})", join(rollback))
    }
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
