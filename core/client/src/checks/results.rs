//! The latest result of every check the client runs, by allocation: what
//! `GET /v1/client/allocation/:id/checks` answers, in Nomad's shape (check id -> result).
//! Results live here only, on the client; the catalog hears of health transitions alone.

use std::collections::BTreeMap;
use std::sync::Mutex;

use drover_model::ServiceHealth;
use serde::Serialize;

/// One check's latest result (Nomad's `CheckQueryResult`, plus Drover's `Health`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckResult {
    #[serde(rename = "ID")]
    pub id: String,
    pub check: String,
    /// The allocation's name, as Nomad reports it (`<job>.<group>[<index>]`).
    pub group: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// "healthiness", or "readiness" for a check with `on_update = "ignore"`.
    pub mode: &'static str,
    pub output: String,
    pub service: String,
    /// "pending" before the first run, then "success" or "failure" (a warning is not a
    /// success).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task: String,
    /// Unix seconds of the result.
    pub timestamp: i64,
    /// Drover's: the check's status after its thresholds (passing, warning, critical).
    pub health: ServiceHealth,
}

/// Every allocation's check results.
#[derive(Default)]
pub(crate) struct CheckResults {
    by_alloc: Mutex<BTreeMap<String, BTreeMap<String, CheckResult>>>,
}

impl CheckResults {
    pub(crate) fn set(&self, alloc_id: &str, r: CheckResult) {
        self.by_alloc
            .lock()
            .expect("check results lock")
            .entry(alloc_id.to_string())
            .or_default()
            .insert(r.id.clone(), r);
    }

    /// Forgets the results of `ids` (checks that stopped).
    pub(crate) fn remove(&self, alloc_id: &str, ids: &[String]) {
        let mut all = self.by_alloc.lock().expect("check results lock");
        if let Some(m) = all.get_mut(alloc_id) {
            for id in ids {
                m.remove(id);
            }
            if m.is_empty() {
                all.remove(alloc_id);
            }
        }
    }

    /// The allocation's results as Nomad's JSON object (empty when it runs no check).
    pub(crate) fn json(&self, alloc_id: &str) -> Vec<u8> {
        let all = self.by_alloc.lock().expect("check results lock");
        let empty = BTreeMap::new();
        let m = all.get(alloc_id).unwrap_or(&empty);
        serde_json::to_vec(m).expect("check results serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str) -> CheckResult {
        CheckResult {
            id: id.into(),
            check: "alive".into(),
            group: "web.api[0]".into(),
            job_id: "web".into(),
            mode: "healthiness",
            output: String::new(),
            service: "api".into(),
            status: "pending",
            status_code: None,
            task: String::new(),
            timestamp: 1,
            health: ServiceHealth::Critical,
        }
    }

    #[test]
    fn results_have_nomads_shape_and_go_with_their_checks() {
        let r = CheckResults::default();
        r.set("a1", result("c1"));
        let mut two = result("c2");
        two.status_code = Some(200);
        two.task = "web".into();
        r.set("a1", two);
        let v: serde_json::Value = serde_json::from_slice(&r.json("a1")).unwrap();
        let c1 = &v["c1"];
        for k in [
            "ID",
            "Check",
            "Group",
            "JobID",
            "Mode",
            "Output",
            "Service",
            "Status",
            "Timestamp",
        ] {
            assert!(c1.get(k).is_some(), "{k} missing from {c1}");
        }
        assert!(c1.get("StatusCode").is_none() && c1.get("Task").is_none());
        assert_eq!(
            (v["c2"]["StatusCode"].as_u64(), v["c2"]["Task"].as_str()),
            (Some(200), Some("web"))
        );
        r.remove("a1", &["c1".into(), "c2".into()]);
        assert_eq!(r.json("a1"), b"{}");
    }
}
