//! The container's mounts: the task's directories, the scheduler's host volumes, and the
//! config's `mount` blocks and `volumes` strings, checked against what the operator allows.

use std::path::{Component, Path, PathBuf};

use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig,
};
use drover_plugin_sdk::proto::driver::TaskConfig as Task;

use super::SpecError;
use crate::config::Settings;
use crate::config::task::MountBlock;

/// The mounts, and the relative bind sources (under the task directory) that must be
/// checked on disk (no links on the way) before the container is created.
#[derive(Debug, Default)]
pub struct Mounts {
    pub mounts: Vec<Mount>,
    pub relative_sources: Vec<PathBuf>,
}

fn bind(source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.into()),
        source: Some(source.into()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The task's `alloc/`, `local/` and `secrets/` at `/alloc`, `/local`, `/secrets`.
pub fn task_dirs(task: &Task) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if !task.alloc_dir.is_empty() {
        out.push((PathBuf::from(&task.alloc_dir), "/alloc"));
    }
    if !task.task_dir.is_empty() {
        let dir = Path::new(&task.task_dir);
        out.push((dir.join("local"), "/local"));
        out.push((dir.join("secrets"), "/secrets"));
    }
    out
}

/// A target inside the container: absolute, without `..`.
fn check_target(target: &str, what: &str) -> Result<(), SpecError> {
    let p = Path::new(target);
    if !p.is_absolute()
        || p.components().any(|c| c == Component::ParentDir)
        || target.contains('\0')
    {
        return Err(SpecError(format!(
            "{what}: the target {target:?} must be an absolute path without .."
        )));
    }
    Ok(())
}

/// A bind source: an absolute host path (only with volumes.enabled), or a path relative to
/// the task directory that stays inside it. Returns the host path.
fn bind_source(
    source: &str,
    task: &Task,
    settings: &Settings,
    relative: &mut Vec<PathBuf>,
    what: &str,
) -> Result<String, SpecError> {
    if source.is_empty() || source.contains('\0') {
        return Err(SpecError(format!("{what}: a bind needs a source")));
    }
    let p = Path::new(source);
    if p.is_absolute() {
        if !settings.volumes_enabled {
            return Err(SpecError(format!(
                "{what}: binding the host path {source:?} is not allowed: the docker plugin's volumes.enabled is false (relative paths under the task directory are allowed)"
            )));
        }
        return Ok(source.to_string());
    }
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            _ => {
                return Err(SpecError(format!(
                    "{what}: the relative source {source:?} must stay inside the task directory (no ..)"
                )));
            }
        }
    }
    if task.task_dir.is_empty() {
        return Err(SpecError(format!(
            "{what}: a relative source needs the task directory"
        )));
    }
    relative.push(rel.clone());
    Ok(Path::new(&task.task_dir).join(rel).display().to_string())
}

fn propagation(
    value: Option<&str>,
    settings: &Settings,
    what: &str,
) -> Result<Option<MountBindOptionsPropagationEnum>, SpecError> {
    use MountBindOptionsPropagationEnum as P;
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let p = match v {
        "private" => P::PRIVATE,
        "rprivate" => P::RPRIVATE,
        "shared" => P::SHARED,
        "rshared" => P::RSHARED,
        "slave" => P::SLAVE,
        "rslave" => P::RSLAVE,
        other => {
            return Err(SpecError(format!(
                "{what}: propagation {other:?} is not one of private, rprivate, shared, rshared, slave, rslave"
            )));
        }
    };
    if !matches!(p, P::PRIVATE | P::RPRIVATE) && !settings.allow_privileged {
        return Err(SpecError(format!(
            "{what}: propagation {v:?} needs allow_privileged in the docker plugin's config"
        )));
    }
    Ok(Some(p))
}

