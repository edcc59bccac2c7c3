//! Setting the cluster's scheduler configuration, with check-and-set.

use std::sync::Arc;

use drover_model::{Index, SchedulerConfiguration};

use super::{Apply, touch};
use crate::Table;

/// Sets the configuration unless `cas` does not match the current modify index (0: none
/// set yet); a mismatch is a conflict and changes nothing.
pub(super) fn set(cx: &mut Apply, config: &SchedulerConfiguration, cas: Option<Index>) {
    let (s, index) = (&mut *cx.s, cx.index);
    let current = s.scheduler_config.as_deref().map_or(0, |c| c.modify_index);
    if cas.is_some_and(|c| c != current) {
        cx.resp.conflict = true;
        return;
    }
    let mut config = *config;
    config.create_index = s
        .scheduler_config
        .as_deref()
        .map_or(index, |c| c.create_index);
    config.modify_index = index;
    s.scheduler_config = Some(Arc::new(config));
    touch(s, Table::SchedulerConfig, index);
}
