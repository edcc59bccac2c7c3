//! The backup snapshot (`/v1/operator/snapshot`: GET saves the whole state, PUT restores
//! it through Raft), and the backup file's format the CLI reads too.
//!
//! The state holds the keyring's root keys wrapped by the cluster's key-encryption key
//! (KEK) and the variables as ciphertext, so a backup restores where that KEK is installed.
//! With a passphrase (Drover's extension, header [`PASSPHRASE_HEADER`] on save and
//! restore), the root keys are re-wrapped under a key derived from it with argon2id (the
//! parameters and salt in `Meta.KeyringKdf`), and a restore re-wraps them under the
//! restoring cluster's KEK: the backup then restores on any cluster.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use drover_keyring::KeyringError;
use drover_keyring::passphrase::{KdfParams, MIN_PASSPHRASE, PassphraseKek};
use drover_keyring::root_key::{rewrap, unwrap};
use drover_model::RootKey;

use crate::error::write_status;
use crate::limits::MAX_BACKUP_BODY;
use crate::query::{Params, query, with_index};
use crate::{ApiError, ApiState};

/// The backup file: one JSON document holding the whole cluster state.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupFile {
    pub meta: BackupMeta,
    /// Every table of the state store (`drover_state::StateSnapshot`'s serialized form).
    pub state: serde_json::Value,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct BackupMeta {
    /// "drover-snapshot".
    pub format: String,
    pub version: u32,
    /// The Raft index the state was read at.
    pub index: u64,
    pub term: u64,
    /// Unix nanoseconds when it was taken.
    pub time: i64,
    pub drover_version: String,
    /// Rows per table.
    pub tables: BTreeMap<String, usize>,
    /// Set when the root keys are wrapped under a passphrase (how it derives the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring_kdf: Option<KdfParams>,
}

/// The header carrying a backup's passphrase (never a query parameter: URLs get logged).
pub const PASSPHRASE_HEADER: &str = "X-Drover-Snapshot-Passphrase";

/// The passphrase a request carries, if any.
fn passphrase(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(PASSPHRASE_HEADER)
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                ApiError::bad_request(format!("{PASSPHRASE_HEADER} is not valid text"))
            })
        })
        .transpose()
}

fn keyring_error(e: KeyringError) -> ApiError {
    ApiError::from(drover_server::ServerError::from(e))
}

