//! A variable's items sealed with a root key's data key. The additional authenticated data
//! is the namespace, the path and the key id: a ciphertext copied to another variable, or
//! labelled with another key, does not decrypt.

use std::collections::BTreeMap;

use drover_model::EncryptedItems;
use zeroize::Zeroizing;

use crate::kek::{b64, to_b64};
use crate::{KeyringError, RootKeyMaterial, seal};

fn aad(namespace: &str, path: &str, key_id: &str) -> Vec<u8> {
    seal::aad("drover-variable", &[namespace, path, key_id])
}

fn what(namespace: &str, path: &str) -> String {
    format!("variable {path:?} in namespace {namespace:?}")
}

/// Seals `items` of the variable at `namespace`/`path` with `key`.
pub fn seal_items(
    key: &RootKeyMaterial,
    namespace: &str,
    path: &str,
    items: &BTreeMap<String, String>,
) -> Result<EncryptedItems, KeyringError> {
    let json = Zeroizing::new(serde_json::to_vec(items).expect("string items serialize"));
    let sealed = seal::seal(&key.data_key, &json, &aad(namespace, path, &key.key_id))?;
    Ok(EncryptedItems {
        key_id: key.key_id.clone(),
        data: to_b64(&sealed),
    })
}

/// Opens the items of the variable at `namespace`/`path`, sealed by [`seal_items`].
pub fn open_items(
    key: &RootKeyMaterial,
    namespace: &str,
    path: &str,
    enc: &EncryptedItems,
) -> Result<BTreeMap<String, String>, KeyringError> {
    if enc.key_id != key.key_id {
        return Err(KeyringError::UnknownKey {
            what: what(namespace, path),
            key_id: enc.key_id.clone(),
        });
    }
    let sealed = b64(&what(namespace, path), &enc.data)?;
    let plain = seal::open(&key.data_key, &sealed, &aad(namespace, path, &enc.key_id)).ok_or_else(
        || KeyringError::Decrypt {
            what: what(namespace, path),
        },
    )?;
    serde_json::from_slice(&plain).map_err(|e| KeyringError::Corrupt {
        what: what(namespace, path),
        reason: format!("its items are not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root_key::tests::kek;

    #[test]
    fn a_ciphertext_moved_to_another_path_or_namespace_fails_to_decrypt() {
        let (_, key) = crate::new_root_key(&kek(1), "k1".into(), 0).unwrap();
        let items: BTreeMap<String, String> =
            [("password".to_string(), "hunter2".to_string())].into();
        let enc = seal_items(&key, "default", "app/db", &items).unwrap();
        assert!(!enc.data.contains("hunter2"));
        assert_eq!(open_items(&key, "default", "app/db", &enc).unwrap(), items);
        let e = open_items(&key, "default", "app/other", &enc).unwrap_err();
        assert!(matches!(e, KeyringError::Decrypt { .. }), "{e}");
        assert!(e.to_string().contains("app/other"), "{e}");
        assert!(matches!(
            open_items(&key, "prod", "app/db", &enc),
            Err(KeyringError::Decrypt { .. })
        ));
        // Relabelled with another key id: refused.
        let (_, other) = crate::new_root_key(&kek(1), "k2".into(), 0).unwrap();
        let relabelled = EncryptedItems {
            key_id: "k2".into(),
            ..enc.clone()
        };
        assert!(matches!(
            open_items(&other, "default", "app/db", &relabelled),
            Err(KeyringError::Decrypt { .. })
        ));
    }
}
