//! The template functions that read the service catalog, answered from the client's local
//! copy (no server round trip):
//!
//! - Nomad's `nomadService "[tag.]name[?ns=namespace][@region]"` (every instance, as Nomad's
//!   catalog has no health; fields `.ID .Name .Namespace .NodeID .Node .Datacenter .JobID
//!   .AllocID .Tags .Address .Port`), its `choose` form `nomadService N key "name"` (the
//!   API's rendezvous choice), and `nomadServices` (`.Name .Namespace .Tags`);
//! - consul-template's `service "[tag.]name[@datacenter][|filter]" ["filter"]` (passing
//!   instances unless a filter says `any` or lists healths; fields `.ID .Name .Node .NodeID
//!   .NodeAddress .NodeDatacenter .Datacenter .Namespace .Address .Port .Tags .Status
//!   .ServiceMeta`) and `services` (`.Name .Tags`).
//!
//! Templates read their allocation's namespace; a `?ns=` naming another is refused (Nomad's
//! workload identity reads its own namespace's services).

use drover_catalog::{CatalogView, HealthFilter, choose, health_word};
use drover_model::ServiceRegistration;
use drover_template::Value;
use serde_json::json;

/// The names of the functions this module answers.
pub(crate) const SERVICE_FUNCTIONS: [&str; 4] =
    ["nomadService", "nomadServices", "service", "services"];

/// Why a service function call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ServiceFnError {
    #[error("{func}: {why}")]
    Arguments { func: &'static str, why: String },
    #[error("{func} {query:?}: {why}")]
    Query {
        func: &'static str,
        query: String,
        why: String,
    },
}

/// A parsed `[tag.]name[?ns=...][@...]`.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    tag: Option<String>,
    name: String,
    namespace: Option<String>,
    /// The region (`nomadService`) or datacenter (`service`).
    at: Option<String>,
}

fn word_ok(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

fn parse_query(func: &'static str, q: &str) -> Result<Query, ServiceFnError> {
    let bad = |why: &str| ServiceFnError::Query {
        func,
        query: q.to_string(),
        why: why.to_string(),
    };
    let (rest, at) = match q.split_once('@') {
        Some((r, a)) if word_ok(a, &['.']) => (r, Some(a.to_string())),
        Some(_) => return Err(bad("the part after @ is not a region or datacenter name")),
        None => (q, None),
    };
    let (rest, namespace) = match rest.split_once("?ns=") {
        Some((r, ns)) if word_ok(ns, &[]) => (r, Some(ns.to_string())),
        Some(_) => return Err(bad("the namespace after ?ns= is not a namespace name")),
        None => (rest, None),
    };
    let (tag, name) = match rest.rsplit_once('.') {
        Some((t, n)) => (Some(t.to_string()), n),
        None => (None, rest),
    };
    if !word_ok(name, &[]) {
        return Err(bad("write [tag.]name: the name is letters, digits, dashes"));
    }
    if tag
        .as_deref()
        .is_some_and(|t| !word_ok(t, &['.', '=', ':']))
    {
        return Err(bad("the tag is letters, digits, dashes, dots, '=' or ':'"));
    }
    Ok(Query {
        tag,
        name: name.to_string(),
        namespace,
        at,
    })
}

fn string(func: &'static str, v: &Value, what: &str) -> Result<String, ServiceFnError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| ServiceFnError::Arguments {
            func,
            why: format!("{what} must be a string, not {v}"),
        })
}

/// The namespace a query reads: the allocation's, which a `?ns=` may only repeat.
fn namespace_of(
    func: &'static str,
    q: &Query,
    own: &str,
    raw: &str,
) -> Result<String, ServiceFnError> {
    match &q.namespace {
        Some(ns) if ns != own && ns != "*" => Err(ServiceFnError::Query {
            func,
            query: raw.to_string(),
            why: format!(
                "templates read the services of their allocation's namespace ({own:?}) only"
            ),
        }),
        _ => Ok(own.to_string()),
    }
}

fn sorted_tags(r: &ServiceRegistration) -> Vec<String> {
    let mut t = r.tags.clone();
    t.sort();
    t
}

fn nomad_instance(r: &ServiceRegistration) -> Value {
    json!({
        "ID": r.id,
        "Name": r.service_name,
        "Namespace": r.namespace,
        "NodeID": r.node_id,
        "Node": r.node_id,
        "Datacenter": r.datacenter,
        "JobID": r.job_id,
        "AllocID": r.alloc_id,
        "Tags": sorted_tags(r),
        "Address": r.address,
        "Port": r.port,
    })
}

fn consul_instance(r: &ServiceRegistration) -> Value {
    json!({
        "ID": r.id,
        "Name": r.service_name,
        "Node": r.node_id,
        "NodeID": r.node_id,
        "NodeAddress": r.address,
        "NodeDatacenter": r.datacenter,
        "Datacenter": r.datacenter,
        "Namespace": r.namespace,
        "Address": r.address,
        "Port": r.port,
        "Tags": sorted_tags(r),
        "Status": health_word(r.health),
        "ServiceMeta": r.meta,
    })
}

