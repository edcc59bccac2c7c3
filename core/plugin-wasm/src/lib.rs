//! The Extism transport alone: Drover plugins compiled to WebAssembly (`*.wasm`), run in a
//! sandbox inside the agent. Only this crate links wasmtime (through extism).
//!
//! A module speaks the unary ABI of [`drover_plugin_sdk::abi`]: one export per RPC, the
//! prost-encoded request in, a prost-encoded `CallResult` out. Before any other call the host
//! calls the `drover_abi_version` export and refuses a module that lacks it or speaks another
//! version.
//!
//! The sandbox ([`Sandbox`]): a memory limit, a per-call time limit (a call running longer is
//! interrupted), and no reach outside the module unless the plugin block grants it: HTTP
//! requests (Extism's `http_request` host function) only to `allowed_hosts`, files (WASI
//! modules) only under `allowed_paths`. Nothing else is linked in: no environment variables,
//! no sockets, no processes.
//!
//! ```no_run
//! use drover_plugin_host::{ModuleCall, Sandbox};
//! let module = drover_plugin_wasm::WasmModule::load(
//!     "vault",
//!     std::path::Path::new("/etc/drover/plugins/vault.wasm"),
//!     &Sandbox { allowed_hosts: vec!["vault.internal".into()], ..Sandbox::default() },
//! )?;
//! let answer = module.call("plugin_info", &[])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_plugin_host::{CallFailure, ModuleCall, Sandbox, WasmLoader};
use drover_plugin_sdk::abi::{ABI_MAGIC, ABI_VERSION, WASM_VERSION_EXPORT};
use extism::{Manifest, Plugin, PluginBuilder, Wasm};

/// WebAssembly pages are 64 KiB.
const PAGE: u64 = 64 << 10;

/// Why a module was refused or a call failed to start.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("{}: cannot read the module: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a loadable Extism module: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error(
        "{}: not a Drover plugin module: it does not export `{WASM_VERSION_EXPORT}` \
         (build it with drover_plugin_sdk::export_secret_provider!)",
        path.display()
    )]
    NotAPlugin { path: PathBuf },
    #[error("{}: `{WASM_VERSION_EXPORT}` failed: {message}", path.display())]
    VersionCall { path: PathBuf, message: String },
    #[error(
        "{}: not a Drover plugin module: `{WASM_VERSION_EXPORT}` answered {found:?}, not the magic and a version",
        path.display()
    )]
    BadVersionAnswer { path: PathBuf, found: Vec<u8> },
    #[error(
        "{}: the module speaks plugin ABI version {found}, this agent speaks version {ABI_VERSION}: \
         rebuild it against a drover-plugin-sdk of this agent's version",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{}: the memory limit {bytes} bytes is below one WebAssembly page (64 KiB)", path.display())]
    MemoryLimit { path: PathBuf, bytes: u64 },
}

/// A loaded Extism module. Calls are serialized (an instance runs one call at a time).
pub struct WasmModule {
    name: String,
    path: PathBuf,
    call_timeout: Duration,
    plugin: Mutex<Plugin>,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

/// The manifest for `wasm` inside `sandbox`.
fn manifest(wasm: Wasm, sandbox: &Sandbox, path: &Path) -> Result<Manifest, WasmError> {
    let pages = sandbox.max_memory_bytes / PAGE;
    if pages == 0 {
        return Err(WasmError::MemoryLimit {
            path: path.to_path_buf(),
            bytes: sandbox.max_memory_bytes,
        });
    }
    let mut m = Manifest::new([wasm])
        .with_memory_max(u32::try_from(pages).unwrap_or(u32::MAX))
        .with_timeout(sandbox.call_timeout)
        // No host is reachable unless granted (None would mean the same to Extism today;
        // an explicit empty list keeps it so).
        .disallow_all_hosts();
    for host in &sandbox.allowed_hosts {
        m = m.with_allowed_host(host.clone());
    }
    for (host_path, guest_path) in &sandbox.allowed_paths {
        m = m.with_allowed_path(host_path.to_string_lossy().into_owned(), guest_path);
    }
    Ok(m)
}

impl WasmModule {
    /// Reads and compiles `path` for plugin `name` inside `sandbox`, then checks its ABI
    /// version. Blocking (compiling takes a while): call it off the async runtime.
    pub fn load(name: &str, path: &Path, sandbox: &Sandbox) -> Result<WasmModule, WasmError> {
        let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(name, path, bytes, sandbox)
    }

