//! The allocation's network namespace, made as Nomad's docker driver makes it: an infra
//! ("pause") container `nomad_init_<alloc id>` of the plugin's `infra_image`, with network
//! mode `none` and the host name asked. Its sandbox (`NetworkSettings.SandboxKey`, which
//! lasts as long as the container) is the namespace the client's network hook configures
//! with CNI, and the allocation's task containers join it (`container:<infra id>`).
//!
//! [`Networks`] is the plugin's table of the infra containers it keeps (alloc id -> container
//! and image): the dangling-container reaper leaves them alone and image GC counts their
//! image. After a plugin restart the running ones are found again by their labels
//! ([`running`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptions, RemoveContainerOptionsBuilder,
};
use drover_plugin_sdk::proto::driver::TaskConfig as Task;

use crate::config::{self, Settings};
use crate::container::{LABEL_ALLOC_ID, LABEL_INFRA, LABEL_MANAGED, LABEL_NODE_ID};
use crate::events::Emitter;
use crate::image::{self, ImageError};
use crate::tasks::{exit_of, not_found};

/// Nomad's name of an allocation's infra container: `nomad_init_<alloc id>`.
pub const INFRA_NAME_PREFIX: &str = "nomad_init_";

/// The longest allocation id accepted (Nomad's are 36-byte UUIDs).
const MAX_ALLOC_ID: usize = 128;

/// Why an allocation's network could not be made, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "allocation id {0:?} cannot name a network container: it must be 1 to {MAX_ALLOC_ID} of [A-Za-z0-9_.-], starting with a letter or digit"
    )]
    AllocId(String),
    #[error(
        "hostname {0:?} is not a valid host name (labels of 1 to 63 letters, digits and '-', not starting or ending with '-', 253 bytes at most)"
    )]
    Hostname(String),
    #[error(
        "a container named {name} exists and is not allocation {alloc_id}'s network container: remove it"
    )]
    NotOurs { name: String, alloc_id: String },
    #[error("infra_image: {0}")]
    Image(#[from] ImageError),
    #[error("{what}: {source}")]
    Engine {
        what: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the network container {0} runs but the engine reports no network namespace for it")]
    NoSandbox(String),
    #[error(
        "allocation {0} has no running network container ({INFRA_NAME_PREFIX}{0}): its network was not created by the docker driver or is gone"
    )]
    Missing(String),
    #[error(
        "the task's network namespace {path} is not that of allocation {alloc_id}'s network container ({sandbox})"
    )]
    Mismatch {
        path: String,
        alloc_id: String,
        sandbox: String,
    },
}

impl NetworkError {
    /// Whether the request itself is wrong (rather than the engine or the registry).
    pub fn is_callers(&self) -> bool {
        matches!(
            self,
            NetworkError::AllocId(_) | NetworkError::Hostname(_) | NetworkError::Mismatch { .. }
        ) || matches!(self, NetworkError::Image(e) if e.is_users())
    }
}

fn engine(what: &'static str) -> impl FnOnce(bollard::errors::Error) -> NetworkError {
    move |source| NetworkError::Engine { what, source }
}

/// An allocation's infra container as the plugin keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Infra {
    pub container_id: String,
    /// The image reference it was created from (image GC's key).
    pub image: String,
}

/// The infra containers this plugin keeps, by allocation id.
#[derive(Debug, Default)]
pub struct Networks {
    infras: Mutex<BTreeMap<String, Infra>>,
}

impl Networks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Infra>> {
        self.infras.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `infra` for `alloc_id`; returns what it replaces.
    pub fn insert(&self, alloc_id: &str, infra: Infra) -> Option<Infra> {
        self.lock().insert(alloc_id.to_string(), infra)
    }

    pub fn remove(&self, alloc_id: &str) -> Option<Infra> {
        self.lock().remove(alloc_id)
    }

    pub fn get(&self, alloc_id: &str) -> Option<Infra> {
        self.lock().get(alloc_id).cloned()
    }

    /// Whether `container_id` is one of the kept infra containers.
    pub fn holds(&self, container_id: &str) -> bool {
        self.lock().values().any(|i| i.container_id == container_id)
    }
}

/// `nomad_init_<alloc id>`, after checking the id can name a container.
pub fn infra_name(alloc_id: &str) -> Result<String, NetworkError> {
    let ok = !alloc_id.is_empty()
        && alloc_id.len() <= MAX_ALLOC_ID
        && alloc_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && alloc_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(format!("{INFRA_NAME_PREFIX}{alloc_id}"))
    } else {
        Err(NetworkError::AllocId(alloc_id.to_string()))
    }
}

