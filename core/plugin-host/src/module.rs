//! In-process plugins (Extism modules and native libraries): the unary bytes-in/bytes-out
//! call both transports offer, and the sandbox an Extism module runs in.
//!
//! The Extism transport lives in its own crate (drover-plugin-wasm), so that only what needs
//! wasmtime links it: it plugs in here as a [`WasmLoader`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_proto::base::{CallResult, call_error::Code, call_result};
use prost::Message;

/// Why an in-process call failed below the plugin's own answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The call ran longer than the sandbox's time limit and was stopped.
    #[error("the call to {method:?} exceeded the time limit of {limit:?} and was stopped")]
    Timeout { method: String, limit: Duration },
    /// The sandbox refused the plugin something it was not granted (an HTTP host, a path).
    #[error("{0}")]
    Denied(String),
    /// A trap, an out-of-memory, an ABI failure ...
    #[error("{0}")]
    Failed(String),
}

/// A plugin loaded into the agent: one blocking call per RPC (see [`drover_plugin_abi::abi`]).
/// Implementations must be callable from several threads (serializing internally if needed).
pub trait ModuleCall: Send + Sync + 'static {
    /// Calls `method` with the prost-encoded request; answers the raw `CallResult` bytes.
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure>;
    /// "Extism module /path/x.wasm", for messages.
    fn describe(&self) -> String;
}

/// What an Extism module may reach and use. Nothing outside the module is reachable unless
/// the plugin block grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// Host directories the module may open (WASI modules only), host path -> path the
    /// module sees.
    pub allowed_paths: BTreeMap<PathBuf, PathBuf>,
    /// Hosts (globs such as `*.example.com`) the module may send HTTP requests to.
    pub allowed_hosts: Vec<String>,
    /// The most linear memory the module may grow to.
    pub max_memory_bytes: u64,
    /// How long one call may run before it is stopped.
    pub call_timeout: Duration,
}

impl Sandbox {
    /// Default memory limit: 64 MiB.
    pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 64 << 20;
    /// Default per-call time limit: 10 s.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            allowed_paths: BTreeMap::new(),
            allowed_hosts: Vec::new(),
            max_memory_bytes: Self::DEFAULT_MAX_MEMORY_BYTES,
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// Loads `*.wasm` plugins (drover-plugin-wasm's `ExtismLoader`). Blocking (compiles the module).
pub trait WasmLoader: Send + Sync + 'static {
    /// Loads `path` for plugin `name` inside `sandbox`, and checks its ABI version before
    /// answering. The error says what is wrong and names the file.
    fn load(
        &self,
        name: &str,
        path: &Path,
        sandbox: &Sandbox,
    ) -> Result<Arc<dyn ModuleCall>, String>;
}

/// A plugin's answer to a unary call that is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginAnswerError {
    pub code: Code,
    pub message: String,
}

/// Why a unary call did not produce the response message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnaryError {
    #[error(transparent)]
    Call(#[from] CallFailure),
    #[error("{}", .0.message)]
    Answer(PluginAnswerError),
    #[error("the plugin's answer to {method:?} is not a valid message: {problem}")]
    Garbled { method: String, problem: String },
}

/// One RPC over the unary ABI: encodes `req`, calls, unwraps the `CallResult`, decodes.
pub(crate) fn call_unary<Resp: Message + Default>(
    module: &dyn ModuleCall,
    method: &str,
    req: &impl Message,
) -> Result<Resp, UnaryError> {
    let out = module.call(method, &req.encode_to_vec())?;
    let garbled = |problem: String| UnaryError::Garbled {
        method: method.to_string(),
        problem,
    };
    let result = CallResult::decode(out.as_slice()).map_err(|e| garbled(e.to_string()))?;
    match result.result {
        Some(call_result::Result::Ok(bytes)) => {
            Resp::decode(bytes.as_slice()).map_err(|e| garbled(e.to_string()))
        }
        Some(call_result::Result::Error(e)) => Err(UnaryError::Answer(PluginAnswerError {
            code: Code::try_from(e.code).unwrap_or(Code::Unspecified),
            message: e.message,
        })),
        None => Err(garbled("it holds neither a result nor an error".into())),
    }
}
