//! Pure scheduler throughput on synthetic clusters (one core, no I/O).
//!
//! `cargo bench -p drover-scheduler --bench placement`

use std::time::Instant;

use drover_model::{
    Constraint, Evaluation, Job, JobType, NetworkResource, Port, Resources, Spread, Task, TaskGroup,
};
use drover_scheduler::{Options, finished_eval, schedule};
use drover_state::{Command, Entry, PlanResult, StateStore};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cluster(n: usize) -> StateStore {
    let store = StateStore::new();
    for i in 0..n {
        let mut node = drover_fixtures::ready_node(
            format!("{i:08x}-0000-0000-0000-000000000000"),
            8000,
            16384,
        );
        node.name = format!("node-{i}");
        node.datacenter = format!("dc{}", i % 4 + 1);
        node.node_class = if i % 3 == 0 { "large" } else { "small" }.into();
        node.attributes.insert(
            "kernel.name".into(),
            if i % 10 == 9 { "windows" } else { "linux" }.into(),
        );
        node.attributes.insert("cpu.numcores".into(), "8".into());
        node.meta.insert("rack".into(), format!("r{}", i % 40));
        store.apply(
            i as u64 + 1,
            &Entry {
                time: 1,
                command: Command::NodeRegister { node },
            },
        );
    }
    store
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Plain,
    Spread,
    DistinctHosts,
}

fn job(id: &str, count: u32, shape: Shape) -> Job {
    let mut t = Task::new("t", "raw_exec");
    t.resources = Resources {
        cpu: 100,
        memory_mb: 128,
        ..Resources::ZERO
    };
    let mut j = Job::new(id, JobType::Service);
    j.datacenters = vec!["dc1".into(), "dc2".into(), "dc3".into()];
    j.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        operand: drover_model::ConstraintOperand::Equal,
        r_target: "linux".into(),
    });
    let mut g = TaskGroup::new("g", count, JobType::Service, vec![t]);
    g.networks.push(NetworkResource {
        dynamic_ports: vec![Port {
            label: "http".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    match shape {
        Shape::Plain => {}
        Shape::Spread => g.spreads.push(Spread {
            attribute: "${node.datacenter}".into(),
            weight: 50,
            spread_target: vec![],
        }),
        Shape::DistinctHosts => j.constraints.push(Constraint {
            operand: drover_model::ConstraintOperand::DistinctHosts,
            r_target: "true".into(),
            ..Default::default()
        }),
    }
    j.groups.push(g);
    j
}

/// Registers and schedules `jobs`, applying each plan; returns placements per second of
/// scheduler time.
fn run(store: &StateStore, jobs: Vec<Job>) -> (f64, usize) {
    let mut index = store.index();
    let mut spent = 0f64;
    let mut placed = 0;
    for j in jobs {
        index += 1;
        let eval = Evaluation::new(format!("eval-{}", j.id), &j, "job-register");
        store.apply(
            index,
            &Entry {
                time: 1,
                command: Command::JobRegister {
                    job: Box::new(j),
                    eval: Some(eval.clone()),
                },
            },
        );
        let snap = store.snapshot();
        let eval = snap.eval(&eval.id).unwrap().clone();
        let t = Instant::now();
        let plan = schedule(&snap, &eval, &Options::default()).unwrap();
        spent += t.elapsed().as_secs_f64();
        placed += plan.allocs.len();
        index += 1;
        let done = finished_eval(&eval, &plan);
        store.apply(
            index,
            &Entry {
                time: 1,
                command: Command::PlanApply(PlanResult {
                    allocs: plan.allocs,
                    stops: plan.stops,
                    eval: Some(done),
                    new_evals: vec![],
                }),
            },
        );
    }
    (placed as f64 / spent, placed)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Whether the benchmark `name` runs: every one, or those whose name contains an argument
/// (`cargo bench -p drover-scheduler --bench placement -- spread`).
fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn main() {
    // Memory first, in a fresh process: 10,000 allocations in the state store.
    if wanted("state_memory_per_10k_allocs") {
        memory();
    }
    for n in [1000, 5000, 10_000] {
        if wanted(&format!("sched_pure_placements_{n}nodes_count10000")) {
            let store = cluster(n);
            let (rate, placed) = run(&store, vec![job("big", 10_000, Shape::Plain)]);
            println!("BENCH sched_pure_placements_{n}nodes_count10000 {rate:.0} placements/s");
            assert_eq!(
                placed, 10_000,
                "the count=10000 job did not fit on {n} nodes"
            );
        }
        for (name, prefix, jobs, shape) in [
            ("1000jobs", "j", 1000, Shape::Plain),
            ("spread", "s", 200, Shape::Spread),
            ("distinct_hosts", "d", 200, Shape::DistinctHosts),
        ] {
            let bench = format!("sched_pure_placements_{n}nodes_{name}");
            if !wanted(&bench) {
                continue;
            }
            let store = cluster(n);
            let (rate, _) = run(
                &store,
                (0..jobs)
                    .map(|i| job(&format!("{prefix}{i}"), 10, shape))
                    .collect(),
            );
            println!("BENCH {bench} {rate:.0} placements/s");
        }
    }
}

fn memory() {
    let store = cluster(5000);
    let before = rss_kb();
    let (_, placed) = run(
        &store,
        (0..1000)
            .map(|i| job(&format!("m{i}"), 10, Shape::Plain))
            .collect(),
    );
    let after = rss_kb();
    println!(
        "BENCH state_memory_per_10k_allocs {:.1} MB",
        (after.saturating_sub(before)) as f64 / 1024.0 * 10_000.0 / placed as f64
    );
}
