//! A secret from a secret provider plugin, fetched for a task: the one road every reader
//! of provider secrets takes (the template `secret` function, the `secret` block), so the
//! provider always sees who asks — the task's `secrets/<provider>` workload identity
//! (audience `drover-secrets/<provider>`), never its API token.

use drover_proto::secrets::FetchResponse;

use crate::Client;
use crate::identities::{TaskIdentities, provider_identity};

/// The secret at `path` of provider plugin `provider`, fetched as the task `identities`
/// belong to.
pub(crate) async fn fetch(
    client: &Client,
    identities: &TaskIdentities,
    provider: &str,
    path: &str,
) -> Result<FetchResponse, String> {
    let secrets = client
        .host()
        .secrets(provider)
        .await
        .map_err(|e| e.to_string())?;
    let identity = identities
        .get(&provider_identity(provider))
        .await
        .map_err(|e| format!("the task's identity for provider {provider:?}: {e}"))?;
    secrets
        .fetch_as(path, &identity.jwt)
        .await
        .map_err(|e| e.to_string())
}
