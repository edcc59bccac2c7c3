//! Root keys: generated on a server, wrapped by the KEK before they enter Raft, unwrapped
//! into memory only.

use drover_model::{ROOT_KEY_ALGORITHM, RootKey, RootKeyState, UnixNanos, WrappedKey};
use zeroize::Zeroizing;

use crate::kek::{b64, to_b64};
use crate::{KeyEncryptionKey, KeyringError, seal};

/// The RSA modulus size of a root key's signing pair.
pub const RSA_BITS: usize = 2048;

/// A root key's secret material, unwrapped (in memory only; zeroed when dropped).
pub struct RootKeyMaterial {
    pub key_id: String,
    pub(crate) data_key: Zeroizing<[u8; 32]>,
    /// The RSA private key, PKCS#8 DER (ring signs with it).
    pub(crate) rsa_pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RootKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootKeyMaterial")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl RootKeyMaterial {
    /// The RSA private key (PKCS#8 DER), for signing workload identities.
    pub fn signing_key_pkcs8(&self) -> &[u8] {
        &self.rsa_pkcs8
    }

    /// data key || PKCS#8: what the KEK wraps.
    fn plaintext(&self) -> Zeroizing<Vec<u8>> {
        let mut p = Zeroizing::new(Vec::with_capacity(32 + self.rsa_pkcs8.len()));
        p.extend_from_slice(&self.data_key[..]);
        p.extend_from_slice(&self.rsa_pkcs8);
        p
    }
}

/// The additional data a root key is wrapped with: its id, so wrapped material cannot be
/// passed off as another key's.
fn wrap_aad(key_id: &str) -> Vec<u8> {
    seal::aad("drover-root-key", &[key_id])
}

/// Generates a root key (a random AES-256 data key and an RSA-2048 key pair) in state
/// `Active`, wrapped by `kek`. CPU-heavy (RSA generation): call it off the async runtime.
pub fn new_root_key(
    kek: &dyn KeyEncryptionKey,
    key_id: String,
    create_time: UnixNanos,
) -> Result<(RootKey, RootKeyMaterial), KeyringError> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let data_key = Zeroizing::new(seal::random::<32>()?);
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
        .map_err(|e| KeyringError::Generate(format!("RSA: {e}")))?;
    let pkcs8 = private
        .to_pkcs8_der()
        .map_err(|e| KeyringError::Generate(format!("RSA PKCS#8: {e}")))?;
    let public = private
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| KeyringError::Generate(format!("RSA public key: {e}")))?;
    let material = RootKeyMaterial {
        key_id: key_id.clone(),
        data_key,
        rsa_pkcs8: Zeroizing::new(pkcs8.as_bytes().to_vec()),
    };
    let key = RootKey {
        key_id,
        algorithm: ROOT_KEY_ALGORITHM.into(),
        state: RootKeyState::Active,
        create_time,
        create_index: 0,
        modify_index: 0,
        public_key: to_b64(public.as_bytes()),
        wrapped: wrap(kek, &material)?,
    };
    Ok((key, material))
}

/// Wraps a root key's material with `kek`.
pub fn wrap(kek: &dyn KeyEncryptionKey, m: &RootKeyMaterial) -> Result<WrappedKey, KeyringError> {
    let sealed = kek.wrap(&m.plaintext(), &wrap_aad(&m.key_id))?;
    Ok(WrappedKey {
        provider: kek.provider().into(),
        kek_id: kek.id().into(),
        data: to_b64(&sealed),
    })
}

/// Unwraps a root key's material with `kek`.
pub fn unwrap(kek: &dyn KeyEncryptionKey, key: &RootKey) -> Result<RootKeyMaterial, KeyringError> {
    let w = &key.wrapped;
    if w.provider != kek.provider() || w.kek_id != kek.id() {
        return Err(KeyringError::WrongKek {
            key_id: key.key_id.clone(),
            wrapped_by: format!("{}:{}", w.provider, w.kek_id),
            have: format!("{}:{}", kek.provider(), kek.id()),
        });
    }
    let sealed = b64(&format!("root key {}", key.key_id), &w.data)?;
    let plain = kek
        .unwrap(&sealed, &wrap_aad(&key.key_id))?
        .ok_or_else(|| KeyringError::Decrypt {
            what: format!("root key {}", key.key_id),
        })?;
    if plain.len() <= 32 {
        return Err(KeyringError::Corrupt {
            what: format!("root key {}", key.key_id),
            reason: "too short".into(),
        });
    }
    let data_key: [u8; 32] = plain[..32].try_into().expect("32 bytes");
    Ok(RootKeyMaterial {
        key_id: key.key_id.clone(),
        data_key: Zeroizing::new(data_key),
        rsa_pkcs8: Zeroizing::new(plain[32..].to_vec()),
    })
}

/// The key re-wrapped from `from` to `to` (a backup's passphrase, a restoring cluster's KEK).
pub fn rewrap(
    key: &RootKey,
    from: &dyn KeyEncryptionKey,
    to: &dyn KeyEncryptionKey,
) -> Result<RootKey, KeyringError> {
    let m = unwrap(from, key)?;
    Ok(RootKey {
        wrapped: wrap(to, &m)?,
        ..key.clone()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kek::AesKek;

    pub(crate) fn kek(byte: u8) -> AesKek {
        AesKek::new("file", Zeroizing::new([byte; 32]))
    }

    #[test]
    fn a_root_key_unwraps_only_with_its_kek_and_rewraps() {
        let (a, b) = (kek(1), kek(2));
        let (key, m) = new_root_key(&a, "k1".into(), 5).unwrap();
        assert_eq!(key.state, RootKeyState::Active);
        assert!(!key.public_key.is_empty());
        let back = unwrap(&a, &key).unwrap();
        assert_eq!(back.data_key[..], m.data_key[..]);
        assert_eq!(back.rsa_pkcs8[..], m.rsa_pkcs8[..]);
        assert!(matches!(
            unwrap(&b, &key),
            Err(KeyringError::WrongKek { .. })
        ));
        // Wrapped material cannot be passed off as another key's.
        let moved = RootKey {
            key_id: "k2".into(),
            ..key.clone()
        };
        assert!(matches!(
            unwrap(&a, &moved),
            Err(KeyringError::Decrypt { .. })
        ));
        let re = rewrap(&key, &a, &b).unwrap();
        assert_eq!(unwrap(&b, &re).unwrap().data_key[..], m.data_key[..]);
        // The signing key is a key ring accepts.
        ring::signature::RsaKeyPair::from_pkcs8(m.signing_key_pkcs8()).unwrap();
    }
}