/// Calls `func` (one of [`SERVICE_FUNCTIONS`]) against `view` for an allocation of
/// `namespace`.
pub(crate) fn call(
    view: &CatalogView,
    namespace: &str,
    func: &str,
    args: &[Value],
) -> Result<Value, ServiceFnError> {
    match func {
        "nomadService" => nomad_service(view, namespace, args),
        "nomadServices" => nomad_services(view, namespace, args),
        "service" => consul_service(view, namespace, args),
        _ => consul_services(view, namespace, args),
    }
}

fn nomad_service(view: &CatalogView, own: &str, args: &[Value]) -> Result<Value, ServiceFnError> {
    const F: &str = "nomadService";
    let (raw, chosen) = match args {
        [q] => (string(F, q, "the query")?, None),
        [n, key, q] => {
            let n = n
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ServiceFnError::Arguments {
                    func: F,
                    why: format!("the count to choose must be a number above 0, not {n}"),
                })?;
            let key = string(F, key, "the key to choose for")?;
            (string(F, q, "the query")?, Some((n as usize, key)))
        }
        _ => {
            return Err(ServiceFnError::Arguments {
                func: F,
                why: format!(
                    "takes \"name\", or a count, a key and \"name\" (got {} arguments)",
                    args.len()
                ),
            });
        }
    };
    let q = parse_query(F, &raw)?;
    let ns = namespace_of(F, &q, own, &raw)?;
    let instances = view.instances(&ns, &q.name);
    let mut picked: Vec<&ServiceRegistration> = instances
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| q.tag.as_ref().is_none_or(|t| r.tags.contains(t)))
        .collect();
    if let Some((n, key)) = chosen {
        picked = choose(picked, n, &key);
    }
    Ok(Value::Array(
        picked.into_iter().map(nomad_instance).collect(),
    ))
}

fn nomad_services(view: &CatalogView, own: &str, args: &[Value]) -> Result<Value, ServiceFnError> {
    const F: &str = "nomadServices";
    let ns = match args {
        [] => own.to_string(),
        [q] => {
            let raw = string(F, q, "the query")?;
            // "?ns=x@region": parsed with a placeholder name.
            let q = parse_query(F, &format!("x{raw}"))?;
            namespace_of(F, &q, own, &raw)?
        }
        _ => {
            return Err(ServiceFnError::Arguments {
                func: F,
                why: format!("takes at most one argument (got {})", args.len()),
            });
        }
    };
    Ok(Value::Array(
        view.services(&ns)
            .into_iter()
            .map(|s| json!({ "Name": s.name, "Namespace": ns, "Tags": s.tags }))
            .collect(),
    ))
}

fn consul_service(view: &CatalogView, own: &str, args: &[Value]) -> Result<Value, ServiceFnError> {
    const F: &str = "service";
    let (raw, filter) = match args {
        [q] => (string(F, q, "the query")?, None),
        [q, f] => (
            string(F, q, "the query")?,
            Some(string(F, f, "the health filter")?),
        ),
        _ => {
            return Err(ServiceFnError::Arguments {
                func: F,
                why: format!(
                    "takes \"name\" and an optional health filter (got {} arguments)",
                    args.len()
                ),
            });
        }
    };
    let (query, inline) = match raw.split_once('|') {
        Some((q, f)) => (q.to_string(), Some(f.to_string())),
        None => (raw.clone(), None),
    };
    let filter_text = filter.or(inline).unwrap_or_default();
    let health = HealthFilter::parse(&filter_text).map_err(|e| ServiceFnError::Query {
        func: F,
        query: raw.clone(),
        why: e.to_string(),
    })?;
    let q = parse_query(F, &query)?;
    let instances = view.instances(own, &q.name);
    let mut picked: Vec<&ServiceRegistration> = instances
        .iter()
        .map(|r| r.as_ref())
        .filter(|r| health.accepts(r.health))
        .filter(|r| q.tag.as_ref().is_none_or(|t| r.tags.contains(t)))
        .filter(|r| q.at.as_ref().is_none_or(|dc| &r.datacenter == dc))
        .collect();
    picked.sort_by(|a, b| (&a.node_id, &a.id).cmp(&(&b.node_id, &b.id)));
    Ok(Value::Array(
        picked.into_iter().map(consul_instance).collect(),
    ))
}

