//! Workload identities on a server (issue 22): signing a task's identities with the active
//! root key for the node that runs it (never stored in Raft), and verifying one presented
//! back (an API token, a template's variable read): signature, time, and that its
//! allocation still exists and is not terminal — a token dies with its allocation.

use std::time::Duration;

use drover_keyring::identity::{
    self, Audience, DEFAULT_AUDIENCE, DEFAULT_IDENTITY, IdentityError, WorkloadClaims,
};
use drover_model::{Allocation, Task};
use drover_state::StateSnapshot;

use crate::{Server, ServerError, new_id};

/// The prefix of the identity a secret provider plugin is shown (`secrets/<provider>`).
pub const PROVIDER_IDENTITY_PREFIX: &str = "secrets/";
/// The audience of that identity: `drover-secrets/<provider>`.
pub const PROVIDER_AUDIENCE_PREFIX: &str = "drover-secrets/";
/// How long a provider's identity lives.
pub const PROVIDER_IDENTITY_TTL: Duration = Duration::from_secs(3600);
/// The most identities one request signs.
pub const MAX_IDENTITIES: usize = 64;
/// The longest identity name accepted.
const MAX_NAME: usize = 256;

/// One identity signed for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIdentity {
    pub name: String,
    pub jwt: String,
    /// Unix seconds; None: lives as long as the allocation.
    pub expires_at: Option<i64>,
    pub issued_at: i64,
}

/// Why a presented identity is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadTokenError {
    #[error(transparent)]
    Token(#[from] IdentityError),
    #[error("the identity's allocation no longer exists")]
    AllocationGone,
    #[error("the identity's allocation is terminal")]
    AllocationTerminal,
}

/// A verified workload identity and its allocation's task group.
#[derive(Debug, Clone)]
pub struct Workload {
    pub claims: WorkloadClaims,
    pub group: String,
}

impl Workload {
    /// Whether the identity may read (and list) the variable at `path` in `namespace`
    /// without any ACL policy (Nomad's implicit policy; see
    /// [`identity::implicit_variable_access`]). Only the default identity is an API token.
    pub fn may_read_variable(&self, namespace: &str, path: &str) -> bool {
        self.claims.identity_name() == DEFAULT_IDENTITY
            && identity::implicit_variable_access(&self.claims, &self.group, namespace, path)
    }
}

/// Verifies `token` against the keyring in `snap` at `now` (unix seconds): the token's
/// checks, then its allocation (it must exist and not be terminal).
pub fn verify_workload(
    snap: &StateSnapshot,
    token: &str,
    now: i64,
) -> Result<Workload, WorkloadTokenError> {
    let claims = identity::verify(token, snap.root_keys(), now)?;
    let alloc = snap
        .alloc(&claims.nomad_allocation_id)
        .ok_or(WorkloadTokenError::AllocationGone)?;
    if alloc.is_terminal() {
        return Err(WorkloadTokenError::AllocationTerminal);
    }
    Ok(Workload {
        group: alloc.task_group.clone(),
        claims,
    })
}

/// Unix seconds now (signing and verifying run outside Raft apply).
pub fn now_secs() -> i64 {
    drover_model::now_nanos() / 1_000_000_000
}

/// The audience and TTL of identity `name` of `task` (its `identity` block; "default"
/// without a block is the default identity: Nomad's audience, no expiry).
fn identity_spec(task: &Task, name: &str) -> Result<(Vec<String>, Duration), ServerError> {
    if let Some(provider) = name.strip_prefix(PROVIDER_IDENTITY_PREFIX) {
        if provider.is_empty()
            || !provider
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ServerError::Invalid(format!(
                "identity {name:?}: a secret provider's name is letters, digits, '-', '_' and '.'"
            )));
        }
        return Ok((
            vec![format!("{PROVIDER_AUDIENCE_PREFIX}{provider}")],
            PROVIDER_IDENTITY_TTL,
        ));
    }
    let block = task.identities.iter().find(|i| {
        let n = if i.name.is_empty() {
            DEFAULT_IDENTITY
        } else {
            i.name.as_str()
        };
        n == name
    });
    match block {
        Some(b) => {
            let aud = if b.audience.is_empty() && name == DEFAULT_IDENTITY {
                vec![DEFAULT_AUDIENCE.to_string()]
            } else {
                b.audience.clone()
            };
            Ok((aud, b.ttl))
        }
        None if name == DEFAULT_IDENTITY => {
            Ok((vec![DEFAULT_AUDIENCE.to_string()], Duration::ZERO))
        }
        None => Err(ServerError::NotFound(format!(
            "task {:?} has no identity {name:?}",
            task.name
        ))),
    }
}

