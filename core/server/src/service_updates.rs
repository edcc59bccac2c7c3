//! What a client may write into the service catalog (`NodeService.UpdateServices`): only
//! registrations of live allocations placed on its own node, bounded in size, with the
//! fields the servers know (namespace, job, node, datacenter) taken from the servers' own
//! rows rather than the client's word.

use drover_model::{ALLOC_SERVICE_ID_PREFIX, ServiceRegistration, check_service_name};
use drover_state::{Command, StateSnapshot};

/// Limits on one update from a client.
pub mod limits {
    /// Registrations and deletions in one update.
    pub const MAX_ITEMS: usize = 1024;
    /// One registration's JSON.
    pub const MAX_REGISTRATION_BYTES: usize = 16 * 1024;
    /// Tags of one registration, and the bytes of each.
    pub const MAX_TAGS: usize = 64;
    pub const MAX_TAG_BYTES: usize = 255;
    /// Keys of a registration's meta, and the bytes of each key and value.
    pub const MAX_META: usize = 64;
    pub const MAX_META_BYTES: usize = 1024;
    /// A registration's id and address.
    pub const MAX_ID_BYTES: usize = 512;
    pub const MAX_ADDRESS_BYTES: usize = 255;
}

/// Why a client's service update was refused (nothing of it is written).
#[derive(Debug, thiserror::Error)]
pub enum ServiceUpdateError {
    #[error("{count} registrations and deletions in one update; at most {max}")]
    TooMany { count: usize, max: usize },
    #[error("registration {n}: {bytes} bytes of JSON; at most {max}")]
    TooLarge { n: usize, bytes: usize, max: usize },
    #[error("registration {n} is malformed: {source}")]
    Malformed { n: usize, source: serde_json::Error },
    #[error("registration {id:?}: {why}")]
    Invalid { id: String, why: String },
    #[error("allocation {alloc_id:?} is not placed on node {node_id}")]
    NotOnNode { alloc_id: String, node_id: String },
}

/// Checks a node's update against the state and builds the command that applies it
/// (`None`: nothing to do).
pub(crate) fn command(
    snap: &StateSnapshot,
    node_id: &str,
    upserts_json: &[Vec<u8>],
    delete_ids: &[String],
) -> Result<Option<Command>, ServiceUpdateError> {
    use limits::*;
    let count = upserts_json.len() + delete_ids.len();
    if count > MAX_ITEMS {
        return Err(ServiceUpdateError::TooMany {
            count,
            max: MAX_ITEMS,
        });
    }
    let datacenter = snap
        .node(node_id)
        .map(|n| n.datacenter.clone())
        .unwrap_or_default();
    let mut services = Vec::with_capacity(upserts_json.len());
    for (n, json) in upserts_json.iter().enumerate() {
        if json.len() > MAX_REGISTRATION_BYTES {
            return Err(ServiceUpdateError::TooLarge {
                n,
                bytes: json.len(),
                max: MAX_REGISTRATION_BYTES,
            });
        }
        let mut reg: ServiceRegistration = serde_json::from_slice(json)
            .map_err(|source| ServiceUpdateError::Malformed { n, source })?;
        check_registration(&reg)?;
        let alloc = snap
            .alloc(&reg.alloc_id)
            .filter(|a| a.node_id == node_id)
            .ok_or_else(|| ServiceUpdateError::NotOnNode {
                alloc_id: reg.alloc_id.clone(),
                node_id: node_id.to_string(),
            })?;
        // An allocation the servers stopped (or marked lost: its node went down) registers
        // nothing, whatever its client still runs: a client that comes back after its node
        // was lost re-registers its tasks before it learns they must stop.
        if alloc.is_terminal() {
            continue;
        }
        reg.namespace = alloc.namespace.clone();
        reg.job_id = alloc.job_id.clone();
        reg.node_id = node_id.to_string();
        reg.datacenter = datacenter.clone();
        reg.create_index = 0;
        reg.modify_index = 0;
        services.push(reg);
    }
    // A node removes only registrations of its own allocations.
    let mut ids = Vec::with_capacity(delete_ids.len());
    for id in delete_ids {
        match snap.service_registration(id) {
            Some(r) if r.node_id != node_id => {
                return Err(ServiceUpdateError::NotOnNode {
                    alloc_id: r.alloc_id.clone(),
                    node_id: node_id.to_string(),
                });
            }
            Some(_) => ids.push(id.clone()),
            None => {} // gone already
        }
    }
    let mut commands = Vec::new();
    if !services.is_empty() {
        commands.push(Command::ServiceRegUpsert { services });
    }
    if !ids.is_empty() {
        commands.push(Command::ServiceRegDelete { ids });
    }
    Ok(match commands.len() {
        0 => None,
        1 => commands.pop(),
        _ => Some(Command::Batch(commands)),
    })
}

