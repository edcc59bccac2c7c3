//! `drover operator root keyring list|rotate|remove`: the keyring's root keys, as Nomad's
//! `nomad operator root keyring`.

use crate::cli::{ApiClient, table};

fn row(k: &serde_json::Value) -> Vec<String> {
    vec![
        k["KeyID"].as_str().unwrap_or("").into(),
        k["State"].as_str().unwrap_or("").into(),
        drover_model::serde_fmt::format(k["CreateTime"].as_i64().unwrap_or(0)).unwrap_or_default(),
    ]
}

fn header() -> Vec<String> {
    vec!["Key".into(), "State".into(), "Create Time".into()]
}

pub async fn list(c: &ApiClient) -> anyhow::Result<i32> {
    let keys: Vec<serde_json::Value> = c.get("/v1/operator/keyring/keys").await?;
    let mut rows = vec![header()];
    rows.extend(keys.iter().map(row));
    print!("{}", table(rows));
    Ok(0)
}

pub async fn rotate(c: &ApiClient, full: bool) -> anyhow::Result<i32> {
    let path = if full {
        "/v1/operator/keyring/rotate?full=true"
    } else {
        "/v1/operator/keyring/rotate"
    };
    let v: serde_json::Value = c.send(reqwest::Method::PUT, path, None).await?;
    print!("{}", table(vec![header(), row(&v["Key"])]));
    Ok(0)
}

pub async fn remove(c: &ApiClient, key_id: &str) -> anyhow::Result<i32> {
    let path = format!(
        "/v1/operator/keyring/key/{}",
        crate::cli::urlencoding(key_id)
    );
    let _: serde_json::Value = c.send(reqwest::Method::DELETE, &path, None).await?;
    println!("Removed encryption key {key_id}");
    Ok(0)
}