fn consul_services(view: &CatalogView, own: &str, args: &[Value]) -> Result<Value, ServiceFnError> {
    const F: &str = "services";
    match args {
        [] => {}
        [q] => {
            // "@datacenter": every datacenter's services are in the one catalog.
            string(F, q, "the datacenter")?;
        }
        _ => {
            return Err(ServiceFnError::Arguments {
                func: F,
                why: format!("takes at most one argument (got {})", args.len()),
            });
        }
    }
    Ok(Value::Array(
        view.services(own)
            .into_iter()
            .map(|s| json!({ "Name": s.name, "Tags": s.tags }))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_catalog::{CatalogPart, ServiceCatalog};
    use drover_model::ServiceHealth;

    fn reg(id: &str, port: u16, health: ServiceHealth, tags: &[&str]) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            namespace: "default".into(),
            service_name: "backend".into(),
            node_id: "n1".into(),
            datacenter: "dc1".into(),
            address: "10.0.0.1".into(),
            port,
            health,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            meta: [("zone".to_string(), "a".to_string())].into(),
            ..Default::default()
        }
    }

    fn view() -> std::sync::Arc<CatalogView> {
        use ServiceHealth::*;
        let c = ServiceCatalog::new();
        c.apply(CatalogPart {
            index: 1,
            reset: true,
            upserts: vec![
                reg("b1", 8001, Passing, &["v2", "http"]),
                reg("b2", 8002, Warning, &["v1"]),
                reg("b3", 8003, Critical, &["v1"]),
                ServiceRegistration {
                    namespace: "prod".into(),
                    ..reg("p1", 9000, Passing, &[])
                },
            ],
            complete: true,
            ..Default::default()
        });
        c.view()
    }

    fn ports(v: &Value) -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["Port"].as_u64().unwrap())
            .collect()
    }

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn nomad_service_returns_every_instance_with_nomads_fields() {
        let v = view();
        let got = call(&v, "default", "nomadService", &[s("backend")]).unwrap();
        assert_eq!(ports(&got), vec![8001, 8002, 8003]);
        let first = &got[0];
        for k in [
            "ID",
            "Name",
            "Namespace",
            "NodeID",
            "Datacenter",
            "JobID",
            "AllocID",
            "Tags",
            "Address",
            "Port",
        ] {
            assert!(first.get(k).is_some(), "{k} missing: {first}");
        }
        assert_eq!(first["Tags"], json!(["http", "v2"]));
        let got = call(&v, "default", "nomadService", &[s("v1.backend")]).unwrap();
        assert_eq!(ports(&got), vec![8002, 8003]);
        // The choose form: stable for a key, and the API's choice.
        let a = call(
            &v,
            "default",
            "nomadService",
            &[json!(2), s("alloc-1"), s("backend")],
        )
        .unwrap();
        assert_eq!(a.as_array().unwrap().len(), 2);
        let again = call(
            &v,
            "default",
            "nomadService",
            &[json!(2), s("alloc-1"), s("backend")],
        )
        .unwrap();
        assert_eq!(a, again);
        let inst = v.instances("default", "backend");
        let api: Vec<u64> = choose(inst.iter().map(|r| r.as_ref()).collect(), 2, "alloc-1")
            .iter()
            .map(|r| u64::from(r.port))
            .collect();
        assert_eq!(ports(&a), api);
        // Another namespace is refused; its own namespace may be named.
        let e = call(&v, "default", "nomadService", &[s("backend?ns=prod")]).unwrap_err();
        assert!(e.to_string().contains("allocation's namespace"), "{e}");
        let got = call(&v, "prod", "nomadService", &[s("backend?ns=prod@global")]).unwrap();
        assert_eq!(ports(&got), vec![9000]);
        // Bad arguments say what is wrong.
        let e = call(&v, "default", "nomadService", &[s("bad name")]).unwrap_err();
        assert!(e.to_string().contains("\"bad name\""), "{e}");
        let e = call(
            &v,
            "default",
            "nomadService",
            &[json!(0), s("k"), s("backend")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("above 0"), "{e}");
    }

    #[test]
    fn consul_service_filters_by_health() {
        let v = view();
        let passing = call(&v, "default", "service", &[s("backend")]).unwrap();
        assert_eq!(ports(&passing), vec![8001]);
        assert_eq!(passing[0]["Status"], "passing");
        assert_eq!(passing[0]["ServiceMeta"]["zone"], "a");
        assert_eq!(passing[0]["Node"], "n1");
        let any = call(&v, "default", "service", &[s("backend|any")]).unwrap();
        assert_eq!(ports(&any), vec![8001, 8002, 8003]);
        let two = call(
            &v,
            "default",
            "service",
            &[s("backend"), s("passing,warning")],
        )
        .unwrap();
        assert_eq!(ports(&two), vec![8001, 8002]);
        let tagged = call(&v, "default", "service", &[s("v1.backend|any")]).unwrap();
        assert_eq!(ports(&tagged), vec![8002, 8003]);
        let other_dc = call(&v, "default", "service", &[s("backend@dc2|any")]).unwrap();
        assert_eq!(ports(&other_dc), Vec::<u64>::new());
        let e = call(&v, "default", "service", &[s("backend|healthy")]).unwrap_err();
        assert!(e.to_string().contains("\"healthy\""), "{e}");
    }

    #[test]
    fn services_list_names_and_tags() {
        let v = view();
        let got = call(&v, "default", "services", &[]).unwrap();
        assert_eq!(
            got,
            json!([{ "Name": "backend", "Tags": ["http", "v1", "v2"] }])
        );
        let got = call(&v, "default", "nomadServices", &[]).unwrap();
        assert_eq!(got[0]["Namespace"], "default");
        let got = call(&v, "prod", "nomadServices", &[s("?ns=prod")]).unwrap();
        assert_eq!(got[0]["Name"], "backend");
        assert!(call(&v, "default", "nomadServices", &[s("?ns=prod")]).is_err());
    }
}
