//! The identity hook (issue 22): before each start, has the servers sign the task's
//! identities that its `identity` blocks expose, and gives them to the task — the default
//! identity as `NOMAD_TOKEN` (`env = true`) and `secrets/nomad_token` (`file = true`), a
//! named one as `NOMAD_TOKEN_<name>` and `secrets/nomad_token_<name>` (files mode 0600,
//! owned by the task's `user` when it has one, written without following links). While
//! the task runs, an identity with a `ttl` is signed again at two thirds of its life, its
//! file rewritten, and its `change_mode` (`signal`, `restart`; `noop` by default) asked
//! of the task runner.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use drover_model::WorkloadIdentity;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Action, HookError, TaskHook, TaskHookCtx};
use crate::alloc_dir::AllocDir;
use crate::env::TaskDirs;
use crate::identities::{DEFAULT, Signed, TaskIdentities};
use crate::task_status::{TaskStatus, event};

#[derive(Default)]
pub(crate) struct IdentityHook {
    env: BTreeMap<String, String>,
    renewer: Option<tokio::task::AbortHandle>,
}

/// An identity block's name ("" is the default identity's).
fn name_of(i: &WorkloadIdentity) -> &str {
    if i.name.is_empty() { DEFAULT } else { &i.name }
}

/// A name usable in an environment variable's and a file's name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `NOMAD_TOKEN` / `NOMAD_TOKEN_<name>`.
fn env_name(name: &str) -> String {
    if name == DEFAULT {
        "NOMAD_TOKEN".into()
    } else {
        format!("NOMAD_TOKEN_{name}")
    }
}

/// `secrets/nomad_token` / `secrets/nomad_token_<name>`.
fn file_path(dirs: &TaskDirs, name: &str) -> PathBuf {
    let file = if name == DEFAULT {
        "nomad_token".to_string()
    } else {
        format!("nomad_token_{name}")
    };
    PathBuf::from(&dirs.secrets_dir).join(file)
}

/// The task's identities that are exposed (env or file).
fn exposed(task: &drover_model::Task) -> Vec<WorkloadIdentity> {
    task.identities
        .iter()
        .filter(|i| i.env || i.file)
        .cloned()
        .collect()
}

