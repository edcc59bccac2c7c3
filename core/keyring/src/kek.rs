//! The key-encryption key (KEK): what wraps root keys before they enter Raft. It is kept
//! outside the Raft directory, so a copy of the Raft log and snapshots decrypts nothing.
//!
//! A [`KekProvider`] says where the KEK comes from: [`FileKekProvider`] reads a 0600 file
//! (`keyring "file" { path }`); a KMS provider would call the KMS in `wrap`/`unwrap`, and a
//! provider fetching the KEK from the leader over mutually authenticated RPC fits the same
//! seam.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest;
use zeroize::Zeroizing;

use crate::{KeyringError, seal};

/// A key-encryption key: wraps and unwraps root keys' secret material.
pub trait KeyEncryptionKey: Send + Sync + std::fmt::Debug {
    /// The provider that holds it ("file", "passphrase", a KMS name).
    fn provider(&self) -> &str;
    /// An identifier of this very key (never the key): a wrapped key records it, so a
    /// server tells a KEK that is not the one that wrapped a key.
    fn id(&self) -> &str;
    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyringError>;
    /// `None` when the bytes do not authenticate under this key and `aad`.
    fn unwrap(&self, sealed: &[u8], aad: &[u8])
    -> Result<Option<Zeroizing<Vec<u8>>>, KeyringError>;
}

/// Where a server's KEK comes from. Loading and creating may block (disk, network): call
/// them off the async runtime.
pub trait KekProvider: Send + Sync + std::fmt::Debug {
    /// Where it is, for messages (a path, a KMS key name).
    fn describe(&self) -> String;
    /// The KEK; [`KeyringError::NoKek`] when there is none (yet).
    fn load(&self) -> Result<Arc<dyn KeyEncryptionKey>, KeyringError>;
    /// Creates a new KEK (the first server of a cluster, before the first root key).
    fn create(&self) -> Result<Arc<dyn KeyEncryptionKey>, KeyringError>;
}

/// An AES-256 KEK held in memory.
pub(crate) struct AesKek {
    provider: &'static str,
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AesKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesKek")
            .field("provider", &self.provider)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AesKek {
    /// A KEK whose id is a fingerprint of the key (SHA-256, first 8 bytes, hex).
    pub(crate) fn new(provider: &'static str, key: Zeroizing<[u8; 32]>) -> Self {
        let digest = sha2::Sha256::digest(&key[..]);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        AesKek { provider, id, key }
    }

    pub(crate) fn with_id(provider: &'static str, id: String, key: Zeroizing<[u8; 32]>) -> Self {
        AesKek { provider, id, key }
    }
}

impl KeyEncryptionKey for AesKek {
    fn provider(&self) -> &str {
        self.provider
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyringError> {
        seal::seal(&self.key, plaintext, aad)
    }
    fn unwrap(
        &self,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyringError> {
        Ok(seal::open(&self.key, sealed, aad))
    }
}

/// The default provider: a file holding the 32-byte KEK in base64, mode 0600, in a 0700
/// directory, outside the Raft directory.
#[derive(Debug, Clone)]
pub struct FileKekProvider {
    path: PathBuf,
}

/// The KEK file's largest accepted size (the key is 44 base64 characters).
const MAX_KEK_FILE: u64 = 1024;

impl FileKekProvider {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKekProvider { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bad(&self, reason: impl Into<String>) -> KeyringError {
        KeyringError::BadKek {
            path: self.path.display().to_string(),
            reason: reason.into(),
        }
    }

    fn io(&self, source: std::io::Error) -> KeyringError {
        KeyringError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl KekProvider for FileKekProvider {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn load(&self) -> Result<Arc<dyn KeyEncryptionKey>, KeyringError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyringError::NoKek {
                    source_desc: self.describe(),
                    reason: "not found".into(),
                });
            }
            Err(e) => return Err(self.io(e)),
        };
        if !meta.is_file() {
            return Err(self.bad("not a regular file"));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(self.bad(format!(
                "its mode is {:o}: others may read it; make it 0600",
                meta.permissions().mode() & 0o777
            )));
        }
        if meta.len() > MAX_KEK_FILE {
            return Err(self.bad(format!("{} bytes: not a KEK file", meta.len())));
        }
        let text = Zeroizing::new(std::fs::read_to_string(&self.path).map_err(|e| self.io(e))?);
        let raw = Zeroizing::new(
            B64.decode(text.trim())
                .map_err(|e| self.bad(format!("not base64: {e}")))?,
        );
        let key: [u8; 32] = raw[..]
            .try_into()
            .map_err(|_| self.bad(format!("holds {} bytes, a KEK is 32", raw.len())))?;
        Ok(Arc::new(AesKek::new("file", Zeroizing::new(key))))
    }

    fn create(&self) -> Result<Arc<dyn KeyEncryptionKey>, KeyringError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let key = Zeroizing::new(seal::random::<32>()?);
        let text = Zeroizing::new(format!("{}\n", B64.encode(&key[..])));
        // create_new: never overwrite a KEK (the keys it wraps would be lost).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        f.write_all(text.as_bytes()).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        tracing::info!(path = %self.path.display(), "created the keyring's key-encryption key; copy it to every other server");
        Ok(Arc::new(AesKek::new("file", key)))
    }
}

/// Decodes a base64 field of stored key material.
pub(crate) fn b64(what: &str, s: &str) -> Result<Vec<u8>, KeyringError> {
    B64.decode(s).map_err(|e| KeyringError::Corrupt {
        what: what.into(),
        reason: format!("not base64: {e}"),
    })
}

pub(crate) fn to_b64(b: &[u8]) -> String {
    B64.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_kek_is_created_private_loaded_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = FileKekProvider::new(dir.path().join("keyring/kek"));
        assert!(matches!(p.load(), Err(KeyringError::NoKek { .. })));
        let k = p.create().unwrap();
        let mode = std::fs::metadata(p.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = p.load().unwrap();
        assert_eq!(k.id(), again.id());
        let sealed = k.wrap(b"root", b"a").unwrap();
        assert_eq!(&again.unwrap(&sealed, b"a").unwrap().unwrap()[..], b"root");
        assert!(p.create().is_err(), "an existing KEK is never replaced");
    }

    #[test]
    fn a_readable_or_malformed_kek_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        std::fs::write(&path, "not base64!").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = FileKekProvider::new(&path).load().unwrap_err().to_string();
        assert!(e.contains("make it 0600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = FileKekProvider::new(&path).load().unwrap_err().to_string();
        assert!(e.contains("not base64") && e.contains("kek"), "{e}");
        std::fs::write(&path, B64.encode([1u8; 16])).unwrap();
        let e = FileKekProvider::new(&path).load().unwrap_err().to_string();
        assert!(e.contains("16 bytes"), "{e}");
    }
}
