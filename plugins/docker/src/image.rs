//! The task's image, made present: pulled as Nomad pulls (always for an omitted or `latest`
//! tag, else only when missing or `force_pull`), with credentials, timeouts and progress
//! events; or loaded from a `docker save` tarball under the task's `local/`.

pub mod auth;
pub mod reference;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptionsBuilder, ImportImageOptionsBuilder};
use futures::StreamExt;

pub use reference::Reference;

use crate::config::{Settings, TaskConfig};
use crate::events::Emitter;

/// How often pull progress is reported.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {0}")]
    InvalidReference(String),
    #[error("registry credentials: {0}")]
    Auth(String),
    #[error("failed to pull image {image}: {why}")]
    Pull { image: String, why: String },
    #[error("pulling image {image} took longer than image_pull_timeout ({timeout:?})")]
    Timeout { image: String, timeout: Duration },
    #[error("pulling image {image} made no progress for pull_activity_timeout ({timeout:?})")]
    Stalled { image: String, timeout: Duration },
    #[error("load {path:?}: {why}")]
    Load { path: String, why: String },
    #[error("docker engine: {0}")]
    Engine(String),
}

impl ImageError {
    /// Whether the job must change (rather than the registry or the engine).
    pub fn is_users(&self) -> bool {
        matches!(
            self,
            ImageError::InvalidReference(_) | ImageError::Load { .. }
        )
    }
}

/// The image a container is created from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The reference as the engine knows it.
    pub reference: String,
    /// The engine's image id (`sha256:...`).
    pub id: String,
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

async fn inspect_id(
    docker: &bollard::Docker,
    reference: &str,
) -> Result<Option<String>, ImageError> {
    match docker.inspect_image(reference).await {
        Ok(i) => Ok(Some(i.id.unwrap_or_default())),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(ImageError::Engine(e.to_string())),
    }
}

/// Makes the task's image present and returns it.
pub async fn ensure(
    docker: &bollard::Docker,
    task_dir: &Path,
    cfg: &TaskConfig,
    settings: &Settings,
    events: &Emitter,
) -> Result<Image, ImageError> {
    if let Some(load) = cfg.load.as_deref().filter(|l| !l.is_empty()) {
        return load_tarball(docker, task_dir, load, &cfg.image, events).await;
    }
    let r = Reference::parse(&cfg.image)?;
    let full = r.full();
    if !cfg.force_pull
        && !r.always_pull()
        && let Some(id) = inspect_id(docker, &full).await?
    {
        return Ok(Image {
            reference: full,
            id,
        });
    }
    let creds = match auth::credentials(&r.registry(), cfg.auth.as_ref(), settings).await {
        Ok(c) => c,
        Err(e) if cfg.auth_soft_fail => {
            tracing::warn!(image = %full, error = %e, "no registry credentials; pulling anonymously (auth_soft_fail)");
            None
        }
        Err(e) => return Err(e),
    };
    events.emit("Downloading image", &[("image", full.as_str())]);
    let timeout = cfg.pull_timeout();
    let pulled = tokio::time::timeout(
        timeout,
        pull(
            docker,
            &r,
            creds.clone(),
            settings.pull_activity_timeout,
            events,
        ),
    )
    .await;
    let result = match pulled {
        Err(_) => Err(ImageError::Timeout {
            image: full.clone(),
            timeout,
        }),
        Ok(r) => r,
    };
    match result {
        Err(ImageError::Pull { why, .. })
            if creds.is_some() && cfg.auth_soft_fail && is_auth_failure(&why) =>
        {
            tracing::warn!(image = %full, %why, "pull with credentials refused; retrying anonymously (auth_soft_fail)");
            tokio::time::timeout(
                timeout,
                pull(docker, &r, None, settings.pull_activity_timeout, events),
            )
            .await
            .map_err(|_| ImageError::Timeout {
                image: full.clone(),
                timeout,
            })??;
        }
        other => other?,
    }
    let id = inspect_id(docker, &full)
        .await?
        .ok_or_else(|| ImageError::Pull {
            image: full.clone(),
            why: "the engine does not have it after the pull".into(),
        })?;
    events.emit(format!("Image {full} pulled"), &[("image", full.as_str())]);
    Ok(Image {
        reference: full,
        id,
    })
}

fn is_auth_failure(why: &str) -> bool {
    let w = why.to_ascii_lowercase();
    w.contains("unauthorized") || w.contains("authentication required") || w.contains("denied")
}

/// Per-layer progress of a pull.
#[derive(Default)]
struct Progress {
    layers: BTreeMap<String, (String, i64, i64)>,
}

impl Progress {
    fn update(&mut self, info: &bollard::models::CreateImageInfo) {
        let Some(id) = info.id.clone() else { return };
        let e = self.layers.entry(id).or_default();
        if let Some(s) = &info.status {
            e.0 = s.clone();
        }
        if let Some(d) = &info.progress_detail {
            e.1 = d.current.unwrap_or(e.1);
            e.2 = d.total.unwrap_or(e.2);
        }
    }