/// Checks a host name (RFC 1123); empty leaves the engine's default.
fn check_hostname(hostname: &str) -> Result<(), NetworkError> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if hostname.is_empty() || (hostname.len() <= 253 && hostname.split('.').all(label_ok)) {
        Ok(())
    } else {
        Err(NetworkError::Hostname(hostname.to_string()))
    }
}

/// The infra container's create request: `image`, network `none`, the host name asked,
/// Drover's labels and the allocation id; no capabilities (it only sleeps).
pub fn create_body(
    alloc_id: &str,
    hostname: &str,
    image: &str,
    settings: &Settings,
) -> Result<ContainerCreateBody, NetworkError> {
    infra_name(alloc_id)?;
    check_hostname(hostname)?;
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_INFRA.to_string(), "true".to_string()),
        (LABEL_ALLOC_ID.to_string(), alloc_id.to_string()),
    ]);
    if !settings.node_id.is_empty() {
        labels.insert(LABEL_NODE_ID.into(), settings.node_id.clone());
    }
    Ok(ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(hostname.to_string()).filter(|h| !h.is_empty()),
        labels: Some(labels.into_iter().collect()),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Whether `info` is the infra container of `alloc_id` (made by Drover for it).
fn is_infra_of(info: &ContainerInspectResponse, alloc_id: &str) -> bool {
    let labels = info
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .cloned()
        .unwrap_or_default();
    let is = |k: &str, v: &str| labels.get(k).is_some_and(|x| x == v);
    is(LABEL_MANAGED, "true") && is(LABEL_INFRA, "true") && is(LABEL_ALLOC_ID, alloc_id)
}

fn sandbox_of(info: &ContainerInspectResponse) -> Option<String> {
    info.network_settings
        .as_ref()
        .and_then(|n| n.sandbox_key.clone())
        .filter(|k| !k.is_empty())
}

/// The infra container named for `alloc_id`: `None` when there is none; refused when the
/// name is taken by a container that is not the allocation's infra container.
async fn inspect_infra(
    docker: &bollard::Docker,
    alloc_id: &str,
) -> Result<Option<ContainerInspectResponse>, NetworkError> {
    let name = infra_name(alloc_id)?;
    match docker.inspect_container(&name, None).await {
        Ok(info) if is_infra_of(&info, alloc_id) => Ok(Some(info)),
        Ok(_) => Err(NetworkError::NotOurs {
            name,
            alloc_id: alloc_id.to_string(),
        }),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(engine("cannot inspect the network container")(e)),
    }
}

/// What [`create`] made or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub infra: Infra,
    /// The network namespace (the container's sandbox key).
    pub namespace_path: String,
    /// False when a running infra container of the allocation was found.
    pub created: bool,
}

/// Makes the allocation's infra container, or finds its running one (after an agent
/// restart: `created = false`); a dead one is removed and replaced.
pub async fn create(
    docker: &bollard::Docker,
    alloc_id: &str,
    hostname: &str,
    settings: &Settings,
    events: &Emitter,
) -> Result<Created, NetworkError> {
    let name = infra_name(alloc_id)?;
    check_hostname(hostname)?;
    if let Some(info) = inspect_infra(docker, alloc_id).await? {
        let id = info.id.clone().unwrap_or_default();
        if exit_of(&info).is_none() {
            let path = sandbox_of(&info).ok_or_else(|| NetworkError::NoSandbox(id.clone()))?;
            let image = info
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            return Ok(Created {
                infra: Infra {
                    container_id: id,
                    image,
                },
                namespace_path: path,
                created: false,
            });
        }
        tracing::info!(alloc_id, container = %id, "replacing the allocation's dead network container");
        remove(docker, &id).await?;
    }
    let wanted = config::TaskConfig {
        image: settings.infra_image.clone(),
        image_pull_timeout: Some(settings.infra_image_pull_timeout),
        ..Default::default()
    };
    let img = image::ensure(docker, std::path::Path::new(""), &wanted, settings, events).await?;
    let body = create_body(alloc_id, hostname, &img.reference, settings)?;
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let id = docker
        .create_container(Some(opts), body)
        .await
        .map_err(engine("cannot create the network container"))?
        .id;
    let started = async {
        docker
            .start_container(&id, None)
            .await
            .map_err(engine("cannot start the network container"))?;
        let info = docker
            .inspect_container(&id, None)
            .await
            .map_err(engine("cannot inspect the network container"))?;
        sandbox_of(&info).ok_or_else(|| NetworkError::NoSandbox(id.clone()))
    }
    .await;
    match started {
        Ok(path) => {
            tracing::info!(alloc_id, container = %id, netns = %path, "network container started");
            Ok(Created {
                infra: Infra {
                    container_id: id,
                    image: img.reference,
                },
                namespace_path: path,
                created: true,
            })
        }
        Err(e) => {
            let _ = remove(docker, &id).await;
            Err(e)
        }
    }
}

