//! The service catalog: registrations written by the clients that run them, and their
//! removal when their allocation ends, their node goes down, or someone deletes them.

use std::sync::Arc;

use drover_model::ServiceRegistration;

use super::{Apply, touch};
use crate::snapshot::service_name_key;
use crate::{Event, StateSnapshot, Table};

/// Creates or replaces registrations (an update keeps its create index). A registration
/// whose allocation is unknown or has ended is skipped: a late write never brings back the
/// instance of a stopped allocation.
pub(super) fn upsert(cx: &mut Apply, services: &[ServiceRegistration]) {
    let (s, index) = (&mut *cx.s, cx.index);
    for reg in services {
        let live = s
            .allocs
            .get(&reg.alloc_id)
            .is_some_and(|a| !a.client_status.is_terminal() && a.node_id == reg.node_id);
        if !live {
            continue;
        }
        let mut reg = reg.clone();
        match s.services.get(&reg.id) {
            Some(old) => {
                reg.create_index = old.create_index;
                reg.modify_index = old.modify_index;
                if **old == reg {
                    continue; // unchanged: no write, no event
                }
                s.services_by_name.remove(&service_name_key(old));
            }
            None => reg.create_index = index,
        }
        reg.modify_index = index;
        s.services_by_name.insert(service_name_key(&reg), ());
        s.services_by_alloc
            .insert((reg.alloc_id.clone(), reg.id.clone()), ());
        let reg = Arc::new(reg);
        cx.events
            .push(Event::service(index, "ServiceRegistration", &reg));
        s.services.insert(reg.id.clone(), reg);
        touch(s, Table::Services, index);
    }
}

/// Deletes the registrations with these ids (unknown ids are ignored).
pub(super) fn delete(cx: &mut Apply, ids: &[String]) {
    for id in ids {
        remove(cx.s, cx.index, id, cx.events);
    }
}

/// Deletes every registration of allocation `alloc_id`.
pub(super) fn remove_for_alloc(
    s: &mut StateSnapshot,
    index: drover_model::Index,
    alloc_id: &str,
    events: &mut Vec<Event>,
) {
    let ids: Vec<String> = s
        .services_by_alloc(alloc_id)
        .map(|r| r.id.clone())
        .collect();
    for id in ids {
        remove(s, index, &id, events);
    }
}

fn remove(s: &mut StateSnapshot, index: drover_model::Index, id: &str, events: &mut Vec<Event>) {
    let Some(reg) = s.services.remove(id) else {
        return;
    };
    s.services_by_name.remove(&service_name_key(&reg));
    s.services_by_alloc
        .remove(&(reg.alloc_id.clone(), reg.id.clone()));
    events.push(Event::service(index, "ServiceDeregistration", &reg));
    touch(s, Table::Services, index);
}