    /// Nomad's "Pulled 2/5 (1.2 MiB/10 MiB) layers: 1 waiting/2 pulling".
    fn summary(&self) -> String {
        let done = |s: &str| s.starts_with("Pull complete") || s.starts_with("Already exists");
        let pulled = self.layers.values().filter(|l| done(&l.0)).count();
        let waiting = self
            .layers
            .values()
            .filter(|l| l.0.starts_with("Waiting"))
            .count();
        let pulling = self.layers.len() - pulled - waiting;
        let cur: i64 = self.layers.values().map(|l| l.1).sum();
        let tot: i64 = self.layers.values().map(|l| l.2).sum();
        let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
        format!(
            "Pulled {pulled}/{} ({:.1} MiB/{:.1} MiB) layers: {waiting} waiting/{pulling} pulling",
            self.layers.len(),
            mib(cur),
            mib(tot)
        )
    }
}

async fn pull(
    docker: &bollard::Docker,
    r: &Reference,
    creds: Option<DockerCredentials>,
    activity_timeout: Duration,
    events: &Emitter,
) -> Result<(), ImageError> {
    let full = r.full();
    let opts = CreateImageOptionsBuilder::default()
        .from_image(&r.repo)
        .tag(&r.pull_tag())
        .build();
    let mut stream = Box::pin(docker.create_image(Some(opts), None, creds));
    let mut progress = Progress::default();
    let mut last_report = Instant::now();
    loop {
        let next = tokio::time::timeout(activity_timeout, stream.next())
            .await
            .map_err(|_| ImageError::Stalled {
                image: full.clone(),
                timeout: activity_timeout,
            })?;
        match next {
            None => return Ok(()),
            Some(Err(e)) => {
                return Err(ImageError::Pull {
                    image: full.clone(),
                    why: e.to_string(),
                });
            }
            Some(Ok(info)) => {
                progress.update(&info);
                if last_report.elapsed() >= PROGRESS_INTERVAL {
                    last_report = Instant::now();
                    events.emit(
                        format!("Docker image pull progress: {}", progress.summary()),
                        &[("image", full.as_str())],
                    );
                }
            }
        }
    }
}

/// `load` made a path under `local/`: relative, without `..`.
pub fn load_path(load: &str) -> Result<PathBuf, ImageError> {
    let bad = |why: &str| ImageError::Load {
        path: load.into(),
        why: why.into(),
    };
    let p = Path::new(load);
    if p.is_absolute() {
        return Err(bad(
            "must be a path relative to the task's local/ directory",
        ));
    }
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            _ => return Err(bad("must stay inside the task's local/ directory (no ..)")),
        }
    }
    if rel.as_os_str().is_empty() || load.contains('\0') {
        return Err(bad("names no file"));
    }
    Ok(rel)
}

/// Loads a `docker save` tarball from `<task_dir>/local/<load>` (opened beneath local/,
/// following no link) and returns `image` from it.
async fn load_tarball(
    docker: &bollard::Docker,
    task_dir: &Path,
    load: &str,
    image: &str,
    events: &Emitter,
) -> Result<Image, ImageError> {
    let rel = load_path(load)?;
    let local = task_dir.join("local");
    let err = |why: String| ImageError::Load {
        path: load.into(),
        why,
    };
    let file = tokio::task::spawn_blocking(move || {
        let dir = drover_beneath::Dir::open(&local).map_err(|e| e.to_string())?;
        dir.open_regular(&rel, drover_beneath::Links::Never)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(err)?;
    let file = tokio::fs::File::from_std(file);
    let body = futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut stream = Box::pin(docker.import_image(opts, bollard::body_try_stream(body), None));
    while let Some(item) = stream.next().await {
        item.map_err(|e| err(format!("the engine could not load it: {e}")))?;
    }
    let id = inspect_id(docker, image)
        .await?
        .ok_or_else(|| err(format!("the tarball did not hold the image {image:?}")))?;
    events.emit(format!("Image {image} loaded"), &[("image", image)]);
    Ok(Image {
        reference: image.to_string(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_paths_stay_under_local() {
        assert_eq!(load_path("img.tar").unwrap(), PathBuf::from("img.tar"));
        assert_eq!(
            load_path("./a/img.tar").unwrap(),
            PathBuf::from("a/img.tar")
        );
        for bad in ["/etc/passwd", "../img.tar", "a/../../b", "", "."] {
            assert!(load_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn progress_summary() {
        let mut p = Progress::default();
        for (id, status, cur, tot) in [
            ("a", "Downloading", 1 << 20, 2 << 20),
            ("b", "Pull complete", 0, 0),
            ("c", "Waiting", 0, 0),
        ] {
            p.update(&bollard::models::CreateImageInfo {
                id: Some(id.into()),
                status: Some(status.into()),
                progress_detail: Some(bollard::models::ProgressDetail {
                    current: Some(cur),
                    total: Some(tot),
                }),
                ..Default::default()
            });
        }
        assert_eq!(
            p.summary(),
            "Pulled 1/3 (1.0 MiB/2.0 MiB) layers: 1 waiting/1 pulling"
        );
    }
}
