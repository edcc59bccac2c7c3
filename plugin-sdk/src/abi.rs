//! The plugin side of the unary ABI of in-process plugins (the agreed types and constants
//! are `drover_plugin_abi::abi`'s, re-exported here): the native `call`/`free` bodies and
//! the Extism glue that [`crate::export_secret_provider!`] emits.

pub use drover_plugin_abi::abi::*;

use std::panic::AssertUnwindSafe;
use std::sync::RwLock;

use crate::secrets::{SecretProvider, dispatch, unimplemented_result};

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
