//! The keyring (issue 22): root keys that encrypt variables and sign workload identities,
//! kept in Raft only wrapped by a key-encryption key (KEK) that never enters Raft.
//!
//! - [`kek`]: the key-encryption key and where it comes from ([`KekProvider`]; the file
//!   provider, [`FileKekProvider`], is the default; a KMS is another provider).
//! - [`root_key`]: generating a root key (AES-256-GCM data key + RSA-2048 key pair), wrapping
//!   and unwrapping its secret material.
//! - [`identity`]: workload identities: RS256 JWTs signed with a root key, their
//!   verification, the JWKS, and the implicit variable access of the default identity.
//! - [`items`]: a variable's items sealed with a root key, bound to namespace, path and key id.
//! - [`passphrase`]: a KEK derived from an operator's passphrase (argon2id), for backups.
//! - [`Keyring`]: a server's KEK and its cache of unwrapped root keys (memory only).

pub mod identity;
pub mod items;
pub mod kek;
pub mod passphrase;
pub mod root_key;
mod seal;

mod keyring;

pub use kek::{FileKekProvider, KekProvider, KeyEncryptionKey};
pub use keyring::Keyring;
pub use root_key::{RootKeyMaterial, new_root_key};

/// What went wrong with a key or a ciphertext. Each message names the key, file or
/// variable, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// This server has no key-encryption key.
    #[error(
        "this server has no keyring key-encryption key ({source_desc}: {reason}); variables cannot be read or written on it. Copy the KEK file from another server of the cluster (mode 0600) or configure keyring \"file\" {{ path }}"
    )]
    NoKek { source_desc: String, reason: String },
    /// The KEK file exists but is not usable.
    #[error("the keyring key-encryption key {path} is not usable: {reason}")]
    BadKek { path: String, reason: String },
    /// A wrapped root key was wrapped by another KEK.
    #[error(
        "root key {key_id} was wrapped by key-encryption key {wrapped_by:?}, but this server's is {have:?}: install the cluster's KEK file on this server"
    )]
    WrongKek {
        key_id: String,
        wrapped_by: String,
        have: String,
    },
    /// A ciphertext failed authentication (altered, or moved to another path or key).
    #[error(
        "{what} does not decrypt: the ciphertext was altered, or moved from another path or key"
    )]
    Decrypt { what: String },
    /// The key a ciphertext names is not in the keyring.
    #[error("{what} is encrypted with root key {key_id}, which is not in the keyring")]
    UnknownKey { what: String, key_id: String },
    /// No root key is active yet (the leader creates the first one).
    #[error("the keyring has no active root key yet; retry in a moment")]
    NoActiveKey,
    /// Stored key material or ciphertext does not decode.
    #[error("{what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    /// Generating keys or randomness failed.
    #[error("generating key material failed: {0}")]
    Generate(String),
    /// Deriving a key from a passphrase failed (or its parameters are refused).
    #[error("passphrase key derivation: {0}")]
    Kdf(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
