//! The unary ABI of in-process plugins: Extism modules (`*.wasm`) and native libraries (`*.so`).
//!
//! Every RPC of a plugin's contract becomes one call, bytes in and bytes out: the input is the
//! RPC's prost-encoded request message, the output a prost-encoded
//! [`CallResult`](drover_proto::base::CallResult) holding the prost-encoded response message or
//! a [`CallError`](drover_proto::base::CallError). The method names are in [`method`]. (A
//! streaming RPC, should a contract carried this way ever have one, becomes a poll call that
//! takes and returns a cursor.)
//!
//! **Extism.** Each method is an export of that name (`fetch`, `list`, ...) taking its input
//! and setting its output through Extism's kernel. The export [`WASM_VERSION_EXPORT`] outputs
//! [`ABI_MAGIC`] and [`ABI_VERSION`] (12 bytes, little endian); the host calls it before any
//! other and refuses a module that lacks it or speaks another version.
//!
//! **Native.** The library exports one C function, [`NATIVE_ENTRY_SYMBOL`], returning a
//! pointer to a static [`NativeTable`]. The host reads its [`NativeTableHeader`] first and
//! refuses a library whose magic or version differ, before calling anything in it. Then
//! `call(method, input, &mut out)` answers in a buffer the library allocated, which the host
//! hands back to the table's `free`.
//!
//! Plugin authors do not touch any of this: [`crate::export_secret_provider!`] emits it.

use std::panic::AssertUnwindSafe;
use std::sync::RwLock;

use crate::secrets::{SecretProvider, dispatch, unimplemented_result};

/// The method names of the unary ABI (one per RPC of base.proto and secrets.proto).
pub mod method {
    /// `BasePlugin.PluginInfo`
    pub const PLUGIN_INFO: &str = "plugin_info";
    /// `BasePlugin.ConfigSchema`
    pub const CONFIG_SCHEMA: &str = "config_schema";
    /// `BasePlugin.SetConfig`
    pub const SET_CONFIG: &str = "set_config";
    /// `SecretProvider.Fetch`
    pub const FETCH: &str = "fetch";
    /// `SecretProvider.List`
    pub const LIST: &str = "list";
    /// `SecretProvider.Renew`
    pub const RENEW: &str = "renew";
    /// Every method a secret provider answers.
    pub const SECRETS: &[&str] = &[PLUGIN_INFO, CONFIG_SCHEMA, SET_CONFIG, FETCH, LIST, RENEW];
}

/// "DROVERPL", little endian: the first field of a native table and of the wasm version answer.
pub const ABI_MAGIC: u64 = u64::from_le_bytes(*b"DROVERPL");
/// The version of this ABI (the table's layout, the call convention, the envelope).
pub const ABI_VERSION: u32 = 1;
/// The one symbol a native plugin library exports.
pub const NATIVE_ENTRY_SYMBOL: &str = "drover_plugin_entry";
/// The Extism export answering [`ABI_MAGIC`] and [`ABI_VERSION`].
pub const WASM_VERSION_EXPORT: &str = "drover_abi_version";

/// A byte buffer allocated by the plugin library and freed by its table's `free`.
#[repr(C)]
#[derive(Debug)]
pub struct NativeBuffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl NativeBuffer {
    /// An empty buffer (nothing to free).
    pub const fn empty() -> Self {
        Self {
            ptr: std::ptr::null_mut(),
            len: 0,
            cap: 0,
        }
    }
}

/// `call(method, method_len, input, input_len, out)`: 0 when `out` holds a `CallResult`;
/// anything else is an ABI failure (null or invalid arguments) and leaves `out` untouched.
pub type NativeCallFn = unsafe extern "C" fn(
    method: *const u8,
    method_len: usize,
    input: *const u8,
    input_len: usize,
    out: *mut NativeBuffer,
) -> i32;

/// Frees a buffer a `call` returned.
pub type NativeFreeFn = unsafe extern "C" fn(buf: NativeBuffer);

/// The fields every version of the table starts with: read and checked before anything else.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NativeTableHeader {
    /// [`ABI_MAGIC`]
    pub magic: u64,
    /// [`ABI_VERSION`]
    pub abi_version: u32,
    /// `size_of::<NativeTable>()` as the library was built.
    pub table_size: u32,
}

/// What [`NATIVE_ENTRY_SYMBOL`] returns a pointer to (version 1).
#[repr(C)]
pub struct NativeTable {
    pub header: NativeTableHeader,
    /// The plugin's kind (`PluginKind` of base.proto), so a host can refuse a kind it cannot
    /// carry without calling into the library.
    pub kind: i32,
    pub call: NativeCallFn,
    pub free: NativeFreeFn,
}

/// The signature of [`NATIVE_ENTRY_SYMBOL`].
pub type NativeEntryFn = unsafe extern "C" fn() -> *const NativeTable;

