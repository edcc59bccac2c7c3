//! Golden fixtures written by the code of commit 580767e (the last schema before versioned
//! encoding; see `testdata/580767e/README.md`): every command and every state table must
//! still decode with today's code, to the same values, and encode again without losing a
//! field.

use std::path::{Path, PathBuf};

use drover_model::{Allocation, ClientStatus, Evaluation, Job, Node, NodeStatus, Variable};
use drover_state::{Command, ENCODING_VERSION, Entry, StateSnapshot};
use serde_json::Value;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/580767e")
        .join(sub)
}

fn read(sub: &str, name: &str) -> Value {
    let bytes = std::fs::read(dir(sub).join(name)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every field of `old` is in `new` with the same value (new fields may be added).
fn assert_kept(old: &Value, new: &Value, path: &str) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                let Some(nv) = n.get(k) else {
                    panic!("{path}.{k} was dropped");
                };
                assert_kept(v, nv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            assert_eq!(o.len(), n.len(), "{path}: length changed");
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                assert_kept(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(old, new, "{path} changed"),
    }
}

/// Decodes a fixture with today's code and checks it encodes again to a superset.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(sub: &str, name: &str) -> T {
    let old = read(sub, name);
    let v: T = serde_json::from_value(old.clone())
        .unwrap_or_else(|e| panic!("{sub}/{name} does not decode: {e}"));
    assert_kept(&old, &serde_json::to_value(&v).unwrap(), name);
    v
}

fn command(name: &str) -> Command {
    let e: Entry = roundtrip("commands", &format!("{name}.json"));
    assert_eq!(e.time, 1_700_000_000_000_000_000);
    assert_eq!(
        e.command.name(),
        name,
        "{name}.json decoded as another command"
    );
    e.command
}

#[test]
fn every_command_of_580767e_has_a_fixture() {
    let mut names: Vec<String> = std::fs::read_dir(dir("commands"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .replace(".json", "")
        })
        .collect();
    names.sort();
    // The commands of 580767e (RestoreChunk/Swap/Abort came later).
    let want = [
        "AllocClientUpdate",
        "Batch",
        "Collect",
        "EvalUpsert",
        "JobDeregister",
        "JobRegister",
        "NodeRegister",
        "NodeStatus",
        "PlanApply",
        "Restore",
        "VarDelete",
        "VarUpsert",
    ];
    assert_eq!(names, want);
    for n in want {
        let c = command(n);
        assert_eq!(c.min_version(), 1, "{n} existed before versions");
    }
}

#[test]
fn commands_decode_to_the_values_written() {
    let Command::JobRegister { job, eval } = command("JobRegister") else {
        unreachable!()
    };
    assert_fixture_job(&job);
    assert_eq!(eval.unwrap().id, "eval-1");
    let Command::JobDeregister {
        job_id,
        purge,
        eval,
        ..
    } = command("JobDeregister")
    else {
        unreachable!()
    };
    assert_eq!((job_id.as_str(), purge), ("fixture-job", true));
    assert_eq!(eval.unwrap().id, "eval-3");
    let Command::NodeRegister { node } = command("NodeRegister") else {
        unreachable!()
    };
    assert_fixture_node(&node);
    let Command::NodeStatus { status, evals, .. } = command("NodeStatus") else {
        unreachable!()
    };
    assert_eq!((status, evals[0].id.as_str()), (NodeStatus::Down, "eval-4"));
    let Command::AllocClientUpdate { updates, .. } = command("AllocClientUpdate") else {
        unreachable!()
    };
    assert_eq!(updates[0].alloc_id, "alloc-1");
    assert_eq!(
        (updates[0].client_status, updates[0].seq),
        (ClientStatus::Failed, 5)
    );
    assert!(updates[0].task_states["server"].failed);
    let Command::PlanApply(plan) = command("PlanApply") else {
        unreachable!()
    };
    assert_fixture_alloc(&plan.allocs[0]);
    assert_eq!(plan.stops[0].client_status, Some(ClientStatus::Lost));
    assert_eq!(plan.new_evals[0].id, "eval-2");
    let Command::EvalUpsert { evals } = command("EvalUpsert") else {
        unreachable!()
    };
    assert_eq!(evals[0].id, "eval-6");
    let Command::Collect {
        evals,
        allocs,
        jobs,
        nodes,
    } = command("Collect")
    else {
        unreachable!()
    };
    assert_eq!((evals.len(), allocs.len()), (1, 1));
    assert_eq!((jobs[0].modify_index, nodes[0].modify_index), (7, 2));
    let Command::VarUpsert { var, cas } = command("VarUpsert") else {
        unreachable!()
    };
    assert_fixture_var(&var);
    assert_eq!(cas, Some(0));
    let Command::VarDelete { cas, .. } = command("VarDelete") else {
        unreachable!()
    };
    assert_eq!(cas, Some(13));
    let Command::Batch(inner) = command("Batch") else {
        unreachable!()
    };
    assert_eq!(inner.len(), 2);
    let Command::Restore { state } = command("Restore") else {
        unreachable!()
    };
    assert_fixture_state(&StateSnapshot::from_value(state).unwrap());
}

#[test]
fn commands_are_written_with_the_encoding_version() {
    let e: Entry = serde_json::from_value(read("commands", "EvalUpsert.json")).unwrap();
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["v"], ENCODING_VERSION);
}

