use serde::{Deserialize, Serialize};

use crate::{Index, UnixNanos};

/// A root key of the keyring (Nomad's `RootKey`): an AES-256-GCM data key that encrypts
/// variables and an RS256 key pair that signs workload identities. Raft and snapshots
/// hold only its metadata, its public key and its secret material wrapped by the
/// key-encryption key (which is never in Raft); the unwrapped key lives only in the
/// servers' memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RootKey {
    #[serde(rename = "KeyID")]
    pub key_id: String,
    /// "aes256-gcm", as Nomad names it.
    pub algorithm: String,
    pub state: RootKeyState,
    pub create_time: UnixNanos,
    pub create_index: Index,
    pub modify_index: Index,
    /// The RSA public key (DER SubjectPublicKeyInfo, base64): not secret, it verifies
    /// identities (JWKS).
    pub public_key: String,
    /// The secret material (data key and RSA private key) wrapped by the key-encryption key.
    pub wrapped: WrappedKey,
}

/// Secret key material encrypted under a key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct WrappedKey {
    /// Which key-encryption key wrapped it: a provider name ("file") or, in a backup
    /// saved with a passphrase, "passphrase".
    pub provider: String,
    /// The provider's key identifier (the KEK file's fingerprint), so a server can tell a
    /// KEK that is not the one that wrapped it.
    pub kek_id: String,
    /// AES-256-GCM nonce and ciphertext, base64.
    pub data: String,
}

/// Where a root key is in its life (Nomad's states, those Drover uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RootKeyState {
    /// Encrypts new variables and signs new identities; exactly one key is active.
    #[default]
    Active,
    /// Decrypts what it encrypted; replaced by a newer active key.
    Inactive,
    /// Replaced by a full rotation: the leader is re-encrypting what it encrypted.
    Rekeying,
    /// A full rotation re-encrypted everything it encrypted; it can be removed.
    Deprecated,
}

impl RootKeyState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RootKeyState::Active => "active",
            RootKeyState::Inactive => "inactive",
            RootKeyState::Rekeying => "rekeying",
            RootKeyState::Deprecated => "deprecated",
        }
    }
}

/// The algorithm of every root key's data key.
pub const ROOT_KEY_ALGORITHM: &str = "aes256-gcm";

/// A variable's items encrypted with a root key (Nomad's `VariableData`): the JSON of the
/// items sealed with AES-256-GCM under a random nonce, with the namespace, path and key id
/// as additional authenticated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct EncryptedItems {
    #[serde(rename = "KeyID")]
    pub key_id: String,
    /// Nonce (12 bytes) followed by the ciphertext and tag, base64.
    pub data: String,
}