/// The header a library built with this SDK puts in its table.
pub const fn native_header() -> NativeTableHeader {
    NativeTableHeader {
        magic: ABI_MAGIC,
        abi_version: ABI_VERSION,
        table_size: std::mem::size_of::<NativeTable>() as u32,
    }
}

/// The body of a native library's `call`, for [`crate::export_secret_provider!`].
///
/// # Safety
/// `method`/`input` must point to `method_len`/`input_len` readable bytes (or be null with a
/// zero length), and `out` to a writable [`NativeBuffer`].
pub unsafe fn native_call<P: SecretProvider>(
    provider: &RwLock<P>,
    method: *const u8,
    method_len: usize,
    input: *const u8,
    input_len: usize,
    out: *mut NativeBuffer,
) -> i32 {
    if out.is_null() || (method.is_null() && method_len > 0) || (input.is_null() && input_len > 0) {
        return 1;
    }
    let method = if method_len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller guarantees the pointer and length (checked for null above).
        unsafe { std::slice::from_raw_parts(method, method_len) }
    };
    let input = if input_len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller guarantees the pointer and length (checked for null above).
        unsafe { std::slice::from_raw_parts(input, input_len) }
    };
    let answer = match std::str::from_utf8(method) {
        Err(_) => unimplemented_result(format!("the method name {method:?} is not UTF-8")),
        Ok(method) => {
            std::panic::catch_unwind(AssertUnwindSafe(|| dispatch(provider, method, input)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    crate::secrets::internal_result(format!(
                        "the plugin panicked in {method:?}: {what}"
                    ))
                })
        }
    };
    let mut answer = std::mem::ManuallyDrop::new(answer);
    // SAFETY: `out` is non-null and writable (the caller's guarantee).
    unsafe {
        out.write(NativeBuffer {
            ptr: answer.as_mut_ptr(),
            len: answer.len(),
            cap: answer.capacity(),
        });
    }
    0
}

/// The body of a native library's `free`.
///
/// # Safety
/// `buf` must be a buffer this library's `call` returned, freed once.
pub unsafe fn native_free(buf: NativeBuffer) {
    if !buf.ptr.is_null() {
        // SAFETY: `call` built it from a Vec<u8> with this pointer, length and capacity.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

/// The 12 bytes [`WASM_VERSION_EXPORT`] outputs.
pub fn version_bytes() -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&ABI_MAGIC.to_le_bytes());
    b[8..].copy_from_slice(&ABI_VERSION.to_le_bytes());
    b
}

/// Extism glue for [`crate::export_secret_provider!`] (the `wasm` feature, on wasm32).
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub mod wasm {
    use std::sync::RwLock;

    use crate::secrets::SecretProvider;

    /// One export's body: reads the call's input, dispatches, sets the output. Returns the
    /// export's return code (0; a provider's error travels inside the CallResult).
    pub fn call<P: SecretProvider>(provider: &RwLock<P>, method: &str) -> i32 {
        let input = extism_pdk::input_bytes();
        let answer = crate::secrets::dispatch(provider, method, &input);
        output(answer)
    }

    /// The extism-pdk this SDK builds on, for plugins that want more of it.
    pub use extism_pdk;

    /// An HTTP GET through the host (Extism's `http_request`), which the sandbox allows only to
    /// the hosts the plugin block grants. A refused host fails the whole call (the host stops
    /// it), so this returns only HTTP-level answers: the body of a 2xx, an error otherwise.
    pub fn http_get(url: &str) -> Result<Vec<u8>, crate::SecretError> {
        let req = extism_pdk::HttpRequest::new(url).with_method("GET");
        let resp = extism_pdk::http::request::<()>(&req, None)
            .map_err(|e| crate::SecretError::Internal(format!("GET {url}: {e}")))?;
        let status = resp.status_code();
        if !(200..300).contains(&status) {
            return Err(crate::SecretError::FailedPrecondition(format!(
                "GET {url} answered HTTP {status}"
            )));
        }
        Ok(resp.body())
    }

    /// The body of the version export.
    pub fn version() -> i32 {
        output(super::version_bytes().to_vec())
    }

    fn output(bytes: Vec<u8>) -> i32 {
        match extism_pdk::output(bytes) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    }
}

