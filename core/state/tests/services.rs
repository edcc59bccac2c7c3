//! The service catalog in the state store: registrations, their removal when their
//! allocation ends or their node goes down, blocking-query indexes, events, snapshots and
//! restores.

use drover_model::{
    AllocClientUpdate, Allocation, ClientStatus, Index, Node, NodeStatus, ServiceRegistration,
    service_id,
};
use drover_state::{Command, Entry, PlanResult, StateSnapshot, StateStore, Table, Topic};

fn write(store: &StateStore, index: Index, command: Command) -> drover_state::Response {
    store.apply(index, &Entry { time: 9, command })
}

fn alloc(id: &str, node: &str) -> Allocation {
    Allocation {
        id: id.into(),
        namespace: "default".into(),
        job_id: "web".into(),
        node_id: node.into(),
        client_status: ClientStatus::Running,
        ..Default::default()
    }
}

fn reg(alloc: &str, node: &str, name: &str, port: u16) -> ServiceRegistration {
    ServiceRegistration {
        id: service_id(alloc, "t", name, "http"),
        service_name: name.into(),
        namespace: "default".into(),
        node_id: node.into(),
        datacenter: "dc1".into(),
        job_id: "web".into(),
        alloc_id: alloc.into(),
        tags: vec!["v1".into()],
        address: "127.0.0.1".into(),
        port,
        ..Default::default()
    }
}

/// A store with allocations a1, a2 on n1 and a3 on n2, each registering "api".
fn catalog() -> StateStore {
    let store = StateStore::new();
    for (i, n) in ["n1", "n2"].iter().enumerate() {
        let node = Node {
            id: n.to_string(),
            status: NodeStatus::Ready,
            ..Default::default()
        };
        write(&store, 1 + i as Index, Command::NodeRegister { node });
    }
    let plan = PlanResult {
        allocs: vec![alloc("a1", "n1"), alloc("a2", "n1"), alloc("a3", "n2")],
        ..Default::default()
    };
    write(&store, 3, Command::PlanApply(plan));
    let services = vec![
        reg("a1", "n1", "api", 8001),
        reg("a2", "n1", "api", 8002),
        reg("a3", "n2", "api", 8003),
    ];
    write(&store, 4, Command::ServiceRegUpsert { services });
    store
}

fn ports(s: &StateSnapshot) -> Vec<u16> {
    s.services_by_name("default", "api")
        .map(|r| r.port)
        .collect()
}

#[test]
fn registrations_are_indexed_by_name_and_allocation() {
    let store = catalog();
    let s = store.snapshot();
    assert_eq!(ports(&s), vec![8001, 8002, 8003]);
    assert_eq!(s.services_by_alloc("a2").count(), 1);
    assert_eq!(s.table_index(Table::Services), 4);
    let r = s
        .service_registration(&service_id("a1", "t", "api", "http"))
        .unwrap();
    assert_eq!((r.create_index, r.modify_index), (4, 4));
    assert_eq!(s.services_by_name("default", "other").count(), 0);
    assert_eq!(s.services_by_name("prod", "api").count(), 0);
}

#[test]
fn an_unchanged_registration_writes_nothing_and_a_changed_one_keeps_its_creation() {
    let store = catalog();
    let (_, mut events) = store.subscribe_events(u64::MAX);
    let services = vec![reg("a1", "n1", "api", 8001)];
    write(&store, 5, Command::ServiceRegUpsert { services });
    assert_eq!(store.snapshot().table_index(Table::Services), 4);
    let services = vec![reg("a1", "n1", "api", 9001)];
    write(&store, 6, Command::ServiceRegUpsert { services });
    let s = store.snapshot();
    let r = s
        .service_registration(&service_id("a1", "t", "api", "http"))
        .unwrap();
    assert_eq!((r.port, r.create_index, r.modify_index), (9001, 4, 6));
    let e = events.try_recv().unwrap();
    assert_eq!(
        (e.topic, e.kind, e.index),
        (Topic::Service, "ServiceRegistration", 6)
    );
    assert!(
        events.try_recv().is_err(),
        "an unchanged registration made an event"
    );
}

