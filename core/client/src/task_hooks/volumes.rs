//! The host volumes hook: resolves the task's `volume_mount`s against its group's `volume`
//! blocks and this node's `client { host_volume }`s before each start, and hands the driver
//! the mounts. A volume that cannot be mounted here is a "Driver Failure" the restart
//! policy may retry.

use std::collections::BTreeMap;

use drover_model::{HostVolume, Task, TaskGroup};
use drover_proto::driver::{Mount, TaskConfig};

use super::{HookError, TaskHook, TaskHookCtx};
use crate::task_status::{TaskStatus, event};

/// Why a task's `volume_mount` cannot be mounted on this node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VolumeError {
    #[error("group {0:?} is gone from the job")]
    GroupGone(String),
    #[error("volume_mount names volume {volume:?}, which group {group:?} does not declare")]
    Undeclared { volume: String, group: String },
    #[error("volume {volume:?} is a {kind} volume; this client mounts host volumes only")]
    NotHost {
        volume: String,
        kind: drover_model::VolumeType,
    },
    #[error(
        "host volume {0:?} is not configured on this node (client {{ host_volume {0:?} {{ path = ... }} }})"
    )]
    NotConfigured(String),
    #[error("volume_mount destination {0:?} must be an absolute path")]
    RelativeDestination(String),
}

#[derive(Default)]
pub(crate) struct VolumesHook {
    /// The mounts resolved by the last prestart.
    mounts: Vec<Mount>,
}

/// The task's `volume_mount`s resolved against its group's volumes and the node's host
/// volumes.
fn resolve(
    group: &TaskGroup,
    task: &Task,
    host_volumes: &BTreeMap<String, HostVolume>,
) -> Result<Vec<Mount>, VolumeError> {
    task.volume_mounts
        .iter()
        .map(|m| {
            let req = group
                .volumes
                .get(&m.volume)
                .ok_or_else(|| VolumeError::Undeclared {
                    volume: m.volume.clone(),
                    group: group.name.clone(),
                })?;
            if req.volume_type != drover_model::VolumeType::Host {
                return Err(VolumeError::NotHost {
                    volume: m.volume.clone(),
                    kind: req.volume_type,
                });
            }
            let host = host_volumes
                .get(&req.source)
                .ok_or_else(|| VolumeError::NotConfigured(req.source.clone()))?;
            if !m.destination.starts_with('/') {
                return Err(VolumeError::RelativeDestination(m.destination.clone()));
            }
            Ok(Mount {
                host_path: host.path.clone(),
                task_path: m.destination.clone(),
                read_only: m.read_only || req.read_only || host.read_only,
            })
        })
        .collect()
}

#[tonic::async_trait]
impl TaskHook for VolumesHook {
    async fn prestart(
        &mut self,
        ctx: &TaskHookCtx<'_>,
        _status: &mut TaskStatus,
    ) -> Result<(), HookError> {
        let group_name = &ctx.alloc.task_group;
        let resolved = match ctx.job.group(group_name) {
            Some(group) => resolve(group, ctx.task, &ctx.client.inner.config.host_volumes),
            None => Err(VolumeError::GroupGone(group_name.clone())),
        };
        self.mounts = resolved.map_err(|e| HookError::Failed {
            event: event("Driver Failure", &e.to_string()),
            restart_reason: "Driver failure",
        })?;
        Ok(())
    }

    fn configure(&self, _ctx: &TaskHookCtx<'_>, config: &mut TaskConfig) {
        config.mounts = self.mounts.clone();
    }
}

#[cfg(test)]
mod tests {
    use drover_model::{VolumeMount, VolumeRequest};

    use super::*;

    fn group(kind: &str, read_only: bool) -> TaskGroup {
        let req = VolumeRequest {
            name: String::new(),
            volume_type: drover_model::VolumeType::parse(kind).expect("a volume type"),
            source: "data".into(),
            read_only,
            access_mode: String::new(),
            attachment_mode: String::new(),
            per_alloc: false,
            mount_options: None,
        };
        TaskGroup {
            name: "g".into(),
            volumes: [("d".to_string(), req)].into(),
            ..Default::default()
        }
    }

    fn task(volume: &str, destination: &str) -> Task {
        Task {
            volume_mounts: vec![VolumeMount {
                volume: volume.into(),
                destination: destination.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn host_volumes_resolve_to_mounts_and_what_cannot_be_mounted_is_named() {
        let host: BTreeMap<String, HostVolume> = [(
            "data".to_string(),
            HostVolume {
                path: "/srv/data".into(),
                read_only: false,
            },
        )]
        .into();
        let mounts = resolve(&group("host", true), &task("d", "/data"), &host).unwrap();
        assert_eq!(
            mounts,
            vec![Mount {
                host_path: "/srv/data".into(),
                task_path: "/data".into(),
                read_only: true,
            }]
        );
        let err = |g: &TaskGroup, t: &Task, h: &BTreeMap<String, HostVolume>| {
            resolve(g, t, h).unwrap_err()
        };
        assert!(matches!(
            err(&group("host", false), &task("other", "/data"), &host),
            VolumeError::Undeclared { .. }
        ));
        assert!(matches!(
            err(&group("csi", false), &task("d", "/data"), &host),
            VolumeError::NotHost { .. }
        ));
        assert!(matches!(
            err(&group("host", false), &task("d", "/data"), &BTreeMap::new()),
            VolumeError::NotConfigured(_)
        ));
        assert!(matches!(
            err(&group("host", false), &task("d", "data"), &host),
            VolumeError::RelativeDestination(_)
        ));
    }
}
