//! The cluster's scheduler configuration: the one set through the API (in Raft), else the
//! servers' `default_scheduler_config`.

use drover_model::SchedulerConfiguration;
use drover_state::{Command, StateSnapshot};

use crate::{Server, ServerError};

/// What setting the configuration did (Nomad's `SchedulerSetConfigurationResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfigSet {
    /// False when the check-and-set index did not match: nothing changed.
    pub updated: bool,
    pub index: u64,
}

impl Server {
    /// The configuration in force in `snap`: the one set through the API, else this
    /// server's default.
    pub fn scheduler_config(&self, snap: &StateSnapshot) -> SchedulerConfiguration {
        snap.scheduler_config()
            .copied()
            .unwrap_or(self.config().scheduler)
    }

    /// Sets the configuration; with `cas`, only if the current one's modify index is `cas`
    /// (0: only while none was set).
    pub async fn set_scheduler_config(
        &self,
        config: SchedulerConfiguration,
        cas: Option<u64>,
    ) -> Result<SchedulerConfigSet, ServerError> {
        let resp = self
            .raft()
            .write(Command::SchedulerConfigSet { config, cas })
            .await?;
        Ok(SchedulerConfigSet {
            updated: !resp.conflict,
            index: resp.index,
        })
    }
}
