//! `drover service list|info|delete`: the service catalog, as Nomad's `nomad service`.

use crate::cli::{ApiClient, table};

/// Tags as Nomad's CLI shows them: `[a,b]`.
fn tags(v: &serde_json::Value) -> String {
    let tags: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    format!("[{}]", tags.join(","))
}

pub async fn list(c: &ApiClient) -> anyhow::Result<i32> {
    let list: Vec<serde_json::Value> = c.get("/v1/services").await?;
    let mut rows = vec![vec!["Service Name".to_string(), "Tags".into()]];
    for ns in &list {
        for s in ns["Services"].as_array().into_iter().flatten() {
            rows.push(vec![
                s["ServiceName"].as_str().unwrap_or("").into(),
                tags(&s["Tags"]),
            ]);
        }
    }
    if rows.len() == 1 {
        println!("No service registrations found");
        return Ok(0);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub async fn info(c: &ApiClient, name: &str) -> anyhow::Result<i32> {
    let url = format!("/v1/service/{}", crate::cli::urlencoding(name));
    let regs: Vec<serde_json::Value> = c.get(&url).await?;
    if regs.is_empty() {
        anyhow::bail!("no service registrations found for {name:?}");
    }
    let mut rows = vec![vec![
        "Job ID".to_string(),
        "Address".into(),
        "Tags".into(),
        "Node ID".into(),
        "Alloc ID".into(),
    ]];
    for r in regs {
        let short = |k: &str| r[k].as_str().unwrap_or("").chars().take(8).collect();
        rows.push(vec![
            r["JobID"].as_str().unwrap_or("").into(),
            format!("{}:{}", r["Address"].as_str().unwrap_or(""), r["Port"]),
            tags(&r["Tags"]),
            short("NodeID"),
            short("AllocID"),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub async fn delete(c: &ApiClient, name: &str, id: &str) -> anyhow::Result<i32> {
    let url = format!(
        "/v1/service/{}/{}",
        crate::cli::urlencoding(name),
        crate::cli::urlencoding(id)
    );
    c.call(reqwest::Method::DELETE, &url).await?;
    println!("Successfully deleted service registration");
    Ok(0)
}