/// Derives the passphrase's key on the blocking pool (argon2id is memory- and CPU-heavy).
async fn derive(params: KdfParams, passphrase: String) -> Result<PassphraseKek, ApiError> {
    tokio::task::spawn_blocking(move || params.derive(&passphrase))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

impl BackupMeta {
    /// Whether this is a backup file this Drover reads.
    pub fn check(&self) -> Result<(), String> {
        if self.format != BACKUP_FORMAT {
            return Err(format!(
                "not a Drover snapshot file: format is {:?}, expected {BACKUP_FORMAT:?}",
                self.format
            ));
        }
        if self.version != 1 {
            return Err(format!(
                "snapshot format version {} is not supported (this Drover reads version 1)",
                self.version
            ));
        }
        Ok(())
    }
}

pub const BACKUP_FORMAT: &str = "drover-snapshot";

/// Snapshot saves run one at a time.
static SNAPSHOT_SAVES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// GET /v1/operator/snapshot: the whole state, consistent unless `?stale`.
pub(crate) async fn save(
    State(st): State<ApiState>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let passphrase = passphrase(&headers)?;
    let snap = query(&st, &q, drover_state::Table::Jobs).await?;
    // With a passphrase: the root keys re-wrapped under it.
    let sealed = match passphrase {
        Some(p) if p.chars().count() < MIN_PASSPHRASE => {
            return Err(ApiError::bad_request(format!(
                "the snapshot passphrase must be at least {MIN_PASSPHRASE} characters"
            )));
        }
        Some(p) => {
            let params = KdfParams::new().map_err(keyring_error)?;
            let to = derive(params.clone(), p).await?;
            let from = st.server.keyring().kek().await.map_err(keyring_error)?;
            let keys = snap
                .root_keys()
                .map(|k| rewrap(k, &*from, &to))
                .collect::<Result<Vec<RootKey>, _>>()
                .map_err(keyring_error)?;
            Some((params, keys))
        }
        None => None,
    };
    // One snapshot is serialized at a time, on the blocking pool: the whole state is CPU
    // work and memory that must not stall the runtime or multiply with concurrent requests.
    let _one = SNAPSHOT_SAVES
        .acquire()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let term = st.server.raft_stats().term;
    let drover_version = st.agent.version.clone();
    let index = snap.index();
    let body = tokio::task::spawn_blocking(move || {
        let mut state = serde_json::to_value(&snap)?;
        let keyring_kdf = match sealed {
            Some((params, keys)) => {
                state["root_keys"] = serde_json::to_value(keys)?;
                Some(params)
            }
            None => None,
        };
        let mut tables = BTreeMap::new();
        for t in [
            "jobs",
            "job_versions",
            "allocs",
            "evals",
            "nodes",
            "variables",
            "root_keys",
        ] {
            tables.insert(
                t.to_string(),
                state
                    .get(t)
                    .and_then(|v| v.as_array())
                    .map_or(0, |a| a.len()),
            );
        }
        let file = BackupFile {
            meta: BackupMeta {
                format: BACKUP_FORMAT.into(),
                version: 1,
                index,
                term,
                time: drover_server::now_nanos(),
                drover_version,
                tables,
                keyring_kdf,
            },
            state,
        };
        serde_json::to_vec(&file)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut h = HeaderMap::new();
    h.insert(
        "X-Nomad-Index",
        HeaderValue::from_str(&index.max(1).to_string()).expect("digits"),
    );
    h.insert(
        "Content-Type",
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((h, body).into_response())
}

/// Checks a backup file and returns it decoded.
pub fn decode_backup(bytes: &[u8]) -> Result<BackupFile, String> {
    let file: BackupFile = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a Drover snapshot file (expected its JSON): {e}"))?;
    file.meta.check()?;
    drover_state::StateSnapshot::from_value(file.state.clone())
        .map_err(|e| format!("the snapshot's state is not valid: {e}"))?;
    Ok(file)
}

/// A backup as a restore reads it: the state decoded straight into the store's shape.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BackupIn {
    meta: BackupMeta,
    state: drover_state::StateSnapshot,
}

/// Removes a staged upload when the request ends, however it ends.
struct Staged(std::path::PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Streams the request body to a new private file, refusing more than [`MAX_BACKUP_BODY`].
async fn stage_upload(body: axum::body::Body, path: &std::path::Path) -> Result<u64, ApiError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let internal = |e: std::io::Error| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot stage the backup in {}: {e}", path.display()),
        )
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        written += chunk.len() as u64;
        if written > MAX_BACKUP_BODY as u64 {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the backup is larger than {MAX_BACKUP_BODY} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    Ok(written)
}

/// Reads a staged backup (blocking), checking its format.
fn read_staged(path: &std::path::Path) -> Result<BackupIn, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: BackupIn = serde_json::from_reader(std::io::BufReader::new(f))
        .map_err(|e| format!("not a valid Drover snapshot file: {e}"))?;
    file.meta.check()?;
    Ok(file)
}

/// PUT /v1/operator/snapshot: replaces the cluster's state with the file's, through Raft.
/// The upload is streamed to a private file under the server's Raft directory (never held
/// whole in memory as it arrives), then committed as bounded chunk entries and a final swap
/// entry, which replicate to every server like any write.
pub(crate) async fn restore(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let passphrase = passphrase(&headers)?;
    let staged = Staged(st.server.restore_staging_path());
    let bytes = stage_upload(body, &staged.0).await?;
    let path = staged.0.clone();
    let file = tokio::task::spawn_blocking(move || read_staged(&path))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::bad_request)?;
    drop(staged);
    let from_index = file.meta.index;
    let mut state = file.state;
    let keys: Vec<RootKey> = state.root_keys().cloned().collect();
    if !keys.is_empty() {
        let keys = keys_for_this_cluster(&st, keys, file.meta.keyring_kdf, passphrase).await?;
        state.replace_root_keys(keys);
    }
    let index = st.server.restore(state).await.map_err(|e| match e {
        drover_server::RestoreError::RowTooLarge(_) => ApiError::bad_request(e.to_string()),
        e => match e.write_error() {
            Some(w) => ApiError(write_status(w), e.to_string()),
            None => ApiError::internal(e.to_string()),
        },
    })?;
    tracing::info!(
        index,
        from_index,
        bytes,
        "restored the cluster state from a snapshot"
    );
    Ok(with_index(index, &serde_json::json!({ "Index": index })))
}

/// The backup's root keys wrapped by this cluster's KEK: re-wrapped from the passphrase's
/// key, or checked to unwrap with this server's KEK.
async fn keys_for_this_cluster(
    st: &ApiState,
    keys: Vec<RootKey>,
    kdf: Option<KdfParams>,
    passphrase: Option<String>,
) -> Result<Vec<RootKey>, ApiError> {
    let kek = st.server.keyring().kek().await.map_err(keyring_error)?;
    match (kdf, passphrase) {
        (Some(params), Some(p)) => {
            let from = derive(params, p).await?;
            keys.iter()
                .map(|k| {
                    rewrap(k, &from, &*kek).map_err(|e| match e {
                        KeyringError::Decrypt { .. } => ApiError::bad_request(format!(
                            "the passphrase does not unwrap the snapshot's root key {}: it is not the passphrase the snapshot was saved with",
                            k.key_id
                        )),
                        e => keyring_error(e),
                    })
                })
                .collect()
        }
        (Some(_), None) => Err(ApiError::bad_request(format!(
            "this snapshot's keyring is sealed with a passphrase: give it (drover operator snapshot restore -passphrase, or the {PASSPHRASE_HEADER} header)"
        ))),
        (None, _) => {
            for k in &keys {
                unwrap(&*kek, k).map_err(|e| match e {
                    KeyringError::WrongKek { .. } | KeyringError::Decrypt { .. } => {
                        ApiError::bad_request(format!(
                            "{e}. This snapshot's keyring is wrapped by the key-encryption key of the cluster that saved it: restore where that KEK file is installed, or save the snapshot again with -passphrase"
                        ))
                    }
                    e => keyring_error(e),
                })?;
            }
            Ok(keys)
        }
    }
}
