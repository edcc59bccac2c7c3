//! `drover operator scheduler get-config|set-config`, as Nomad's.

use anyhow::{Context, bail};
use drover_model::{SchedulerAlgorithm, SchedulerConfiguration};

use crate::cli::ApiClient;
use crate::namespace_cmd::fields;
use crate::output::Format;

const PATH: &str = "/v1/operator/scheduler/configuration";

async fn current(c: &ApiClient) -> anyhow::Result<SchedulerConfiguration> {
    let resp: serde_json::Value = c.get(PATH).await?;
    serde_json::from_value(resp["SchedulerConfig"].clone())
        .with_context(|| format!("unexpected answer from GET {PATH}"))
}

/// Nomad's lines for a configuration.
fn describe(s: &SchedulerConfiguration) -> String {
    let p = &s.preemption_config;
    fields(&[
        ("Scheduler Algorithm", s.scheduler_algorithm.as_str().into()),
        (
            "Memory Oversubscription",
            s.memory_oversubscription_enabled.to_string(),
        ),
        (
            "Reject Job Registration",
            s.reject_job_registration.to_string(),
        ),
        ("Pause Eval Broker", s.pause_eval_broker.to_string()),
        (
            "Preemption System Scheduler",
            p.system_scheduler_enabled.to_string(),
        ),
        (
            "Preemption Service Scheduler",
            p.service_scheduler_enabled.to_string(),
        ),
        (
            "Preemption Batch Scheduler",
            p.batch_scheduler_enabled.to_string(),
        ),
        (
            "Preemption SysBatch Scheduler",
            p.sys_batch_scheduler_enabled.to_string(),
        ),
        ("Modify Index", s.modify_index.to_string()),
    ])
}

pub async fn get_config(c: &ApiClient, fmt: &Format) -> anyhow::Result<i32> {
    let config = current(c).await?;
    if fmt.print(&config)? {
        return Ok(0);
    }
    print!("{}", describe(&config));
    Ok(0)
}

/// `set-config`'s flags: each one given changes that setting; the rest stay.
#[derive(clap::Args, Debug, Default)]
pub struct SetConfigArgs {
    /// binpack or spread.
    #[arg(long = "scheduler-algorithm")]
    pub scheduler_algorithm: Option<String>,
    #[arg(long = "memory-oversubscription", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub memory_oversubscription: Option<bool>,
    #[arg(long = "reject-job-registration", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub reject_job_registration: Option<bool>,
    #[arg(long = "pause-eval-broker", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pause_eval_broker: Option<bool>,
    #[arg(long = "preempt-batch-scheduler", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub preempt_batch_scheduler: Option<bool>,
    #[arg(long = "preempt-service-scheduler", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub preempt_service_scheduler: Option<bool>,
    #[arg(long = "preempt-sysbatch-scheduler", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub preempt_sysbatch_scheduler: Option<bool>,
    #[arg(long = "preempt-system-scheduler", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub preempt_system_scheduler: Option<bool>,
    /// Write only if the configuration's modify index is this.
    #[arg(long = "check-index")]
    pub check_index: Option<u64>,
}

impl SetConfigArgs {
    /// `config` with the flags' changes.
    fn apply_to(
        &self,
        mut config: SchedulerConfiguration,
    ) -> anyhow::Result<SchedulerConfiguration> {
        if let Some(a) = &self.scheduler_algorithm {
            config.scheduler_algorithm = SchedulerAlgorithm::parse(a)
                .with_context(|| format!("-scheduler-algorithm {a:?} is not binpack or spread"))?;
        }
        let set = |flag: Option<bool>, field: &mut bool| {
            if let Some(v) = flag {
                *field = v;
            }
        };
        let p = &mut config.preemption_config;
        set(self.preempt_batch_scheduler, &mut p.batch_scheduler_enabled);
        set(
            self.preempt_service_scheduler,
            &mut p.service_scheduler_enabled,
        );
        set(
            self.preempt_sysbatch_scheduler,
            &mut p.sys_batch_scheduler_enabled,
        );
        set(
            self.preempt_system_scheduler,
            &mut p.system_scheduler_enabled,
        );
        set(
            self.memory_oversubscription,
            &mut config.memory_oversubscription_enabled,
        );
        set(
            self.reject_job_registration,
            &mut config.reject_job_registration,
        );
        set(self.pause_eval_broker, &mut config.pause_eval_broker);
        Ok(config)
    }
}

pub async fn set_config(c: &ApiClient, args: &SetConfigArgs) -> anyhow::Result<i32> {
    let before = current(c).await?;
    let after = args.apply_to(before)?;
    if after == before {
        println!("Scheduler configuration unchanged");
        return Ok(0);
    }
    let path = match args.check_index {
        Some(i) => format!("{PATH}?cas={i}"),
        None => PATH.to_string(),
    };
    let body = serde_json::to_value(after)?;
    let resp: serde_json::Value = c.send(reqwest::Method::PUT, &path, Some(&body)).await?;
    if resp["Updated"] != serde_json::Value::Bool(true) {
        bail!(
            "the scheduler configuration was not updated: its modify index is no longer {} (read it again with get-config)",
            args.check_index.unwrap_or(0)
        );
    }
    println!("Scheduler configuration updated!");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_flags_given_change() {
        let args = SetConfigArgs {
            scheduler_algorithm: Some("spread".into()),
            preempt_batch_scheduler: Some(true),
            ..Default::default()
        };
        let c = args.apply_to(SchedulerConfiguration::default()).unwrap();
        assert_eq!(c.scheduler_algorithm, SchedulerAlgorithm::Spread);
        assert!(c.preemption_config.batch_scheduler_enabled);
        assert!(c.preemption_config.system_scheduler_enabled, "kept");
        let bad = SetConfigArgs {
            scheduler_algorithm: Some("fast".into()),
            ..Default::default()
        };
        assert!(bad.apply_to(SchedulerConfiguration::default()).is_err());
        assert!(describe(&c).contains("Scheduler Algorithm           = spread"));
    }
}
