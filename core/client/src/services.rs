//! Registering the allocation's services in the catalog: what one `service` block of a
//! group or task registers ([`registrations`]: name and tags interpolated, address and port
//! by `address_mode`), and [`ServiceSync`], which writes registrations and removals to the
//! servers in the order they were asked for, retrying while no server answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drover_model::{
    Allocation, Service, ServiceNameError, ServiceRegistration, check_service_name, service_id,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::Client;
use crate::env::interpolate;

/// Why a service block cannot be registered as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("service {0:?}: {1}")]
    Name(String, ServiceNameError),
    #[error("service {service:?}: port {port:?} is not a port label of the group's network")]
    UnknownPort { service: String, port: String },
    #[error(
        "service {service:?}: address_mode \"alloc\" needs the allocation's own network (bridge or cni); this allocation has none"
    )]
    NoAllocAddress { service: String },
    #[error(
        "service {service:?}: address_mode {mode:?} is not supported (host, alloc, auto; driver addresses are not reported by Drover's drivers)"
    )]
    AddressMode { service: String, mode: String },
}

/// Why the servers did not take a catalog change.
#[derive(Debug, thiserror::Error)]
pub enum ServiceSyncError {
    #[error("no server connection for {0:?}")]
    NoServer(Duration),
    #[error("the client is shutting down")]
    ShuttingDown,
    #[error("the server refused the change: {0}")]
    Refused(String),
    #[error("the server did not answer: {0}")]
    Unavailable(String),
}

/// The registrations of `services`, owned by `owner` (a task name, or `group-<name>` for
/// the group's own), of allocation `alloc`; `env` interpolates names and tags; `host_ip`
/// is the node's address for a service without a port's address.
pub(crate) fn registrations(
    alloc: &Allocation,
    owner: &str,
    services: &[Service],
    env: &BTreeMap<String, String>,
    host_ip: &str,
) -> Result<Vec<ServiceRegistration>, ServiceError> {
    services
        .iter()
        .map(|s| registration(alloc, owner, s, env, host_ip))
        .collect()
}

fn registration(
    alloc: &Allocation,
    owner: &str,
    s: &Service,
    env: &BTreeMap<String, String>,
    host_ip: &str,
) -> Result<ServiceRegistration, ServiceError> {
    let name = interpolate(&s.name, env);
    check_service_name(&name).map_err(|e| ServiceError::Name(name.clone(), e))?;
    let label = interpolate(&s.port_label, env);
    let port = alloc
        .shared_resources
        .ports
        .iter()
        .find(|p| !label.is_empty() && p.label == label);
    let numeric: Option<u16> = label.parse().ok();
    if port.is_none() && numeric.is_none() && !label.is_empty() {
        return Err(ServiceError::UnknownPort {
            service: name,
            port: label,
        });
    }
    let host_address = || match port {
        Some(p) if !p.host_ip.is_empty() => p.host_ip.clone(),
        _ => host_ip.to_string(),
    };
    let (address, port_number) = match s.address_mode.as_str() {
        "" | "auto" | "host" => {
            let a = if s.address.is_empty() {
                host_address()
            } else {
                interpolate(&s.address, env)
            };
            (a, port.map(|p| p.value).or(numeric).unwrap_or(0))
        }
        "alloc" => {
            let a = alloc
                .network_status
                .as_ref()
                .map(|n| n.address.clone())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| ServiceError::NoAllocAddress {
                    service: name.clone(),
                })?;
            let inside = port.map(|p| if p.to > 0 { p.to as u16 } else { p.value });
            (a, inside.or(numeric).unwrap_or(0))
        }
        other => {
            return Err(ServiceError::AddressMode {
                service: name,
                mode: other.to_string(),
            });
        }
    };
    Ok(ServiceRegistration {
        id: service_id(&alloc.id, owner, &name, &label),
        service_name: name,
        namespace: alloc.namespace.clone(),
        node_id: alloc.node_id.clone(),
        job_id: alloc.job_id.clone(),
        alloc_id: alloc.id.clone(),
        tags: s.tags.iter().map(|t| interpolate(t, env)).collect(),
        meta: s
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), interpolate(v, env)))
            .collect(),
        address,
        port: port_number,
        health: crate::checks::initial_health(s),
        ..Default::default()
    })
}

enum SyncOp {
    /// Make the registered set exactly these (registering new ones, removing the others).
    Set(Vec<ServiceRegistration>),
    /// The instances' health changed: write the registrations whose health differs.
    Health(crate::checks::Healths),
    /// Remove everything registered; answer once the servers committed it (or gave up).
    Clear(oneshot::Sender<()>),
}

