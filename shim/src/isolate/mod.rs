//! Isolation for the `exec` driver: what the shim builds around a task when its
//! [`crate::LaunchSpec`] carries an [`Isolation`].
//!
//! The shim stays in the host's namespaces and outside the task's cgroups. It creates the
//! task's cgroups ([`cgroup`]), then clone()s a child into new pid, mount, ipc and uts
//! namespaces which execs `<exe> task-shim init <state dir>` ([`init`]): pid 1 of the new
//! pid namespace. init joins the network namespace and the cgroups, assembles a fresh root
//! from read-only bind mounts of host paths on a tmpfs ([`plan_root`]: nothing is copied),
//! pivot_roots into it, forks the task (which drops privileges and capabilities), forwards
//! signals to it, reaps zombies, and hands the task's wait status to the shim.
//!
//! `ExecTask` asks the shim, which forks a single-threaded helper ([`enter`]) that joins the
//! task's cgroups and setns()es into its namespaces.

pub mod caps;
pub mod cgroup;
pub(crate) mod enter;
pub(crate) mod init;
pub mod netns;
pub mod syscalls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a task is isolated. Part of [`crate::LaunchSpec`] version 2.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Isolation {
    /// The task's host name (its own uts namespace).
    pub hostname: String,
    /// The allocation's network namespace to join; `None` keeps the host's network.
    #[serde(default)]
    pub network_ns: Option<PathBuf>,
    /// Host paths bound read-only into the task's root: host path -> path inside.
    pub chroot_env: BTreeMap<String, String>,
    /// Host directories bound writable into the task's root (local/, secrets/, tmp/, alloc/).
    #[serde(default)]
    pub writable: Vec<Bind>,
    /// Host volumes (`volume_mount`), bound last so they may sit inside the paths above.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    pub cgroup: CgroupSpec,
    /// Capability names (`CAP_CHOWN` ...) the task keeps when it runs as root; the bounding
    /// set of any user is cut down to them.
    pub capabilities: Vec<String>,
}

/// A bind mount of a host path to a path inside the task's root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
}

/// A host volume bound into the task's root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The task's cgroup and its limits. The cgroup is `<parent>/<shim id>` in every controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupSpec {
    /// e.g. `drover`.
    pub parent: String,
    /// The memory the task reserved; 0 = no limit.
    pub memory_bytes: u64,
    /// The memory it may use beyond its reservation (oversubscription); 0 = none.
    pub memory_max_bytes: u64,
    /// CPU shares (v1; converted to a weight on v2): the task's MHz.
    pub cpu_shares: u64,
    /// Cores the task is pinned to (`cpuset.cpus` syntax); empty = those of the parent.
    #[serde(default)]
    pub cpuset_cpus: String,
    /// Most processes the task may have; 0 = no limit.
    #[serde(default)]
    pub pids_max: u64,
}

/// The default read-only task filesystem: host path -> path inside (Nomad's exec default).
pub fn default_chroot_env() -> BTreeMap<String, String> {
    [
        "/bin",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/run/resolvconf",
        "/sbin",
        "/usr",
    ]
    .into_iter()
    .map(|p| (p.to_string(), p.to_string()))
    .collect()
}

/// What a host path is, for [`plan_root`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    File,
    /// A symbolic link, with its contents.
    Symlink(PathBuf),
    Missing,
}

/// Looks a host path up without following a final symlink.
pub fn host_path_kind(p: &Path) -> PathKind {
    match std::fs::symlink_metadata(p) {
        Err(_) => PathKind::Missing,
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(p) {
            Ok(t) => PathKind::Symlink(t),
            Err(_) => PathKind::Missing,
        },
        Ok(m) if m.is_dir() => PathKind::Dir,
        Ok(_) => PathKind::File,
    }
}

