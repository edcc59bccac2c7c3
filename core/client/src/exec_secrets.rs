//! Nomad's exec-based secret providers (the "common plugin interface", Nomad 1.11): an
//! executable in `<common_plugin_dir>/secrets/`, run once per call:
//!
//! - `<plugin> fingerprint` with only `CPI_OPERATION=fingerprint` in its environment answers
//!   `{"type": "secrets", "version": "<version>"}` on stdout; the client runs it for every
//!   plugin at start and advertises `plugins.secrets.<name>.version`, as Nomad does.
//! - `<plugin> fetch <path>` with `CPI_OPERATION=fetch`, `NOMAD_NAMESPACE`, `NOMAD_JOB_ID`
//!   and the `secret` block's `env` answers `{"result": {"<key>": "<value>", ...}}`, or
//!   `{"error": "<message>"}`.
//!
//! Nothing else reaches the plugin: no stdin, no other environment (not even `PATH`). A
//! plugin is a single name found beneath the directory, never through a link. The call is
//! bounded as Nomad bounds it — 10 s, then SIGTERM to its process group, then SIGKILL 2 s
//! later — and so is its answer (1 MiB of stdout; stderr is discarded). A reply is never
//! quoted in an error: it may hold a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// The subdirectory of `common_plugin_dir` secret providers live in (Nomad's).
pub const SECRETS_DIR: &str = "secrets";
/// How long a call may take before its process group gets SIGTERM (Nomad's).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after SIGTERM before SIGKILL (Nomad's).
const KILL_GRACE: Duration = Duration::from_secs(2);
/// The most stdout a call may write.
pub const MAX_REPLY: usize = 1 << 20;
/// The most entries a `secret` block's `env` may have, and the longest value.
const MAX_ENV_ENTRIES: usize = 64;
const MAX_ENV_VALUE: usize = 4096;

/// Why a call to an exec secret provider failed. Messages name the plugin, never a value.
#[derive(Debug, thiserror::Error)]
pub enum ExecSecretError {
    #[error("{name:?} is not a plugin name (one path component, at most 255 bytes)")]
    BadName { name: String },
    #[error("plugin {name:?}: {why}")]
    Unusable { name: String, why: String },
    #[error("plugin {name:?}: env {key:?}: {why}")]
    BadEnv {
        name: String,
        key: String,
        why: &'static str,
    },
    #[error("plugin {name:?} could not be started: {source}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {name:?} did not answer within {after:?} and was stopped")]
    TimedOut { name: String, after: Duration },
    #[error("plugin {name:?} wrote more than {limit} bytes to stdout")]
    TooLarge { name: String, limit: usize },
    #[error("plugin {name:?} failed: {status}")]
    Exit { name: String, status: String },
    #[error("plugin {name:?} answered something other than the protocol's JSON object ({why})")]
    NotJson { name: String, why: String },
    #[error("plugin {name:?} answered an error: {message}")]
    Provider { name: String, message: String },
}

/// The secret providers in `dir` (`<common_plugin_dir>/secrets`) that answer their
/// fingerprint as secret providers: name -> version. A missing directory has none; a plugin
/// that fails its fingerprint is logged and left out.
pub async fn fingerprint_all(dir: &Path) -> BTreeMap<String, String> {
    let d = dir.to_path_buf();
    let names = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
        let dir = drover_beneath::Dir::open(&d)?;
        Ok(dir
            .entries()?
            .into_iter()
            .filter_map(|e| e.name.into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect())
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let names = match names {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the secret provider plugins");
            return BTreeMap::new();
        }
    };
    let mut found = BTreeMap::new();
    for name in names {
        match fingerprint(dir, &name).await {
            Ok(Some(version)) => {
                tracing::debug!(plugin = %name, %version, "secret provider plugin detected");
                found.insert(name, version);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "secret provider plugin failed its fingerprint"),
        }
    }
    found
}

/// The version plugin `name` answers to `fingerprint`; None when it is not a secret provider.
async fn fingerprint(dir: &Path, name: &str) -> Result<Option<String>, ExecSecretError> {
    #[derive(serde::Deserialize)]
    struct Fingerprint {
        #[serde(rename = "type")]
        kind: Option<String>,
        version: Option<String>,
    }
    let out = call(
        dir,
        name,
        &["fingerprint"],
        vec![("CPI_OPERATION".into(), "fingerprint".into())],
    )
    .await?;
    let f: Fingerprint = parse(name, &out)?;
    let version = f.version.filter(|v| {
        !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".+-_".contains(&b))
    });
    Ok(version.filter(|_| f.kind.as_deref() == Some("secrets")))
}

