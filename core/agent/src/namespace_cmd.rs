//! `drover namespace apply|list|status|delete`, as Nomad's `nomad namespace`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use drover_model::{Namespace, NamespaceCapabilities, NamespaceNodePoolConfiguration};
use serde::Deserialize;

use crate::cli::{ApiClient, table, urlencoding};
use crate::output::Format;

/// The most a specification file may hold.
pub(crate) const MAX_SPEC_BYTES: u64 = 64 * 1024;

/// Reads a specification from a file, or stdin for `-`, bounded.
pub(crate) fn read_spec(input: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    if input == "-" {
        std::io::stdin()
            .take(MAX_SPEC_BYTES + 1)
            .read_to_string(&mut text)
            .context("cannot read the specification from stdin")?;
    } else {
        std::fs::File::open(input)
            .with_context(|| format!("cannot read {input}"))?
            .take(MAX_SPEC_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {input}"))?;
    }
    if text.len() as u64 > MAX_SPEC_BYTES {
        bail!("{input} is larger than {MAX_SPEC_BYTES} bytes");
    }
    Ok(text)
}

/// Nomad's namespace specification file (HCL): `name`, `description`, `quota`, `meta {}`,
/// `capabilities {}`, `node_pool_config {}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceSpec {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    quota: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    capabilities: Option<CapabilitiesSpec>,
    node_pool_config: Option<NodePoolConfigSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapabilitiesSpec {
    #[serde(default)]
    enabled_task_drivers: Vec<String>,
    #[serde(default)]
    disabled_task_drivers: Vec<String>,
    #[serde(default)]
    enabled_network_modes: Vec<String>,
    #[serde(default)]
    disabled_network_modes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodePoolConfigSpec {
    #[serde(default)]
    default: String,
    #[serde(default)]
    allowed: Vec<String>,
    #[serde(default)]
    denied: Vec<String>,
}

/// A namespace specification: HCL, or Nomad's API JSON with `json`.
pub(crate) fn parse_spec(text: &str, json: bool, what: &str) -> anyhow::Result<Namespace> {
    if json {
        return serde_json::from_str(text)
            .with_context(|| format!("{what} is not a namespace in JSON"));
    }
    let (tree, _) = crate::config::hcl1::parse(text).with_context(|| what.to_string())?;
    let spec: NamespaceSpec = serde_json::from_value(tree)
        .with_context(|| format!("{what} is not a namespace specification"))?;
    Ok(Namespace {
        name: spec.name,
        description: spec.description,
        quota: spec.quota,
        meta: spec.meta,
        capabilities: spec.capabilities.map(|c| NamespaceCapabilities {
            enabled_task_drivers: c.enabled_task_drivers,
            disabled_task_drivers: c.disabled_task_drivers,
            enabled_network_modes: c.enabled_network_modes,
            disabled_network_modes: c.disabled_network_modes,
        }),
        node_pool_configuration: spec
            .node_pool_config
            .map(|c| NamespaceNodePoolConfiguration {
                default: c.default,
                allowed: c.allowed,
                denied: c.denied,
            }),
        ..Default::default()
    })
}

/// `namespace apply`'s flags.
pub struct ApplyArgs<'a> {
    /// A namespace name, a specification file, or `-` (stdin).
    pub input: &'a str,
    pub description: Option<&'a str>,
    pub quota: Option<&'a str>,
    pub json: bool,
}

/// `namespace apply NAME|FILE|-`: a file (or stdin) is a whole specification; a name
/// creates the namespace or updates the fields the flags give, as Nomad's.
pub async fn apply(c: &ApiClient, a: ApplyArgs<'_>) -> anyhow::Result<i32> {
    let is_spec = a.input == "-" || Path::new(a.input).is_file();
    let ns = if is_spec {
        let mut ns = parse_spec(&read_spec(a.input)?, a.json, a.input)?;
        if let Some(d) = a.description {
            ns.description = d.to_string();
        }
        if let Some(q) = a.quota {
            ns.quota = q.to_string();
        }
        ns
    } else {
        let url = format!("/v1/namespace/{}", urlencoding(a.input));
        let resp = c.request(reqwest::Method::GET, &url, None).await?;
        let mut ns = if resp.status() == reqwest::StatusCode::NOT_FOUND {
            Namespace {
                name: a.input.to_string(),
                ..Default::default()
            }
        } else {
            c.check(resp, &format!("GET {url}"))
                .await?
                .json()
                .await
                .with_context(|| format!("unexpected answer from GET {url}"))?
        };
        if let Some(d) = a.description {
            ns.description = d.to_string();
        }
        if let Some(q) = a.quota {
            ns.quota = q.to_string();
        }
        ns
    };
    if let Err(e) = ns.validate() {
        bail!("{e}");
    }
    let body = serde_json::to_value(&ns)?;
    let url = format!("/v1/namespace/{}", urlencoding(&ns.name));
    let resp = c.request(reqwest::Method::POST, &url, Some(&body)).await?;
    c.check(resp, &format!("POST {url}")).await?;
    println!("Successfully applied namespace {:?}!", ns.name);
    Ok(0)
}

pub async fn list(c: &ApiClient, fmt: &Format) -> anyhow::Result<i32> {
    let list: Vec<Namespace> = c.get("/v1/namespaces").await?;
    if fmt.print(&list)? {
        return Ok(0);
    }
    let mut rows = vec![vec!["Name".to_string(), "Description".into()]];
    for ns in list {
        rows.push(vec![ns.name, ns.description]);
    }
    print!("{}", table(rows));
    Ok(0)
}

/// Aligned `Key = value` lines, as Nomad's CLI prints an object.
pub(crate) fn fields(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$} = {v}\n"))
        .collect()
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn joined(v: &[String]) -> String {
    or_none(&v.join(","))
}

/// A `Metadata` section (nothing when there is none).
pub(crate) fn metadata(meta: &BTreeMap<String, String>) -> String {
    if meta.is_empty() {
        return String::new();
    }
    let rows: Vec<(&str, String)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    format!("\nMetadata\n{}", fields(&rows))
}

pub async fn status(c: &ApiClient, name: &str, fmt: &Format) -> anyhow::Result<i32> {
    let ns: Namespace = c
        .get(&format!("/v1/namespace/{}", urlencoding(name)))
        .await?;
    if fmt.print(&ns)? {
        return Ok(0);
    }
    let mut rows = vec![
        ("Name", ns.name.clone()),
        ("Description", ns.description.clone()),
        ("Quota", or_none(&ns.quota)),
    ];
    if let Some(cap) = &ns.capabilities {
        rows.push(("EnabledDrivers", joined(&cap.enabled_task_drivers)));
        rows.push(("DisabledDrivers", joined(&cap.disabled_task_drivers)));
        rows.push(("EnabledNetworkModes", joined(&cap.enabled_network_modes)));
        rows.push(("DisabledNetworkModes", joined(&cap.disabled_network_modes)));
    }
    print!("{}{}", fields(&rows), metadata(&ns.meta));
    if let Some(p) = &ns.node_pool_configuration {
        let rows = [
            ("Default", or_none(&p.default)),
            ("Allowed", joined(&p.allowed)),
            ("Denied", joined(&p.denied)),
        ];
        print!("\nNode Pool Configuration\n{}", fields(&rows));
    }
    Ok(0)
}

pub async fn delete(c: &ApiClient, name: &str) -> anyhow::Result<i32> {
    let url = format!("/v1/namespace/{}", urlencoding(name));
    c.call(reqwest::Method::DELETE, &url).await?;
    println!("Successfully deleted namespace {name:?}!");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specification_file_reads_into_nomads_namespace() {
        let hcl = r#"
name        = "api-prod"
description = "Production API servers"
meta {
  owner = "platform"
}
capabilities {
  enabled_task_drivers  = ["docker", "exec"]
  disabled_network_modes = ["host"]
}
node_pool_config {
  default = "prod"
}
"#;
        let ns = parse_spec(hcl, false, "ns.hcl").unwrap();
        assert_eq!(ns.name, "api-prod");
        assert_eq!(ns.meta["owner"], "platform");
        let cap = ns.capabilities.unwrap();
        assert_eq!(cap.enabled_task_drivers, ["docker", "exec"]);
        assert_eq!(cap.disabled_network_modes, ["host"]);
        assert_eq!(ns.node_pool_configuration.unwrap().default, "prod");

        let e = parse_spec("name = \"x\"\ncolour = \"red\"\n", false, "ns.hcl").unwrap_err();
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        let ns = parse_spec(r#"{"Name":"x","Description":"d"}"#, true, "ns.json").unwrap();
        assert_eq!((ns.name.as_str(), ns.description.as_str()), ("x", "d"));
    }
}
