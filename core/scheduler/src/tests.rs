use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use drover_model::{
    Allocation, ClientStatus, Constraint, Job, JobType, NetworkResource, Node, NodeStatus, Port,
    Resources, Task, TaskGroup, TaskState,
};
use drover_state::{Command, Entry, PlanResult, StateStore};

fn node(id: &str, cpu: u64, mem: u64) -> Node {
    drover_fixtures::ready_node(id, cpu, mem)
}

fn job_of(id: &str, t: JobType, count: u32, cpu: u64, mem: u64) -> Job {
    let mut task = Task::new("t", "raw_exec");
    task.resources = Resources {
        cpu,
        memory_mb: mem,
        ..Resources::ZERO
    };
    let mut j = Job::new(id, t);
    j.groups.push(TaskGroup::new("g", count, t, vec![task]));
    j
}

fn job(count: u32, cpu: u64, mem: u64) -> Job {
    job_of("web", JobType::Service, count, cpu, mem)
}

struct World {
    store: StateStore,
    index: u64,
    now: i64,
}

impl World {
    fn new(nodes: &[Node]) -> Self {
        let mut w = World {
            store: StateStore::new(),
            index: 0,
            now: 1_000_000_000_000,
        };
        for n in nodes {
            w.apply(Command::NodeRegister { node: n.clone() });
        }
        w
    }
    fn apply(&mut self, c: Command) {
        self.index += 1;
        let r = self.store.apply(
            self.index,
            &Entry {
                time: self.now,
                command: c,
            },
        );
        assert!(r.error.is_none(), "{r:?}");
    }
    fn opts(&self) -> Options {
        Options {
            now: self.now,
            ..Default::default()
        }
    }
    fn eval(&mut self, j: &Job, trigger: &str) -> Plan {
        let snap = self.store.snapshot();
        let j = snap
            .job(&j.namespace, &j.id)
            .cloned()
            .unwrap_or_else(|| j.clone());
        let eval = Evaluation::new(format!("eval-{}", self.index), &j, trigger);
        self.apply(Command::EvalUpsert {
            evals: vec![eval.clone()],
        });
        let snap = self.store.snapshot();
        let eval = snap.eval(&eval.id).unwrap().clone();
        let plan = schedule(&snap, &eval, &self.opts()).unwrap();
        self.apply(Command::PlanApply(PlanResult {
            allocs: plan.allocs.clone(),
            stops: plan.stops.clone(),
            eval: Some(finished_eval(&eval, &plan)),
            new_evals: plan.new_evals.clone(),
        }));
        plan
    }
    fn register(&mut self, j: Job) -> Plan {
        let eval = Evaluation::new(format!("eval-{}", self.index), &j, "job-register");
        self.apply(Command::JobRegister {
            job: Box::new(j.clone()),
            eval: Some(eval.clone()),
        });
        let snap = self.store.snapshot();
        let eval = snap.eval(&eval.id).unwrap().clone();
        let plan = schedule(&snap, &eval, &self.opts()).unwrap();
        self.apply(Command::PlanApply(PlanResult {
            allocs: plan.allocs.clone(),
            stops: plan.stops.clone(),
            eval: Some(finished_eval(&eval, &plan)),
            new_evals: plan.new_evals.clone(),
        }));
        plan
    }
    fn active(&self) -> Vec<Allocation> {
        self.store
            .snapshot()
            .allocs()
            .filter(|a| a.is_active())
            .cloned()
            .collect()
    }
    fn report(&mut self, alloc_id: &str, status: ClientStatus) {
        let a = self.store.snapshot().alloc(alloc_id).unwrap().clone();
        let ts = TaskState {
            finished_at: self.now,
            ..Default::default()
        };
        self.apply(Command::AllocClientUpdate {
            updates: vec![drover_model::AllocClientUpdate {
                alloc_id: a.id.clone(),
                seq: a.client_seq + 1,
                client_status: status,
                client_description: String::new(),
                task_states: [("t".to_string(), ts)].into(),
                network_status: None,
            }],
            evals: vec![],
        });
    }
    fn assert_fits(&self) {
        let snap = self.store.snapshot();
        for n in snap.nodes() {
            fit(n, snap.allocs_by_node(&n.id))
                .unwrap_or_else(|m| panic!("node {} over-committed: {m}", n.id));
        }
    }
}

#[test]
fn places_count_and_binpacks() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000)]);
    let plan = w.register(job(3, 300, 300));
    assert_eq!(plan.allocs.len(), 3);
    assert!(plan.failed.is_empty());
    let nodes: BTreeSet<_> = plan.allocs.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(nodes.len(), 1, "bin-packing fills one node first");
    let names: Vec<_> = plan.allocs.iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, vec!["web.g[0]", "web.g[1]", "web.g[2]"]);
}

#[test]
fn spread_algorithm_prefers_empty_nodes() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000)]);
    let snap0 = w.store.snapshot();
    let j = job(2, 100, 100);
    let eval = Evaluation::new("e".into(), &j, "job-register");
    w.apply(Command::JobRegister {
        job: Box::new(j),
        eval: Some(eval.clone()),
    });
    let snap = w.store.snapshot();
    let e = snap.eval("e").unwrap();
    let plan = schedule(
        &snap,
        e,
        &Options {
            algorithm: Algorithm::Spread,
            ..Default::default()
        },
    )
    .unwrap();
    let nodes: BTreeSet<_> = plan.allocs.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(nodes.len(), 2);
    drop(snap0);
}

