//! Blocks of Nomad's recent versions: the job's `ui`, the group's `disconnect` (1.8), the
//! task's `action` and vertical `scaling "cpu"|"mem"` blocks.

use std::collections::BTreeSet;

use drover_model::{Action, DisconnectStrategy, JobUiConfig, ScalingPolicy};
use serde_json::{Map, Value as Json};

use crate::reader::{BlockReader, Source};
use crate::{JobspecError, obj, to_json, validate, warn_not_acted_on};

/// The reconcile strategies of a `disconnect` block.
const RECONCILE: &[&str] = &[
    "best_score",
    "longest_running",
    "keep_original",
    "keep_replacement",
];

/// The job's `ui { description, link { label, url } }` block.
pub fn ui(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<JobUiConfig>, JobspecError> {
    let Some(b) = r.block_once("ui")? else {
        return Ok(None);
    };
    warn_not_acted_on(r, b);
    let mut br = BlockReader::new(src, b, r.path().to_string(), "ui")?;
    let links = src.each(br.blocks("link"), |l| {
        let mut lr = BlockReader::new(src, l, br.path().to_string(), "link")?;
        let link: drover_model::JobUiLink = lr.decode(&[("url", "Url")], Map::new())?;
        warnings.extend(lr.finish());
        Ok(link)
    });
    let ui = br.decode(&[], obj(vec![("Links", to_json(&links))]))?;
    warnings.extend(br.finish());
    Ok(Some(ui))
}

/// The group's `disconnect` block (Nomad 1.8+), with Nomad's default reconcile strategy.
pub fn disconnect(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<DisconnectStrategy>, JobspecError> {
    let Some(b) = r.block_once("disconnect")? else {
        return Ok(None);
    };
    warn_not_acted_on(r, b);
    for old in ["max_client_disconnect", "stop_after_client_disconnect"] {
        if let Some(a) = r.block().body.get_attribute(old) {
            src.report(src.error_span(
                a,
                r.path(),
                &format!("{old:?} and a disconnect block cannot both be given: use the disconnect block only"),
            ));
        }
    }
    let mut br = BlockReader::new(src, b, r.path().to_string(), "disconnect")?;
    let d: DisconnectStrategy =
        br.decode(&[], obj(vec![("Reconcile", Json::from("best_score"))]))?;
    if !RECONCILE.contains(&d.reconcile.as_str()) {
        src.report(br.error_key(
            "reconcile",
            &format!(
                "reconcile {:?} is not one of {}",
                d.reconcile,
                RECONCILE.join(", ")
            ),
        ));
    }
    warnings.extend(br.finish());
    Ok(Some(d))
}

/// A task's `action "NAME" { command, args }` blocks.
pub fn actions(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Vec<Action> {
    let blocks = r.blocks("action");
    let mut names = BTreeSet::new();
    src.each(blocks, |b| {
        warn_not_acted_on(r, b);
        let mut br = BlockReader::new(src, b, r.path().to_string(), "action")?;
        let name = br.label().to_string();
        if !names.insert(name.clone()) {
            return Err(br.error_here(&format!("action {name:?} is defined twice")));
        }
        let a: Action = br.decode(&[], obj(vec![("Name", Json::from(name))]))?;
        if a.command.is_empty() {
            src.report(br.error_here("missing required key \"command\""));
        }
        warnings.extend(br.finish());
        Ok(a)
    })
}

/// A task's vertical scaling blocks: `scaling "cpu"` and `scaling "mem"`, once each.
pub fn task_scaling(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Vec<ScalingPolicy> {
    let blocks = r.blocks("scaling");
    let mut seen = BTreeSet::new();
    src.each(blocks, |b| {
        warn_not_acted_on(r, b);
        let mut br = BlockReader::labelled(src, b, r.path().to_string(), "scaling")?;
        let label = br.label().to_lowercase();
        let Some(policy_type) = validate::task_scaling_type(&label) else {
            return Err(br.error_here(&format!(
                "a task's scaling block is named \"cpu\" or \"mem\", not {label:?}"
            )));
        };
        if !seen.insert(label.clone()) {
            return Err(br.error_here(&format!("scaling {label:?} is defined twice")));
        }
        let s = crate::scaling_policy(&mut br, policy_type)?;
        src.recover(validate::scaling(&br, &s, policy_type));
        warnings.extend(br.finish());
        Ok(s)
    })
}