/// One step of assembling the task's root. Targets are paths inside the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootStep {
    /// `mkdir -p`.
    Dir(PathBuf),
    /// An empty file to bind a file onto.
    File(PathBuf),
    /// A symbolic link `path` -> `target`.
    Symlink { path: PathBuf, target: PathBuf },
    /// Bind `source` (a host path) at `target`; read-only takes a second remount call.
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
    },
    /// A tmpfs with these mount options (`mode=...`).
    Tmpfs { target: PathBuf, options: String },
    /// A host device node bound onto an empty file (the only mounts that allow devices).
    Device { source: PathBuf, target: PathBuf },
    /// A private /proc of the task's pid namespace.
    Proc(PathBuf),
    /// Hidden when it exists: a directory under an empty read-only tmpfs, a file under the
    /// host's /dev/null (runc's masked paths).
    Mask(PathBuf),
    /// Bound onto itself read-only when it exists (runc's read-only paths).
    ReadOnly(PathBuf),
}

/// Paths of /proc and /sys a task never sees (runc's defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths of /proc a task sees read-only (runc's defaults): a root task must not change the
/// host's kernel settings (`/proc/sys/kernel/core_pattern` runs a helper as host root) or
/// poke `/proc/sysrq-trigger`.
pub const READ_ONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The device nodes a task gets in its minimal /dev (bound from the host's).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Plans the task's root: the `chroot_env` binds (read-only; host symlinks such as a merged
/// /usr's `/bin -> usr/bin` are recreated as links, their targets bound), the writable task
/// directories, a minimal /dev and a private /proc. Pure: `kind` answers what host paths are.
pub fn plan_root(iso: &Isolation, kind: impl Fn(&Path) -> PathKind) -> Vec<RootStep> {
    let mut steps = Vec::new();
    // BTreeMap by inside path: parents come before their children.
    let by_target: BTreeMap<&str, &str> = iso
        .chroot_env
        .iter()
        .map(|(src, dst)| (dst.as_str(), src.as_str()))
        .collect();
    for (dst, src) in by_target {
        let target = PathBuf::from(dst);
        match kind(Path::new(src)) {
            PathKind::Missing => {}
            PathKind::Symlink(link) => steps.push(RootStep::Symlink {
                path: target,
                target: link,
            }),
            PathKind::Dir => {
                steps.push(RootStep::Dir(target.clone()));
                steps.push(RootStep::Bind {
                    source: src.into(),
                    target,
                    readonly: true,
                });
            }
            PathKind::File => {
                if let Some(parent) = target.parent() {
                    steps.push(RootStep::Dir(parent.to_path_buf()));
                }
                steps.push(RootStep::File(target.clone()));
                steps.push(RootStep::Bind {
                    source: src.into(),
                    target,
                    readonly: true,
                });
            }
        }
    }
    for b in &iso.writable {
        steps.push(RootStep::Dir(b.target.clone()));
        steps.push(RootStep::Bind {
            source: b.source.clone(),
            target: b.target.clone(),
            readonly: false,
        });
    }
    for v in &iso.volumes {
        match kind(&v.source) {
            PathKind::File => {
                if let Some(parent) = v.target.parent() {
                    steps.push(RootStep::Dir(parent.to_path_buf()));
                }
                steps.push(RootStep::File(v.target.clone()));
            }
            _ => steps.push(RootStep::Dir(v.target.clone())),
        }
        steps.push(RootStep::Bind {
            source: v.source.clone(),
            target: v.target.clone(),
            readonly: v.read_only,
        });
    }
    steps.push(RootStep::Dir("/dev".into()));
    steps.push(RootStep::Tmpfs {
        target: "/dev".into(),
        options: "mode=0755,size=64k".into(),
    });
    for d in DEVICES {
        let target = Path::new("/dev").join(d);
        steps.push(RootStep::File(target.clone()));
        steps.push(RootStep::Device {
            source: Path::new("/dev").join(d),
            target,
        });
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(RootStep::Symlink {
            path: Path::new("/dev").join(name),
            target: to.into(),
        });
    }
    steps.push(RootStep::Dir("/dev/shm".into()));
    steps.push(RootStep::Tmpfs {
        target: "/dev/shm".into(),
        options: "mode=1777".into(),
    });
    steps.push(RootStep::Dir("/proc".into()));
    steps.push(RootStep::Proc("/proc".into()));
    steps.extend(MASKED_PATHS.iter().map(|p| RootStep::Mask(p.into())));
    steps.extend(READ_ONLY_PATHS.iter().map(|p| RootStep::ReadOnly(p.into())));
    steps
}

/// `root` joined with `inside` (an absolute path inside the task's root).
pub(crate) fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(inside.strip_prefix("/").unwrap_or(inside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_links_are_recreated_and_dirs_bound_read_only() {
        let iso = Isolation {
            chroot_env: default_chroot_env(),
            writable: vec![Bind {
                source: "/data/alloc/a/web/local".into(),
                target: "/local".into(),
            }],
            ..Isolation::default()
        };
        let steps = plan_root(&iso, |p| match p.to_str().unwrap() {
            "/bin" => PathKind::Symlink("usr/bin".into()),
            "/lib" => PathKind::Symlink("usr/lib".into()),
            "/usr" | "/etc" => PathKind::Dir,
            _ => PathKind::Missing,
        });
        assert!(steps.contains(&RootStep::Symlink {
            path: "/bin".into(),
            target: "usr/bin".into()
        }));
        assert!(steps.contains(&RootStep::Bind {
            source: "/usr".into(),
            target: "/usr".into(),
            readonly: true
        }));
        assert!(steps.contains(&RootStep::Bind {
            source: "/data/alloc/a/web/local".into(),
            target: "/local".into(),
            readonly: false
        }));
        // Missing host paths (/lib32 here) are left out, not created.
        assert!(!steps.iter().any(|s| format!("{s:?}").contains("lib32")));
        // Every bind target is created before it is bound; /proc and its masks come last.
        for (i, s) in steps.iter().enumerate() {
            if let RootStep::Bind { target, .. } | RootStep::Device { target, .. } = s {
                assert!(steps[..i].iter().any(|p| matches!(p,
                    RootStep::Dir(d) | RootStep::File(d) if d == target)));
            }
        }
        let proc = steps
            .iter()
            .position(|s| *s == RootStep::Proc("/proc".into()))
            .unwrap();
        assert!(
            steps[proc + 1..]
                .iter()
                .all(|s| matches!(s, RootStep::Mask(_) | RootStep::ReadOnly(_)))
        );
        assert!(steps.contains(&RootStep::ReadOnly("/proc/sys".into())));
        assert!(steps.contains(&RootStep::ReadOnly("/proc/sysrq-trigger".into())));
        assert!(steps.contains(&RootStep::Mask("/proc/kcore".into())));
        // Nothing is copied: the only kinds of steps are links, binds, empty mount points
        // and in-memory filesystems.
    }

    #[test]
    fn volumes_are_bound_after_the_task_dirs() {
        let iso = Isolation {
            writable: vec![Bind {
                source: "/d/local".into(),
                target: "/local".into(),
            }],
            volumes: vec![Volume {
                source: "/srv/data".into(),
                target: "/local/data".into(),
                read_only: true,
            }],
            ..Isolation::default()
        };
        let steps = plan_root(&iso, |_| PathKind::Dir);
        let local = steps
            .iter()
            .position(
                |s| matches!(s, RootStep::Bind { target, .. } if target == Path::new("/local")),
            )
            .unwrap();
        let vol = steps
            .iter()
            .position(|s| {
                *s == RootStep::Bind {
                    source: "/srv/data".into(),
                    target: "/local/data".into(),
                    readonly: true,
                }
            })
            .unwrap();
        assert!(local < vol, "{steps:?}");
    }

    #[test]
    fn a_file_gets_its_parent_and_a_file_mount_point() {
        let iso = Isolation {
            chroot_env: [(
                "/etc/resolv.conf".to_string(),
                "/etc/resolv.conf".to_string(),
            )]
            .into_iter()
            .collect(),
            ..Isolation::default()
        };
        let steps = plan_root(&iso, |_| PathKind::File);
        assert_eq!(steps[0], RootStep::Dir("/etc".into()));
        assert_eq!(steps[1], RootStep::File("/etc/resolv.conf".into()));
    }
}