impl Server {
    /// Signs identities `names` of task `task_name` of `alloc` with the active root key.
    /// The caller checked that the allocation is placed on the asking node.
    pub async fn sign_identities(
        &self,
        alloc: &Allocation,
        task_name: &str,
        names: &[String],
    ) -> Result<Vec<SignedIdentity>, ServerError> {
        if names.len() > MAX_IDENTITIES {
            return Err(ServerError::Invalid(format!(
                "at most {MAX_IDENTITIES} identities are signed at once, not {}",
                names.len()
            )));
        }
        if let Some(n) = names.iter().find(|n| n.len() > MAX_NAME || n.is_empty()) {
            return Err(ServerError::Invalid(format!(
                "identity name {:?} is empty or longer than {MAX_NAME} bytes",
                n.chars().take(64).collect::<String>()
            )));
        }
        if alloc.is_terminal() {
            return Err(ServerError::Invalid(format!(
                "allocation {} is terminal: its identities are not signed any more",
                alloc.id
            )));
        }
        let snap = self.store().snapshot();
        let job = snap
            .job_version(&alloc.namespace, &alloc.job_id, alloc.job_version)
            .or_else(|| snap.job(&alloc.namespace, &alloc.job_id))
            .ok_or_else(|| ServerError::NotFound(format!("job {:?}", alloc.job_id)))?;
        let task = job
            .groups
            .iter()
            .find(|g| g.name == alloc.task_group)
            .and_then(|g| g.tasks.iter().find(|t| t.name == task_name))
            .ok_or_else(|| {
                ServerError::NotFound(format!(
                    "task {task_name:?} in group {:?} of job {:?}",
                    alloc.task_group, alloc.job_id
                ))
            })?;
        let now = now_secs();
        let mut wanted = Vec::with_capacity(names.len());
        for name in names {
            let (aud, ttl) = identity_spec(task, name)?;
            let exp = (!ttl.is_zero()).then(|| now + ttl.as_secs().max(1) as i64);
            let claims = WorkloadClaims {
                sub: identity::subject(
                    &job.region,
                    &alloc.namespace,
                    &alloc.job_id,
                    &alloc.task_group,
                    task_name,
                    name,
                ),
                aud: Audience::from_list(aud),
                iat: now,
                nbf: now,
                exp,
                jti: new_id(),
                nomad_namespace: alloc.namespace.clone(),
                nomad_job_id: alloc.job_id.clone(),
                nomad_allocation_id: alloc.id.clone(),
                nomad_task: task_name.to_string(),
            };
            wanted.push((name.clone(), claims));
        }
        let active = self.active_root_key().await?;
        let material = self.keyring().material(&active).await?;
        let signed = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(name, claims)| {
                    Ok(SignedIdentity {
                        jwt: identity::sign(&material, &claims)?,
                        name,
                        expires_at: claims.exp,
                        issued_at: claims.iat,
                    })
                })
                .collect::<Result<Vec<_>, drover_keyring::KeyringError>>()
        })
        .await
        .map_err(|e| ServerError::Invalid(format!("signing identities: {e}")))??;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::WorkloadIdentity;

    #[test]
    fn identities_take_their_audience_and_ttl_from_the_task() {
        let mut task = Task::new("t", "raw_exec");
        assert_eq!(
            identity_spec(&task, "default").unwrap(),
            (vec![DEFAULT_AUDIENCE.to_string()], Duration::ZERO)
        );
        assert!(matches!(
            identity_spec(&task, "vault"),
            Err(ServerError::NotFound(_))
        ));
        task.identities.push(WorkloadIdentity {
            name: "vault".into(),
            audience: vec!["vault.io".into()],
            ttl: Duration::from_secs(60),
            ..Default::default()
        });
        assert_eq!(
            identity_spec(&task, "vault").unwrap(),
            (vec!["vault.io".to_string()], Duration::from_secs(60))
        );
        assert_eq!(
            identity_spec(&task, "secrets/grpc-secrets").unwrap(),
            (
                vec!["drover-secrets/grpc-secrets".to_string()],
                PROVIDER_IDENTITY_TTL
            )
        );
        assert!(identity_spec(&task, "secrets/../x:y").is_err());
    }
}
