//! Namespaces, node pools and the scheduler configuration in the state store: the
//! built-ins, the refusals (named), check-and-set, snapshots and restores.

use drover_model::{
    Index, Job, JobType, Namespace, Node, NodePool, NodePoolSchedulerConfiguration,
    SchedulerAlgorithm, SchedulerConfiguration, Variable,
};
use drover_state::{Command, Entry, Response, StateSnapshot, StateStore, Table};

fn write(store: &StateStore, index: Index, command: Command) -> Response {
    store.apply(index, &Entry { time: 9, command })
}

fn ns(name: &str) -> Namespace {
    Namespace {
        name: name.into(),
        description: format!("{name} team"),
        ..Default::default()
    }
}

fn job(ns: &str, id: &str, pool: &str) -> Job {
    let mut j = Job::new(id, JobType::Service);
    j.namespace = ns.into();
    j.node_pool = pool.into();
    j
}

fn pool(name: &str) -> NodePool {
    NodePool {
        name: name.into(),
        ..Default::default()
    }
}

#[test]
fn a_fresh_state_has_the_builtins_and_they_cannot_go() {
    let st = StateStore::new();
    let s = st.snapshot();
    assert_eq!(
        s.namespace("default").unwrap().description,
        "Default shared namespace"
    );
    let pools: Vec<&str> = s.node_pools().map(|p| p.name.as_str()).collect();
    assert_eq!(pools, ["all", "default"]);

    let r = write(
        &st,
        1,
        Command::NamespaceDelete {
            names: vec!["default".into()],
        },
    );
    assert!(
        r.error
            .unwrap()
            .contains("default namespace cannot be deleted")
    );
    for name in ["default", "all"] {
        let r = write(
            &st,
            2,
            Command::NodePoolDelete {
                names: vec![name.into()],
            },
        );
        assert!(r.error.unwrap().contains("built in"), "{name}");
        let r = write(
            &st,
            3,
            Command::NodePoolUpsert {
                pools: vec![pool(name)],
            },
        );
        assert!(r.error.unwrap().contains("cannot be modified"), "{name}");
    }
    assert_eq!(st.snapshot().node_pools().count(), 2);
}