#[test]
fn a_node_pools_algorithm_overrides_the_clusters() {
    let in_pool = |id: &str| {
        let mut n = node(id, 1000, 1000);
        n.node_pool = "spready".into();
        n
    };
    let mut w = World::new(&[in_pool("a"), in_pool("b")]);
    // The pool exists (the nodes created it) with no configuration: the cluster's binpack.
    let mut j = job(2, 100, 100);
    j.node_pool = "spready".into();
    let plan = w.register(j.clone());
    let nodes: BTreeSet<_> = plan.allocs.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(nodes.len(), 1, "binpack without a pool configuration");

    let pool = drover_model::NodePool {
        name: "spready".into(),
        scheduler_configuration: Some(drover_model::NodePoolSchedulerConfiguration {
            scheduler_algorithm: Some(Algorithm::Spread),
            memory_oversubscription_enabled: None,
        }),
        ..Default::default()
    };
    let mut w = World::new(&[in_pool("a"), in_pool("b")]);
    w.apply(Command::NodePoolUpsert { pools: vec![pool] });
    let plan = w.register(j);
    let nodes: BTreeSet<_> = plan.allocs.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(nodes.len(), 2, "the pool's spread places on both nodes");
}

#[test]
fn never_overcommits_and_explains_failure() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 500)]);
    let plan = w.register(job(5, 400, 400));
    assert_eq!(plan.allocs.len(), 3);
    let f = &plan.failed["g"];
    assert_eq!(f.coalesced_failures, 1);
    assert!(
        f.dimension_exhausted.contains_key("memory") || f.dimension_exhausted.contains_key("cpu")
    );
    assert!(f.nearest_miss.contains("lacks"), "{}", f.nearest_miss);
    w.assert_fits();
    // What could not be placed waits in a blocked evaluation.
    let blocked: Vec<_> = plan
        .new_evals
        .iter()
        .filter(|e| e.status == EvalStatus::Blocked)
        .collect();
    assert_eq!(blocked.len(), 1);
    let blocked_id = blocked[0].id.clone();
    // Capacity arrives: an evaluation places the rest.
    w.apply(Command::NodeRegister {
        node: node("c", 2000, 2000),
    });
    let j = w.store.snapshot().job("default", "web").unwrap().clone();
    let plan = w.eval(&j, "queued-allocs");
    assert_eq!(plan.allocs.len(), 2);
    assert!(plan.failed.is_empty());
    assert_eq!(w.active().len(), 5);
    // Nothing is left to place, so the blocked evaluation ends: left blocked, it would keep
    // the job pending and out of the garbage collector's reach forever.
    let snap = w.store.snapshot();
    let b = snap.eval(&blocked_id).unwrap();
    assert_eq!(b.status, EvalStatus::Canceled);
    assert!(
        b.status_description.contains("nothing left to place"),
        "{}",
        b.status_description
    );
}

#[test]
fn stopping_a_job_ends_its_blocked_evaluation() {
    let mut w = World::new(&[node("a", 1000, 1000)]);
    let plan = w.register(job(3, 400, 400));
    let blocked = plan
        .new_evals
        .iter()
        .find(|e| e.status == EvalStatus::Blocked)
        .expect("a blocked evaluation")
        .id
        .clone();
    w.apply(Command::JobDeregister {
        namespace: "default".into(),
        job_id: "web".into(),
        purge: false,
        eval: None,
    });
    let j = w.store.snapshot().job("default", "web").unwrap().clone();
    let plan = w.eval(&j, "job-deregister");
    assert_eq!(plan.stops.len(), 2);
    let snap = w.store.snapshot();
    assert_eq!(snap.eval(&blocked).unwrap().status, EvalStatus::Canceled);
    assert_eq!(
        snap.job("default", "web").unwrap().status,
        drover_model::JobStatus::Dead
    );
}

#[test]
fn constraints_filter_with_names() {
    let mut win = node("w", 1000, 1000);
    win.attributes
        .insert("kernel.name".into(), "windows".into());
    let mut w = World::new(&[node("a", 1000, 1000), win]);
    let mut j = job(2, 100, 100);
    j.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        operand: drover_model::ConstraintOperand::Equal,
        r_target: "linux".into(),
    });
    let plan = w.register(j);
    assert!(plan.allocs.iter().all(|a| a.node_id == "a"));
    let mut j = job(1, 100, 100);
    j.id = "win".into();
    j.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        operand: drover_model::ConstraintOperand::Equal,
        r_target: "plan9".into(),
    });
    let plan = w.register(j);
    let f = &plan.failed["g"];
    assert_eq!(
        f.constraint_filtered["constraint ${attr.kernel.name} = plan9"],
        2
    );
}

#[test]
fn missing_driver_is_named() {
    let mut n = node("a", 1000, 1000);
    n.drivers.clear();
    let mut w = World::new(&[n]);
    let plan = w.register(job(1, 100, 100));
    assert_eq!(
        plan.failed["g"].constraint_filtered["missing driver raw_exec"],
        1
    );
}

#[test]
fn distinct_hosts_and_distinct_property_hold() {
    let mut nodes = Vec::new();
    for i in 0..6 {
        let mut n = node(&format!("n{i}"), 4000, 4000);
        n.meta.insert("rack".into(), format!("r{}", i % 3));
        nodes.push(n);
    }
    let mut w = World::new(&nodes);
    let mut j = job(4, 100, 100);
    j.constraints.push(Constraint {
        operand: drover_model::ConstraintOperand::DistinctHosts,
        r_target: "true".into(),
        ..Default::default()
    });
    let plan = w.register(j);
    let hosts: BTreeSet<_> = plan.allocs.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(hosts.len(), 4);
    let mut j = job_of("racks", JobType::Service, 5, 100, 100);
    j.groups[0].constraints.push(Constraint {
        operand: drover_model::ConstraintOperand::DistinctProperty,
        l_target: "${meta.rack}".into(),
        r_target: "1".into(),
    });
    let plan = w.register(j);
    assert_eq!(plan.allocs.len(), 3, "three racks, one allocation each");
    assert!(
        plan.failed["g"]
            .constraint_filtered
            .keys()
            .any(|k| k.starts_with("distinct_property"))
    );
}