    /// Like [`WasmModule::load`], from the module's bytes (binary or WAT text); `path` only
    /// names it in messages.
    pub fn from_bytes(
        name: &str,
        path: &Path,
        bytes: Vec<u8>,
        sandbox: &Sandbox,
    ) -> Result<WasmModule, WasmError> {
        let manifest = manifest(Wasm::data(bytes).with_name(name), sandbox, path)?;
        // WASI is linked so that WASI-targeted modules load; it has no preopened directory
        // but the granted ones, no environment and no inherited stdio.
        let plugin = PluginBuilder::new(manifest)
            .with_wasi(true)
            .with_cache_disabled()
            .build()
            .map_err(|e| WasmError::Load {
                path: path.to_path_buf(),
                message: format!("{e:#}"),
            })?;
        let module = WasmModule {
            name: name.to_string(),
            path: path.to_path_buf(),
            call_timeout: sandbox.call_timeout,
            plugin: Mutex::new(plugin),
        };
        module.check_version()?;
        Ok(module)
    }

    fn check_version(&self) -> Result<(), WasmError> {
        let path = self.path.clone();
        let mut plugin = self.plugin.lock().unwrap_or_else(|p| p.into_inner());
        if !plugin.function_exists(WASM_VERSION_EXPORT) {
            return Err(WasmError::NotAPlugin { path });
        }
        let answer: Vec<u8> = plugin
            .call::<&[u8], &[u8]>(WASM_VERSION_EXPORT, &[])
            .map(<[u8]>::to_vec)
            .map_err(|e| WasmError::VersionCall {
                path: path.clone(),
                message: format!("{e:#}"),
            })?;
        if answer.len() != 12 || answer[..8] != ABI_MAGIC.to_le_bytes() {
            return Err(WasmError::BadVersionAnswer {
                path,
                found: answer,
            });
        }
        let found = u32::from_le_bytes(answer[8..12].try_into().unwrap_or_default());
        if found != ABI_VERSION {
            return Err(WasmError::Version { path, found });
        }
        Ok(())
    }