/// Writes one owner's registrations to the servers, in the order asked, from a task of its
/// own (hooks never wait on the network unless they ask to: [`ServiceSync::clear`]).
#[derive(Clone)]
pub(crate) struct ServiceSync {
    tx: mpsc::UnboundedSender<SyncOp>,
}

/// Attempts at one change while servers do not answer, and the pause after each.
const ATTEMPTS: u32 = 10;
const RETRY: Duration = Duration::from_secs(2);
/// How long a stop waits for its services to leave the catalog.
const CLEAR_WAIT: Duration = Duration::from_secs(10);

/// What one op changes in the catalog, given what is registered: the upserts and the ids
/// to delete; `registered` becomes what the catalog holds once they are written.
fn plan(
    registered: &mut BTreeMap<String, ServiceRegistration>,
    op: &SyncOp,
) -> (Vec<ServiceRegistration>, Vec<String>) {
    match op {
        SyncOp::Set(regs) => {
            let keep: BTreeSet<&str> = regs.iter().map(|r| r.id.as_str()).collect();
            let deletes: Vec<String> = registered
                .keys()
                .filter(|id| !keep.contains(id.as_str()))
                .cloned()
                .collect();
            *registered = regs.iter().map(|r| (r.id.clone(), r.clone())).collect();
            (regs.clone(), deletes)
        }
        SyncOp::Health(healths) => {
            let mut upserts = Vec::new();
            for (id, h) in healths {
                if let Some(r) = registered.get_mut(id)
                    && r.health != *h
                {
                    r.health = *h;
                    upserts.push(r.clone());
                }
            }
            (upserts, Vec::new())
        }
        SyncOp::Clear(_) => {
            let deletes = registered.keys().cloned().collect();
            registered.clear();
            (Vec::new(), deletes)
        }
    }
}

impl ServiceSync {
    pub(crate) fn new(client: Client) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<SyncOp>();
        tokio::spawn(async move {
            let mut registered: BTreeMap<String, ServiceRegistration> = BTreeMap::new();
            while let Some(op) = rx.recv().await {
                let before = registered.clone();
                let (upserts, deletes) = plan(&mut registered, &op);
                if (!upserts.is_empty() || !deletes.is_empty())
                    && let Err(e) = write_with_retries(&client, &upserts, &deletes).await
                {
                    tracing::warn!(error = %e, "the service catalog was not updated");
                    // Keep what may still be in the catalog (to remove it later) and the
                    // health it holds (so the next change writes again).
                    let health_op = matches!(op, SyncOp::Health(_));
                    for (id, old) in before {
                        registered
                            .entry(id)
                            .and_modify(|cur| {
                                if health_op {
                                    cur.health = old.health;
                                }
                            })
                            .or_insert(old);
                    }
                }
                if let SyncOp::Clear(ack) = op {
                    let _ = ack.send(());
                }
            }
        });
        ServiceSync { tx }
    }

    /// Writes the registrations whose health changed.
    pub(crate) fn health(&self, healths: crate::checks::Healths) {
        let _ = self.tx.send(SyncOp::Health(healths));
    }

    /// Writes each change of `healths` (from the checks) until its sender is gone.
    pub(crate) fn follow(&self, mut healths: watch::Receiver<crate::checks::Healths>) {
        let sync = self.clone();
        tokio::spawn(async move {
            while healths.changed().await.is_ok() {
                let h = healths.borrow_and_update().clone();
                sync.health(h);
            }
        });
    }

    /// Registers exactly `regs` (removing what was registered before and is not among them).
    pub(crate) fn set(&self, regs: Vec<ServiceRegistration>) {
        let _ = self.tx.send(SyncOp::Set(regs));
    }

    /// Removes every registration; returns once the servers committed it or it failed, or
    /// after [`CLEAR_WAIT`] (a stop never waits long on servers that do not answer; the
    /// servers drop an ended allocation's registrations themselves).
    pub(crate) async fn clear(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(SyncOp::Clear(ack)).is_ok()
            && tokio::time::timeout(CLEAR_WAIT, done).await.is_err()
        {
            tracing::warn!("services not deregistered within {CLEAR_WAIT:?}; stopping anyway");
        }
    }

    /// Removes every registration without waiting.
    pub(crate) fn clear_later(&self) {
        let (ack, _) = oneshot::channel();
        let _ = self.tx.send(SyncOp::Clear(ack));
    }
}