/// Emits the Extism exports (with the `wasm` feature, on wasm32).
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __drover_secrets_wasm_exports {
    ($provider:ident) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn drover_abi_version() -> i32 {
            $crate::abi::wasm::version()
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn plugin_info() -> i32 {
            $crate::abi::wasm::call($provider(), $crate::abi::method::PLUGIN_INFO)
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn config_schema() -> i32 {
            $crate::abi::wasm::call($provider(), $crate::abi::method::CONFIG_SCHEMA)
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn set_config() -> i32 {
            $crate::abi::wasm::call($provider(), $crate::abi::method::SET_CONFIG)
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn fetch() -> i32 {
            $crate::abi::wasm::call($provider(), $crate::abi::method::FETCH)
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn list() -> i32 {
            $crate::abi::wasm::call($provider(), $crate::abi::method::LIST)
        }
        #[unsafe(no_mangle)]
        pub extern "C" fn renew() -> i32 {
            $crate::abi::wasm::call($provider(), $crate::abi::method::RENEW)
        }
    };
}

#[cfg(not(all(feature = "wasm", target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __drover_secrets_wasm_exports {
    ($provider:ident) => {};
}

/// Emits the native entry point (with the `native` feature, not on wasm32).
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __drover_secrets_native_exports {
    ($provider:ident) => {
        unsafe extern "C" fn __drover_call(
            method: *const u8,
            method_len: usize,
            input: *const u8,
            input_len: usize,
            out: *mut $crate::abi::NativeBuffer,
        ) -> i32 {
            // SAFETY: forwarded from the host, which keeps the ABI's contract.
            unsafe {
                $crate::abi::native_call($provider(), method, method_len, input, input_len, out)
            }
        }
        unsafe extern "C" fn __drover_free(buf: $crate::abi::NativeBuffer) {
            // SAFETY: the host hands back only buffers `__drover_call` returned.
            unsafe { $crate::abi::native_free(buf) }
        }
        static __DROVER_TABLE: $crate::abi::NativeTable = $crate::abi::NativeTable {
            header: $crate::abi::native_header(),
            kind: $crate::proto::base::PluginKind::Secrets as i32,
            call: __drover_call,
            free: __drover_free,
        };
        #[unsafe(no_mangle)]
        pub extern "C" fn drover_plugin_entry() -> *const $crate::abi::NativeTable {
            &__DROVER_TABLE
        }
    };
}

#[cfg(not(all(feature = "native", not(target_arch = "wasm32"))))]
#[doc(hidden)]
#[macro_export]
macro_rules! __drover_secrets_native_exports {
    ($provider:ident) => {};
}

/// Exports a [`SecretProvider`](crate::SecretProvider) as an Extism module or a native library.
///
/// Put it once in a `crate-type = ["cdylib"]` crate. The same source then builds to
/// - a `.wasm` Extism module with `--target wasm32-unknown-unknown` and the SDK's `wasm`
///   feature (`default-features = false`: no tokio, no tonic): exports `plugin_info`,
///   `config_schema`, `set_config`, `fetch`, `list`, `renew` and `drover_abi_version`;
/// - a `.so` native library with the SDK's `native` feature: exports the single C function
///   `drover_plugin_entry`, which returns the versioned [`NativeTable`].
///
/// The provider is made on first call, from `Default` or from the expression given second.
///
/// ```
/// # use drover_plugin_sdk::{ProviderInfo, Secret, SecretError, SecretProvider};
/// # use drover_plugin_sdk::proto::base::AgentConfig;
/// struct Env { prefix: String }
/// # impl SecretProvider for Env {
/// #     fn plugin_info(&self) -> ProviderInfo { ProviderInfo { name: "env".into(), version: "0.1.0".into() } }
/// #     fn set_config(&mut self, _: serde_json::Value, _: AgentConfig) -> Result<(), SecretError> { Ok(()) }
/// #     fn fetch(&self, p: &str) -> Result<Secret, SecretError> { Err(SecretError::NotFound(p.into())) }
/// #     fn list(&self, _: &str) -> Result<Vec<String>, SecretError> { Ok(vec![]) }
/// # }
/// drover_plugin_sdk::export_secret_provider!(Env, Env { prefix: "APP_".into() });
/// ```
///
/// `Cargo.toml` of a provider that builds both ways:
///
/// ```toml
/// [lib]
/// crate-type = ["cdylib"]
///
/// [dependencies]
/// drover-plugin-sdk = { version = "0.1", default-features = false, features = ["wasm", "native"] }
/// ```
#[macro_export]
macro_rules! export_secret_provider {
    ($provider_type:ty) => {
        $crate::export_secret_provider!(
            $provider_type,
            <$provider_type as ::core::default::Default>::default()
        );
    };
    ($provider_type:ty, $make:expr) => {
        const _: () = {
            static __DROVER_PROVIDER: ::std::sync::OnceLock<::std::sync::RwLock<$provider_type>> =
                ::std::sync::OnceLock::new();
            #[allow(dead_code)]
            fn __drover_provider() -> &'static ::std::sync::RwLock<$provider_type> {
                fn assert_provider<P: $crate::SecretProvider>() {}
                assert_provider::<$provider_type>();
                __DROVER_PROVIDER.get_or_init(|| ::std::sync::RwLock::new($make))
            }
            $crate::__drover_secrets_wasm_exports!(__drover_provider);
            $crate::__drover_secrets_native_exports!(__drover_provider);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_leads_the_table() {
        assert_eq!(std::mem::offset_of!(NativeTable, header), 0);
        assert_eq!(native_header().magic, ABI_MAGIC);
        assert_eq!(&version_bytes()[..8], b"DROVERPL");
        assert_eq!(
            u32::from_le_bytes(version_bytes()[8..].try_into().unwrap()),
            1
        );
    }
}