    /// The module's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ModuleCall for WasmModule {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        let mut plugin = self.plugin.lock().unwrap_or_else(|p| p.into_inner());
        if !plugin.function_exists(method) {
            return Err(CallFailure::Failed(format!(
                "{}: the module does not export {method:?}",
                self.path.display()
            )));
        }
        match plugin.call::<&[u8], &[u8]>(method, input) {
            Ok(out) => Ok(out.to_vec()),
            Err(e) => {
                let message = format!("{e:#}");
                if message == "timeout" {
                    Err(CallFailure::Timeout {
                        method: method.to_string(),
                        limit: self.call_timeout,
                    })
                } else if message.contains(" is not allowed") {
                    // Extism's words for a host (or path) the manifest does not grant.
                    Err(CallFailure::Denied(format!(
                        "{}: the sandbox refused the call to {method:?}: {message} \
                         (grant it with allowed_hosts / allowed_paths in the plugin block)",
                        self.path.display()
                    )))
                } else if message == "oom" {
                    Err(CallFailure::Failed(format!(
                        "{}: the call to {method:?} ran out of its memory limit",
                        self.path.display()
                    )))
                } else {
                    Err(CallFailure::Failed(format!(
                        "{}: the call to {method:?} failed: {message}",
                        self.path.display()
                    )))
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!("Extism module {}", self.path.display())
    }
}

/// The [`WasmLoader`] the plugin host uses to load `*.wasm` files from `plugin_dir`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtismLoader;

impl WasmLoader for ExtismLoader {
    fn load(
        &self,
        name: &str,
        path: &Path,
        sandbox: &Sandbox,
    ) -> Result<Arc<dyn ModuleCall>, String> {
        WasmModule::load(name, path, sandbox)
            .map(|m| Arc::new(m) as Arc<dyn ModuleCall>)
            .map_err(|e| e.to_string())
    }
}

/// The loader as the host takes it.
pub fn loader() -> Arc<dyn WasmLoader> {
    Arc::new(ExtismLoader)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module that exports the version check and then loops forever in `spin`.
    const SPIN: &str = r#"(module
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
        (func (export "spin") (result i32)
            (loop $forever (br $forever))
            (i32.const 0))
    )"#;

    #[test]
    fn a_call_past_its_time_limit_is_stopped() {
        let sandbox = Sandbox {
            call_timeout: Duration::from_millis(200),
            ..Sandbox::default()
        };
        let m = WasmModule::from_bytes(
            "spin",
            Path::new("spin.wat"),
            SPIN.as_bytes().to_vec(),
            &sandbox,
        )
        .unwrap();
        let started = std::time::Instant::now();
        let e = m.call("spin", &[]).unwrap_err();
        assert_eq!(
            e,
            CallFailure::Timeout {
                method: "spin".into(),
                limit: Duration::from_millis(200)
            }
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("exceeded the time limit"), "{e}");
    }

    #[test]
    fn refuses_modules_without_the_abi_export_or_of_another_version() {
        let e = WasmModule::from_bytes(
            "x",
            Path::new("/p/x.wasm"),
            b"(module (memory (export \"memory\") 1))".to_vec(),
            &Sandbox::default(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/p/x.wasm: not a Drover plugin module"),
            "{msg}"
        );
        let v2 = SPIN.replace("(i64.const 1))", "(i64.const 2))");
        let e = WasmModule::from_bytes(
            "x",
            Path::new("/p/x.wasm"),
            v2.into_bytes(),
            &Sandbox::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("speaks plugin ABI version 2"), "{e}");
        let e = WasmModule::from_bytes(
            "x",
            Path::new("/p/x.wasm"),
            b"garbage".to_vec(),
            &Sandbox::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/p/x.wasm: not a loadable Extism module"),
            "{e}"
        );
    }

    /// A WASI module whose `read` opens `secret.txt` in the first preopened directory (fd 3)
    /// and outputs its content; it returns 100 + errno when the open fails.
    const READ_FILE: &str = r#"(module
        (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_read"
            (func $fd_read (param i32 i32 i32 i32) (result i32)))
        (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
        (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
        (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
        (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
        (memory (export "memory") 1)
        (data (i32.const 0) "secret.txt")
        (func (export "drover_abi_version") (result i32)
            (local $p i64)
            (local.set $p (call $alloc (i64.const 16)))
            (call $store_u64 (local.get $p) (i64.const 0x4c505245564f5244))
            (call $store_u64 (i64.add (local.get $p) (i64.const 8)) (i64.const 1))
            (call $output_set (local.get $p) (i64.const 12))
            (i32.const 0))
        (func (export "read") (result i32)
            (local $err i32) (local $n i32) (local $i i32) (local $p i64)
            (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 0)
                (i32.const 10) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0)
                (i32.const 40)))
            (if (local.get $err) (then (return (i32.add (i32.const 100) (local.get $err)))))
            (i32.store (i32.const 16) (i32.const 64))
            (i32.store (i32.const 20) (i32.const 64))
            (local.set $err (call $fd_read (i32.load (i32.const 40)) (i32.const 16)
                (i32.const 1) (i32.const 32)))
            (if (local.get $err) (then (return (i32.add (i32.const 200) (local.get $err)))))
            (local.set $n (i32.load (i32.const 32)))
            (local.set $p (call $alloc (i64.extend_i32_u (local.get $n))))
            (block $done
                (loop $copy
                    (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
                    (call $store_u8
                        (i64.add (local.get $p) (i64.extend_i32_u (local.get $i)))
                        (i32.load8_u (i32.add (i32.const 64) (local.get $i))))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $copy)))
            (call $output_set (local.get $p) (i64.extend_i32_u (local.get $n)))
            (i32.const 0))
    )"#;

    #[test]
    fn files_are_reachable_only_under_granted_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "hunter2").unwrap();
        let closed = WasmModule::from_bytes(
            "files",
            Path::new("files.wat"),
            READ_FILE.as_bytes().to_vec(),
            &Sandbox::default(),
        )
        .unwrap();
        let e = closed.call("read", &[]).unwrap_err();
        // 100 + errno: the open failed (no directory is preopened without a grant).
        assert!(
            matches!(&e, CallFailure::Failed(m) if m.contains("non-zero exit code: 1")),
            "{e}"
        );
        let granted = WasmModule::from_bytes(
            "files",
            Path::new("files.wat"),
            READ_FILE.as_bytes().to_vec(),
            &Sandbox {
                allowed_paths: [(dir.path().to_path_buf(), PathBuf::from("/data"))].into(),
                ..Sandbox::default()
            },
        )
        .unwrap();
        assert_eq!(granted.call("read", &[]).unwrap(), b"hunter2");
    }
}
