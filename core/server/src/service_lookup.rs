//! Servers answer catalog lookups (DNS on an agent without a client) from their state store,
//! through the same trait as a client's copy.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use drover_catalog::{Instances, ServiceLookup, ServiceStub};
use drover_state::{StateStore, Table};

/// The state store as a [`ServiceLookup`].
#[derive(Clone)]
pub struct StateCatalog {
    store: StateStore,
}

impl StateCatalog {
    pub fn new(store: StateStore) -> StateCatalog {
        StateCatalog { store }
    }
}

impl ServiceLookup for StateCatalog {
    fn instances(&self, namespace: &str, name: &str) -> Instances {
        let snap = self.store.snapshot();
        let list: Vec<_> = snap.service_instances(namespace, name).cloned().collect();
        Arc::from(list)
    }

    /// A scan of the table (the state store indexes exact names only): a server answers DNS
    /// only when its agent runs no client, whose copy has the folded index.
    fn instances_any_case(&self, namespace: &str, name: &str) -> Instances {
        let snap = self.store.snapshot();
        let spellings: BTreeSet<(&str, &str)> = snap
            .service_registrations()
            .filter(|r| {
                r.namespace.eq_ignore_ascii_case(namespace)
                    && r.service_name.eq_ignore_ascii_case(name)
            })
            .map(|r| (r.namespace.as_str(), r.service_name.as_str()))
            .collect();
        let list: Vec<_> = spellings
            .into_iter()
            .flat_map(|(ns, n)| snap.service_instances(ns, n).cloned())
            .collect();
        Arc::from(list)
    }

    fn services(&self, namespace: &str) -> Vec<ServiceStub> {
        let snap = self.store.snapshot();
        let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in snap
            .service_registrations()
            .filter(|r| r.namespace == namespace)
        {
            by_name
                .entry(&r.service_name)
                .or_default()
                .extend(r.tags.iter().map(String::as_str));
        }
        by_name
            .into_iter()
            .map(|(name, tags)| ServiceStub {
                name: name.to_string(),
                tags: tags.into_iter().map(str::to_string).collect(),
            })
            .collect()
    }

    fn index(&self) -> u64 {
        self.store.snapshot().table_index(Table::Services)
    }
}
