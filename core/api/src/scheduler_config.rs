//! `GET|PUT /v1/operator/scheduler/configuration`: the cluster's scheduler configuration,
//! in Nomad's shapes (`{"SchedulerConfig": {...}, "Index"}`; a write answers `{"Updated",
//! "Index"}`, with `?cas=` check-and-set).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use drover_model::{PreemptionConfig, SchedulerConfiguration};
use drover_state::Table;
use serde::Serialize;

use crate::query::{Params, query, with_index};
use crate::{ApiError, ApiState};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigResponse {
    scheduler_config: SchedulerConfiguration,
    index: u64,
    known_leader: bool,
    last_contact: u64,
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::SchedulerConfig).await?;
    let config = st.server.scheduler_config(&snap);
    let index = snap.table_index(Table::SchedulerConfig);
    let resp = ConfigResponse {
        scheduler_config: config,
        index,
        known_leader: true,
        last_contact: 0,
    };
    Ok(with_index(index, &resp))
}

/// The configuration in a request body: each field left out is Go's zero value, as Nomad
/// decodes it (a missing `PreemptionConfig` enables no preemption).
fn decode(body: &[u8]) -> Result<SchedulerConfiguration, ApiError> {
    let raw: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid scheduler configuration: {e}")))?;
    let has_preemption = raw.get("PreemptionConfig").is_some();
    let mut config: SchedulerConfiguration = serde_json::from_value(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid scheduler configuration: {e}")))?;
    if !has_preemption {
        config.preemption_config = PreemptionConfig::default();
    }
    Ok(config)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SetResponse {
    updated: bool,
    index: u64,
}

pub(crate) async fn update(
    State(st): State<ApiState>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config = decode(&body)?;
    let cas = q
        .get("cas")
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("cas {c:?} is not an index")))
        })
        .transpose()?;
    let set = st.server.set_scheduler_config(config, cas).await?;
    let resp = SetResponse {
        updated: set.updated,
        index: set.index,
    };
    Ok(with_index(set.index, &resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_decodes_as_nomad_does() {
        let c = decode(br#"{"SchedulerAlgorithm":"spread"}"#).ok().unwrap();
        assert_eq!(
            c.scheduler_algorithm,
            drover_model::SchedulerAlgorithm::Spread
        );
        assert!(!c.preemption_config.system_scheduler_enabled);
        let c = decode(br#"{"PreemptionConfig":{"SystemSchedulerEnabled":true}}"#)
            .ok()
            .unwrap();
        assert!(c.preemption_config.system_scheduler_enabled);
        let Err(e) = decode(br#"{"SchedulerAlgorithm":"random"}"#) else {
            panic!("an unknown algorithm was accepted")
        };
        assert!(e.1.contains("random"), "{}", e.1);
    }
}
