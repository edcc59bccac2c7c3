//! ACL writes through Raft (policies, tokens, roles, the bootstrap) and the leader's reaping
//! of expired tokens. Deciding who may do what is the API's (`drover-api`'s `acl`); this is
//! only storage.

use std::time::Duration;

use drover_model::{AclPolicy, AclRole, AclToken};
use drover_state::Command;

use crate::{Server, ServerError};

/// How often the leader deletes expired tokens (they are refused from the moment they
/// expire; this only keeps the table small).
const REAP_INTERVAL: Duration = Duration::from_secs(60);

/// Most tokens one reaping entry deletes.
const REAP_BATCH: usize = 1024;

impl Server {
    /// Writes an ACL command; a refusal by the state machine is `ServerError::Invalid`.
    async fn acl_write(&self, command: Command) -> Result<u64, ServerError> {
        let resp = self.raft().write(command).await?;
        match resp.error {
            Some(e) => Err(ServerError::Invalid(e)),
            None => Ok(resp.index),
        }
    }

    pub async fn upsert_acl_policies(&self, policies: Vec<AclPolicy>) -> Result<u64, ServerError> {
        self.acl_write(Command::AclPolicyUpsert { policies }).await
    }

    pub async fn delete_acl_policies(&self, names: Vec<String>) -> Result<u64, ServerError> {
        self.acl_write(Command::AclPolicyDelete { names }).await
    }

    /// Stores tokens (each new one with its secret's hash only).
    pub async fn upsert_acl_tokens(&self, tokens: Vec<AclToken>) -> Result<u64, ServerError> {
        self.acl_write(Command::AclTokenUpsert { tokens }).await
    }

    pub async fn delete_acl_tokens(&self, accessors: Vec<String>) -> Result<u64, ServerError> {
        self.acl_write(Command::AclTokenDelete { accessors }).await
    }

    /// The ACL bootstrap: refused once done, unless `reset_index` is the last bootstrap's.
    pub async fn bootstrap_acl(
        &self,
        token: AclToken,
        reset_index: Option<u64>,
    ) -> Result<u64, ServerError> {
        self.acl_write(Command::AclBootstrap { token, reset_index })
            .await
    }

    pub async fn upsert_acl_roles(&self, roles: Vec<AclRole>) -> Result<u64, ServerError> {
        self.acl_write(Command::AclRoleUpsert { roles }).await
    }

    pub async fn delete_acl_roles(&self, ids: Vec<String>) -> Result<u64, ServerError> {
        self.acl_write(Command::AclRoleDelete { ids }).await
    }

    /// Deletes the tokens expired at `now`; returns how many it asked to delete.
    pub async fn reap_expired_acl_tokens(&self, now: i64) -> Result<usize, ServerError> {
        let expired: Vec<String> = self
            .store()
            .snapshot()
            .acl_tokens()
            .filter(|t| t.expired(now))
            .map(|t| t.accessor_id.clone())
            .collect();
        for chunk in expired.chunks(REAP_BATCH) {
            self.acl_write(Command::AclTokenDelete {
                accessors: chunk.to_vec(),
            })
            .await?;
        }
        Ok(expired.len())
    }
}

/// Runs while this server leads: deletes expired tokens every minute.
pub(crate) async fn reap(server: Server) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match server.reap_expired_acl_tokens(crate::now_nanos()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tokens = n, "expired ACL tokens deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete expired ACL tokens"),
        }
    }
}
