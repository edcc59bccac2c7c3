//! The native transport: a plugin library (`*.so`) loaded into the agent with libloading.
//!
//! Native means trusted: the library runs in the agent's address space and its constructors
//! run at `dlopen`. What the host checks before calling anything of the plugin's own is the
//! table behind [`NATIVE_ENTRY_SYMBOL`]: the magic and the ABI version (see
//! [`drover_plugin_abi::abi`]). Calls are synchronous; [`crate::SecretsClient`] runs them on
//! tokio's blocking pool.

use std::path::{Path, PathBuf};

use drover_plugin_abi::abi::{
    ABI_MAGIC, ABI_VERSION, NATIVE_ENTRY_SYMBOL, NativeBuffer, NativeEntryFn, NativeTable,
    NativeTableHeader,
};

use crate::module::{CallFailure, ModuleCall};

/// Why a native library was refused.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("{}: cannot load the library: {source}", path.display())]
    Open {
        path: PathBuf,
        source: libloading::Error,
    },
    #[error(
        "{}: not a Drover plugin library: it does not export `{NATIVE_ENTRY_SYMBOL}` ({source})",
        path.display()
    )]
    NoEntry {
        path: PathBuf,
        source: libloading::Error,
    },
    #[error("{}: `{NATIVE_ENTRY_SYMBOL}` returned a null table", path.display())]
    NullTable { path: PathBuf },
    #[error(
        "{}: not a Drover plugin library: its table starts with {found:#018x}, not the magic {ABI_MAGIC:#018x}",
        path.display()
    )]
    Magic { path: PathBuf, found: u64 },
    #[error(
        "{}: the library speaks plugin ABI version {found}, this agent speaks version {ABI_VERSION}: \
         rebuild it against a drover-plugin-sdk of this agent's version",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "{}: the library's table is {found} bytes, smaller than the {expected} bytes of ABI version {ABI_VERSION}",
        path.display()
    )]
    TableSize {
        path: PathBuf,
        found: u32,
        expected: usize,
    },
}

/// A loaded and checked native plugin library.
pub struct NativeLibrary {
    path: PathBuf,
    table: &'static NativeTable,
    // Declared last: dropped after everything that points into it.
    _library: libloading::Library,
}

impl std::fmt::Debug for NativeLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeLibrary")
            .field("path", &self.path)
            .field("kind", &self.table.kind)
            .finish()
    }
}

impl NativeLibrary {
    /// Loads `path` and checks its table's magic, ABI version and size. Blocking (dlopen).
    pub fn open(path: &Path) -> Result<NativeLibrary, NativeError> {
        let path_buf = path.to_path_buf();
        // SAFETY: loading a library runs its constructors; native plugins are trusted by
        // definition (the operator put them in plugin_dir).
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|source| NativeError::Open {
                path: path_buf.clone(),
                source,
            })?;
        // SAFETY: the symbol's type is the ABI's entry signature; a library exporting the
        // name with another signature breaks the ABI's contract (and is trusted anyway).
        let entry: libloading::Symbol<'_, NativeEntryFn> = unsafe {
            library.get(NATIVE_ENTRY_SYMBOL.as_bytes())
        }
        .map_err(|source| NativeError::NoEntry {
            path: path_buf.clone(),
            source,
        })?;
        // SAFETY: as above; the entry takes nothing and returns a pointer to a static table.
        let table = unsafe { entry() };
        if table.is_null() {
            return Err(NativeError::NullTable { path: path_buf });
        }
        // Only the header is read until it is checked: a table of another version may have
        // another layout after it.
        // SAFETY: every version of the table starts with the header.
        let header: NativeTableHeader = unsafe { table.cast::<NativeTableHeader>().read() };
        if header.magic != ABI_MAGIC {
            return Err(NativeError::Magic {
                path: path_buf,
                found: header.magic,
            });
        }
        if header.abi_version != ABI_VERSION {
            return Err(NativeError::Version {
                path: path_buf,
                found: header.abi_version,
            });
        }
        let expected = std::mem::size_of::<NativeTable>();
        if (header.table_size as usize) < expected {
            return Err(NativeError::TableSize {
                path: path_buf,
                found: header.table_size,
                expected,
            });
        }
        // SAFETY: magic, version and size are checked: the table has this layout, and it is
        // static in a library that stays loaded as long as `self` (which owns the library).
        let table: &'static NativeTable = unsafe { &*table };
        Ok(NativeLibrary {
            path: path_buf,
            table,
            _library: library,
        })
    }

    /// The plugin's kind (`PluginKind` of base.proto) as its table declares it.
    pub fn kind(&self) -> i32 {
        self.table.kind
    }

    /// The library's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ModuleCall for NativeLibrary {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        let mut out = NativeBuffer::empty();
        // SAFETY: the pointers and lengths describe live slices; `out` is a valid buffer.
        let rc = unsafe {
            (self.table.call)(
                method.as_ptr(),
                method.len(),
                input.as_ptr(),
                input.len(),
                &mut out,
            )
        };
        if rc != 0 {
            return Err(CallFailure::Failed(format!(
                "{}: the library refused the call to {method:?} (return code {rc})",
                self.path.display()
            )));
        }
        let bytes = if out.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: the library returned `len` initialized bytes at `ptr`.
            unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec()
        };
        // SAFETY: the buffer came from this library's `call` and is freed once.
        unsafe { (self.table.free)(out) };
        Ok(bytes)
    }

    fn describe(&self) -> String {
        format!("native library {}", self.path.display())
    }
}