async fn remove(docker: &bollard::Docker, id: &str) -> Result<(), NetworkError> {
    let rm = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(rm)).await {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(engine("cannot remove the network container")(e)),
    }
}

/// Removes the allocation's infra container; none there is not an error.
pub async fn destroy(docker: &bollard::Docker, alloc_id: &str) -> Result<(), NetworkError> {
    if let Some(info) = inspect_infra(docker, alloc_id).await? {
        remove(docker, info.id.as_deref().unwrap_or_default()).await?;
        tracing::info!(alloc_id, "network container removed");
    }
    Ok(())
}

/// The running infra containers of this node (`node` empty: every node's), by their labels:
/// what a restarted plugin keeps again.
pub async fn running(
    docker: &bollard::Docker,
    node: &str,
) -> Result<Vec<(String, Infra)>, NetworkError> {
    let mut labels = vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_INFRA}=true"),
    ];
    if !node.is_empty() {
        labels.push(format!("{LABEL_NODE_ID}={node}"));
    }
    let filters = [
        ("label".to_string(), labels),
        ("status".to_string(), vec!["running".to_string()]),
    ];
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters.into_iter().collect()),
        ..Default::default()
    };
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(engine("cannot list the network containers"))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let alloc = c.labels.as_ref()?.get(LABEL_ALLOC_ID)?.clone();
            let infra = Infra {
                container_id: c.id?,
                image: c.image.unwrap_or_default(),
            };
            Some((alloc, infra))
        })
        .collect())
}

/// The infra container a task of a group with its own network joins: the allocation's,
/// running, whose namespace is the task's `network_ns_path`. Returns its id.
pub async fn infra_of_task(docker: &bollard::Docker, task: &Task) -> Result<String, NetworkError> {
    let info = inspect_infra(docker, &task.alloc_id)
        .await?
        .filter(|i| exit_of(i).is_none())
        .ok_or_else(|| NetworkError::Missing(task.alloc_id.clone()))?;
    let sandbox = sandbox_of(&info).unwrap_or_default();
    if sandbox != task.network_ns_path {
        return Err(NetworkError::Mismatch {
            path: task.network_ns_path.clone(),
            alloc_id: task.alloc_id.clone(),
            sandbox,
        });
    }
    Ok(info.id.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infra_names_are_nomads_and_refuse_ids_that_cannot_name_a_container() {
        assert_eq!(
            infra_name("0b9a4e2c-7f1d-4c3e-9a5b-2d6e8f1a3c4b").unwrap(),
            "nomad_init_0b9a4e2c-7f1d-4c3e-9a5b-2d6e8f1a3c4b"
        );
        let long = "a".repeat(MAX_ALLOC_ID + 1);
        for bad in ["", "../x", "a/b", "-a", "a b", long.as_str()] {
            let e = infra_name(bad).unwrap_err().to_string();
            assert!(e.contains("allocation id"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_infra_container_has_no_network_the_hostname_and_drovers_labels() {
        let settings = Settings {
            node_id: "node-1".into(),
            ..Settings::default()
        };
        let body = create_body("a1", "web-1.example", "pause:1", &settings).unwrap();
        assert_eq!(body.image.as_deref(), Some("pause:1"));
        assert_eq!(body.hostname.as_deref(), Some("web-1.example"));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert!(hc.port_bindings.is_none());
        let labels = body.labels.unwrap();
        for (k, v) in [
            (LABEL_MANAGED, "true"),
            (LABEL_INFRA, "true"),
            (LABEL_ALLOC_ID, "a1"),
            (LABEL_NODE_ID, "node-1"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        let none = create_body("a1", "", "pause:1", &settings).unwrap();
        assert_eq!(none.hostname, None);
    }

    #[test]
    fn bad_hostnames_are_refused_by_name() {
        let s = Settings::default();
        let long_label = "a".repeat(64);
        for bad in ["-web", "web-", "a..b", "we b", "x\0", long_label.as_str()] {
            let e = create_body("a1", bad, "p", &s).unwrap_err().to_string();
            assert!(e.contains("hostname"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_table_finds_infra_containers_by_id() {
        let n = Networks::default();
        let infra = Infra {
            container_id: "c1".into(),
            image: "p:1".into(),
        };
        assert_eq!(n.insert("a1", infra.clone()), None);
        assert!(n.holds("c1") && !n.holds("c2"));
        assert_eq!(n.remove("a1"), Some(infra));
        assert!(!n.holds("c1"));
    }
}