/// Who asks for a secret: Nomad gives the plugin the job's namespace and id; Drover adds
/// the task's workload identity for this provider (audience `drover-secrets/<provider>`) as
/// `DROVER_WORKLOAD_IDENTITY`, so a provider can verify who asks against the JWKS.
pub struct Requester<'a> {
    pub namespace: &'a str,
    pub job_id: &'a str,
    pub identity: &'a str,
}

/// The environment variable carrying the task's workload identity (a Drover extension of
/// Nomad's protocol, which has none).
pub const IDENTITY_ENV: &str = "DROVER_WORKLOAD_IDENTITY";

/// Fetches `path` from plugin `name` in `dir`, with the `secret` block's `env`: the secret's
/// keys and values.
pub async fn fetch(
    dir: &Path,
    name: &str,
    path: &str,
    env: &BTreeMap<String, String>,
    who: &Requester<'_>,
) -> Result<BTreeMap<String, String>, ExecSecretError> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(default)]
        result: Option<BTreeMap<String, String>>,
        #[serde(default)]
        error: Option<String>,
    }
    let mut vars = plugin_env(name, env)?;
    // The protocol's own names win over the block's, as in Nomad.
    vars.push(("CPI_OPERATION".into(), "fetch".into()));
    vars.push(("NOMAD_NAMESPACE".into(), who.namespace.into()));
    vars.push(("NOMAD_JOB_ID".into(), who.job_id.into()));
    vars.push((IDENTITY_ENV.into(), who.identity.into()));
    let out = call(dir, name, &["fetch", path], vars).await?;
    let reply: Reply = parse(name, &out)?;
    if let Some(message) = reply.error.filter(|m| !m.is_empty()) {
        return Err(ExecSecretError::Provider {
            name: name.into(),
            message: message.chars().take(1024).collect(),
        });
    }
    Ok(reply.result.unwrap_or_default())
}