fn check_registration(reg: &ServiceRegistration) -> Result<(), ServiceUpdateError> {
    use limits::*;
    let invalid = |why: String| ServiceUpdateError::Invalid {
        id: reg.id.chars().take(80).collect(),
        why,
    };
    if reg.id.len() > MAX_ID_BYTES {
        return Err(invalid(format!("an id longer than {MAX_ID_BYTES} bytes")));
    }
    let prefix = format!("{ALLOC_SERVICE_ID_PREFIX}{}-", reg.alloc_id);
    if reg.alloc_id.is_empty() || !reg.id.starts_with(&prefix) {
        return Err(invalid(format!("the id must start with {prefix:?}")));
    }
    check_service_name(&reg.service_name).map_err(|e| invalid(e.to_string()))?;
    if reg.tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "{} tags; at most {MAX_TAGS}",
            reg.tags.len()
        )));
    }
    if let Some(t) = reg.tags.iter().find(|t| t.len() > MAX_TAG_BYTES) {
        return Err(invalid(format!(
            "a tag of {} bytes; at most {MAX_TAG_BYTES}",
            t.len()
        )));
    }
    if reg.meta.len() > MAX_META {
        return Err(invalid(format!(
            "{} meta keys; at most {MAX_META}",
            reg.meta.len()
        )));
    }
    if reg
        .meta
        .iter()
        .any(|(k, v)| k.len() > MAX_META_BYTES || v.len() > MAX_META_BYTES)
    {
        return Err(invalid(format!(
            "a meta key or value above {MAX_META_BYTES} bytes"
        )));
    }
    if reg.address.len() > MAX_ADDRESS_BYTES || reg.address.chars().any(char::is_control) {
        return Err(invalid("the address is not a host name or IP".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{Allocation, Node, service_id};
    use drover_state::{Entry, PlanResult, StateStore};

    fn state() -> StateSnapshot {
        let store = StateStore::new();
        let node = Node {
            id: "n1".into(),
            datacenter: "dc9".into(),
            ..Default::default()
        };
        let e = |command| Entry { time: 1, command };
        store.apply(1, &e(Command::NodeRegister { node }));
        let alloc = |id: &str, node: &str| Allocation {
            id: id.into(),
            namespace: "prod".into(),
            job_id: "web".into(),
            node_id: node.into(),
            ..Default::default()
        };
        let plan = PlanResult {
            allocs: vec![alloc("a1", "n1"), alloc("b1", "n2")],
            ..Default::default()
        };
        store.apply(2, &e(Command::PlanApply(plan)));
        let services = vec![ServiceRegistration {
            id: service_id("b1", "t", "api", "http"),
            alloc_id: "b1".into(),
            node_id: "n2".into(),
            service_name: "api".into(),
            ..Default::default()
        }];
        store.apply(3, &e(Command::ServiceRegUpsert { services }));
        store.snapshot()
    }

    fn reg(alloc: &str, name: &str) -> ServiceRegistration {
        ServiceRegistration {
            id: service_id(alloc, "t", name, "http"),
            service_name: name.into(),
            alloc_id: alloc.into(),
            namespace: "default".into(),
            job_id: "forged".into(),
            node_id: "n2".into(),
            port: 80,
            ..Default::default()
        }
    }

    fn json(r: &ServiceRegistration) -> Vec<u8> {
        serde_json::to_vec(r).unwrap()
    }

    #[test]
    fn the_servers_fill_in_what_they_know() {
        let cmd = command(&state(), "n1", &[json(&reg("a1", "api"))], &[])
            .unwrap()
            .unwrap();
        let Command::ServiceRegUpsert { services } = cmd else {
            panic!("{cmd:?}")
        };
        let r = &services[0];
        assert_eq!(
            (
                r.namespace.as_str(),
                r.job_id.as_str(),
                r.node_id.as_str(),
                r.datacenter.as_str()
            ),
            ("prod", "web", "n1", "dc9")
        );
    }

    #[test]
    fn a_stopped_or_lost_allocation_registers_nothing() {
        use drover_model::{ClientStatus, DesiredStatus};
        let s = state();
        let store = StateStore::new();
        let mut a = s.alloc("a1").unwrap().clone();
        a.desired_status = DesiredStatus::Stop;
        a.client_status = ClientStatus::Lost;
        let plan = PlanResult {
            allocs: vec![a],
            ..Default::default()
        };
        let e = |command| Entry { time: 1, command };
        let node = s.node("n1").unwrap().clone();
        store.apply(1, &e(Command::NodeRegister { node }));
        store.apply(2, &e(Command::PlanApply(plan)));
        let cmd = command(&store.snapshot(), "n1", &[json(&reg("a1", "api"))], &[]).unwrap();
        assert!(cmd.is_none(), "{cmd:?}");
    }

    #[test]
    fn a_node_touches_only_its_own_allocations() {
        let s = state();
        let e = command(&s, "n1", &[json(&reg("b1", "api"))], &[]).unwrap_err();
        assert!(matches!(e, ServiceUpdateError::NotOnNode { .. }), "{e}");
        let other = service_id("b1", "t", "api", "http");
        let e = command(&s, "n1", &[], &[other]).unwrap_err();
        assert!(matches!(e, ServiceUpdateError::NotOnNode { .. }), "{e}");
        // An id already gone is nothing to do.
        assert!(command(&s, "n1", &[], &["gone".into()]).unwrap().is_none());
    }

    #[test]
    fn hostile_registrations_are_refused_naming_what_is_wrong() {
        let s = state();
        let mut r = reg("a1", "api");
        r.id = "_nomad-task-b1-t-api-http".into();
        let e = command(&s, "n1", &[json(&r)], &[]).unwrap_err();
        assert!(e.to_string().contains("must start with"), "{e}");
        let e = command(&s, "n1", &[json(&reg("a1", "bad.name"))], &[]).unwrap_err();
        assert!(e.to_string().contains("RFC 1123"), "{e}");
        let mut r = reg("a1", "api");
        r.tags = vec!["t".into(); 65];
        let e = command(&s, "n1", &[json(&r)], &[]).unwrap_err();
        assert!(e.to_string().contains("65 tags"), "{e}");
        let big = vec![b' '; limits::MAX_REGISTRATION_BYTES + 1];
        assert!(matches!(
            command(&s, "n1", &[big], &[]).unwrap_err(),
            ServiceUpdateError::TooLarge { .. }
        ));
        let many = vec!["x".to_string(); limits::MAX_ITEMS + 1];
        assert!(matches!(
            command(&s, "n1", &[], &many).unwrap_err(),
            ServiceUpdateError::TooMany { .. }
        ));
        let e = command(&s, "n1", &[b"{\"Port\":-1}".to_vec()], &[]).unwrap_err();
        assert!(matches!(e, ServiceUpdateError::Malformed { .. }), "{e}");
    }
}