#[test]
fn a_registration_of_an_unknown_ended_or_foreign_allocation_is_skipped() {
    let store = catalog();
    let update = AllocClientUpdate {
        alloc_id: "a2".into(),
        seq: 1,
        client_status: ClientStatus::Complete,
        ..Default::default()
    };
    write(
        &store,
        5,
        Command::AllocClientUpdate {
            updates: vec![update],
            evals: vec![],
        },
    );
    let services = vec![
        reg("nope", "n1", "late", 1),
        reg("a2", "n1", "late", 2),
        reg("a3", "n1", "late", 3), // a3 runs on n2
    ];
    write(&store, 6, Command::ServiceRegUpsert { services });
    assert_eq!(
        store.snapshot().services_by_name("default", "late").count(),
        0
    );
}

#[test]
fn an_ended_allocation_and_a_down_node_leave_the_catalog() {
    let store = catalog();
    let (_, mut events) = store.subscribe_events(u64::MAX);
    let update = AllocClientUpdate {
        alloc_id: "a1".into(),
        seq: 1,
        client_status: ClientStatus::Failed,
        ..Default::default()
    };
    write(
        &store,
        5,
        Command::AllocClientUpdate {
            updates: vec![update],
            evals: vec![],
        },
    );
    assert_eq!(ports(&store.snapshot()), vec![8002, 8003]);
    assert_eq!(store.snapshot().table_index(Table::Services), 5);
    let e = events.try_recv().unwrap();
    assert_eq!((e.topic, e.kind), (Topic::Service, "ServiceDeregistration"));

    write(
        &store,
        6,
        Command::NodeStatus {
            node_id: "n1".into(),
            status: NodeStatus::Down,
            description: "missed heartbeats".into(),
            evals: vec![],
        },
    );
    assert_eq!(ports(&store.snapshot()), vec![8003]);
    assert_eq!(store.snapshot().services_by_alloc("a2").count(), 0);
}

#[test]
fn a_lost_allocation_in_a_plan_leaves_the_catalog() {
    let store = catalog();
    let plan = PlanResult {
        stops: vec![drover_state::AllocStop {
            alloc_id: "a3".into(),
            description: "node down".into(),
            client_status: Some(ClientStatus::Lost),
        }],
        ..Default::default()
    };
    write(&store, 5, Command::PlanApply(plan));
    assert_eq!(ports(&store.snapshot()), vec![8001, 8002]);
}

#[test]
fn delete_by_id_removes_only_those() {
    let store = catalog();
    let ids = vec![service_id("a2", "t", "api", "http"), "unknown".into()];
    write(&store, 5, Command::ServiceRegDelete { ids });
    assert_eq!(ports(&store.snapshot()), vec![8001, 8003]);
}

#[test]
fn registrations_survive_a_snapshot_and_a_chunked_restore() {
    let store = catalog();
    let back = StateSnapshot::from_bytes(&store.snapshot().to_bytes()).unwrap();
    assert_eq!(ports(&back), vec![8001, 8002, 8003]);
    assert_eq!(back.services_by_alloc("a3").count(), 1);
    assert_eq!(back.table_index(Table::Services), 4);

    let chunks = store.snapshot().restore_chunks(1500).unwrap();
    assert!(chunks.iter().any(|c| !c.services.is_empty()));
    let fresh = StateStore::new();
    for (seq, rows) in chunks.iter().enumerate() {
        let id = "r".to_string();
        let r = write(
            &fresh,
            10 + seq as Index,
            Command::RestoreChunk {
                id,
                seq: seq as u32,
                rows: rows.clone(),
            },
        );
        assert_eq!(r.error, None);
    }
    let chunks = chunks.len() as u32;
    write(
        &fresh,
        50,
        Command::RestoreSwap {
            id: "r".into(),
            chunks,
        },
    );
    let s = fresh.snapshot();
    assert_eq!(ports(&s), vec![8001, 8002, 8003]);
    assert_eq!(s.table_index(Table::Services), 50);
}

#[test]
fn the_catalog_commands_need_version_3_servers() {
    let c = Command::ServiceRegDelete { ids: vec![] };
    assert_eq!(c.min_version(), 3);
    const { assert!(drover_state::SERVER_VERSION >= 3) };
    // An older state (no services table) loads with an empty catalog.
    let old = serde_json::json!({
        "v": 2, "index": 3, "table_index": {}, "jobs": [], "job_versions": [],
        "allocs": [], "evals": [], "nodes": []
    });
    let s = StateSnapshot::from_value(old).unwrap();
    assert_eq!(s.service_registrations().count(), 0);
}
