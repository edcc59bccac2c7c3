//! `drover node pool apply|list|info|jobs|nodes|delete`, as Nomad's `nomad node pool`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use drover_api_types as api;
use drover_model::{NodePool, NodePoolSchedulerConfiguration, SchedulerAlgorithm};
use serde::Deserialize;

use crate::cli::{ApiClient, table, urlencoding};
use crate::namespace_cmd::{fields, metadata, read_spec};
use crate::output::Format;

/// The body of `node_pool "NAME" { ... }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSpec {
    #[serde(default)]
    description: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    scheduler_config: Option<SchedulerSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerSpec {
    scheduler_algorithm: Option<String>,
    memory_oversubscription_enabled: Option<bool>,
}

/// A node pool specification: Nomad's HCL (`node_pool "name" { description meta {}
/// scheduler_config { scheduler_algorithm memory_oversubscription_enabled } }`), or its API
/// JSON with `json`.
pub(crate) fn parse_spec(text: &str, json: bool, what: &str) -> anyhow::Result<NodePool> {
    if json {
        return serde_json::from_str(text)
            .with_context(|| format!("{what} is not a node pool in JSON"));
    }
    let (tree, _) = crate::config::hcl1::parse(text).with_context(|| what.to_string())?;
    let top = tree.as_object().map(|o| o.len()).unwrap_or(0);
    let Some(blocks) = tree.get("node_pool").and_then(|p| p.as_object()) else {
        bail!("{what} has no node_pool \"NAME\" {{ ... }} block");
    };
    if top != 1 || blocks.len() != 1 {
        bail!("{what} must hold exactly one node_pool block and nothing else");
    }
    let (name, body) = blocks.iter().next().expect("one block");
    let spec: PoolSpec = serde_json::from_value(body.clone())
        .with_context(|| format!("{what}: node_pool {name:?} is not a node pool specification"))?;
    let scheduler_configuration = match spec.scheduler_config {
        None => None,
        Some(s) => Some(NodePoolSchedulerConfiguration {
            scheduler_algorithm: match s.scheduler_algorithm.as_deref() {
                None | Some("") => None,
                Some(a) => Some(SchedulerAlgorithm::parse(a).with_context(|| {
                    format!("{what}: scheduler_algorithm {a:?} is not binpack or spread")
                })?),
            },
            memory_oversubscription_enabled: s.memory_oversubscription_enabled,
        }),
    };
    Ok(NodePool {
        name: name.clone(),
        description: spec.description,
        meta: spec.meta,
        scheduler_configuration,
        ..Default::default()
    })
}

pub async fn apply(c: &ApiClient, input: &str, json: bool) -> anyhow::Result<i32> {
    let pool = parse_spec(&read_spec(input)?, json, input)?;
    if let Err(e) = pool.validate() {
        bail!("{e}");
    }
    let body = serde_json::to_value(&pool)?;
    let resp = c
        .request(reqwest::Method::PUT, "/v1/node/pools", Some(&body))
        .await?;
    c.check(resp, "PUT /v1/node/pools").await?;
    println!("Successfully applied node pool {:?}!", pool.name);
    Ok(0)
}

pub async fn list(c: &ApiClient, fmt: &Format) -> anyhow::Result<i32> {
    let pools: Vec<NodePool> = c.get("/v1/node/pools").await?;
    if fmt.print(&pools)? {
        return Ok(0);
    }
    let mut rows = vec![vec!["Name".to_string(), "Description".into()]];
    for p in pools {
        rows.push(vec![p.name, p.description]);
    }
    print!("{}", table(rows));
    Ok(0)
}

fn pool_url(name: &str, tail: &str) -> String {
    format!("/v1/node/pool/{}{tail}", urlencoding(name))
}

pub async fn info(c: &ApiClient, name: &str, fmt: &Format) -> anyhow::Result<i32> {
    let p: NodePool = c.get(&pool_url(name, "")).await?;
    if fmt.print(&p)? {
        return Ok(0);
    }
    let rows = [
        ("Name", p.name.clone()),
        ("Description", p.description.clone()),
    ];
    print!("{}{}", fields(&rows), metadata(&p.meta));
    if let Some(s) = &p.scheduler_configuration {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "<not set>".into());
        let rows = [
            (
                "Scheduler Algorithm",
                opt(s.scheduler_algorithm.map(|a| a.as_str().to_string())),
            ),
            (
                "Memory Oversubscription Enabled",
                opt(s.memory_oversubscription_enabled.map(|b| b.to_string())),
            ),
        ];
        print!("\nScheduler Configuration\n{}", fields(&rows));
    }
    Ok(0)
}

pub async fn jobs(c: &ApiClient, name: &str, fmt: &Format) -> anyhow::Result<i32> {
    let jobs: Vec<api::JobListStub> = c.get(&pool_url(name, "/jobs")).await?;
    if fmt.print(&jobs)? {
        return Ok(0);
    }
    if jobs.is_empty() {
        println!("No jobs");
        return Ok(0);
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "Namespace".into(),
        "Type".into(),
        "Priority".into(),
        "Status".into(),
    ]];
    for j in jobs {
        rows.push(vec![
            j.id,
            j.namespace,
            j.job_type.to_string(),
            j.priority.to_string(),
            j.status.to_string(),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub async fn nodes(c: &ApiClient, name: &str, fmt: &Format) -> anyhow::Result<i32> {
    let nodes: Vec<api::Node> = c.get(&pool_url(name, "/nodes")).await?;
    if fmt.print(&nodes)? {
        return Ok(0);
    }
    if nodes.is_empty() {
        println!("No nodes");
        return Ok(0);
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "Node Pool".into(),
        "DC".into(),
        "Name".into(),
        "Eligibility".into(),
        "Status".into(),
    ]];
    for n in nodes {
        rows.push(vec![
            n.id.chars().take(8).collect(),
            n.node_pool,
            n.datacenter,
            n.name,
            n.scheduling_eligibility.to_string(),
            n.status.to_string(),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub async fn delete(c: &ApiClient, name: &str) -> anyhow::Result<i32> {
    c.call(reqwest::Method::DELETE, &pool_url(name, "")).await?;
    println!("Successfully deleted node pool {name:?}!");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nomads_node_pool_file_reads_into_the_model() {
        let hcl = r#"
node_pool "prod" {
  description = "Node pool for production workloads."
  meta {
    env = "prod"
  }
  scheduler_config {
    scheduler_algorithm = "spread"
    memory_oversubscription_enabled = true
  }
}
"#;
        let p = parse_spec(hcl, false, "prod.hcl").unwrap();
        assert_eq!(p.name, "prod");
        assert_eq!(p.meta["env"], "prod");
        let s = p.scheduler_configuration.unwrap();
        assert_eq!(s.scheduler_algorithm, Some(SchedulerAlgorithm::Spread));
        assert_eq!(s.memory_oversubscription_enabled, Some(true));

        let bad = "node_pool \"x\" {\n  scheduler_config { scheduler_algorithm = \"random\" }\n}\n";
        let e = format!("{:#}", parse_spec(bad, false, "x.hcl").unwrap_err());
        assert!(e.contains("\"random\""), "{e}");
        let e = format!(
            "{:#}",
            parse_spec("description = \"d\"\n", false, "y.hcl").unwrap_err()
        );
        assert!(e.contains("node_pool"), "{e}");
        let e = format!(
            "{:#}",
            parse_spec("node_pool \"a\" {\n colour = 1\n}\n", false, "z.hcl").unwrap_err()
        );
        assert!(e.contains("colour"), "{e}");
    }
}
