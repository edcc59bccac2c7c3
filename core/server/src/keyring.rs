//! The keyring on a server (issue 22): variables sealed before they are proposed and
//! opened when read, root key rotation and removal, and the leader's upkeep (the first
//! key, re-encrypting plaintext and rekeying variables). Every server also purges Raft
//! log entries that may hold plaintext once nothing is stored in plaintext any more.

use std::collections::BTreeSet;
use std::time::Duration;

use drover_keyring::{Keyring, KeyringError};
use drover_model::{RootKey, RootKeyState, Variable, now_nanos};
use drover_state::{Command, StateSnapshot, Table};

use crate::{Server, ServerError, new_id};

/// How long a variable write waits for the leader to create the cluster's first root key.
const FIRST_KEY_WAIT: Duration = Duration::from_secs(15);
/// Variables one re-encryption entry carries (each at most 64 KiB of items).
const REKEY_BATCH: usize = 32;
/// How often the leader looks at the keyring (and every server at its log).
const UPKEEP_INTERVAL: Duration = Duration::from_millis(500);

impl Server {
    /// This server's keyring (its KEK and the root keys it unwrapped).
    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The active root key, waiting a moment for the leader to create the first one.
    pub(crate) async fn active_root_key(&self) -> Result<RootKey, ServerError> {
        let deadline = tokio::time::Instant::now() + FIRST_KEY_WAIT;
        let mut snap = self.store().snapshot();
        loop {
            if let Some(k) = snap.active_root_key() {
                return Ok(k.clone());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(KeyringError::NoActiveKey.into());
            }
            let next = snap.table_index(Table::Keyring) + 1;
            snap = self.store().wait_for(Table::Keyring, next, left).await;
        }
    }

    /// `var` with its items sealed by the active root key, ready to be proposed.
    pub(crate) async fn seal_variable(&self, var: Variable) -> Result<Variable, ServerError> {
        let active = self.active_root_key().await?;
        Ok(self.keyring().encrypt(&active, var).await?)
    }

    /// `var` (as stored in `snap`) with its items decrypted.
    pub async fn open_variable(
        &self,
        snap: &StateSnapshot,
        var: &Variable,
    ) -> Result<Variable, ServerError> {
        let key = var
            .encrypted
            .as_ref()
            .and_then(|e| snap.root_key(&e.key_id));
        Ok(self.keyring().decrypt(key, var.clone()).await?)
    }

    /// Rotates the keyring: a new active key; with `full`, the previous active key is
    /// marked rekeying and the leader re-encrypts every variable it encrypted, then
    /// deprecates it. Returns the new key and the write's index.
    pub async fn rotate_keyring(&self, full: bool) -> Result<(RootKey, u64), ServerError> {
        let key = self.keyring().generate(new_id(), now_nanos()).await?;
        let mut commands = vec![Command::RootKeyUpsert { key: key.clone() }];
        if full {
            let snap = self.store().snapshot();
            for old in snap
                .root_keys()
                .filter(|k| matches!(k.state, RootKeyState::Active | RootKeyState::Inactive))
            {
                commands.push(Command::RootKeyUpsert {
                    key: RootKey {
                        state: RootKeyState::Rekeying,
                        ..old.clone()
                    },
                });
            }
        }
        let command = if commands.len() == 1 {
            commands.pop().expect("one command")
        } else {
            Command::Batch(commands)
        };
        let resp = self.raft().write(command).await?;
        if let Some(e) = resp.batch.iter().find_map(|r| r.error.clone()) {
            return Err(ServerError::Invalid(e));
        }
        let stored = self
            .store()
            .snapshot()
            .root_key(&key.key_id)
            .cloned()
            .unwrap_or(key);
        tracing::info!(key_id = %stored.key_id, full, "rotated the keyring");
        Ok((stored, resp.index))
    }

    /// Removes a root key (refused while it is active or encrypts a variable).
    pub async fn remove_root_key(&self, key_id: &str) -> Result<u64, ServerError> {
        let index = self
            .raft()
            .write(Command::RootKeyDelete {
                key_id: key_id.into(),
            })
            .await?
            .index;
        self.keyring().forget(key_id);
        Ok(index)
    }
}

/// The leader's keyring upkeep: creates the first root key (and, on a new cluster, the
/// KEK), re-encrypts variables stored in plaintext or under a rekeying key in batches, and
/// deprecates rekeying keys nothing uses any more.
pub(crate) async fn upkeep(server: Server) {
    let mut last_error: Option<String> = None;
    loop {
        match upkeep_once(&server).await {
            Ok(()) => last_error = None,
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_ref() != Some(&msg) {
                    tracing::warn!(error = %msg, "keyring upkeep failed; retrying");
                    last_error = Some(msg);
                }
            }
        }
        tokio::time::sleep(UPKEEP_INTERVAL).await;
    }
}

