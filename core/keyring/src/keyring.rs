//! A server's keyring: its KEK (loaded from the provider when first needed, so a KEK file
//! copied in later is picked up without a restart) and the root keys it unwrapped, in
//! memory only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use drover_model::{RootKey, Variable};

use crate::{KekProvider, KeyEncryptionKey, KeyringError, RootKeyMaterial, items, root_key};

pub struct Keyring {
    provider: Option<Arc<dyn KekProvider>>,
    kek: RwLock<Option<Arc<dyn KeyEncryptionKey>>>,
    unwrapped: Mutex<BTreeMap<String, Arc<RootKeyMaterial>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring whose KEK comes from `provider` (None: no KEK is configured, every
    /// variable operation is refused).
    pub fn new(provider: Option<Arc<dyn KekProvider>>) -> Self {
        Keyring {
            provider,
            kek: RwLock::new(None),
            unwrapped: Mutex::default(),
        }
    }

    fn provider(&self) -> Result<Arc<dyn KekProvider>, KeyringError> {
        self.provider.clone().ok_or_else(|| KeyringError::NoKek {
            source_desc: "no keyring provider".into(),
            reason: "none is configured".into(),
        })
    }

    /// The KEK, loaded from the provider on first use (off the runtime).
    pub async fn kek(&self) -> Result<Arc<dyn KeyEncryptionKey>, KeyringError> {
        if let Some(k) = self.kek.read().expect("kek lock").clone() {
            return Ok(k);
        }
        let provider = self.provider()?;
        let k = tokio::task::spawn_blocking(move || provider.load())
            .await
            .map_err(|e| KeyringError::Generate(e.to_string()))??;
        *self.kek.write().expect("kek lock") = Some(k.clone());
        Ok(k)
    }

    /// The KEK, created by the provider if it has none (the first server of a cluster,
    /// before the cluster's first root key).
    pub async fn kek_or_create(&self) -> Result<Arc<dyn KeyEncryptionKey>, KeyringError> {
        match self.kek().await {
            Err(KeyringError::NoKek { .. }) if self.provider.is_some() => {
                let provider = self.provider()?;
                let k = tokio::task::spawn_blocking(move || provider.create())
                    .await
                    .map_err(|e| KeyringError::Generate(e.to_string()))??;
                *self.kek.write().expect("kek lock") = Some(k.clone());
                Ok(k)
            }
            r => r,
        }
    }

    /// Generates a new active root key wrapped by the KEK (off the runtime: RSA).
    pub async fn generate(&self, key_id: String, now: i64) -> Result<RootKey, KeyringError> {
        let kek = self.kek().await?;
        let (key, material) =
            tokio::task::spawn_blocking(move || root_key::new_root_key(&*kek, key_id, now))
                .await
                .map_err(|e| KeyringError::Generate(e.to_string()))??;
        self.unwrapped
            .lock()
            .expect("keyring lock")
            .insert(key.key_id.clone(), Arc::new(material));
        Ok(key)
    }

    /// The key's material, unwrapped once and kept in memory.
    pub async fn material(&self, key: &RootKey) -> Result<Arc<RootKeyMaterial>, KeyringError> {
        if let Some(m) = self
            .unwrapped
            .lock()
            .expect("keyring lock")
            .get(&key.key_id)
        {
            return Ok(m.clone());
        }
        let kek = self.kek().await?;
        let m = Arc::new(root_key::unwrap(&*kek, key)?);
        self.unwrapped
            .lock()
            .expect("keyring lock")
            .insert(key.key_id.clone(), m.clone());
        Ok(m)
    }

    /// `var` with its items sealed by `active` (its `items` emptied).
    pub async fn encrypt(
        &self,
        active: &RootKey,
        mut var: Variable,
    ) -> Result<Variable, KeyringError> {
        let m = self.material(active).await?;
        var.encrypted = Some(items::seal_items(
            &m,
            &var.namespace,
            &var.path,
            &var.items,
        )?);
        var.items.clear();
        Ok(var)
    }

    /// `var` with its items opened; `key` is the root key its ciphertext names (None when
    /// the keyring does not hold it). A variable stored in plaintext (before the keyring
    /// existed) is returned as it is.
    pub async fn decrypt(
        &self,
        key: Option<&RootKey>,
        mut var: Variable,
    ) -> Result<Variable, KeyringError> {
        let Some(enc) = var.encrypted.take() else {
            return Ok(var);
        };
        let what = || format!("variable {:?} in namespace {:?}", var.path, var.namespace);
        let key = key.ok_or_else(|| KeyringError::UnknownKey {
            what: what(),
            key_id: enc.key_id.clone(),
        })?;
        let m = self.material(key).await?;
        var.items = items::open_items(&m, &var.namespace, &var.path, &enc)?;
        Ok(var)
    }

    /// Forgets an unwrapped key (it was removed from the keyring).
    pub fn forget(&self, key_id: &str) {
        self.unwrapped.lock().expect("keyring lock").remove(key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileKekProvider;

    #[tokio::test]
    async fn without_a_kek_nothing_decrypts_and_the_error_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let ring = Keyring::new(Some(Arc::new(FileKekProvider::new(&path))));
        ring.kek_or_create().await.unwrap();
        let key = ring.generate("k1".into(), 1).await.unwrap();
        let var = Variable {
            namespace: "default".into(),
            path: "a".into(),
            items: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        let sealed = ring.encrypt(&key, var.clone()).await.unwrap();
        assert!(sealed.items.is_empty());
        assert_eq!(
            ring.decrypt(Some(&key), sealed.clone())
                .await
                .unwrap()
                .items,
            var.items
        );

        // Another server, without the KEK file.
        let other = Keyring::new(Some(Arc::new(FileKekProvider::new(
            dir.path().join("absent"),
        ))));
        let e = other.decrypt(Some(&key), sealed.clone()).await.unwrap_err();
        assert!(matches!(e, KeyringError::NoKek { .. }), "{e}");
        assert!(e.to_string().contains("Copy the KEK file"), "{e}");
        // The KEK copied in later is picked up without a restart.
        std::fs::copy(&path, dir.path().join("absent")).unwrap();
        assert_eq!(
            other.decrypt(Some(&key), sealed).await.unwrap().items,
            var.items
        );
    }
}
