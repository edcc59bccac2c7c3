//! The service catalog down each client's node stream (`ServicesPush`): the full set after
//! the client attaches, then, whenever the services table's index moves, the rows whose
//! modify index changed and the ids gone — in parts of at most [`PART_ROWS`] rows, the
//! last one `complete`.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::node::{ServerMessage, ServicesPush, server_message};
use drover_state::{StateSnapshot, Table};
use tokio::sync::mpsc;
use tonic::Status;

use crate::Server;

/// Rows in one part (each at most 16 KiB as the servers accept them: 8 MiB a message at
/// most, under the stream's 64 MiB limit).
pub const PART_ROWS: usize = 512;

/// What the client was last sent: registration id -> modify index.
type Sent = BTreeMap<String, u64>;

/// The parts that bring a client holding `sent` to `snap` (none when nothing changed and
/// this is not the first push), and what the client then holds.
fn parts(snap: &StateSnapshot, sent: Option<&Sent>) -> (Vec<ServicesPush>, Sent) {
    let index = snap.table_index(Table::Services);
    let mut now = Sent::new();
    let mut upserts = Vec::new();
    for r in snap.service_registrations() {
        now.insert(r.id.clone(), r.modify_index);
        if sent.and_then(|s| s.get(&r.id)) != Some(&r.modify_index) {
            upserts.push(serde_json::to_vec(r).expect("a registration serializes"));
        }
    }
    let deletes: Vec<String> = sent
        .map(|s| {
            s.keys()
                .filter(|id| !now.contains_key(*id))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let reset = sent.is_none();
    if !reset && upserts.is_empty() && deletes.is_empty() {
        return (Vec::new(), now);
    }
    let mut parts = Vec::new();
    let mut deletes = deletes.into_iter().peekable();
    let mut upserts = upserts.into_iter().peekable();
    loop {
        let mut part = ServicesPush {
            index,
            reset: reset && parts.is_empty(),
            ..Default::default()
        };
        while part.delete_ids.len() < PART_ROWS
            && let Some(id) = deletes.next()
        {
            part.delete_ids.push(id);
        }
        while part.delete_ids.len() + part.upserts_json.len() < PART_ROWS
            && let Some(row) = upserts.next()
        {
            part.upserts_json.push(row);
        }
        part.complete = deletes.peek().is_none() && upserts.peek().is_none();
        let done = part.complete;
        parts.push(part);
        if done {
            return (parts, now);
        }
    }
}

/// Pushes the catalog to one attached client until its stream closes.
pub(crate) async fn push(server: Server, tx: mpsc::Sender<Result<ServerMessage, Status>>) {
    let store = server.store().clone();
    let mut changed = store.subscribe();
    let mut sent: Option<Sent> = None;
    let mut seen_index: Option<u64> = None;
    loop {
        let snap = store.snapshot();
        let index = snap.table_index(Table::Services);
        if seen_index != Some(index) {
            let (parts, now) = parts(&snap, sent.as_ref());
            for p in parts {
                let m = ServerMessage {
                    msg: Some(server_message::Msg::ServicesPush(p)),
                    encoding_version: drover_proto::node::ENCODING_VERSION,
                };
                if tx.send(Ok(m)).await.is_err() {
                    return;
                }
            }
            sent = Some(now);
            seen_index = Some(index);
        }
        // The store's sender gone means the server is stopping.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(30), changed.changed()).await {
            return;
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{Allocation, ServiceRegistration, service_id};
    use drover_state::{Command, Entry, PlanResult, StateStore};

    fn store_with(n: usize) -> StateStore {
        let store = StateStore::new();
        let e = |command| Entry { time: 1, command };
        let alloc = Allocation {
            id: "a1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            node_id: "n1".into(),
            ..Default::default()
        };
        store.apply(
            1,
            &e(Command::PlanApply(PlanResult {
                allocs: vec![alloc],
                ..Default::default()
            })),
        );
        let services = (0..n)
            .map(|i| ServiceRegistration {
                id: service_id("a1", "t", "web", &format!("p{i}")),
                service_name: "web".into(),
                namespace: "default".into(),
                alloc_id: "a1".into(),
                node_id: "n1".into(),
                port: 1000 + i as u16,
                ..Default::default()
            })
            .collect();
        store.apply(2, &e(Command::ServiceRegUpsert { services }));
        store
    }

    #[test]
    fn a_full_set_comes_in_bounded_parts_then_only_changes() {
        let store = store_with(PART_ROWS + 10);
        let (first, sent) = parts(&store.snapshot(), None);
        assert_eq!(first.len(), 2);
        assert!(first[0].reset && !first[0].complete);
        assert!(!first[1].reset && first[1].complete);
        assert_eq!(first[0].upserts_json.len(), PART_ROWS);
        assert_eq!(first[1].upserts_json.len(), 10);
        assert_eq!(first[0].index, 2);
        // Nothing changed: nothing to send.
        let (none, sent) = parts(&store.snapshot(), Some(&sent));
        assert!(none.is_empty());
        // One row removed: one part with its id.
        let id = service_id("a1", "t", "web", "p3");
        store.apply(
            3,
            &Entry {
                time: 2,
                command: Command::ServiceRegDelete {
                    ids: vec![id.clone()],
                },
            },
        );
        let (p, _) = parts(&store.snapshot(), Some(&sent));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].delete_ids, vec![id]);
        assert!(p[0].upserts_json.is_empty() && p[0].complete && !p[0].reset);
        assert_eq!(p[0].index, 3);
    }

    #[test]
    fn an_empty_catalog_still_sends_a_complete_full_set() {
        let (first, _) = parts(&StateStore::new().snapshot(), None);
        assert_eq!(first.len(), 1);
        assert!(first[0].reset && first[0].complete);
    }
}
