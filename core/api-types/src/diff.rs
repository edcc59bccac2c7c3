//! Job diffs for `job plan`: every field that differs between two versions of a job, by
//! path (`TaskGroups[web].Tasks[server].Resources.CPU`), as Added, Deleted or Edited.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Job;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldDiff {
    /// "Added", "Deleted" or "Edited".
    #[serde(rename = "Type")]
    pub kind: String,
    pub name: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobDiff {
    /// "Added" (new job), "Edited", "Deleted" (stop) or "None".
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub fields: Vec<FieldDiff>,
}

/// Fields that are bookkeeping, not specification.
const SKIP: &[&str] = &[
    "Status",
    "Version",
    "SubmitTime",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
];

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if prefix.is_empty() && SKIP.contains(&k.as_str()) {
                    continue;
                }
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                // Named things (groups, tasks, services) are matched by name, not position.
                let key = x
                    .get("Name")
                    .or_else(|| x.get("Label"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string());
                flatten(&format!("{prefix}[{key}]"), x, out);
            }
            if items.is_empty() {
                out.insert(prefix.to_string(), "[]".into());
            }
        }
        Value::Null => {}
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The diff from `old` (None for a new job) to `new`.
pub fn job_diff(old: Option<&Job>, new: &Job) -> JobDiff {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    if let Some(o) = old {
        flatten(
            "",
            &serde_json::to_value(o).expect("job serializes"),
            &mut a,
        );
    }
    flatten(
        "",
        &serde_json::to_value(new).expect("job serializes"),
        &mut b,
    );
    let mut fields = Vec::new();
    for (k, nv) in &b {
        match a.get(k) {
            None => fields.push(FieldDiff {
                kind: "Added".into(),
                name: k.clone(),
                old: String::new(),
                new: nv.clone(),
            }),
            Some(ov) if ov != nv => fields.push(FieldDiff {
                kind: "Edited".into(),
                name: k.clone(),
                old: ov.clone(),
                new: nv.clone(),
            }),
            _ => {}
        }
    }
    for (k, ov) in &a {
        if !b.contains_key(k) {
            fields.push(FieldDiff {
                kind: "Deleted".into(),
                name: k.clone(),
                old: ov.clone(),
                new: String::new(),
            });
        }
    }
    fields.sort_by(|x, y| x.name.cmp(&y.name));
    let kind = match (old, fields.is_empty()) {
        (None, _) => "Added",
        (Some(_), true) => "None",
        (Some(_), false) => "Edited",
    };
    JobDiff {
        kind: kind.into(),
        id: new.id.clone(),
        fields,
    }
}

/// Per task group, what a plan would do (Nomad's DesiredTGUpdates).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredUpdates {
    pub place: u64,
    pub stop: u64,
    pub in_place_update: u64,
    pub destructive_update: u64,
    pub ignore: u64,
}

/// `PUT /v1/job/:id/plan` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobPlanResponse {
    pub job_modify_index: u64,
    pub diff: Option<JobDiff>,
    pub annotations: PlanAnnotations,
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, crate::PlacementFailure>,
    pub warnings: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanAnnotations {
    #[serde(rename = "DesiredTGUpdates")]
    pub desired_tg_updates: BTreeMap<String, DesiredUpdates>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{JobType, Task, TaskGroup};

    #[test]
    fn diff_names_paths() {
        let mut a = Job::new("web", JobType::Service);
        a.groups.push(TaskGroup::new(
            "g",
            1,
            JobType::Service,
            vec![Task::new("t", "raw_exec")],
        ));
        let mut b = a.clone();
        b.groups[0].count = 3;
        b.groups[0].tasks[0].env.insert("A".into(), "1".into());
        b.version = 7;
        let d = job_diff(Some(&a), &b);
        assert_eq!(d.kind, "Edited");
        let names: Vec<(&str, &str)> = d
            .fields
            .iter()
            .map(|f| (f.kind.as_str(), f.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("Edited", "TaskGroups[g].Count"),
                ("Added", "TaskGroups[g].Tasks[t].Env.A")
            ]
        );
        assert_eq!(job_diff(Some(&a), &a).kind, "None");
        assert_eq!(job_diff(None, &a).kind, "Added");
    }
}
