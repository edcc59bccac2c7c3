//! The cluster's scheduler configuration (Nomad's `SchedulerConfiguration`), set through
//! `/v1/operator/scheduler/configuration` and kept in Raft.

use serde::{Deserialize, Serialize};

use crate::Index;

/// How nodes are ranked: Nomad's `binpack` and `spread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerAlgorithm {
    #[default]
    Binpack,
    Spread,
}

impl SchedulerAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerAlgorithm::Binpack => "binpack",
            SchedulerAlgorithm::Spread => "spread",
        }
    }

    pub fn parse(s: &str) -> Option<SchedulerAlgorithm> {
        match s {
            "binpack" => Some(SchedulerAlgorithm::Binpack),
            "spread" => Some(SchedulerAlgorithm::Spread),
            _ => None,
        }
    }
}

/// Which schedulers may preempt lower-priority allocations. Each field left out of a
/// request is false, as in Nomad; the servers' default enables the system scheduler's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PreemptionConfig {
    pub system_scheduler_enabled: bool,
    pub sys_batch_scheduler_enabled: bool,
    pub batch_scheduler_enabled: bool,
    pub service_scheduler_enabled: bool,
}

/// The cluster's scheduler configuration, in Nomad's JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SchedulerConfiguration {
    pub scheduler_algorithm: SchedulerAlgorithm,
    pub preemption_config: PreemptionConfig,
    pub memory_oversubscription_enabled: bool,
    /// Job registrations are refused (an operator's brake).
    pub reject_job_registration: bool,
    /// The leader's broker hands out no evaluation while set.
    pub pause_eval_broker: bool,
    pub create_index: Index,
    pub modify_index: Index,
}

impl Default for SchedulerConfiguration {
    /// Nomad's default: binpack, preemption by the system scheduler only.
    fn default() -> Self {
        SchedulerConfiguration {
            scheduler_algorithm: SchedulerAlgorithm::Binpack,
            preemption_config: PreemptionConfig {
                system_scheduler_enabled: true,
                ..Default::default()
            },
            memory_oversubscription_enabled: false,
            reject_job_registration: false,
            pause_eval_broker: false,
            create_index: 0,
            modify_index: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nomads_json_and_defaults() {
        let c: SchedulerConfiguration = serde_json::from_str(
            r#"{"SchedulerAlgorithm":"spread","PreemptionConfig":{"BatchSchedulerEnabled":true}}"#,
        )
        .unwrap();
        assert_eq!(c.scheduler_algorithm, SchedulerAlgorithm::Spread);
        // Fields left out of PreemptionConfig are false, as Go's zero values.
        assert!(c.preemption_config.batch_scheduler_enabled);
        assert!(!c.preemption_config.system_scheduler_enabled);
        assert!(
            SchedulerConfiguration::default()
                .preemption_config
                .system_scheduler_enabled
        );
        assert!(!c.reject_job_registration);
        let v = serde_json::to_value(SchedulerConfiguration::default()).unwrap();
        assert_eq!(v["SchedulerAlgorithm"], "binpack");
        assert_eq!(v["PreemptionConfig"]["SysBatchSchedulerEnabled"], false);
        assert!(
            serde_json::from_str::<SchedulerConfiguration>(r#"{"SchedulerAlgorithm":"x"}"#)
                .is_err()
        );
    }
}