#[test]
fn ports_static_and_dynamic_never_collide() {
    let mut w = World::new(&[node("a", 10_000, 10_000), node("b", 10_000, 10_000)]);
    let mut j = job(3, 10, 10);
    j.groups[0].networks.push(NetworkResource {
        reserved_ports: vec![Port {
            label: "admin".into(),
            value: 9090,
            ..Default::default()
        }],
        dynamic_ports: vec![Port {
            label: "http".into(),
            to: 8080,
            ..Default::default()
        }],
        ..Default::default()
    });
    let plan = w.register(j);
    assert_eq!(plan.allocs.len(), 2, "a static port fits once per node");
    assert_eq!(plan.failed["g"].coalesced_failures, 0);
    for a in &plan.allocs {
        let ports = &a.shared_resources.ports;
        assert_eq!(ports[0].value, 9090);
        assert!(placement_range().contains(&ports[1].value));
        assert_eq!(ports[1].to, 8080);
    }
    w.assert_fits();
}

fn placement_range() -> std::ops::RangeInclusive<u16> {
    20000..=32000
}

#[test]
fn dynamic_ports_come_from_the_nodes_range() {
    let mut n = node("a", 10_000, 10_000);
    n.min_dynamic_port = 40000;
    n.max_dynamic_port = 40001;
    let mut w = World::new(&[n]);
    let mut j = job(3, 10, 10);
    j.groups[0].networks.push(NetworkResource {
        dynamic_ports: vec![Port {
            label: "http".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let plan = w.register(j);
    assert_eq!(
        plan.allocs.len(),
        2,
        "two ports in the range, two allocations"
    );
    let mut ports: Vec<u16> = plan
        .allocs
        .iter()
        .map(|a| a.shared_resources.ports[0].value)
        .collect();
    ports.sort();
    assert_eq!(ports, vec![40000, 40001]);
    assert!(
        plan.failed["g"]
            .nearest_miss
            .contains("no free dynamic port"),
        "{:?}",
        plan.failed
    );
}

#[test]
fn same_seed_same_plan() {
    let mut w = World::new(&[
        node("a", 1000, 1000),
        node("b", 1000, 1000),
        node("c", 1000, 1000),
    ]);
    let j = job(4, 100, 100);
    let eval = Evaluation::new("e1".into(), &j, "job-register");
    w.apply(Command::JobRegister {
        job: Box::new(j),
        eval: Some(eval),
    });
    let snap = w.store.snapshot();
    let e = snap.eval("e1").unwrap();
    assert_eq!(
        schedule(&snap, e, &w.opts()).unwrap(),
        schedule(&snap, e, &w.opts()).unwrap()
    );
}

#[test]
fn count_down_stop_and_update() {
    let mut w = World::new(&[node("a", 4000, 4000)]);
    w.register(job(3, 100, 100));
    assert_eq!(w.active().len(), 3);
    let plan = w.register(job(1, 100, 100));
    assert_eq!(plan.stops.len(), 2);
    assert_eq!(w.active().len(), 1);
    // a changed task is a destructive update
    let plan = w.register(job(1, 200, 100));
    assert_eq!(plan.stops.len(), 1);
    assert_eq!(plan.allocs.len(), 1);
    assert_eq!(plan.allocs[0].previous_allocation, plan.stops[0].alloc_id);
    // a changed meta on the job only is an in-place update
    let mut j = job(1, 200, 100);
    j.meta.insert("x".into(), "y".into());
    let before = w.active()[0].id.clone();
    let plan = w.register(j);
    assert!(plan.stops.is_empty());
    assert_eq!(plan.allocs[0].id, before);
    // stopping the job stops everything
    let mut j = job(1, 200, 100);
    j.stop = true;
    w.register(j);
    assert!(w.active().is_empty());
}

#[test]
fn lost_node_allocs_are_replaced() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000)]);
    let plan = w.register(job(1, 100, 100));
    let on = plan.allocs[0].node_id.clone();
    w.apply(Command::NodeStatus {
        node_id: on.clone(),
        status: NodeStatus::Down,
        description: "missed heartbeats".into(),
        evals: vec![],
    });
    let j = w.store.snapshot().job("default", "web").unwrap().clone();
    let plan = w.eval(&j, "node-update");
    assert_eq!(plan.stops[0].client_status, Some(ClientStatus::Lost));
    assert_eq!(plan.allocs.len(), 1);
    assert_ne!(plan.allocs[0].node_id, on);
    assert_eq!(
        plan.allocs[0].previous_allocation, plan.stops[0].alloc_id,
        "the replacement follows the lost allocation"
    );
}

#[test]
fn failed_allocations_reschedule_after_their_delay() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000)]);
    let mut j = job(1, 100, 100);
    j.groups[0].reschedule = Some(drover_model::ReschedulePolicy {
        attempts: 2,
        interval: Duration::from_secs(3600),
        delay: Duration::from_secs(10),
        delay_function: "exponential".into(),
        max_delay: Duration::from_secs(15),
        unlimited: false,
    });
    let first = w.register(j.clone()).allocs[0].id.clone();
    w.report(&first, ClientStatus::Failed);
    // Too early: a delayed evaluation is created for when the delay has passed.
    let plan = w.eval(&j, "alloc-failure");
    assert!(plan.allocs.is_empty());
    let delayed = &plan.new_evals[0];
    assert_eq!(delayed.wait_until, w.now + 10_000_000_000);
    // After the delay: replaced, with the chain recorded.
    w.now += 11_000_000_000;
    let plan = w.eval(&j, "alloc-failure");
    assert_eq!(plan.allocs.len(), 1);
    let second = plan.allocs[0].clone();
    assert_eq!(second.previous_allocation, first);
    assert_eq!(second.reschedule_tracker.len(), 1);
    assert_eq!(
        w.store.snapshot().alloc(&first).unwrap().next_allocation,
        second.id
    );
    // Second failure: exponential delay 20 s, capped at 15 s.
    w.report(&second.id, ClientStatus::Failed);
    let plan = w.eval(&j, "alloc-failure");
    assert_eq!(plan.new_evals[0].wait_until, w.now + 15_000_000_000);
    w.now += 16_000_000_000;
    let third = w.eval(&j, "alloc-failure").allocs[0].clone();
    assert_eq!(third.reschedule_tracker.len(), 2);
    // Attempts exhausted: the third failure stays failed.
    w.report(&third.id, ClientStatus::Failed);
    w.now += 100_000_000_000;
    let plan = w.eval(&j, "alloc-failure");
    assert!(plan.allocs.is_empty() && plan.new_evals.iter().all(|e| e.wait_until == 0));
}