async fn upkeep_once(server: &Server) -> Result<(), ServerError> {
    let keyring = server.keyring();
    let snap = server.store().snapshot();
    let Some(active) = snap.active_root_key().cloned() else {
        if snap.root_keys().next().is_none() {
            // A new cluster (or one from before the keyring): this leader may create the
            // KEK. With keys present it never does: they are wrapped by an existing one.
            keyring.kek_or_create().await?;
        }
        let key = keyring.generate(new_id(), now_nanos()).await?;
        tracing::info!(key_id = %key.key_id, "created the keyring's active root key");
        server.raft().write(Command::RootKeyUpsert { key }).await?;
        return Ok(());
    };
    let rekeying: BTreeSet<&str> = snap
        .root_keys()
        .filter(|k| k.state == RootKeyState::Rekeying)
        .map(|k| k.key_id.as_str())
        .collect();
    let todo: Vec<&Variable> = snap
        .variables()
        .filter(|v| match &v.encrypted {
            None => true,
            Some(e) => rekeying.contains(e.key_id.as_str()),
        })
        .take(REKEY_BATCH)
        .collect();
    if todo.is_empty() {
        if rekeying.is_empty() {
            return Ok(());
        }
        let done: Vec<Command> = snap
            .root_keys()
            .filter(|k| k.state == RootKeyState::Rekeying)
            .map(|k| Command::RootKeyUpsert {
                key: RootKey {
                    state: RootKeyState::Deprecated,
                    ..k.clone()
                },
            })
            .collect();
        tracing::info!(keys = ?rekeying, "full rotation done: the old keys are deprecated");
        server.raft().write(Command::Batch(done)).await?;
        return Ok(());
    }
    let mut commands = Vec::with_capacity(todo.len());
    for v in todo {
        let plain = server.open_variable(&snap, v).await?;
        let sealed = keyring.encrypt(&active, plain).await?;
        // At the index read: a variable written meanwhile is already under the active key.
        commands.push(Command::VarUpsert {
            var: sealed,
            cas: Some(v.modify_index),
        });
    }
    tracing::info!(
        variables = commands.len(),
        key_id = %active.key_id,
        "re-encrypting variables with the active root key"
    );
    server.raft().write(Command::Batch(commands)).await?;
    Ok(())
}

/// On every server: once no variable is stored in plaintext, Raft entries up to the last
/// plaintext write (before the keyring existed, or a restore of such a backup) still hold
/// it. This takes a snapshot (which replaces the one on disk) and purges the log past it.
pub(crate) async fn purge_plaintext_log(server: Server) {
    let raft = server.raft().raft().clone();
    loop {
        tokio::time::sleep(UPKEEP_INTERVAL * 4).await;
        let snap = server.store().snapshot();
        let mark = snap.plaintext_index();
        if mark == 0
            || snap.root_keys().next().is_none()
            || snap.plaintext_variables().next().is_some()
        {
            continue;
        }
        let m = raft.metrics().borrow().clone();
        if m.state == openraft::ServerState::Shutdown {
            return;
        }
        if m.purged.map_or(0, |l| l.index) >= mark {
            continue;
        }
        // The snapshot must be of a state without plaintext: at least the index at which
        // the variables were last written.
        let want = snap.table_index(Table::Variables).max(mark);
        if m.snapshot.map_or(0, |l| l.index) < want {
            tracing::info!(
                plaintext_until = mark,
                "variables are encrypted now: snapshotting to purge the Raft entries that held plaintext"
            );
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            let built = raft
                .wait(Some(Duration::from_secs(60)))
                .metrics(
                    |m| m.snapshot.is_some_and(|l| l.index >= want),
                    "a snapshot past the plaintext entries",
                )
                .await;
            if let Err(e) = built {
                tracing::warn!(error = %e, "the snapshot to purge plaintext entries did not complete; retrying");
                continue;
            }
        }
        let upto = raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
        if raft.trigger().purge_log(upto).await.is_err() {
            return;
        }
        tracing::info!(
            upto,
            "purged the Raft log entries that held plaintext variables"
        );
        let _ = raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(|m| m.purged.is_some_and(|l| l.index >= mark), "the purge")
            .await;
    }
}