async fn write_with_retries(
    client: &Client,
    upserts: &[ServiceRegistration],
    deletes: &[String],
) -> Result<(), ServiceSyncError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.update_services(upserts, deletes).await {
            Err(ServiceSyncError::Unavailable(_) | ServiceSyncError::NoServer(_))
                if attempt < ATTEMPTS && !client.is_shutting_down() =>
            {
                tokio::time::sleep(RETRY).await;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{AllocatedPort, NetworkStatus};

    fn alloc() -> Allocation {
        let mut a = Allocation {
            id: "a1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            node_id: "n1".into(),
            ..Default::default()
        };
        a.shared_resources.ports.push(AllocatedPort {
            label: "http".into(),
            value: 23456,
            to: 8080,
            host_ip: "10.0.0.5".into(),
        });
        a
    }

    fn service(name: &str, port: &str, mode: &str) -> Service {
        Service {
            name: name.into(),
            port_label: port.into(),
            address_mode: mode.into(),
            tags: vec!["v-${NOMAD_ALLOC_INDEX}".into()],
            ..Default::default()
        }
    }

    fn env() -> BTreeMap<String, String> {
        [
            ("NOMAD_JOB_NAME".to_string(), "web".to_string()),
            ("NOMAD_ALLOC_INDEX".to_string(), "3".to_string()),
        ]
        .into()
    }

    fn one(s: Service, a: &Allocation) -> Result<ServiceRegistration, ServiceError> {
        registrations(a, "task", &[s], &env(), "127.0.0.1").map(|mut v| v.remove(0))
    }

    #[test]
    fn host_mode_uses_the_ports_host_address_and_port() {
        let r = one(service("${NOMAD_JOB_NAME}-api", "http", "auto"), &alloc()).unwrap();
        assert_eq!(r.id, "_nomad-task-a1-task-web-api-http");
        assert_eq!(r.service_name, "web-api");
        assert_eq!((r.address.as_str(), r.port), ("10.0.0.5", 23456));
        assert_eq!(r.tags, vec!["v-3"]);
        let mut s = service("db", "5432", "host");
        s.meta = [("index".to_string(), "${NOMAD_ALLOC_INDEX}".to_string())].into();
        let r = one(s, &alloc()).unwrap();
        assert_eq!(r.meta["index"], "3");
        assert_eq!((r.address.as_str(), r.port), ("127.0.0.1", 5432));
    }

    #[test]
    fn alloc_mode_uses_the_allocations_address_and_the_port_inside() {
        let mut a = alloc();
        let e = one(service("api", "http", "alloc"), &a).unwrap_err();
        assert!(matches!(e, ServiceError::NoAllocAddress { .. }), "{e}");
        a.network_status = Some(NetworkStatus {
            address: "172.26.64.9".into(),
            ..Default::default()
        });
        let r = one(service("api", "http", "alloc"), &a).unwrap();
        assert_eq!((r.address.as_str(), r.port), ("172.26.64.9", 8080));
    }

    #[test]
    fn bad_names_ports_and_modes_are_errors_naming_the_service() {
        let e = one(service("web_api", "http", ""), &alloc()).unwrap_err();
        assert!(e.to_string().contains("\"web_api\""), "{e}");
        let e = one(service("api", "grpc", ""), &alloc()).unwrap_err();
        assert!(e.to_string().contains("port \"grpc\""), "{e}");
        let e = one(service("api", "http", "driver"), &alloc()).unwrap_err();
        assert!(matches!(e, ServiceError::AddressMode { .. }), "{e}");
    }

    #[test]
    fn only_health_changes_are_written_after_registration() {
        use drover_model::ServiceHealth::*;
        let mut registered = BTreeMap::new();
        let mut a = one(service("api", "http", ""), &alloc()).unwrap();
        a.health = Critical;
        let (up, del) = plan(&mut registered, &SyncOp::Set(vec![a.clone()]));
        assert_eq!((up.len(), del.len()), (1, 0));
        let same: crate::checks::Healths = [(a.id.clone(), Critical)].into();
        let (up, _) = plan(&mut registered, &SyncOp::Health(same));
        assert!(up.is_empty(), "a steady health writes nothing");
        let passing: crate::checks::Healths =
            [(a.id.clone(), Passing), ("unknown".to_string(), Critical)].into();
        let (up, _) = plan(&mut registered, &SyncOp::Health(passing.clone()));
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].health, Passing);
        assert!(plan(&mut registered, &SyncOp::Health(passing)).0.is_empty());
        let (ack, _) = oneshot::channel();
        let (up, del) = plan(&mut registered, &SyncOp::Clear(ack));
        assert_eq!((up.len(), del), (0, vec![a.id.clone()]));
    }
}
