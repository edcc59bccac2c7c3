//! Nomad's checks of a group's ports and scaling blocks, made where the block is read so
//! that each error has its position.

use std::collections::BTreeMap;

use drover_model::ScalingPolicy;
use hcl::edit::structure::Block;

use crate::JobspecError;
use crate::reader::{BlockReader, Source};

/// The port labels of one group (its networks and its tasks' deprecated ones): unique,
/// compared without case, and without spaces.
#[derive(Debug, Default)]
pub struct PortLabels {
    /// Lowercased label -> where it was first given.
    seen: BTreeMap<String, String>,
}

impl PortLabels {
    pub fn add(
        &mut self,
        src: &Source<'_>,
        at: &Block,
        path: &str,
        label: &str,
    ) -> Result<(), JobspecError> {
        if label.is_empty() || label.chars().any(char::is_whitespace) {
            return Err(src.error_span(
                at,
                path,
                &format!("port label {label:?} must be a non-empty word without spaces"),
            ));
        }
        let (line, column) = src.line_col(hcl::edit::Span::span(at).map(|s| s.start).unwrap_or(0));
        let here = format!("line {line}, column {column}");
        if let Some(first) = self.seen.get(&label.to_lowercase()) {
            return Err(src.error_span(
                at,
                path,
                &format!(
                    "port label {label:?} is already used in this group (at {first}); labels are compared without case"
                ),
            ));
        }
        self.seen.insert(label.to_lowercase(), here);
        Ok(())
    }
}

/// The scaling policy types Nomad knows: a group's, and a task's `scaling "cpu"|"mem"`.
pub const GROUP_SCALING_TYPE: &str = "horizontal";

/// A task's scaling block label and the policy type it means.
pub fn task_scaling_type(label: &str) -> Option<&'static str> {
    match label {
        "cpu" => Some("vertical_cpu"),
        "mem" => Some("vertical_mem"),
        _ => None,
    }
}

/// Checks a scaling block as Nomad does: `max` is required, `min <= max`, both
/// non-negative, and the type the block's place implies.
pub fn scaling(
    r: &BlockReader<'_>,
    s: &ScalingPolicy,
    want_type: &str,
) -> Result<(), JobspecError> {
    if s.policy_type != want_type {
        return Err(r.error_key(
            "type",
            &format!(
                "scaling policy type {:?} is not valid here: expected {want_type:?}",
                s.policy_type
            ),
        ));
    }
    let Some(max) = s.max else {
        return Err(r.error_here("missing required key \"max\" (the most the policy may scale to)"));
    };
    if max < 0 {
        return Err(r.error_key("max", "max must not be negative"));
    }
    match s.min {
        Some(min) if min < 0 => Err(r.error_key("min", "min must not be negative")),
        Some(min) if min > max => Err(r.error_key(
            "min",
            &format!("min ({min}) must not be greater than max ({max})"),
        )),
        _ => Ok(()),
    }
}

/// A group's count within its scaling block's bounds.
pub fn scaling_count(
    group: &BlockReader<'_>,
    s: &ScalingPolicy,
    count: u32,
) -> Result<(), JobspecError> {
    let count = i64::from(count);
    if let Some(max) = s.max
        && count > max
    {
        return Err(group.error_key(
            "count",
            &format!("count ({count}) must not be greater than the scaling block's max ({max})"),
        ));
    }
    if let Some(min) = s.min
        && count < min
    {
        return Err(group.error_key(
            "count",
            &format!("count ({count}) must not be less than the scaling block's min ({min})"),
        ));
    }
    Ok(())
}