fn mount_block(
    m: &MountBlock,
    task: &Task,
    settings: &Settings,
    out: &mut Mounts,
) -> Result<Mount, SpecError> {
    let what = format!("mount {:?}", m.target);
    check_target(&m.target, &what)?;
    let mut mount = Mount {
        target: Some(m.target.clone()),
        read_only: Some(m.readonly),
        ..Default::default()
    };
    match m.kind.as_deref().unwrap_or("volume") {
        "bind" => {
            let src = bind_source(&m.source, task, settings, &mut out.relative_sources, &what)?;
            mount.typ = Some(MountType::BIND);
            mount.source = Some(src);
            let prop = m
                .bind_options
                .as_ref()
                .and_then(|b| b.propagation.as_deref());
            if let Some(p) = propagation(prop, settings, &what)? {
                mount.bind_options = Some(MountBindOptions {
                    propagation: Some(p),
                    ..Default::default()
                });
            }
        }
        "volume" => {
            if m.source.starts_with('/') || m.source.contains('\0') {
                return Err(SpecError(format!(
                    "{what}: a volume's source is a volume name, not a path"
                )));
            }
            mount.typ = Some(MountType::VOLUME);
            mount.source = Some(m.source.clone()).filter(|s| !s.is_empty());
            if let Some(v) = &m.volume_options {
                if v.driver_config.is_some() && !settings.volumes_enabled {
                    return Err(SpecError(format!(
                        "{what}: volume drivers need volumes.enabled in the docker plugin's config"
                    )));
                }
                mount.volume_options = Some(MountVolumeOptions {
                    no_copy: Some(v.no_copy),
                    labels: Some(v.labels.clone().into_iter().collect()),
                    driver_config: v.driver_config.as_ref().map(|d| {
                        MountVolumeOptionsDriverConfig {
                            name: d.name.clone(),
                            options: Some(d.options.clone().into_iter().collect()),
                        }
                    }),
                    ..Default::default()
                });
            }
        }
        "tmpfs" => {
            mount.typ = Some(MountType::TMPFS);
            if let Some(t) = &m.tmpfs_options {
                mount.tmpfs_options = Some(MountTmpfsOptions {
                    size_bytes: t.size.filter(|s| *s > 0),
                    mode: t.mode,
                    ..Default::default()
                });
            }
        }
        other => {
            return Err(SpecError(format!(
                "{what}: type {other:?} is not bind, volume or tmpfs"
            )));
        }
    }
    Ok(mount)
}

/// `host:container[:options]`.
fn volume_string(
    v: &str,
    task: &Task,
    settings: &Settings,
    out: &mut Mounts,
) -> Result<Mount, SpecError> {
    let what = format!("volume {v:?}");
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(SpecError(format!(
                "{what}: expected host_path:container_path[:options]"
            )));
        }
    };
    check_target(dst, &what)?;
    let source = bind_source(src, task, settings, &mut out.relative_sources, &what)?;
    let mut mount = bind(&source, dst, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => mount.read_only = Some(true),
            "rw" => mount.read_only = Some(false),
            "z" | "Z" => {}
            p => {
                let prop = propagation(Some(p), settings, &what)?;
                mount.bind_options = Some(MountBindOptions {
                    propagation: prop,
                    ..Default::default()
                });
            }
        }
    }
    Ok(mount)
}

/// Every mount of the container.
pub fn mounts(
    task: &Task,
    mount_blocks: &[MountBlock],
    volumes: &[String],
    settings: &Settings,
) -> Result<Mounts, SpecError> {
    let mut out = Mounts::default();
    for (src, dst) in task_dirs(task) {
        out.mounts
            .push(bind(&src.display().to_string(), dst, false));
    }
    for m in &task.mounts {
        let what = format!("volume_mount {:?}", m.task_path);
        check_target(&m.task_path, &what)?;
        if !Path::new(&m.host_path).is_absolute() {
            return Err(SpecError(format!(
                "{what}: the host volume's path {:?} is not absolute",
                m.host_path
            )));
        }
        out.mounts
            .push(bind(&m.host_path, &m.task_path, m.read_only));
    }
    for m in mount_blocks {
        let mount = mount_block(m, task, settings, &mut out)?;
        out.mounts.push(mount);
    }
    for v in volumes {
        let mount = volume_string(v, task, settings, &mut out)?;
        out.mounts.push(mount);
    }
    Ok(out)
}

/// Checks, on disk, that each relative source exists beneath `task_dir` with no link on
/// the way (a task can write its directory: a link it planted must not lead the engine,
/// which runs as root, elsewhere).
pub fn check_relative_sources(task_dir: &Path, sources: &[PathBuf]) -> Result<(), SpecError> {
    if sources.is_empty() {
        return Ok(());
    }
    let dir = drover_beneath::Dir::open(task_dir).map_err(|e| {
        SpecError(format!(
            "cannot open the task directory {}: {e}",
            task_dir.display()
        ))
    })?;
    for s in sources {
        let st = dir.stat(s, drover_beneath::Links::Never).map_err(|e| {
            SpecError(format!(
                "bind source {} under the task directory: {e}",
                s.display()
            ))
        })?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFDIR && kind != libc::S_IFREG {
            return Err(SpecError(format!(
                "bind source {} under the task directory is not a directory or a regular file (a link is not followed)",
                s.display()
            )));
        }
    }
    Ok(())
}

/// Rewrites host paths of the task's directories in its environment to their paths inside
/// (`NOMAD_TASK_DIR` is `/local` in the container).
pub fn inside_env(task: &Task) -> Vec<(String, String)> {
    let dirs = task_dirs(task);
    let mut env: Vec<(String, String)> = task
        .env
        .iter()
        .map(|(k, v)| {
            let p = Path::new(v);
            let mapped = dirs.iter().find_map(|(src, dst)| {
                p.strip_prefix(src).ok().map(|rest| {
                    if rest.as_os_str().is_empty() {
                        dst.to_string()
                    } else {
                        Path::new(dst).join(rest).display().to_string()
                    }
                })
            });
            (k.clone(), mapped.unwrap_or_else(|| v.clone()))
        })
        .collect();
    env.sort();
    env
}