#[test]
fn a_namespace_holding_jobs_or_variables_is_not_deleted() {
    let st = StateStore::new();
    let r = write(
        &st,
        1,
        Command::NamespaceUpsert {
            namespaces: vec![ns("prod"), ns("dev")],
        },
    );
    assert_eq!(r.error, None);
    let s = st.snapshot();
    assert_eq!(s.namespace("prod").unwrap().create_index, 1);
    assert_eq!(s.table_index(Table::Namespaces), 1);

    // An update keeps the create index.
    let mut p = ns("prod");
    p.meta.insert("owner".into(), "ops".into());
    write(
        &st,
        2,
        Command::NamespaceUpsert {
            namespaces: vec![p],
        },
    );
    let s = st.snapshot();
    let prod = s.namespace("prod").unwrap();
    assert_eq!((prod.create_index, prod.modify_index), (1, 2));
    assert_eq!(prod.meta["owner"], "ops");

    let job = Box::new(job("prod", "web", "default"));
    write(&st, 3, Command::JobRegister { job, eval: None });
    let var = Variable {
        namespace: "dev".into(),
        path: "app/config".into(),
        items: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    write(&st, 4, Command::VarUpsert { var, cas: None });

    let r = write(
        &st,
        5,
        Command::NamespaceDelete {
            names: vec!["prod".into()],
        },
    );
    let e = r.error.unwrap();
    assert!(e.contains("\"prod\"") && e.contains("\"web\""), "{e}");
    // All or nothing: "dev" holds a variable, so "gone" stays too.
    write(
        &st,
        6,
        Command::NamespaceUpsert {
            namespaces: vec![ns("gone")],
        },
    );
    let r = write(
        &st,
        7,
        Command::NamespaceDelete {
            names: vec!["gone".into(), "dev".into()],
        },
    );
    assert!(r.error.unwrap().contains("\"app/config\""));
    assert!(st.snapshot().namespace("gone").is_some());
    let r = write(
        &st,
        8,
        Command::NamespaceDelete {
            names: vec!["nope".into()],
        },
    );
    assert!(r.error.unwrap().contains("\"nope\" does not exist"));

    // Once purged, the namespace goes.
    let purge = Command::JobDeregister {
        namespace: "prod".into(),
        job_id: "web".into(),
        purge: true,
        eval: None,
    };
    write(&st, 9, purge);
    let r = write(
        &st,
        10,
        Command::NamespaceDelete {
            names: vec!["prod".into()],
        },
    );
    assert_eq!(r.error, None);
    assert!(st.snapshot().namespace("prod").is_none());
    assert_eq!(st.snapshot().table_index(Table::Namespaces), 10);
}

#[test]
fn an_invalid_namespace_is_refused_in_apply_with_its_name() {
    let st = StateStore::new();
    let r = write(
        &st,
        1,
        Command::NamespaceUpsert {
            namespaces: vec![ns("ok"), ns("not ok")],
        },
    );
    assert!(r.error.unwrap().contains("\"not ok\""));
    assert!(st.snapshot().namespace("ok").is_none(), "all or nothing");
}

#[test]
fn a_node_in_an_unknown_pool_creates_it_and_a_pool_in_use_stays() {
    let st = StateStore::new();
    let node = Node {
        id: "n1".into(),
        node_pool: "gpu".into(),
        ..Default::default()
    };
    write(&st, 1, Command::NodeRegister { node });
    let s = st.snapshot();
    let gpu = s.node_pool("gpu").expect("the node's pool was created");
    assert_eq!((gpu.create_index, gpu.modify_index), (1, 1));

    let r = write(
        &st,
        2,
        Command::NodePoolDelete {
            names: vec!["gpu".into()],
        },
    );
    assert!(r.error.unwrap().contains("\"n1\""));

    let mut batch = pool("batch");
    batch.scheduler_configuration = Some(NodePoolSchedulerConfiguration {
        scheduler_algorithm: Some(SchedulerAlgorithm::Spread),
        memory_oversubscription_enabled: None,
    });
    write(&st, 3, Command::NodePoolUpsert { pools: vec![batch] });
    let job = Box::new(job("default", "etl", "batch"));
    write(&st, 4, Command::JobRegister { job, eval: None });
    let r = write(
        &st,
        5,
        Command::NodePoolDelete {
            names: vec!["batch".into()],
        },
    );
    assert!(r.error.unwrap().contains("\"etl@default\""));
    let purge = Command::JobDeregister {
        namespace: "default".into(),
        job_id: "etl".into(),
        purge: true,
        eval: None,
    };
    write(&st, 6, purge);
    let r = write(
        &st,
        7,
        Command::NodePoolDelete {
            names: vec!["batch".into()],
        },
    );
    assert_eq!(r.error, None);
    assert!(st.snapshot().node_pool("batch").is_none());
}

#[test]
fn the_scheduler_configuration_is_set_with_check_and_set() {
    let st = StateStore::new();
    assert!(st.snapshot().scheduler_config().is_none());
    let spread = SchedulerConfiguration {
        scheduler_algorithm: SchedulerAlgorithm::Spread,
        ..Default::default()
    };
    // cas 0: only while none is set.
    let r = write(
        &st,
        1,
        Command::SchedulerConfigSet {
            config: spread,
            cas: Some(0),
        },
    );
    assert!(!r.conflict);
    let r = write(
        &st,
        2,
        Command::SchedulerConfigSet {
            config: spread,
            cas: Some(0),
        },
    );
    assert!(r.conflict);
    let binpack = SchedulerConfiguration::default();
    assert!(
        write(
            &st,
            3,
            Command::SchedulerConfigSet {
                config: binpack,
                cas: Some(7)
            }
        )
        .conflict
    );
    let s = st.snapshot();
    let c = s.scheduler_config().unwrap();
    assert_eq!(c.scheduler_algorithm, SchedulerAlgorithm::Spread);
    assert_eq!((c.create_index, c.modify_index), (1, 1));
    let r = write(
        &st,
        4,
        Command::SchedulerConfigSet {
            config: binpack,
            cas: Some(1),
        },
    );
    assert!(!r.conflict);
    let s = st.snapshot();
    let c = s.scheduler_config().unwrap();
    assert_eq!(
        (c.scheduler_algorithm, c.create_index, c.modify_index),
        (SchedulerAlgorithm::Binpack, 1, 4)
    );
    assert_eq!(s.table_index(Table::SchedulerConfig), 4);
}

#[test]
fn snapshots_and_restores_carry_them() {
    let st = StateStore::new();
    write(
        &st,
        1,
        Command::NamespaceUpsert {
            namespaces: vec![ns("prod")],
        },
    );
    write(
        &st,
        2,
        Command::NodePoolUpsert {
            pools: vec![pool("gpu")],
        },
    );
    let config = SchedulerConfiguration {
        pause_eval_broker: true,
        ..Default::default()
    };
    write(&st, 3, Command::SchedulerConfigSet { config, cas: None });
    let back = StateSnapshot::from_bytes(&st.snapshot().to_bytes()).unwrap();
    assert!(back.namespace("prod").is_some() && back.node_pool("gpu").is_some());
    assert!(back.scheduler_config().unwrap().pause_eval_broker);

    // Through a chunked restore into another state.
    let chunks = st.snapshot().restore_chunks(1024).unwrap();
    let other = StateStore::new();
    for (seq, rows) in chunks.iter().enumerate() {
        let c = Command::RestoreChunk {
            id: "r".into(),
            seq: seq as u32,
            rows: rows.clone(),
        };
        assert_eq!(write(&other, 10 + seq as Index, c).error, None);
    }
    let swap = Command::RestoreSwap {
        id: "r".into(),
        chunks: chunks.len() as u32,
    };
    assert_eq!(write(&other, 50, swap).error, None);
    let s = other.snapshot();
    assert!(s.namespace("prod").is_some() && s.node_pool("gpu").is_some());
    assert!(s.scheduler_config().unwrap().pause_eval_broker);
    assert_eq!(s.table_index(Table::NodePools), 50);
}

#[test]
fn a_state_written_before_these_tables_has_the_builtins() {
    let old = serde_json::json!({
        "v": 2, "index": 3, "table_index": {}, "jobs": [], "job_versions": [],
        "allocs": [], "evals": [], "nodes": []
    });
    let s = StateSnapshot::from_value(old).unwrap();
    assert!(s.namespace("default").is_some());
    assert!(s.node_pool("all").is_some() && s.node_pool("default").is_some());
    assert!(s.scheduler_config().is_none());

    // The namespaces its jobs and variables name become objects.
    let mut job = serde_json::to_value(job("legacy", "web", "default")).unwrap();
    job["CreateIndex"] = 2.into();
    let old = serde_json::json!({
        "v": 2, "index": 3, "table_index": {}, "jobs": [job], "job_versions": [],
        "allocs": [], "evals": [], "nodes": [],
        "variables": [{"Namespace": "old-vars", "Path": "a", "Items": {"k": "v"}}]
    });
    let s = StateSnapshot::from_value(old).unwrap();
    assert_eq!(s.namespace("legacy").unwrap().create_index, 3);
    assert!(s.namespace("old-vars").is_some());
}

#[test]
fn an_entry_of_an_older_log_brings_its_namespace() {
    // The servers refuse a job in a missing namespace before writing it; an entry already
    // in a log (written before namespaces were objects) still applies, and its namespace
    // becomes an object so the job is never without one.
    let st = StateStore::new();
    let job = Box::new(job("legacy", "web", "default"));
    let r = write(&st, 5, Command::JobRegister { job, eval: None });
    assert_eq!(r.error, None);
    let s = st.snapshot();
    assert_eq!(s.namespace("legacy").unwrap().create_index, 5);
    assert!(s.namespace_in_use("legacy").unwrap().contains("\"web\""));
}

#[test]
fn the_new_commands_need_version_4_servers() {
    let cmds = [
        Command::NamespaceUpsert { namespaces: vec![] },
        Command::NamespaceDelete { names: vec![] },
        Command::NodePoolUpsert { pools: vec![] },
        Command::NodePoolDelete { names: vec![] },
        Command::SchedulerConfigSet {
            config: SchedulerConfiguration::default(),
            cas: None,
        },
    ];
    for c in cmds {
        assert_eq!(c.min_version(), 4, "{}", c.name());
    }
    const { assert!(drover_state::SERVER_VERSION >= 4) };
}
