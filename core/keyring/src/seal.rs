//! AES-256-GCM with a random 96-bit nonce (ring), the nonce stored before the ciphertext.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::KeyringError;

/// Random bytes from the OS.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], KeyringError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| KeyringError::Generate("the OS random generator failed".into()))?;
    Ok(b)
}

fn key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

/// Seals `plaintext` under `key` with `aad`: nonce || ciphertext || tag.
pub(crate) fn seal(
    key_bytes: &[u8; 32],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, KeyringError> {
    let nonce = random::<NONCE_LEN>()?;
    let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
    buf.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key(key_bytes)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| KeyringError::Generate("AES-GCM sealing failed".into()))?;
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Opens what [`seal`] produced; `None` when it does not authenticate (wrong key, wrong
/// additional data, altered bytes).
pub(crate) fn open(key_bytes: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
    let mut body = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
    let n = key(key_bytes)
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .ok()?
        .len();
    body.truncate(n);
    Some(body)
}

/// Additional authenticated data: a domain label and length-prefixed fields, so no two
/// different field lists encode alike.
pub(crate) fn aad(label: &str, fields: &[&str]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(label.len() + 1 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    out.extend_from_slice(label.as_bytes());
    out.push(0);
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_and_data() {
        let k = [7u8; 32];
        let s = seal(&k, b"secret", b"aad").unwrap();
        assert_eq!(&open(&k, &s, b"aad").unwrap()[..], b"secret");
        assert!(open(&k, &s, b"other").is_none());
        assert!(open(&[8u8; 32], &s, b"aad").is_none());
        let mut bad = s.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(open(&k, &bad, b"aad").is_none());
        assert!(open(&k, &s[..10], b"aad").is_none());
        // A fresh nonce every time.
        assert_ne!(s, seal(&k, b"secret", b"aad").unwrap());
    }

    #[test]
    fn additional_data_fields_cannot_shift() {
        assert_ne!(aad("v", &["ab", "c"]), aad("v", &["a", "bc"]));
    }
}
