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
//! Plugin authors do not touch any of this: `drover_plugin_sdk::export_secret_provider!` emits it;
//! this crate holds only what both sides agree on, so the host links it without the SDK.

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

/// The 12 bytes [`WASM_VERSION_EXPORT`] outputs.
pub fn version_bytes() -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&ABI_MAGIC.to_le_bytes());
    b[8..].copy_from_slice(&ABI_VERSION.to_le_bytes());
    b
}