fn assert_fixture_job(j: &Job) {
    assert_eq!((j.id.as_str(), j.priority), ("fixture-job", 60));
    let v = serde_json::to_value(j).unwrap();
    let ops: Vec<&str> = v["Constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Operand"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "=",
            "set_contains_any",
            "distinct_hosts",
            "version",
            "regexp",
            "is_set"
        ]
    );
    let g = &v["TaskGroups"][0];
    assert_eq!(g["Volumes"]["data"]["Type"], "host");
    assert_eq!(g["Volumes"]["vol"]["Type"], "csi");
    let hooks: Vec<Option<&str>> = g["Tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Lifecycle"]["Hook"].as_str())
        .collect();
    assert_eq!(
        hooks,
        [Some("prestart"), Some("poststart"), None, Some("poststop")]
    );
    assert_eq!(j.groups[0].tasks[2].driver, "docker");
}

fn assert_fixture_node(n: &Node) {
    assert_eq!((n.id.as_str(), n.status), ("node-1", NodeStatus::Ready));
    assert_eq!(
        serde_json::to_value(n).unwrap()["SchedulingEligibility"],
        "eligible"
    );
    assert_eq!(n.attributes["kernel.name"], "linux");
    assert_eq!(n.host_volumes["data"].path, "/srv/data");
}

fn assert_fixture_alloc(a: &Allocation) {
    assert_eq!((a.id.as_str(), a.node_id.as_str()), ("alloc-1", "node-1"));
    assert_eq!(a.client_status, ClientStatus::Running);
    assert_eq!(a.task_states["server"].restarts, 1);
}

fn assert_fixture_eval(e: &Evaluation) {
    assert_eq!(
        (e.id.as_str(), e.job_id.as_str()),
        ("eval-1", "fixture-job")
    );
}

fn assert_fixture_var(v: &Variable) {
    assert_eq!(v.path, "nomad/jobs/fixture-job");
    assert_eq!(v.items["user"], "u");
}

fn assert_fixture_state(s: &StateSnapshot) {
    assert_eq!(s.index(), 13);
    assert_fixture_job(s.job("default", "fixture-job").unwrap());
    assert_eq!(s.job_versions("default", "fixture-job").len(), 1);
    assert_fixture_alloc(s.alloc("alloc-1").unwrap());
    assert_eq!(s.allocs_by_node("node-1").count(), 1);
    assert_fixture_eval(s.eval("eval-1").unwrap());
    assert_fixture_node(s.node("node-1").unwrap());
    assert_fixture_var(s.variable("default", "nomad/jobs/fixture-job").unwrap());
}

#[test]
fn every_table_row_decodes_to_the_values_written() {
    assert_fixture_job(&roundtrip::<Job>("tables", "job.json"));
    assert_fixture_job(&roundtrip::<Job>("tables", "job_version.json"));
    assert_fixture_alloc(&roundtrip::<Allocation>("tables", "allocation.json"));
    assert_fixture_eval(&roundtrip::<Evaluation>("tables", "evaluation.json"));
    assert_fixture_node(&roundtrip::<Node>("tables", "node.json"));
    assert_fixture_var(&roundtrip::<Variable>("tables", "variable.json"));
    let s: StateSnapshot = roundtrip("tables", "state.json");
    assert_fixture_state(&s);
}

/// Sizes and times of the JSON encoding (the numbers in docs/ARCHITECTURE.md):
/// `cargo test -p drover-state --release --test fixtures_580767e -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_the_json_encoding() {
    let e: Entry = serde_json::from_value(read("commands", "JobRegister.json")).unwrap();
    let s: StateSnapshot = serde_json::from_value(read("tables", "state.json")).unwrap();
    let time = |what: &str, n: u32, f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        println!("{what}: {:?} each", t.elapsed() / n);
    };
    let eb = serde_json::to_vec(&e).unwrap();
    let sb = serde_json::to_vec(&s).unwrap();
    println!(
        "JobRegister entry: {} bytes; state: {} bytes",
        eb.len(),
        sb.len()
    );
    time("encode entry", 2000, &mut || {
        drop(serde_json::to_vec(&e).unwrap())
    });
    time("decode entry", 2000, &mut || {
        drop(serde_json::from_slice::<Entry>(&eb).unwrap())
    });
    let cb = serde_json::to_vec(&e.command).unwrap();
    time(
        "decode command alone (no version envelope)",
        2000,
        &mut || drop(serde_json::from_slice::<Command>(&cb).unwrap()),
    );
    time("encode state", 500, &mut || {
        drop(serde_json::to_vec(&s).unwrap())
    });
    time("decode state", 500, &mut || {
        drop(serde_json::from_slice::<StateSnapshot>(&sb).unwrap())
    });
}