/// The `secret` block's `env`, checked: names a loader, shell or interpreter reads to run
/// code are refused (the plugin runs as the agent's user; the job is not trusted), and sizes
/// are bounded.
fn plugin_env(
    name: &str,
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ExecSecretError> {
    let bad = |key: &str, why| ExecSecretError::BadEnv {
        name: name.into(),
        key: key.chars().take(64).collect(),
        why,
    };
    if env.len() > MAX_ENV_ENTRIES {
        return Err(bad("", "more than 64 entries"));
    }
    let mut out = Vec::with_capacity(env.len() + 3);
    for (k, v) in env {
        let mut chars = k.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && k.len() <= 128;
        if !well_formed {
            return Err(bad(k, "not an environment variable name"));
        }
        if runs_code(k) {
            return Err(bad(
                k,
                "a loader, shell or interpreter setting that could run other code is refused",
            ));
        }
        if v.len() > MAX_ENV_VALUE || v.contains('\0') {
            return Err(bad(k, "value longer than 4096 bytes or holding a NUL"));
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

/// Whether setting environment variable `k` could make the plugin run code it did not
/// choose (the dynamic loader's, shells', interpreters' hooks, and the lookup path).
fn runs_code(k: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "ENV",
        "BASH_ENV",
        "IFS",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCPATH",
        "NLSPATH",
        "PERLLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "TMPDIR",
        "HOME",
    ];
    const PREFIXES: &[&str] = &[
        "LD_",
        "BASH_FUNC_",
        "MALLOC_",
        "PYTHON",
        "PERL5",
        "RUBY",
        "NODE_",
        "DYLD_",
    ];
    EXACT.contains(&k) || PREFIXES.iter().any(|p| k.starts_with(p))
}

fn parse<T: serde::de::DeserializeOwned>(name: &str, out: &[u8]) -> Result<T, ExecSecretError> {
    // serde_json's messages may quote the input: only the category and place are kept.
    serde_json::from_slice(out).map_err(|e| ExecSecretError::NotJson {
        name: name.into(),
        why: format!(
            "{} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "not JSON",
                serde_json::error::Category::Data => "a field of the wrong type",
                serde_json::error::Category::Eof => "cut short",
            },
            e.line(),
            e.column()
        ),
    })
}

/// The plugin's path: `name` must be one component, found beneath `dir` without following a
/// link, a regular file someone may execute.
async fn locate(dir: &Path, name: &str) -> Result<PathBuf, ExecSecretError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.contains(['/', '\0'])
    {
        return Err(ExecSecretError::BadName { name: name.into() });
    }
    let (d, n) = (dir.to_path_buf(), name.to_string());
    let checked = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let dir = drover_beneath::Dir::open(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        let st = dir
            .stat(Path::new(&n), drover_beneath::Links::Never)
            .map_err(|e| e.to_string())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err("not a regular file".into());
        }
        if st.st_mode & 0o111 == 0 {
            return Err("not executable".into());
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    checked.map_err(|why| ExecSecretError::Unusable {
        name: name.into(),
        why: format!("{why} (looked for {})", dir.join(name).display()),
    })?;
    Ok(dir.join(name))
}

/// Runs plugin `name` with `args` and exactly `env`; its stdout.
async fn call(
    dir: &Path,
    name: &str,
    args: &[&str],
    env: Vec<(String, String)>,
) -> Result<Vec<u8>, ExecSecretError> {
    let binary = locate(dir, name).await?;
    let mut child = tokio::process::Command::new(&binary)
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        // Its own process group: what it starts is stopped with it.
        .process_group(0)
        .spawn()
        .map_err(|source| ExecSecretError::Spawn {
            name: name.into(),
            source,
        })?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    let stdout = child.stdout.take().expect("stdout is piped");
    let run = async {
        let mut out = Vec::new();
        let read = stdout
            .take(MAX_REPLY as u64 + 1)
            .read_to_end(&mut out)
            .await;
        if out.len() > MAX_REPLY {
            return Err(ExecSecretError::TooLarge {
                name: name.into(),
                limit: MAX_REPLY,
            });
        }
        read.map_err(|source| ExecSecretError::Spawn {
            name: name.into(),
            source,
        })?;
        let status = child
            .wait()
            .await
            .map_err(|source| ExecSecretError::Spawn {
                name: name.into(),
                source,
            })?;
        Ok((status, out))
    };
    let result = match tokio::time::timeout(CALL_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(ExecSecretError::TimedOut {
            name: name.into(),
            after: CALL_TIMEOUT,
        }),
    };
    let signal_group = |sig| {
        if let Some(pg) = pgid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pg), sig);
        }
    };
    match result {
        Ok((status, out)) if status.success() => Ok(out),
        Ok((status, out)) => {
            // A plugin that exits non-zero may say why in the protocol's JSON.
            #[derive(serde::Deserialize)]
            struct Failure {
                error: Option<String>,
            }
            match serde_json::from_slice::<Failure>(&out) {
                Ok(Failure { error: Some(m) }) if !m.is_empty() => Err(ExecSecretError::Provider {
                    name: name.into(),
                    message: m.chars().take(1024).collect(),
                }),
                _ => Err(ExecSecretError::Exit {
                    name: name.into(),
                    status: status.to_string(),
                }),
            }
        }
        Err(e) => {
            // Too slow or too talkative: SIGTERM to the group, SIGKILL after the grace.
            signal_group(nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(KILL_GRACE, child.wait())
                .await
                .is_err()
            {
                signal_group(nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait().await;
            } else {
                // The leader is gone; whatever it left in its group goes too.
                signal_group(nix::sys::signal::Signal::SIGKILL);
            }
            Err(e)
        }
    }
}

/// Whether `dir` has an entry named `name` (a link too, so that it is refused rather than
/// passed over).
pub async fn present(dir: &Path, name: &str) -> bool {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return false;
    }
    let p = dir.join(name);
    tokio::task::spawn_blocking(move || std::fs::symlink_metadata(p).is_ok())
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    const WHO: Requester<'static> = Requester {
        namespace: "team",
        job_id: "web",
        identity: "h.p.s",
    };

    #[tokio::test]
    async fn fetch_passes_the_path_and_only_the_protocols_environment() {
        let tmp = tempfile::tempdir().unwrap();
        script(
            tmp.path(),
            "p",
            r#"names=$(env | cut -d= -f1 | grep -v -e '^PWD$' -e '^SHLVL$' -e '^_$' | sort | tr '\n' ,)
echo "{\"result\": {\"op\": \"$1\", \"path\": \"$2\", \"names\": \"$names\", \"ns\": \"$NOMAD_NAMESPACE\", \"k\": \"$K\", \"id\": \"$DROVER_WORKLOAD_IDENTITY\"}}"
"#,
        );
        let env = BTreeMap::from([
            ("K".to_string(), "v".to_string()),
            ("NOMAD_JOB_ID".to_string(), "forged".to_string()),
        ]);
        let got = fetch(tmp.path(), "p", "a/b", &env, &WHO).await.unwrap();
        assert_eq!(got["op"], "fetch");
        assert_eq!(got["path"], "a/b");
        assert_eq!(got["ns"], "team");
        assert_eq!(got["k"], "v");
        assert_eq!(
            got["names"],
            "CPI_OPERATION,DROVER_WORKLOAD_IDENTITY,K,NOMAD_JOB_ID,NOMAD_NAMESPACE,"
        );
        assert_eq!(got["id"], "h.p.s");
    }

    #[tokio::test]
    async fn provider_errors_and_bad_replies_are_named_without_quoting_the_reply() {
        let tmp = tempfile::tempdir().unwrap();
        script(
            tmp.path(),
            "e",
            "echo '{\"error\": \"no such secret\"}'; exit 1\n",
        );
        script(tmp.path(), "g", "echo '{\"result\": \"hunter2\"}'\n");
        script(tmp.path(), "x", "echo 'hunter2'\n");
        script(tmp.path(), "c", "exit 3\n");
        let none = BTreeMap::new();
        let e = fetch(tmp.path(), "e", "p", &none, &WHO).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin \"e\" answered an error: no such secret"
        );
        for name in ["g", "x"] {
            let e = fetch(tmp.path(), name, "p", &none, &WHO)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("protocol's JSON object"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = fetch(tmp.path(), "c", "p", &none, &WHO).await.unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        script(
            tmp.path(),
            "y",
            "exec yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        );
        let e = fetch(tmp.path(), "y", "p", &BTreeMap::new(), &WHO)
            .await
            .unwrap_err();
        assert!(matches!(e, ExecSecretError::TooLarge { .. }), "{e}");
    }

    #[tokio::test]
    async fn links_odd_names_and_code_running_env_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        script(tmp.path(), "real", "echo '{\"result\": {}}'\n");
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        std::fs::write(tmp.path().join("plain"), "#!/bin/sh\n").unwrap();
        let none = BTreeMap::new();
        let e = fetch(tmp.path(), "link", "p", &none, &WHO)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("not a regular file") || e.to_string().contains("symbolic link"),
            "{e}"
        );
        let e = fetch(tmp.path(), "plain", "p", &none, &WHO)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not executable"), "{e}");
        for bad in ["../real", "", ".."] {
            let e = fetch(tmp.path(), bad, "p", &none, &WHO).await.unwrap_err();
            assert!(matches!(e, ExecSecretError::BadName { .. }), "{e}");
        }
        for key in ["LD_PRELOAD", "PATH", "BASH_ENV", "BASH_FUNC_x%%", "1X"] {
            let env = BTreeMap::from([(key.to_string(), "/tmp/x".to_string())]);
            let e = fetch(tmp.path(), "real", "p", &env, &WHO)
                .await
                .unwrap_err();
            assert!(matches!(e, ExecSecretError::BadEnv { .. }), "{key}: {e}");
        }
        assert!(
            fetch(tmp.path(), "real", "p", &none, &WHO)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn fingerprint_keeps_secret_providers_only() {
        let tmp = tempfile::tempdir().unwrap();
        script(
            tmp.path(),
            "a",
            "[ \"$CPI_OPERATION\" = fingerprint ] && echo '{\"type\": \"secrets\", \"version\": \"1.2.0\"}'\n",
        );
        script(
            tmp.path(),
            "b",
            "echo '{\"type\": \"device\", \"version\": \"1.0.0\"}'\n",
        );
        script(tmp.path(), "c", "echo garbage\n");
        script(
            tmp.path(),
            "d",
            "echo '{\"type\": \"secrets\", \"version\": \"1 0; rm\"}'\n",
        );
        std::os::unix::fs::symlink(tmp.path().join("a"), tmp.path().join("e")).unwrap();
        let found = fingerprint_all(tmp.path()).await;
        assert_eq!(
            found,
            BTreeMap::from([("a".to_string(), "1.2.0".to_string())])
        );
        assert!(
            fingerprint_all(&tmp.path().join("missing"))
                .await
                .is_empty()
        );
    }
}
