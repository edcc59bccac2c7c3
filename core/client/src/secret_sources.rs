//! Where a task's secrets come from: one function per kind of provider, shared by the
//! `secret` block (task hook `secrets`) and the template's `secret` function.
//!
//! A `secret "<name>" { provider, path, config, env }` block is fetched from, in this order:
//!
//! 1. `nomad`, Nomad's built-in provider: the variable at `path` in the job's namespace, read
//!    from the servers through the node stream (`config { namespace }` may only name the
//!    job's own namespace);
//! 2. an exec plugin `<common_plugin_dir>/secrets/<provider>` (Nomad's protocol, see
//!    [`crate::exec_secrets`]), given the block's `env`;
//! 3. a Drover secret provider plugin of that name in `plugin_dir` (gRPC, Extism or native).
//!
//! Each key `k` of the answer is `secret.<name>.<k>` for interpolation.

use std::collections::BTreeMap;

use drover_model::{Allocation, Job, Secret};
use drover_plugin_host::{HostError, SecretsError};
use drover_proto::secrets::FetchResponse;

use crate::Client;
use crate::exec_secrets::{self, ExecSecretError, Requester};
use crate::identities::{DEFAULT, TaskIdentities, provider_identity};

/// Nomad's built-in provider of variables.
pub const NOMAD_PROVIDER: &str = "nomad";

/// Why a Drover secret provider plugin gave no secret.
#[derive(Debug, thiserror::Error)]
pub enum PluginSecretError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Fetch(#[from] SecretsError),
    #[error("the task's identity for provider {provider:?}: {why}")]
    Identity { provider: String, why: String },
}

/// The secret at `path` from Drover secret provider plugin `provider`, fetched as the task
/// `identities` belong to: the provider is shown the task's `secrets/<provider>` workload
/// identity (audience `drover-secrets/<provider>`), never its API token. The template's
/// `secret` function and the `secret` block both call this.
pub(crate) async fn fetch_from_plugin(
    client: &Client,
    identities: &TaskIdentities,
    provider: &str,
    path: &str,
) -> Result<FetchResponse, PluginSecretError> {
    let secrets = client.host().secrets(provider).await?;
    let identity = identities
        .get(&provider_identity(provider))
        .await
        .map_err(|why| PluginSecretError::Identity {
            provider: provider.to_string(),
            why,
        })?;
    Ok(secrets.fetch_as(path, &identity.jwt).await?)
}

/// Why a `secret` block could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Exec(#[from] ExecSecretError),
    #[error(transparent)]
    Plugin(#[from] PluginSecretError),
    #[error(
        "the nomad provider reads variables of the job's namespace {job:?} only, not {asked:?}"
    )]
    OtherNamespace { asked: String, job: String },
    #[error("the nomad provider's config takes only \"namespace\", not {key:?}")]
    NomadConfig { key: String },
    #[error("{0}")]
    BadPath(String),
    #[error("no variable at {path:?} in namespace {namespace:?}")]
    NoVariable { path: String, namespace: String },
    #[error("reading variable {path:?}: {why}")]
    Variables { path: String, why: String },
    #[error(
        "Vault is not integrated in Drover: use a secret provider plugin (plugin_dir) or an exec provider (common_plugin_dir/secrets)"
    )]
    Vault,
}

/// A `secret` block that could not be fetched: names the block and its provider.
#[derive(Debug, thiserror::Error)]
#[error("secret {secret:?} from provider {provider:?}: {source}")]
pub struct SecretBlockError {
    pub secret: String,
    pub provider: String,
    #[source]
    pub source: SourceError,
}

/// Fetches `secret` for a task of `alloc`: its keys as `secret.<name>.<key>`. `env` is the
/// task's environment so far, which an exec plugin's `env` values are interpolated with.
pub(crate) async fn fetch_block(
    client: &Client,
    alloc: &Allocation,
    job: &Job,
    secret: &Secret,
    env: &BTreeMap<String, String>,
    identities: &TaskIdentities,
) -> Result<BTreeMap<String, String>, SecretBlockError> {
    let data = fetch_data(client, alloc, job, secret, env, identities)
        .await
        .map_err(|source| SecretBlockError {
            secret: secret.name.clone(),
            provider: secret.provider.clone(),
            source,
        })?;
    Ok(data
        .into_iter()
        .map(|(k, v)| (format!("secret.{}.{k}", secret.name), v))
        .collect())
}

async fn fetch_data(
    client: &Client,
    alloc: &Allocation,
    job: &Job,
    secret: &Secret,
    env: &BTreeMap<String, String>,
    identities: &TaskIdentities,
) -> Result<BTreeMap<String, String>, SourceError> {
    match secret.provider.as_str() {
        NOMAD_PROVIDER => read_variable(client, alloc, identities, secret).await,
        "vault" => Err(SourceError::Vault),
        provider => {
            let dir = client
                .inner
                .config
                .common_plugin_dir
                .join(exec_secrets::SECRETS_DIR);
            if exec_secrets::present(&dir, provider).await {
                let env: BTreeMap<String, String> = secret
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), crate::env::interpolate(v, env)))
                    .collect();
                let identity =
                    identities
                        .get(&provider_identity(provider))
                        .await
                        .map_err(|why| PluginSecretError::Identity {
                            provider: provider.to_string(),
                            why,
                        })?;
                let who = Requester {
                    namespace: &alloc.namespace,
                    job_id: &job.id,
                    identity: &identity.jwt,
                };
                return Ok(exec_secrets::fetch(&dir, provider, &secret.path, &env, &who).await?);
            }
            let r = fetch_from_plugin(client, identities, provider, &secret.path).await?;
            Ok(r.data.into_iter().collect())
        }
    }
}

/// Nomad's `nomad` provider: the items of the variable at the block's path.
async fn read_variable(
    client: &Client,
    alloc: &Allocation,
    identities: &TaskIdentities,
    secret: &Secret,
) -> Result<BTreeMap<String, String>, SourceError> {
    for (key, value) in &secret.config {
        if key != "namespace" {
            return Err(SourceError::NomadConfig { key: key.clone() });
        }
        let asked = value.as_str().unwrap_or_default();
        if asked != alloc.namespace {
            return Err(SourceError::OtherNamespace {
                asked: value.to_string(),
                job: alloc.namespace.clone(),
            });
        }
    }
    drover_model::validate_variable_path(&secret.path).map_err(SourceError::BadPath)?;
    let identity = identities
        .get(DEFAULT)
        .await
        .map_err(|why| SourceError::Variables {
            path: secret.path.clone(),
            why,
        })?;
    let vars = client
        .read_variables(&alloc.id, &identity.jwt, &secret.path, false)
        .await
        .map_err(|why| SourceError::Variables {
            path: secret.path.clone(),
            why,
        })?;
    let var = vars
        .into_iter()
        .find(|v| v.path == secret.path)
        .ok_or_else(|| SourceError::NoVariable {
            path: secret.path.clone(),
            namespace: alloc.namespace.clone(),
        })?;
    Ok(var.items.into_iter().collect())
}
