//! The service catalog's rows: Nomad's `ServiceRegistration`, one per running instance of a
//! `service` block, written by the client that runs it and kept in Raft.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Index;

/// One registered instance of a service (Nomad's `ServiceRegistration`, same JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistration {
    /// `_nomad-task-<alloc id>-<task or group-<group>>-<service>-<port label>`, as Nomad.
    #[serde(rename = "ID")]
    pub id: String,
    pub service_name: String,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub datacenter: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    #[serde(rename = "AllocID")]
    pub alloc_id: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    /// Drover's extension (Nomad's catalog has no health): the instance's health from its
    /// checks, as the client that runs them last reported it — written on transitions only.
    pub health: ServiceHealth,
    /// Drover's extension (Nomad's catalog has none): the service block's `meta`,
    /// interpolated — what consul-template's `.ServiceMeta` reads.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    pub create_index: Index,
    pub modify_index: Index,
}

/// An instance's health in the catalog, in Consul's words (`passing`, `warning`,
/// `critical`). An instance without checks is `passing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ServiceHealth {
    #[default]
    Passing,
    Warning,
    Critical,
}

impl ServiceHealth {
    /// Whether lookups that ask for healthy instances (DNS, the API's `healthy` filter)
    /// return it: Consul's default, every instance that is not critical.
    pub fn is_healthy(self) -> bool {
        self != ServiceHealth::Critical
    }
}

/// Nomad's prefix of the ids of services an allocation registers.
pub const ALLOC_SERVICE_ID_PREFIX: &str = "_nomad-task-";

/// The id of the registration of `service` (its name and port label after interpolation)
/// for `owner`, a task name or `group-<group name>` (Nomad's `MakeAllocServiceID`).
pub fn service_id(alloc_id: &str, owner: &str, service: &str, port_label: &str) -> String {
    format!("{ALLOC_SERVICE_ID_PREFIX}{alloc_id}-{owner}-{service}-{port_label}")
}

/// Why a service name is not a valid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceNameError {
    #[error("service name is empty")]
    Empty,
    #[error("service name {0:?} is longer than 63 characters")]
    TooLong(String),
    #[error(
        "service name {0:?} must be alphanumeric or dashes, and may not start or end with a dash (RFC 1123)"
    )]
    Invalid(String),
}

/// Checks a service name as Nomad does: an RFC 1123 label (letters, digits, dashes; not
/// starting or ending with a dash), at most 63 characters — so it is also a DNS name.
pub fn check_service_name(name: &str) -> Result<(), ServiceNameError> {
    if name.is_empty() {
        return Err(ServiceNameError::Empty);
    }
    if name.len() > 63 {
        return Err(ServiceNameError::TooLong(name.to_string()));
    }
    let ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(ServiceNameError::Invalid(name.to_string()));
    }
    Ok(())
}

/// Why a group's services cannot be registered as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceProviderError {
    #[error("service {service:?}: provider {provider:?} is not one of consul, nomad")]
    Unknown { service: String, provider: String },
    #[error(
        "services of one group must use one provider, but {first:?} and {second:?} are both used"
    )]
    Mixed { first: String, second: String },
}

impl crate::TaskGroup {
    /// Fills in each service's provider (Nomad's default, "consul") and checks the words,
    /// and that the group and its tasks use one provider (Nomad refuses a mix).
    pub fn canonicalize_services(&mut self) -> Result<(), ServiceProviderError> {
        let mut first: Option<String> = None;
        let all = self
            .services
            .iter_mut()
            .chain(self.tasks.iter_mut().flat_map(|t| t.services.iter_mut()));
        for s in all {
            if s.provider.is_empty() {
                s.provider = "consul".into();
            }
            if !crate::SERVICE_PROVIDERS.contains(&s.provider.as_str()) {
                return Err(ServiceProviderError::Unknown {
                    service: s.name.clone(),
                    provider: s.provider.clone(),
                });
            }
            match &first {
                None => first = Some(s.provider.clone()),
                Some(f) if *f != s.provider => {
                    return Err(ServiceProviderError::Mixed {
                        first: f.clone(),
                        second: s.provider.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Whether any service of the group or its tasks names the "consul" provider.
    pub fn uses_consul_provider(&self) -> bool {
        self.services
            .iter()
            .chain(self.tasks.iter().flat_map(|t| t.services.iter()))
            .any(|s| s.provider == "consul")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_have_nomads_json_shape() {
        let r = ServiceRegistration {
            id: service_id("a1", "web", "api", "http"),
            service_name: "api".into(),
            node_id: "n1".into(),
            job_id: "j".into(),
            alloc_id: "a1".into(),
            port: 8080,
            ..Default::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ID"], "_nomad-task-a1-web-api-http");
        assert_eq!(v["Health"], "passing");
        for k in [
            "ServiceName",
            "Namespace",
            "NodeID",
            "Datacenter",
            "JobID",
            "AllocID",
            "Tags",
            "Address",
            "Port",
            "Health",
            "CreateIndex",
            "ModifyIndex",
        ] {
            assert!(v.get(k).is_some(), "{k} missing from {v}");
        }
    }

    #[test]
    fn providers_default_to_consul_and_may_not_mix() {
        use crate::{JobType, Service, Task, TaskGroup};
        let svc = |p: &str| Service {
            name: "s".into(),
            provider: p.into(),
            ..Default::default()
        };
        let mut t = Task::new("t", "raw_exec");
        t.services.push(svc(""));
        let mut g = TaskGroup::new("g", 1, JobType::Service, vec![t]);
        g.services.push(svc("consul"));
        g.canonicalize_services().unwrap();
        assert_eq!(g.tasks[0].services[0].provider, "consul");
        assert!(g.uses_consul_provider());
        g.tasks[0].services[0].provider = "nomad".into();
        assert!(matches!(
            g.canonicalize_services(),
            Err(ServiceProviderError::Mixed { .. })
        ));
        g.services[0].provider = "etcd".into();
        let e = g.canonicalize_services().unwrap_err();
        assert!(e.to_string().contains("\"etcd\" is not one of"), "{e}");
    }

    #[test]
    fn service_names_are_dns_labels() {
        assert!(check_service_name("web-api2").is_ok());
        assert_eq!(check_service_name(""), Err(ServiceNameError::Empty));
        assert!(matches!(
            check_service_name("-web"),
            Err(ServiceNameError::Invalid(_))
        ));
        assert!(matches!(
            check_service_name("web.api"),
            Err(ServiceNameError::Invalid(_))
        ));
        assert!(matches!(
            check_service_name(&"a".repeat(64)),
            Err(ServiceNameError::TooLong(_))
        ));
    }
}