#[test]
fn delay_functions() {
    let p = |f: &str| drover_model::ReschedulePolicy {
        delay: Duration::from_secs(5),
        delay_function: f.into(),
        max_delay: Duration::from_secs(100),
        ..Default::default()
    };
    let secs = |f: &str| {
        (1..=6)
            .map(|n| p(f).delay_for(n).as_secs())
            .collect::<Vec<_>>()
    };
    assert_eq!(secs("constant"), vec![5, 5, 5, 5, 5, 5]);
    assert_eq!(secs("exponential"), vec![5, 10, 20, 40, 80, 100]);
    assert_eq!(secs("fibonacci"), vec![5, 5, 10, 15, 25, 40]);
}

#[test]
fn system_jobs_run_on_every_eligible_node() {
    let mut win = node("w", 1000, 1000);
    win.attributes
        .insert("kernel.name".into(), "windows".into());
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000), win]);
    let mut j = job_of("agent", JobType::System, 1, 50, 50);
    j.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        operand: drover_model::ConstraintOperand::Equal,
        r_target: "linux".into(),
    });
    let plan = w.register(j.clone());
    let nodes: BTreeSet<_> = plan.allocs.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(nodes, ["a", "b"].iter().map(|s| s.to_string()).collect());
    // A node joins: the system job follows it.
    w.apply(Command::NodeRegister {
        node: node("c", 1000, 1000),
    });
    let plan = w.eval(&j, "node-update");
    assert_eq!(plan.allocs.len(), 1);
    assert_eq!(plan.allocs[0].node_id, "c");
    // A node leaves: its allocation is lost and not placed elsewhere.
    w.apply(Command::NodeStatus {
        node_id: "a".into(),
        status: NodeStatus::Down,
        description: String::new(),
        evals: vec![],
    });
    let plan = w.eval(&j, "node-update");
    assert!(plan.allocs.is_empty());
    assert_eq!(plan.stops.len(), 1);
}

#[test]
fn sysbatch_runs_once_per_node() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000)]);
    let j = job_of("once", JobType::Sysbatch, 1, 50, 50);
    let plan = w.register(j.clone());
    assert_eq!(plan.allocs.len(), 2);
    for a in plan.allocs {
        w.report(&a.id, ClientStatus::Complete);
    }
    let plan = w.eval(&j, "job-register");
    assert!(
        plan.allocs.is_empty(),
        "completed sysbatch allocations are not run again"
    );
}

