use super::*;
use drover_model::{DriverInfo, Task};
use drover_state::{Command, Entry, PlanResult, StateStore};

fn node(id: &str, cpu: u64, mem: u64) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        node_class: String::new(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        status_description: String::new(),
        scheduling_eligibility: "eligible".into(),
        attributes: Default::default(),
        meta: Default::default(),
        resources: NodeResources {
            cpu,
            memory_mb: mem,
            disk_mb: 1000,
        },
        reserved: NodeResources::default(),
        drivers: [(
            "raw_exec".to_string(),
            DriverInfo {
                detected: true,
                healthy: true,
                ..Default::default()
            },
        )]
        .into(),
        http_addr: String::new(),
        drain: false,
        host_volumes: Default::default(),
        status_updated_at: 0,
        create_index: 0,
        modify_index: 0,
    }
}

fn job(count: u32, cpu: u64, mem: u64) -> Job {
    let mut t = Task::new("t", "raw_exec");
    t.resources = Resources {
        cpu,
        memory_mb: mem,
        ..Resources::ZERO
    };
    let mut j = Job::new("web", JobType::Service);
    j.groups
        .push(TaskGroup::new("g", count, JobType::Service, vec![t]));
    j
}

struct World {
    store: StateStore,
    index: u64,
}

impl World {
    fn new(nodes: &[Node]) -> Self {
        let mut w = World {
            store: StateStore::new(),
            index: 0,
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
                time: self.index as i64,
                command: c,
            },
        );
        assert!(r.error.is_none(), "{r:?}");
    }
    fn register(&mut self, j: Job) -> Plan {
        let eval = Evaluation::new(format!("eval-{}", self.index), &j, "job-register");
        self.apply(Command::JobRegister {
            job: Box::new(j),
            eval: Some(eval.clone()),
        });
        let snap = self.store.snapshot();
        let eval = snap.eval(&eval.id).unwrap().clone();
        let plan = schedule(&snap, &eval).unwrap();
        self.apply(Command::PlanApply(PlanResult {
            allocs: plan.allocs.clone(),
            stops: plan.stops.clone(),
            eval: Some(finished_eval(&eval, &plan)),
            new_evals: vec![],
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
}

#[test]
fn places_count_and_binpacks() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000)]);
    let plan = w.register(job(3, 300, 300));
    assert_eq!(plan.allocs.len(), 3);
    assert!(plan.failed.is_empty());
    // bin-packing puts all three on one node while they fit
    let nodes: std::collections::BTreeSet<_> =
        plan.allocs.iter().map(|a| a.node_id.clone()).collect();
    assert_eq!(nodes.len(), 1);
    let names: Vec<_> = plan.allocs.iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, vec!["web.g[0]", "web.g[1]", "web.g[2]"]);
}

#[test]
fn never_overcommits_and_explains_failure() {
    let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 500)]);
    let plan = w.register(job(5, 400, 400));
    // a fits 2, b fits 1
    assert_eq!(plan.allocs.len(), 3);
    let f = &plan.failed["g"];
    assert_eq!(f.coalesced_failures, 1);
    assert!(
        f.dimension_exhausted.contains_key("memory") || f.dimension_exhausted.contains_key("cpu")
    );
    assert!(f.nearest_miss.contains("lacks"), "{}", f.nearest_miss);
    let snap = w.store.snapshot();
    for n in snap.nodes() {
        fit(n, snap.allocs_by_node(&n.id)).expect("no node over-committed");
    }
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
fn same_seed_same_plan() {
    let w = {
        let mut w = World::new(&[node("a", 1000, 1000), node("b", 1000, 1000)]);
        let j = job(4, 100, 100);
        let eval = Evaluation::new("e1".into(), &j, "job-register");
        w.apply(Command::JobRegister {
            job: Box::new(j),
            eval: Some(eval),
        });
        w
    };
    let snap = w.store.snapshot();
    let e = snap.eval("e1").unwrap();
    assert_eq!(schedule(&snap, e).unwrap(), schedule(&snap, e).unwrap());
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
    let snap = w.store.snapshot();
    let j = snap.job("default", "web").unwrap().clone();
    let eval = Evaluation::new("lost".into(), &j, "node-update");
    let plan = schedule(&snap, &eval).unwrap();
    assert_eq!(plan.stops[0].client_status, Some(ClientStatus::Lost));
    assert_eq!(plan.allocs.len(), 1);
    assert_ne!(plan.allocs[0].node_id, on);
}

#[test]
fn globs() {
    assert!(glob_match("*", "dc1"));
    assert!(glob_match("dc*", "dc1"));
    assert!(!glob_match("eu-*", "dc1"));
}
