//! A key-encryption key derived from an operator's passphrase, for backups that must
//! restore on a cluster with another KEK: argon2id (RFC 9106) with a random 16-byte salt;
//! the parameters travel in the backup beside the keys.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::kek::{AesKek, b64, to_b64};
use crate::{KeyEncryptionKey, KeyringError, seal};

/// The provider name of keys wrapped with a passphrase.
pub const PASSPHRASE_PROVIDER: &str = "passphrase";

/// How a passphrase became a key (stored in the backup; all but the salt are fixed when
/// saving, and bounded when reading, since a hostile file could ask for terabytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KdfParams {
    /// "argon2id".
    pub kdf: String,
    /// base64.
    pub salt: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// argon2id with 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended option).
pub const MEMORY_KIB: u32 = 64 * 1024;
pub const ITERATIONS: u32 = 3;
pub const PARALLELISM: u32 = 1;
/// The most memory, passes and lanes a backup may ask for.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 16;
const MAX_PARALLELISM: u32 = 8;
/// The shortest passphrase accepted when saving.
pub const MIN_PASSPHRASE: usize = 8;

impl KdfParams {
    /// Fresh parameters with a random salt.
    pub fn new() -> Result<Self, KeyringError> {
        Ok(KdfParams {
            kdf: "argon2id".into(),
            salt: to_b64(&seal::random::<16>()?),
            memory_kib: MEMORY_KIB,
            iterations: ITERATIONS,
            parallelism: PARALLELISM,
        })
    }

    /// The KEK `passphrase` derives under these parameters. CPU- and memory-heavy: call it
    /// off the async runtime.
    pub fn derive(&self, passphrase: &str) -> Result<PassphraseKek, KeyringError> {
        if self.kdf != "argon2id" {
            return Err(KeyringError::Kdf(format!(
                "unknown key derivation {:?} (this Drover reads argon2id)",
                self.kdf
            )));
        }
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.parallelism > MAX_PARALLELISM
        {
            return Err(KeyringError::Kdf(format!(
                "parameters (memory {} KiB, {} passes, {} lanes) above this Drover's limits ({MAX_MEMORY_KIB} KiB, {MAX_ITERATIONS}, {MAX_PARALLELISM})",
                self.memory_kib, self.iterations, self.parallelism
            )));
        }
        if passphrase.is_empty() {
            return Err(KeyringError::Kdf("the passphrase is empty".into()));
        }
        let salt = b64("the passphrase salt", &self.salt)?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| KeyringError::Kdf(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, &mut key[..])
            .map_err(|e| KeyringError::Kdf(e.to_string()))?;
        Ok(PassphraseKek(AesKek::with_id(
            PASSPHRASE_PROVIDER,
            PASSPHRASE_PROVIDER.into(),
            key,
        )))
    }
}

/// A KEK derived from a passphrase (see [`KdfParams::derive`]).
#[derive(Debug)]
pub struct PassphraseKek(AesKek);

impl KeyEncryptionKey for PassphraseKek {
    fn provider(&self) -> &str {
        self.0.provider()
    }
    fn id(&self) -> &str {
        self.0.id()
    }
    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyringError> {
        self.0.wrap(plaintext, aad)
    }
    fn unwrap(
        &self,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KeyringError> {
        self.0.unwrap(sealed, aad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn light() -> KdfParams {
        KdfParams {
            memory_kib: 1024,
            iterations: 1,
            ..KdfParams::new().unwrap()
        }
    }

    #[test]
    fn the_same_passphrase_and_salt_derive_the_same_key() {
        let p = light();
        let a = p.derive("correct horse").unwrap();
        let sealed = a.wrap(b"k", b"").unwrap();
        let b = p.derive("correct horse").unwrap();
        assert_eq!(&b.unwrap(&sealed, b"").unwrap().unwrap()[..], b"k");
        assert!(
            p.derive("wrong horse")
                .unwrap()
                .unwrap(&sealed, b"")
                .unwrap()
                .is_none()
        );
        // Another salt, another key.
        assert!(
            light()
                .derive("correct horse")
                .unwrap()
                .unwrap(&sealed, b"")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn hostile_parameters_are_refused() {
        let p = KdfParams {
            memory_kib: u32::MAX,
            ..light()
        };
        assert!(p.derive("x").unwrap_err().to_string().contains("limits"));
        let p = KdfParams {
            kdf: "md5".into(),
            ..light()
        };
        assert!(p.derive("x").unwrap_err().to_string().contains("md5"));
    }
}
