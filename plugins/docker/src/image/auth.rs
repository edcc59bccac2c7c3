//! Registry credentials, as Nomad finds them: the task's `auth { }`, else the plugin's
//! `auth.config` (a docker `config.json`: `auths`, `credHelpers`, `credsStore`), else the
//! plugin's `auth.helper`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use tokio::io::AsyncWriteExt;

use super::ImageError;
use crate::config::Settings;
use crate::config::task::AuthBlock;

/// The most a config file or a helper's answer may hold.
const MAX_AUTH_BYTES: u64 = 1 << 20;
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The credentials for `registry`, `None` for an anonymous pull.
pub async fn credentials(
    registry: &str,
    task_auth: Option<&AuthBlock>,
    settings: &Settings,
) -> Result<Option<DockerCredentials>, ImageError> {
    if let Some(a) = task_auth.filter(|a| a.username.is_some() || a.password.is_some()) {
        return Ok(Some(DockerCredentials {
            username: a.username.clone(),
            password: a.password.clone(),
            email: a.email.clone(),
            serveraddress: Some(
                a.server_address
                    .clone()
                    .unwrap_or_else(|| registry.to_string()),
            ),
            ..Default::default()
        }));
    }
    if let Some(path) = &settings.auth_config {
        let found = from_config_file(path, registry).await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    if let Some(helper) = &settings.auth_helper {
        return from_helper(helper, registry).await;
    }
    Ok(None)
}

/// `https://host:5000/v1/` and `host:5000` name one registry.
fn same_registry(key: &str, registry: &str) -> bool {
    let strip = |s: &str| {
        let s = s
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        s.split('/').next().unwrap_or("").to_string()
    };
    key == registry || strip(key) == strip(registry)
}

async fn from_config_file(
    path: &Path,
    registry: &str,
) -> Result<Option<DockerCredentials>, ImageError> {
    let path = path.to_path_buf();
    let raw = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let f = std::fs::File::open(&path)?;
        let mut buf = Vec::new();
        f.take(MAX_AUTH_BYTES).read_to_end(&mut buf)?;
        Ok::<_, std::io::Error>(buf)
    })
    .await
    .map_err(|e| ImageError::Auth(e.to_string()))?
    .map_err(|e| ImageError::Auth(format!("cannot read the docker plugin's auth.config: {e}")))?;
    let cfg: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
        ImageError::Auth(format!("the docker plugin's auth.config is not JSON: {e}"))
    })?;
    if let Some(auths) = cfg.get("auths").and_then(|a| a.as_object()) {
        for (key, entry) in auths {
            if !same_registry(key, registry) {
                continue;
            }
            if let Some(c) = decode_auth_entry(entry, registry)? {
                return Ok(Some(c));
            }
        }
    }
    if let Some(helpers) = cfg.get("credHelpers").and_then(|h| h.as_object()) {
        for (key, helper) in helpers {
            if same_registry(key, registry)
                && let Some(h) = helper.as_str()
            {
                return from_helper(h, registry).await;
            }
        }
    }
    if let Some(store) = cfg.get("credsStore").and_then(|s| s.as_str()) {
        return from_helper(store, registry).await;
    }
    Ok(None)
}

/// An `auths` entry: `auth` (base64 of user:password) or `username`/`password`.
fn decode_auth_entry(
    entry: &serde_json::Value,
    registry: &str,
) -> Result<Option<DockerCredentials>, ImageError> {
    let s = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (username, password) = match s("auth").filter(|a| !a.is_empty()) {
        Some(auth) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| {
                    ImageError::Auth(format!("auth.config: {registry}: auth is not base64: {e}"))
                })?;
            let text = String::from_utf8(raw).map_err(|_| {
                ImageError::Auth(format!("auth.config: {registry}: auth is not text"))
            })?;
            let (u, p) = text.split_once(':').ok_or_else(|| {
                ImageError::Auth(format!(
                    "auth.config: {registry}: auth is not user:password"
                ))
            })?;
            (Some(u.to_string()), Some(p.to_string()))
        }
        None => (s("username"), s("password")),
    };
    if username.is_none() && s("identitytoken").is_none() {
        return Ok(None);
    }
    Ok(Some(DockerCredentials {
        username,
        password,
        identitytoken: s("identitytoken"),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    }))
}

/// Asks `docker-credential-<helper> get` for `registry`'s credentials.
async fn from_helper(
    helper: &str,
    registry: &str,
) -> Result<Option<DockerCredentials>, ImageError> {
    if helper.is_empty()
        || !helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ImageError::Auth(format!(
            "credential helper {helper:?} is not a helper name"
        )));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ImageError::Auth(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes()).await;
    }
    let out = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            ImageError::Auth(format!(
                "{program} did not answer within {HELPER_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| ImageError::Auth(format!("{program}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stdout);
        if err.contains("credentials not found") {
            return Ok(None);
        }
        return Err(ImageError::Auth(format!(
            "{program} failed: {}{}",
            err.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout[..out.stdout.len().min(MAX_AUTH_BYTES as usize)])
            .map_err(|e| ImageError::Auth(format!("{program} did not answer JSON: {e}")))?;
    let username = v
        .get("Username")
        .and_then(|u| u.as_str())
        .map(str::to_string);
    let secret = v.get("Secret").and_then(|u| u.as_str()).map(str::to_string);
    Ok(Some(if username.as_deref() == Some("<token>") {
        DockerCredentials {
            identitytoken: secret,
            serveraddress: Some(registry.into()),
            ..Default::default()
        }
    } else {
        DockerCredentials {
            username,
            password: secret,
            serveraddress: Some(registry.into()),
            ..Default::default()
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_and_entries() {
        assert!(same_registry(
            "https://127.0.0.1:5000/v1/",
            "127.0.0.1:5000"
        ));
        assert!(same_registry("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!same_registry("127.0.0.1:5001", "127.0.0.1:5000"));
        let e =
            serde_json::json!({"auth": base64::engine::general_purpose::STANDARD.encode("u:p:x")});
        let c = decode_auth_entry(&e, "r").unwrap().unwrap();
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p:x"));
        assert!(decode_auth_entry(&serde_json::json!({"auth": "!!"}), "r").is_err());
        assert!(
            decode_auth_entry(&serde_json::json!({}), "r")
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn task_auth_wins_and_bad_helper_names_are_refused() {
        let a = AuthBlock {
            username: Some("u".into()),
            password: Some("p".into()),
            ..Default::default()
        };
        let c = credentials("r:1", Some(&a), &Settings::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.serveraddress.as_deref(), Some("r:1"));
        assert!(
            credentials("r:1", None, &Settings::default())
                .await
                .unwrap()
                .is_none()
        );
        assert!(from_helper("../x", "r").await.is_err());
    }
}
