//! The keyring's root keys: adding (rotation) and removing.

use std::sync::Arc;

use drover_model::{RootKey, RootKeyState};

use super::{Apply, touch};
use crate::Table;

/// Adds or replaces a root key; an active one demotes the previously active key.
pub(super) fn upsert(cx: &mut Apply, key: &RootKey) {
    let (s, index) = (&mut *cx.s, cx.index);
    if key.state == RootKeyState::Active {
        let demoted: Vec<Arc<RootKey>> = s
            .root_keys
            .values()
            .filter(|k| k.state == RootKeyState::Active && k.key_id != key.key_id)
            .cloned()
            .collect();
        for old in demoted {
            let mut old = (*old).clone();
            old.state = RootKeyState::Inactive;
            old.modify_index = index;
            s.root_keys.insert(old.key_id.clone(), Arc::new(old));
        }
    }
    let mut key = key.clone();
    key.create_index = s
        .root_keys
        .get(&key.key_id)
        .map_or(index, |k| k.create_index);
    key.modify_index = index;
    s.root_keys.insert(key.key_id.clone(), Arc::new(key));
    touch(s, Table::Keyring, index);
}

/// Removes a root key unless it is active or still encrypts a variable.
pub(super) fn delete(cx: &mut Apply, key_id: &str) {
    let s = &mut *cx.s;
    let Some(key) = s.root_keys.get(key_id) else {
        cx.resp.error = Some(format!("root key {key_id:?} not found"));
        return;
    };
    if key.state == RootKeyState::Active {
        cx.resp.error = Some(format!(
            "root key {key_id} is the active key: rotate the keyring before removing it"
        ));
        return;
    }
    let users = s
        .vars
        .values()
        .filter(|v| v.encrypted.as_ref().is_some_and(|e| e.key_id == key_id))
        .count();
    if users > 0 {
        cx.resp.error = Some(format!(
            "root key {key_id} still encrypts {users} variable(s): run `drover operator root keyring rotate -full` and wait until the key is deprecated"
        ));
        return;
    }
    s.root_keys.remove(key_id);
    touch(s, Table::Keyring, cx.index);
}

#[cfg(test)]
mod tests {
    use drover_model::{EncryptedItems, RootKey, RootKeyState, Variable};

    use crate::{Command, Entry, Response, StateSnapshot, StateStore, Table};

    fn key(id: &str) -> RootKey {
        RootKey {
            key_id: id.into(),
            algorithm: "aes256-gcm".into(),
            ..Default::default()
        }
    }

    fn write(store: &StateStore, index: u64, command: Command) -> Response {
        store.apply(index, &Entry { time: 1, command })
    }

    fn sealed_var(path: &str, key_id: &str) -> Variable {
        Variable {
            namespace: "default".into(),
            path: path.into(),
            encrypted: Some(EncryptedItems {
                key_id: key_id.into(),
                data: "AAAA".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn rotation_demotes_the_active_key_and_removal_waits_for_its_variables() {
        let store = StateStore::new();
        write(&store, 1, Command::RootKeyUpsert { key: key("a") });
        let var = sealed_var("app", "a");
        write(&store, 2, Command::VarUpsert { var, cas: None });
        write(&store, 3, Command::RootKeyUpsert { key: key("b") });
        let snap = store.snapshot();
        assert_eq!(snap.root_key("a").unwrap().state, RootKeyState::Inactive);
        assert_eq!(snap.active_root_key().unwrap().key_id, "b");
        assert_eq!(snap.root_key("a").unwrap().create_index, 1);
        assert_eq!(snap.table_index(Table::Keyring), 3);

        let e = write(&store, 4, Command::RootKeyDelete { key_id: "b".into() });
        assert!(e.error.unwrap().contains("active key"));
        let e = write(&store, 5, Command::RootKeyDelete { key_id: "a".into() });
        assert!(e.error.unwrap().contains("still encrypts 1 variable"));
        // Re-encrypted with b: a can go.
        let var = sealed_var("app", "b");
        write(&store, 6, Command::VarUpsert { var, cas: None });
        let r = write(&store, 7, Command::RootKeyDelete { key_id: "a".into() });
        assert_eq!(r.error, None);
        assert!(store.snapshot().root_key("a").is_none());
        let e = write(
            &store,
            8,
            Command::RootKeyDelete {
                key_id: "zz".into(),
            },
        );
        assert!(e.error.unwrap().contains("not found"));
    }

    #[test]
    fn keys_and_the_plaintext_mark_survive_snapshots() {
        let store = StateStore::new();
        let plain = Variable {
            namespace: "default".into(),
            path: "old".into(),
            items: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        write(
            &store,
            1,
            Command::VarUpsert {
                var: plain,
                cas: None,
            },
        );
        write(&store, 2, Command::RootKeyUpsert { key: key("a") });
        let snap = store.snapshot();
        assert_eq!(snap.plaintext_index(), 1);
        let back = StateSnapshot::from_bytes(&snap.to_bytes()).unwrap();
        assert_eq!(back.plaintext_index(), 1);
        assert_eq!(back.active_root_key().unwrap().key_id, "a");
        assert_eq!(back.plaintext_variables().count(), 1);
        // Encrypting it leaves the mark: the log still holds index 1.
        let var = sealed_var("old", "a");
        write(&store, 3, Command::VarUpsert { var, cas: None });
        let snap = store.snapshot();
        assert_eq!(
            (snap.plaintext_index(), snap.plaintext_variables().count()),
            (1, 0)
        );
        // A snapshot from before the mark existed, holding plaintext, gets one.
        let mut v = serde_json::to_value(&back).unwrap();
        v.as_object_mut().unwrap().remove("plaintext_index");
        assert_eq!(StateSnapshot::from_value(v).unwrap().plaintext_index(), 2);
    }

    #[test]
    fn keyring_commands_need_version_4() {
        assert_eq!(Command::RootKeyUpsert { key: key("a") }.min_version(), 4);
        let var = sealed_var("x", "a");
        assert_eq!(Command::VarUpsert { var, cas: None }.min_version(), 4);
        let var = Variable::default();
        assert_eq!(Command::VarUpsert { var, cas: None }.min_version(), 1);
    }
}
