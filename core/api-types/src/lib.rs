//! The HTTP API's own shapes: request and response envelopes, list stubs, and the
//! allocation view (an allocation with its node's name and job). Jobs, allocations,
//! evaluations and nodes themselves travel as `drover-model`'s types, whose serde form is
//! Nomad's JSON.

mod diff;

pub use diff::*;

use drover_model as m;
use serde::{Deserialize, Serialize};

pub use drover_model::{Evaluation, Job, Node, PlacementFailure, TaskEvent, TaskState};

/// A submitted job the API could not accept: names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidJob(pub String);

/// Decodes a job from API JSON — `{"Job": {...}}`, or the bare job when `bare` — and
/// canonicalizes it. Type errors name their JSON path (`Job.TaskGroups[0].Count: ...`).
pub fn decode_job(body: &[u8], bare: bool) -> Result<Job, InvalidJob> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let mut job = if bare {
        serde_path_to_error::deserialize::<_, Job>(de)
            .map_err(|e| InvalidJob(format!("Job.{}: {}", e.path(), e.inner())))?
    } else {
        let req: JobRegisterRequest = serde_path_to_error::deserialize(de)
            .map_err(|e| InvalidJob(format!("{}: {}", e.path(), e.inner())))?;
        req.job
            .ok_or_else(|| InvalidJob("request body has no \"Job\" object".into()))?
    };
    job.canonicalize()
        .map_err(|errs| InvalidJob(errs.join("; ")))?;
    Ok(job)
}

/// `PUT /v1/jobs` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterRequest {
    pub job: Option<Job>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub warnings: String,
    pub index: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDeregisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub index: u64,
}

/// `GET /v1/jobs` entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobListStub {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub namespace: String,
    #[serde(rename = "Type")]
    pub job_type: String,
    pub priority: i32,
    pub status: String,
    pub stop: bool,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub version: u64,
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

impl JobListStub {
    pub fn from_model(j: &Job) -> Self {
        JobListStub {
            id: j.id.clone(),
            name: j.name.clone(),
            namespace: j.namespace.clone(),
            job_type: j.job_type.as_str().into(),
            priority: j.priority,
            status: j.status.as_str().into(),
            stop: j.stop,
            datacenters: j.datacenters.clone(),
            node_pool: j.node_pool.clone(),
            version: j.version,
            submit_time: j.submit_time,
            create_index: j.create_index,
            modify_index: j.modify_index,
            job_modify_index: j.job_modify_index,
        }
    }
}

/// An allocation as the API shows it: with its node's name and (on reads of one
/// allocation) the job version it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Allocation {
    #[serde(flatten)]
    pub alloc: m::Allocation,
    #[serde(rename = "NodeName", default)]
    pub node_name: String,
    #[serde(rename = "Job", default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// Nomad's current form of what the allocation was given (computed from the model).
    #[serde(rename = "AllocatedResources", default)]
    pub allocated_resources: AllocatedResources,
}

impl Allocation {
    pub fn from_model(a: &m::Allocation, node_name: &str, job: Option<&Job>) -> Self {
        Allocation {
            alloc: a.clone(),
            node_name: node_name.into(),
            job: job.cloned(),
            allocated_resources: AllocatedResources::of(a, job),
        }
    }
}