/// Writes the identity files of `blocks` from `signed` (off the runtime).
async fn write_files(
    dirs: &TaskDirs,
    user: &str,
    blocks: &[WorkloadIdentity],
    signed: &BTreeMap<String, Signed>,
) -> Result<(), String> {
    let files: Vec<(PathBuf, String)> = blocks
        .iter()
        .filter(|i| i.file)
        .filter_map(|i| {
            let s = signed.get(name_of(i))?;
            Some((file_path(dirs, name_of(i)), s.jwt.clone()))
        })
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let (dirs, user) = (dirs.clone(), user.to_string());
    tokio::task::spawn_blocking(move || {
        let owner = if user.is_empty() {
            None
        } else {
            let u = nix::unistd::User::from_name(&user)
                .map_err(|e| format!("looking up user {user:?}: {e}"))?
                .ok_or_else(|| format!("user {user:?} does not exist on this node"))?;
            Some(u.uid.as_raw())
        };
        let alloc = AllocDir::of(&dirs);
        for (path, jwt) in files {
            let rel = alloc.relative(&path).map_err(|e| e.to_string())?;
            alloc
                .write_private_file(rel, jwt.as_bytes(), owner)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("identity file writer: {e}"))?
}

#[tonic::async_trait]
impl TaskHook for IdentityHook {
    async fn prestart(
        &mut self,
        c: &TaskHookCtx<'_>,
        _status: &mut TaskStatus,
    ) -> Result<(), HookError> {
        let blocks = exposed(c.task);
        let fail = |msg: String| HookError::Failed {
            event: event(
                "Task hook failed",
                &format!("prestart hook \"identity\" failed: {msg}"),
            ),
            restart_reason: "Identity failure",
        };
        if let Some(bad) = blocks.iter().find(|i| !valid_name(name_of(i))) {
            return Err(HookError::Unrecoverable {
                event: event(
                    "Task hook failed",
                    &format!(
                        "identity {:?}: a name is letters, digits, '_' and '-' (it names NOMAD_TOKEN_<name> and secrets/nomad_token_<name>)",
                        bad.name
                    ),
                ),
            });
        }
        let names: Vec<String> = blocks.iter().map(|i| name_of(i).to_string()).collect();
        let sign = c.identities.sign(&names);
        let mut stop = c.stop.clone();
        let signed = tokio::select! {
            r = sign => r.map_err(fail)?,
            _ = stop.wait_for(|s| s.is_some()) => return Err(HookError::Stopped),
        };
        write_files(c.dirs, &c.task.user, &blocks, &signed)
            .await
            .map_err(fail)?;
        self.env = blocks
            .iter()
            .filter(|i| i.env)
            .filter_map(|i| {
                let s = signed.get(name_of(i))?;
                Some((env_name(name_of(i)), s.jwt.clone()))
            })
            .collect();
        Ok(())
    }

    /// Keeps the identities with a TTL fresh while the task runs.
    fn poststart(&mut self, c: &TaskHookCtx<'_>, actions: &mpsc::Sender<Action>) {
        self.exited();
        let blocks: Vec<WorkloadIdentity> = exposed(c.task)
            .into_iter()
            .filter(|i| !i.ttl.is_zero())
            .collect();
        if blocks.is_empty() {
            return;
        }
        let renew = renew(
            c.identities.clone(),
            c.dirs.clone(),
            c.task.user.clone(),
            blocks,
            actions.clone(),
        );
        self.renewer = Some(tokio::spawn(renew.in_current_span()).abort_handle());
    }

    fn exited(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }

    fn env(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.env)
    }
}

/// Signs `blocks` again as each comes due, rewrites their files and asks for their
/// `change_mode`. A failed signing is retried every few seconds (the task keeps its
/// current token meanwhile).
async fn renew(
    identities: TaskIdentities,
    dirs: TaskDirs,
    user: String,
    blocks: Vec<WorkloadIdentity>,
    actions: mpsc::Sender<Action>,
) {
    const RETRY: Duration = Duration::from_secs(5);
    loop {
        let now = drover_model::now_nanos() / 1_000_000;
        let mut due = Vec::new();
        let mut wait = Duration::MAX;
        for b in &blocks {
            match identities.held(name_of(b)).map(|s| s.renew_in(now)) {
                None => due.push(b.clone()),
                Some(Some(d)) if d.is_zero() => due.push(b.clone()),
                Some(Some(d)) => wait = wait.min(d),
                Some(None) => {}
            }
        }
        if due.is_empty() {
            if wait == Duration::MAX {
                return;
            }
            tokio::time::sleep(wait).await;
            continue;
        }
        let names: Vec<String> = due.iter().map(|b| name_of(b).to_string()).collect();
        let signed = match identities.sign(&names).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the task's identities; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(e) = write_files(&dirs, &user, &due, &signed).await {
            tracing::warn!(error = %e, "cannot rewrite the task's identity files");
        }
        tracing::debug!(identities = ?names, "renewed the task's identities");
        for b in &due {
            let action = match b.change_mode.as_str() {
                "signal" if !b.change_signal.is_empty() => Action::Signal {
                    why: format!(
                        "Identity {:?} renewed; sending signal {}",
                        name_of(b),
                        b.change_signal
                    ),
                    signal: b.change_signal.clone(),
                },
                "restart" => Action::Restart {
                    why: format!("Identity {:?} renewed", name_of(b)),
                },
                _ => continue,
            };
            if actions.send(action).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_nomads_variables_and_files_and_odd_names_are_refused() {
        assert_eq!(env_name(DEFAULT), "NOMAD_TOKEN");
        assert_eq!(env_name("vault"), "NOMAD_TOKEN_vault");
        let dirs = TaskDirs {
            alloc_dir: "/a/alloc".into(),
            task_dir: "/a/t".into(),
            local_dir: "/a/t/local".into(),
            secrets_dir: "/a/t/secrets".into(),
            tmp_dir: "/a/t/tmp".into(),
        };
        assert_eq!(
            file_path(&dirs, DEFAULT),
            PathBuf::from("/a/t/secrets/nomad_token")
        );
        assert_eq!(
            file_path(&dirs, "vault"),
            PathBuf::from("/a/t/secrets/nomad_token_vault")
        );
        assert!(valid_name("vault_1-a"));
        for bad in ["", "../x", "a/b", "a b", "a=b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
