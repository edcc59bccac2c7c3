//! A task's workload identities (issue 22): JWTs the servers sign for it on request
//! (SignIdentities on the node stream), held in memory only and signed again once two
//! thirds of their life passed. Every hook of the task reads them from here: the identity
//! hook exposes them to the task, templates read variables with the default one, and
//! secret providers are shown the task's `secrets/<provider>` identity.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Client;

/// The name of the default identity.
pub(crate) const DEFAULT: &str = "default";

/// The identity a secret provider plugin is shown: audience `drover-secrets/<provider>`.
pub(crate) fn provider_identity(provider: &str) -> String {
    format!("secrets/{provider}")
}

/// One signed identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signed {
    pub jwt: String,
    /// Unix milliseconds.
    pub issued_at_ms: i64,
    /// Unix milliseconds; None: lives as long as the allocation.
    pub expires_at_ms: Option<i64>,
}

impl Signed {
    /// How long until it is due to be signed again (two thirds of its life); None: never.
    pub(crate) fn renew_in(&self, now_ms: i64) -> Option<Duration> {
        let exp = self.expires_at_ms?;
        let due = self.issued_at_ms + (exp - self.issued_at_ms) * 2 / 3;
        Some(Duration::from_millis(
            due.saturating_sub(now_ms).max(0) as u64
        ))
    }
}

fn now_ms() -> i64 {
    drover_model::now_nanos() / 1_000_000
}

/// The identities of one task, shared by its hooks.
#[derive(Clone)]
pub(crate) struct TaskIdentities {
    client: Client,
    alloc_id: String,
    task: String,
    held: Arc<Mutex<BTreeMap<String, Signed>>>,
}

impl TaskIdentities {
    pub(crate) fn new(client: Client, alloc_id: &str, task: &str) -> TaskIdentities {
        TaskIdentities {
            client,
            alloc_id: alloc_id.to_string(),
            task: task.to_string(),
            held: Arc::default(),
        }
    }

    /// Identity `name` as held now (not signed again).
    pub(crate) fn held(&self, name: &str) -> Option<Signed> {
        self.held
            .lock()
            .expect("identities lock")
            .get(name)
            .cloned()
    }

    /// Identity `name`: the one held, or (when none is held or it is due) a new one.
    pub(crate) async fn get(&self, name: &str) -> Result<Signed, String> {
        match self.held(name) {
            Some(s) if s.renew_in(now_ms()) != Some(Duration::ZERO) => Ok(s),
            _ => Ok(self
                .sign(&[name.to_string()])
                .await?
                .remove(name)
                .ok_or_else(|| format!("the server signed no identity {name:?}"))?),
        }
    }

    /// Signs `names` now (replacing those held).
    pub(crate) async fn sign(&self, names: &[String]) -> Result<BTreeMap<String, Signed>, String> {
        let signed = self
            .client
            .sign_identities(&self.alloc_id, &self.task, names)
            .await?;
        let signed: BTreeMap<String, Signed> = signed
            .into_iter()
            .map(|s| {
                (
                    s.name,
                    Signed {
                        jwt: s.jwt,
                        issued_at_ms: s.issued_at_ms,
                        expires_at_ms: (s.expires_at_ms > 0).then_some(s.expires_at_ms),
                    },
                )
            })
            .collect();
        self.held
            .lock()
            .expect("identities lock")
            .extend(signed.clone());
        Ok(signed)
    }
}

impl Client {
    /// Identities `names` of task `task` of allocation `alloc_id`, signed by the attached
    /// server.
    pub(crate) async fn sign_identities(
        &self,
        alloc_id: &str,
        task: &str,
        names: &[String],
    ) -> Result<Vec<drover_proto::node::SignedIdentity>, String> {
        const LIMIT: Duration = Duration::from_secs(30);
        let crate::ServerLink {
            mut rpc,
            node_secret,
        } = self
            .server_link()
            .await
            .map_err(|e| format!("cannot sign the task's identities: {e}"))?;
        let request = drover_proto::node::SignIdentitiesRequest {
            node_id: self.node_id().to_string(),
            node_secret,
            alloc_id: alloc_id.to_string(),
            task: task.to_string(),
            names: names.to_vec(),
        };
        let reply = tokio::time::timeout(LIMIT, rpc.sign_identities(request))
            .await
            .map_err(|_| format!("the server did not sign the task's identities in {LIMIT:?}"))?
            .map_err(|e| {
                format!(
                    "the server refused to sign the task's identities: {}",
                    e.message()
                )
            })?;
        Ok(reply.into_inner().identities)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_due_at_two_thirds_of_their_life() {
        let s = Signed {
            jwt: String::new(),
            issued_at_ms: 0,
            expires_at_ms: Some(30_000),
        };
        assert_eq!(s.renew_in(0), Some(Duration::from_secs(20)));
        assert_eq!(s.renew_in(19_000), Some(Duration::from_secs(1)));
        assert_eq!(s.renew_in(25_000), Some(Duration::ZERO));
        let forever = Signed {
            expires_at_ms: None,
            ..s
        };
        assert_eq!(forever.renew_in(i64::MAX), None);
    }
}