/// Nomad's `AllocatedResources`: per task (CPU, memory, networks) and shared (the group's
/// networks with their assigned ports, disk, the port mappings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedResources {
    pub tasks: std::collections::BTreeMap<String, AllocatedTaskResources>,
    pub shared: AllocatedSharedResources,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedTaskResources {
    pub cpu: AllocatedCpuResources,
    pub memory: AllocatedMemoryResources,
    pub networks: Vec<m::NetworkResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedCpuResources {
    pub cpu_shares: u64,
    pub reserved_cores: Vec<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedSharedResources {
    /// The group's networks, their ports carrying the host ports assigned (when the job
    /// version is known).
    pub networks: Vec<m::NetworkResource>,
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
    pub ports: Vec<m::AllocatedPort>,
}

impl AllocatedResources {
    pub fn of(a: &m::Allocation, job: Option<&Job>) -> Self {
        let tasks = a
            .task_resources
            .iter()
            .map(|(name, r)| {
                let t = AllocatedTaskResources {
                    cpu: AllocatedCpuResources {
                        cpu_shares: r.cpu,
                        reserved_cores: r.reserved_cores.clone(),
                    },
                    memory: AllocatedMemoryResources {
                        memory_mb: r.memory_mb,
                        memory_max_mb: r.memory_max_mb,
                    },
                    networks: r.networks.clone(),
                };
                (name.clone(), t)
            })
            .collect();
        let assigned = |p: &m::Port| {
            let mut p = p.clone();
            if let Some(a) = a.shared_resources.ports.iter().find(|x| x.label == p.label) {
                p.value = a.value;
                p.to = a.to;
            }
            p
        };
        let networks = job
            .and_then(|j| j.group(&a.task_group))
            .map(|g| {
                g.networks
                    .iter()
                    .map(|n| m::NetworkResource {
                        reserved_ports: n.reserved_ports.iter().map(assigned).collect(),
                        dynamic_ports: n.dynamic_ports.iter().map(assigned).collect(),
                        ..n.clone()
                    })
                    .collect()
            })
            .unwrap_or_default();
        AllocatedResources {
            tasks,
            shared: AllocatedSharedResources {
                networks,
                disk_mb: a.shared_resources.disk_mb,
                ports: a.shared_resources.ports.clone(),
            },
        }
    }
}

impl std::ops::Deref for Allocation {
    type Target = m::Allocation;
    fn deref(&self) -> &m::Allocation {
        &self.alloc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn job_round_trips_through_api_json() {
        let body = r#"{"Job":{"ID":"web","Type":"batch","TaskGroups":[{"Name":"g","Count":2,
            "Tasks":[{"Name":"t","Driver":"raw_exec","Config":{"command":"/bin/true"},
            "KillTimeout":3000000000,"Resources":{"CPU":50,"MemoryMB":32}}]}]}}"#;
        let job = decode_job(body.as_bytes(), false).unwrap();
        assert_eq!(job.job_type, m::JobType::Batch);
        assert_eq!(job.groups[0].count, 2);
        assert_eq!(job.groups[0].tasks[0].kill_timeout, Duration::from_secs(3));
        assert_eq!(job.groups[0].tasks[0].resources.memory_mb, 32);
        // Defaults a submitter leaves out are filled in.
        assert_eq!(
            job.groups[0].restart,
            Some(m::RestartPolicy::default_for(m::JobType::Batch))
        );
        assert_eq!(job.name, "web");
        let json = serde_json::to_vec(&serde_json::json!({ "Job": job })).unwrap();
        assert_eq!(decode_job(&json, false).unwrap(), job);
    }

    #[test]
    fn closed_set_words_are_refused_naming_the_field() {
        let job = |task: &str| {
            format!(
                r#"{{"Job":{{"ID":"web","TaskGroups":[{{"Name":"g","Tasks":[{{"Name":"t","Driver":"raw_exec",{task}}}]}}]}}}}"#
            )
        };
        let e = decode_job(job(r#""Lifecycle":{"Hook":"later"}"#).as_bytes(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Job.TaskGroups[0].Tasks[0].Lifecycle.Hook")
                && e.contains("`prestart`, `poststart`, `poststop`"),
            "{e}"
        );
        let e = decode_job(
            job(r#""Constraints":[{"LTarget":"a","Operand":"~=","RTarget":"b"}]"#).as_bytes(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("Job.TaskGroups[0].Tasks[0].Constraints[0].Operand") && e.contains("`is`"),
            "{e}"
        );
        // An operand left out reads back left out, and aliases as written.
        let body =
            job(r#""Constraints":[{"LTarget":"a","RTarget":"b"},{"Operand":"==","LTarget":"a"}]"#);
        let j = decode_job(body.as_bytes(), false).unwrap();
        let c = &serde_json::to_value(&j).unwrap()["TaskGroups"][0]["Tasks"][0]["Constraints"];
        assert_eq!(
            (&c[0]["Operand"], &c[1]["Operand"]),
            (&"".into(), &"==".into())
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = decode_job(
            br#"{"ID":"x","TaskGroups":[{"Name":"g","Tasks":[{"Name":"t"}]}]}"#,
            true,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Job.TaskGroups[0].Tasks[0].Driver: missing driver"
        );
        let e = decode_job(
            br#"{"Job":{"ID":"x","TaskGroups":[{"Name":"g","Count":"two"}]}}"#,
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Job.TaskGroups[0].Count: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn allocation_view_flattens() {
        let a = m::Allocation {
            id: "a1".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(Allocation::from_model(&a, "n1", None)).unwrap();
        assert_eq!(v["ID"], "a1");
        assert_eq!(v["NodeName"], "n1");
        let back: Allocation = serde_json::from_value(v).unwrap();
        assert_eq!(back.id, "a1");
    }

    #[test]
    fn allocated_resources_are_nomads_shape_from_the_model() {
        let mut job = m::Job::new("web", m::JobType::Service);
        let mut g = m::TaskGroup::new("g", 1, m::JobType::Service, vec![]);
        g.networks.push(m::NetworkResource {
            mode: "bridge".into(),
            dynamic_ports: vec![m::Port {
                label: "http".into(),
                to: 8080,
                ..Default::default()
            }],
            ..Default::default()
        });
        job.groups.push(g);
        let mut a = m::Allocation {
            id: "a1".into(),
            task_group: "g".into(),
            ..Default::default()
        };
        a.shared_resources.disk_mb = 300;
        a.shared_resources.ports.push(m::AllocatedPort {
            label: "http".into(),
            value: 25123,
            to: 8080,
            host_ip: "192.0.2.2".into(),
        });
        a.task_resources.insert(
            "t".into(),
            m::Resources {
                cpu: 500,
                memory_mb: 256,
                memory_max_mb: 512,
                reserved_cores: vec![1],
                ..m::Resources::ZERO
            },
        );
        let v = serde_json::to_value(Allocation::from_model(&a, "n1", Some(&job))).unwrap();
        let r = &v["AllocatedResources"];
        assert_eq!(r["Tasks"]["t"]["Cpu"]["CpuShares"], 500);
        assert_eq!(r["Tasks"]["t"]["Cpu"]["ReservedCores"][0], 1);
        assert_eq!(r["Tasks"]["t"]["Memory"]["MemoryMB"], 256);
        assert_eq!(r["Tasks"]["t"]["Memory"]["MemoryMaxMB"], 512);
        assert_eq!(r["Shared"]["DiskMB"], 300);
        assert_eq!(
            r["Shared"]["Ports"][0],
            serde_json::json!({"Label": "http", "Value": 25123, "To": 8080, "HostIP": "192.0.2.2"})
        );
        let n = &r["Shared"]["Networks"][0];
        assert_eq!(n["Mode"], "bridge");
        assert_eq!(n["DynamicPorts"][0]["Value"], 25123);
        assert_eq!(n["DynamicPorts"][0]["To"], 8080);
        // Without the job version (list views): no networks, the rest all the same.
        let v = serde_json::to_value(Allocation::from_model(&a, "n1", None)).unwrap();
        assert!(
            v["AllocatedResources"]["Shared"]["Networks"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            v["AllocatedResources"]["Shared"]["Ports"][0]["Value"],
            25123
        );
    }
}