/// Random clusters and jobs: no node over-committed, distinct_hosts holds, plans repeat.
#[test]
fn property_random_clusters() {
    use rand::{Rng, SeedableRng};
    for seed in 0..30u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let nodes: Vec<Node> = (0..rng.random_range(1..12))
            .map(|i| {
                node(
                    &format!("n{i}"),
                    rng.random_range(500..4000),
                    rng.random_range(500..4000),
                )
            })
            .collect();
        let mut w = World::new(&nodes);
        for k in 0..rng.random_range(1..6) {
            let mut j = job_of(
                &format!("j{k}"),
                JobType::Service,
                rng.random_range(1..15),
                rng.random_range(50..900),
                rng.random_range(50..900),
            );
            if rng.random_bool(0.3) {
                j.constraints.push(Constraint {
                    operand: drover_model::ConstraintOperand::DistinctHosts,
                    r_target: "true".into(),
                    ..Default::default()
                });
            }
            if rng.random_bool(0.3) {
                j.groups[0].networks.push(NetworkResource {
                    dynamic_ports: vec![Port {
                        label: "p".into(),
                        ..Default::default()
                    }],
                    reserved_ports: vec![Port {
                        label: "s".into(),
                        value: 7000 + k as u16,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
            let snap = w.store.snapshot();
            let eval = Evaluation::new(format!("e{seed}-{k}"), &j, "job-register");
            drop(snap);
            w.apply(Command::JobRegister {
                job: Box::new(j.clone()),
                eval: Some(eval.clone()),
            });
            let snap = w.store.snapshot();
            let e = snap.eval(&eval.id).unwrap().clone();
            let a = schedule(&snap, &e, &w.opts()).unwrap();
            let b = schedule(&snap, &e, &w.opts()).unwrap();
            assert_eq!(
                a, b,
                "seed {seed}: the same snapshot and evaluation gave different plans"
            );
            if j.constraints
                .iter()
                .any(|c| c.operand == drover_model::ConstraintOperand::DistinctHosts)
            {
                let hosts: BTreeSet<_> = a.allocs.iter().map(|x| x.node_id.clone()).collect();
                assert_eq!(
                    hosts.len(),
                    a.allocs.len(),
                    "seed {seed}: distinct_hosts broken"
                );
            }
            w.apply(Command::PlanApply(PlanResult {
                allocs: a.allocs.clone(),
                stops: a.stops.clone(),
                eval: Some(finished_eval(&e, &a)),
                new_evals: vec![],
            }));
            w.assert_fits();
        }
    }
}

#[test]
fn globs() {
    assert!(glob_match("*", "dc1"));
    assert!(glob_match("dc*", "dc1"));
    assert!(!glob_match("eu-*", "dc1"));
}

#[test]
fn placements_per_evaluation_are_bounded_and_a_huge_count_costs_only_the_budget() {
    let mut w = World::new(&[node("a", 100_000, 100_000)]);
    let j = job(7, 10, 10);
    let eval = Evaluation::new("budget-1".into(), &j, "job-register");
    w.apply(Command::JobRegister {
        job: Box::new(j.clone()),
        eval: Some(eval.clone()),
    });
    let snap = w.store.snapshot();
    let opts = Options {
        max_placements: 3,
        ..w.opts()
    };
    let plan = schedule(&snap, snap.eval("budget-1").unwrap(), &opts).unwrap();
    assert_eq!(plan.allocs.len(), 3);
    let follow: Vec<&Evaluation> = plan
        .new_evals
        .iter()
        .filter(|e| e.status == EvalStatus::Pending)
        .collect();
    assert_eq!(follow.len(), 1, "{:?}", plan.new_evals);

    // A count of four billion (as a restored snapshot may carry) on a full cluster: the
    // reconciler stops at the budget instead of listing every index.
    let mut w = World::new(&[node("a", 100, 100)]);
    let huge = job(4_000_000_000, 1000, 1000);
    let eval = Evaluation::new("huge-1".into(), &huge, "job-register");
    w.apply(Command::JobRegister {
        job: Box::new(huge),
        eval: Some(eval),
    });
    let snap = w.store.snapshot();
    let opts = Options {
        max_placements: 1000,
        ..w.opts()
    };
    let plan = schedule(&snap, snap.eval("huge-1").unwrap(), &opts).unwrap();
    assert!(plan.allocs.is_empty());
    assert_eq!(plan.failed["g"].coalesced_failures, 999);
}

#[test]
fn periodic_and_parameterized_parents_are_not_placed() {
    let mut w = World::new(&[node("a", 1000, 1000)]);
    let mut j = job(2, 10, 10);
    j.periodic = Some(drover_model::PeriodicConfig {
        enabled: true,
        spec: "* * * * *".into(),
        ..Default::default()
    });
    let plan = w.register(j);
    assert!(plan.allocs.is_empty(), "{plan:?}");
    let mut j = job_of("dispatch", JobType::Batch, 1, 10, 10);
    j.parameterized = Some(Default::default());
    let plan = w.register(j);
    assert!(plan.allocs.is_empty(), "{plan:?}");
}

fn cores_job(id: &str, count: u32, cores: u32) -> Job {
    let mut j = job_of(id, JobType::Service, count, 10, 10);
    j.groups[0].tasks[0].resources.cores = cores;
    j
}

fn reserved(a: &Allocation) -> Vec<u16> {
    a.task_resources["t"].reserved_cores.clone()
}

#[test]
fn reserved_cores_are_disjoint_refused_when_gone_and_freed_by_a_stop() {
    let mut w = World::new(&[node("a", 10_000, 10_000)]);
    let plan = w.register(cores_job("pinned", 2, 2));
    assert_eq!(plan.allocs.len(), 2);
    let (first, second) = (reserved(&plan.allocs[0]), reserved(&plan.allocs[1]));
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 2);
    let all: BTreeSet<u16> = first.iter().chain(&second).copied().collect();
    assert_eq!(
        all,
        BTreeSet::from([0, 1, 2, 3]),
        "disjoint ids of the node's cores"
    );
    w.assert_fits();

    // Another job's allocation finds no free core.
    let plan = w.register(cores_job("other", 1, 2));
    assert!(plan.allocs.is_empty());
    let f = &plan.failed["g"];
    assert_eq!(f.dimension_exhausted.get("cores"), Some(&1), "{f:?}");
    assert!(f.nearest_miss.contains("cores"), "{}", f.nearest_miss);

    // One of the first job's allocations ends: its cores go to the waiting one.
    let done = plan_alloc_with(&w, &second);
    w.report(&done, ClientStatus::Complete);
    let j = w.store.snapshot().job("default", "other").unwrap().clone();
    let plan = w.eval(&j, "queued-allocs");
    assert_eq!(plan.allocs.len(), 1);
    assert_eq!(reserved(&plan.allocs[0]), second);
    w.assert_fits();
}

fn plan_alloc_with(w: &World, cores: &[u16]) -> String {
    w.active()
        .into_iter()
        .find(|a| a.task_resources["t"].reserved_cores == cores)
        .expect("an allocation holds these cores")
        .id
}

#[test]
fn core_ids_come_from_the_nodes_reservable_cores_not_from_the_job() {
    let mut n = node("a", 10_000, 10_000);
    n.resources.reservable_cores = vec![4, 6, 8];
    n.reserved.reservable_cores = vec![6];
    let mut w = World::new(&[n]);
    let mut j = cores_job("pinned", 1, 2);
    // A job (an API body) cannot choose its core ids.
    j.groups[0].tasks[0].resources.reserved_cores = vec![0, 1];
    let plan = w.register(j);
    assert_eq!(reserved(&plan.allocs[0]), vec![4, 8]);
    let plan = w.register(cores_job("more", 1, 1));
    assert_eq!(plan.failed["g"].dimension_exhausted.get("cores"), Some(&1));
}

#[test]
fn cores_held_without_ids_still_count() {
    let mut w = World::new(&[node("a", 10_000, 10_000)]);
    // An allocation an older server placed: 3 cores, no ids.
    let mut old = Allocation {
        id: "old".into(),
        node_id: "a".into(),
        job_id: "legacy".into(),
        namespace: "default".into(),
        desired_status: drover_model::DesiredStatus::Run,
        ..Default::default()
    };
    old.task_resources.insert(
        "t".into(),
        Resources {
            cores: 3,
            ..Resources::ZERO
        },
    );
    w.apply(Command::PlanApply(PlanResult {
        allocs: vec![old],
        stops: vec![],
        eval: None,
        new_evals: vec![],
    }));
    let plan = w.register(cores_job("pinned", 2, 1));
    assert_eq!(plan.allocs.len(), 1, "one core is left");
    assert_eq!(plan.allocs[0].task_resources["t"].reserved_cores.len(), 1);
    w.assert_fits();
}

#[test]
fn the_fit_check_refuses_a_core_held_twice() {
    let n = node("a", 10_000, 10_000);
    let alloc = |id: &str| {
        let mut a = Allocation {
            id: id.into(),
            node_id: "a".into(),
            desired_status: drover_model::DesiredStatus::Run,
            ..Default::default()
        };
        a.task_resources.insert(
            "t".into(),
            Resources {
                cores: 1,
                reserved_cores: vec![2],
                ..Resources::ZERO
            },
        );
        a
    };
    let (a, b) = (alloc("x"), alloc("y"));
    assert!(fit(&n, [&a]).is_ok());
    let m = fit(&n, [&a, &b]).unwrap_err();
    assert_eq!(m.dimension(), "cores");
    assert!(m.to_string().contains("core 2"), "{m}");
}

#[test]
fn ports_are_reserved_on_the_nodes_address() {
    let mut with_ip = node("a", 10_000, 10_000);
    with_ip.resources.networks.push(drover_model::NodeNetwork {
        mode: "host".into(),
        device: "eth0".into(),
        cidr: "10.1.2.3/32".into(),
        ip: "10.1.2.3".into(),
    });
    let mut j = job(1, 10, 10);
    j.groups[0].networks.push(NetworkResource {
        reserved_ports: vec![Port {
            label: "admin".into(),
            value: 9090,
            ..Default::default()
        }],
        dynamic_ports: vec![Port {
            label: "http".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut w = World::new(&[with_ip]);
    let plan = w.register(j.clone());
    let ports = &plan.allocs[0].shared_resources.ports;
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|p| p.host_ip == "10.1.2.3"), "{ports:?}");

    // A node that reports no address: the loopback.
    let mut w = World::new(&[node("b", 10_000, 10_000)]);
    let plan = w.register(j);
    let ports = &plan.allocs[0].shared_resources.ports;
    assert!(ports.iter().all(|p| p.host_ip == "127.0.0.1"), "{ports:?}");
}

/// A node that offers network modes `modes` beyond "host", with addresses under host
/// networks (`(alias, address, reserved_ports)`), binding the default one on the wildcard
/// or not.
fn net_node(id: &str, modes: &[&str], addrs: &[(&str, &str, &str)], wildcard: bool) -> Node {
    let mut n = node(id, 10_000, 10_000);
    n.resources.networks.push(drover_model::NodeNetwork {
        mode: "host".into(),
        device: "eth0".into(),
        cidr: format!("{}/32", addrs.first().map(|a| a.1).unwrap_or("10.0.0.1")),
        ip: addrs.first().map(|a| a.1).unwrap_or("10.0.0.1").into(),
    });
    for m in modes {
        n.resources.networks.push(drover_model::NodeNetwork {
            mode: m.to_string(),
            ..Default::default()
        });
    }
    n.resources
        .node_networks
        .push(drover_model::NodeNetworkResource {
            mode: "host".into(),
            device: "eth0".into(),
            addresses: addrs
                .iter()
                .map(|(alias, ip, reserved)| drover_model::NodeNetworkAddress {
                    family: "ipv4".into(),
                    alias: alias.to_string(),
                    address: ip.to_string(),
                    reserved_ports: reserved.to_string(),
                    gateway: String::new(),
                })
                .collect(),
            ..Default::default()
        });
    n.bind_wildcard_default_host_network = Some(wildcard);
    n
}

fn with_network(mut j: Job, mode: &str, statics: &[(&str, u16, &str)], dynamics: &[&str]) -> Job {
    j.groups[0].networks.push(NetworkResource {
        mode: mode.into(),
        reserved_ports: statics
            .iter()
            .map(|(label, value, hn)| Port {
                label: label.to_string(),
                value: *value,
                host_network: hn.to_string(),
                ..Default::default()
            })
            .collect(),
        dynamic_ports: dynamics
            .iter()
            .map(|hn| Port {
                label: format!("dyn-{hn}"),
                host_network: hn.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    j
}

#[test]
fn bridge_and_cni_groups_go_only_where_the_mode_is_and_say_what_is_missing() {
    let plain = node("plain", 10_000, 10_000);
    let bridge = net_node("bridge", &["bridge"], &[("default", "10.0.0.2", "")], true);
    let cni = net_node(
        "cni",
        &["cni/testnet"],
        &[("default", "10.0.0.3", "")],
        true,
    );
    let mut w = World::new(&[plain, bridge, cni]);
    let plan = w.register(with_network(job(3, 10, 10), "bridge", &[], &[]));
    assert_eq!(plan.allocs.len(), 3);
    assert!(plan.allocs.iter().all(|a| a.node_id == "bridge"));
    let plan = w.register(with_network(
        job_of("c", JobType::Service, 2, 10, 10),
        "cni/testnet",
        &[],
        &[],
    ));
    assert!(plan.allocs.iter().all(|a| a.node_id == "cni"), "{plan:?}");
    let plan = w.register(with_network(
        job_of("o", JobType::Service, 1, 10, 10),
        "cni/other",
        &[],
        &[],
    ));
    assert!(plan.allocs.is_empty());
    let f = &plan.failed["g"];
    assert_eq!(
        f.constraint_filtered["missing network cni/other"], 3,
        "{f:?}"
    );
    // Host and none are everywhere, as without a network block.
    for mode in ["host", "", "none"] {
        let plan = w.register(with_network(
            job_of(&format!("h{mode}"), JobType::Service, 3, 10, 10),
            mode,
            &[],
            &[],
        ));
        assert_eq!(plan.allocs.len(), 3, "mode {mode:?}");
    }
    // A node that gains the mode takes the waiting group.
    w.apply(Command::NodeRegister {
        node: net_node("later", &["cni/other"], &[], true),
    });
    let j = w.store.snapshot().job("default", "o").unwrap().clone();
    let plan = w.eval(&j, "node-update");
    assert_eq!(plan.allocs.len(), 1);
    assert_eq!(plan.allocs[0].node_id, "later");
}

#[test]
fn a_port_on_a_host_network_the_node_lacks_makes_it_infeasible() {
    let plain = net_node("plain", &[], &[("default", "10.0.0.1", "")], false);
    let public = net_node(
        "public",
        &[],
        &[("default", "10.0.0.2", ""), ("public", "203.0.113.2", "")],
        false,
    );
    let mut w = World::new(&[plain, public]);
    let plan = w.register(with_network(
        job(2, 10, 10),
        "",
        &[("web", 80, "public")],
        &["public", ""],
    ));
    assert_eq!(
        plan.allocs.len(),
        1,
        "port 80 once on the one public address"
    );
    let ports = &plan.allocs[0].shared_resources.ports;
    assert_eq!(plan.allocs[0].node_id, "public");
    assert_eq!(ports[0].host_ip, "203.0.113.2");
    assert_eq!(ports[1].host_ip, "203.0.113.2");
    assert_eq!(
        ports[2].host_ip, "10.0.0.2",
        "no host_network: the default one"
    );
    let f = &plan.failed["g"];
    assert_eq!(
        f.constraint_filtered["missing host network \"public\" for port \"web\""], 1,
        "{f:?}"
    );
    w.assert_fits();
}

#[test]
fn ports_are_held_per_address_unless_the_default_network_binds_the_wildcard() {
    let addrs = [
        ("default", "10.0.0.1", ""),
        ("private", "10.1.0.1", "22,9000-9001"),
    ];
    // Per address: port 8080 fits once on each address.
    let mut w = World::new(&[net_node("n", &[], &addrs, false)]);
    let plan = w.register(with_network(job(1, 10, 10), "", &[("a", 8080, "")], &[]));
    assert_eq!(plan.allocs.len(), 1);
    let plan = w.register(with_network(
        job_of("b", JobType::Service, 2, 10, 10),
        "",
        &[("a", 8080, "private")],
        &[],
    ));
    assert_eq!(
        plan.allocs.len(),
        1,
        "8080 is free once on the private address"
    );
    assert_eq!(plan.allocs[0].shared_resources.ports[0].host_ip, "10.1.0.1");
    assert!(
        plan.failed["g"]
            .dimension_exhausted
            .keys()
            .any(|k| k.contains("8080"))
    );
    // A host network's reserved ports are never given out.
    let plan = w.register(with_network(
        job_of("r", JobType::Service, 1, 10, 10),
        "",
        &[("ssh", 22, "private")],
        &[],
    ));
    assert!(
        plan.allocs.is_empty(),
        "22 is reserved on the private network"
    );
    let plan = w.register(with_network(
        job_of("r2", JobType::Service, 1, 10, 10),
        "",
        &[("ssh", 22, "")],
        &[],
    ));
    assert_eq!(plan.allocs.len(), 1, "22 is free on the default network");
    w.assert_fits();

    // Bound on the wildcard: a default-network port holds every address.
    let mut w = World::new(&[net_node("n", &[], &addrs, true)]);
    let plan = w.register(with_network(job(1, 10, 10), "", &[("a", 8080, "")], &[]));
    assert_eq!(plan.allocs.len(), 1);
    let plan = w.register(with_network(
        job_of("b", JobType::Service, 1, 10, 10),
        "",
        &[("a", 8080, "private")],
        &[],
    ));
    assert!(plan.allocs.is_empty(), "8080 is held on every address");
    w.assert_fits();

    // The fit check (the plan applier's) sees the same: two holders of one port.
    let n = net_node("n", &[], &addrs, false);
    let held = |ip: &str| Allocation {
        id: format!("a-{ip}"),
        node_id: "n".into(),
        desired_status: drover_model::DesiredStatus::Run,
        client_status: ClientStatus::Running,
        shared_resources: drover_model::SharedResources {
            ports: vec![drover_model::AllocatedPort {
                label: "p".into(),
                value: 8080,
                to: 8080,
                host_ip: ip.into(),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let (a, b) = (held("10.0.0.1"), held("10.1.0.1"));
    assert!(fit(&n, [&a, &b]).is_ok(), "two addresses, one port each");
    assert!(matches!(
        fit(&n, [&a, &a.clone()]),
        Err(Misfit::PortTaken(8080))
    ));
    let wild = net_node("n", &[], &addrs, true);
    assert!(matches!(fit(&wild, [&a, &b]), Err(Misfit::PortTaken(8080))));
    let reserved = Allocation {
        shared_resources: drover_model::SharedResources {
            ports: vec![drover_model::AllocatedPort {
                value: 9001,
                host_ip: "10.1.0.1".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..a.clone()
    };
    assert!(matches!(fit(&n, [&reserved]), Err(Misfit::PortTaken(9001))));
    // Removing a holder frees the port for the others (and only then).
    let mut u = Usage::of(&n, [&a, &a.clone()]);
    u.remove(&a);
    assert!(!u.port_free(&u.host_of("10.0.0.1"), 8080));
    u.remove(&a);
    assert!(u.port_free(&u.host_of("10.0.0.1"), 8080));
}

#[test]
fn to_minus_one_and_zero_mean_the_host_port() {
    let mut w = World::new(&[node("a", 10_000, 10_000)]);
    let mut j = job(1, 10, 10);
    j.groups[0].networks.push(NetworkResource {
        reserved_ports: vec![
            Port {
                label: "s0".into(),
                value: 7000,
                to: 0,
                ..Default::default()
            },
            Port {
                label: "s1".into(),
                value: 7001,
                to: -1,
                ..Default::default()
            },
            Port {
                label: "s2".into(),
                value: 7002,
                to: 80,
                ..Default::default()
            },
        ],
        dynamic_ports: vec![
            Port {
                label: "d0".into(),
                to: 0,
                ..Default::default()
            },
            Port {
                label: "d1".into(),
                to: -1,
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let plan = w.register(j);
    let ports = &plan.allocs[0].shared_resources.ports;
    let to: Vec<(i32, u16)> = ports.iter().map(|p| (p.to, p.value)).collect();
    assert_eq!(to[0], (7000, 7000));
    assert_eq!(to[1], (7001, 7001));
    assert_eq!(to[2], (80, 7002));
    assert_eq!(to[3].0, to[3].1 as i32);
    assert_eq!(to[4].0, to[4].1 as i32);
}

/// Every plan of a long, varied run on a random cluster, digested: spreads (even and with
/// targets), affinities, distinct_hosts and distinct_property, ports, infeasible and full
/// nodes (so failures and their reasons are in the plans), count changes and stops. The
/// digest was taken before the placement loop was optimised: a change to it is a placement
/// (or a failure explanation) that an optimisation changed, which is a bug.
#[test]
fn plans_match_the_recorded_digest() {
    use drover_model::{Affinity, ConstraintOperand, Spread, SpreadTarget};
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let nodes: Vec<Node> = (0..300)
        .map(|i| {
            let mut n = node(
                &format!("{:08x}-{i:04}", rng.random::<u32>()),
                rng.random_range(1000..6000),
                rng.random_range(1000..8000),
            );
            n.name = format!("node-{i}");
            n.datacenter = format!("dc{}", rng.random_range(1..5));
            n.node_class = ["large", "small", ""][i % 3].into();
            n.meta
                .insert("rack".into(), format!("r{}", rng.random_range(0..12)));
            if rng.random_bool(0.1) {
                n.attributes.insert("kernel.name".into(), "windows".into());
            }
            if rng.random_bool(0.05) {
                n.status = NodeStatus::Down;
            }
            if rng.random_bool(0.05) {
                n.scheduling_eligibility = drover_model::SchedulingEligibility::Ineligible;
            }
            if rng.random_bool(0.05) {
                n.drivers.clear();
            }
            n
        })
        .collect();
    let mut w = World::new(&nodes);
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |plan: &Plan| {
        for b in format!("{plan:?}").bytes() {
            digest = (digest ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    };
    let mut jobs = Vec::new();
    for k in 0..60u32 {
        let mut j = job_of(
            &format!("job{k}"),
            JobType::Service,
            rng.random_range(1..40),
            rng.random_range(50..1500),
            rng.random_range(50..900),
        );
        j.datacenters = match k % 4 {
            0 => vec!["*".into()],
            1 => vec!["dc1".into(), "dc2".into(), "dc3".into()],
            2 => vec!["dc[12]".into(), "dc*".into()],
            _ => vec!["dc4".into()],
        };
        if rng.random_bool(0.5) {
            j.constraints.push(Constraint {
                l_target: "${attr.kernel.name}".into(),
                operand: ConstraintOperand::Equal,
                r_target: "linux".into(),
            });
        }
        let g = &mut j.groups[0];
        match k % 7 {
            0 => g.spreads.push(Spread {
                attribute: "${node.datacenter}".into(),
                weight: 50,
                spread_target: vec![],
            }),
            1 => g.spreads.push(Spread {
                attribute: "${meta.rack}".into(),
                weight: 80,
                spread_target: vec![
                    SpreadTarget {
                        value: "r1".into(),
                        percent: 60,
                    },
                    SpreadTarget {
                        value: "r2".into(),
                        percent: 30,
                    },
                ],
            }),
            2 => g.affinities.push(Affinity {
                l_target: "${node.class}".into(),
                r_target: "large".into(),
                operand: ConstraintOperand::Equal,
                weight: if rng.random_bool(0.5) { 70 } else { -40 },
            }),
            3 => j.constraints.push(Constraint {
                operand: ConstraintOperand::DistinctHosts,
                r_target: "true".into(),
                ..Default::default()
            }),
            4 => g.constraints.push(Constraint {
                l_target: "${meta.rack}".into(),
                operand: ConstraintOperand::DistinctProperty,
                r_target: "2".into(),
            }),
            5 => {
                g.spreads.push(Spread {
                    attribute: "${node.class}".into(),
                    weight: 30,
                    spread_target: vec![],
                });
                j.affinities.push(Affinity {
                    l_target: "${meta.rack}".into(),
                    r_target: "r[0-5]".into(),
                    operand: ConstraintOperand::Regexp,
                    weight: 50,
                });
            }
            _ => {}
        }
        if rng.random_bool(0.4) {
            g.networks.push(NetworkResource {
                dynamic_ports: vec![Port {
                    label: "http".into(),
                    ..Default::default()
                }],
                reserved_ports: if rng.random_bool(0.3) {
                    vec![Port {
                        label: "admin".into(),
                        value: 9000 + (k % 5) as u16,
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            });
        }
        eat(&w.register(j.clone()));
        jobs.push(j);
        if k % 5 == 4 {
            // A count change of an earlier job, and a stop of another.
            let mut again = jobs[rng.random_range(0..jobs.len())].clone();
            again.groups[0].count = rng.random_range(0..30);
            eat(&w.register(again));
            let mut stopped = jobs[rng.random_range(0..jobs.len())].clone();
            stopped.stop = true;
            eat(&w.register(stopped));
        }
    }
    w.assert_fits();
    assert_eq!(digest, 12_764_018_196_178_633_017, "the plans changed");
}
