//! The nodes table: the rows by id, plus the list of them in id order that the scheduler
//! walks for every evaluation, built once per version of the table and shared by every
//! snapshot of that version.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use drover_model::Node;
use im::OrdMap;

/// Nodes by id. Reads go through `Deref`; any write (`DerefMut`) drops the cached list.
#[derive(Clone, Default)]
pub(crate) struct NodeTable {
    rows: OrdMap<String, Arc<Node>>,
    list: Arc<OnceLock<Arc<[Arc<Node>]>>>,
}

impl NodeTable {
    /// Every node in id order (built on first use after a write).
    pub(crate) fn list(&self) -> &[Arc<Node>] {
        self.list
            .get_or_init(|| self.rows.values().cloned().collect())
    }
}

impl Deref for NodeTable {
    type Target = OrdMap<String, Arc<Node>>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl DerefMut for NodeTable {
    fn deref_mut(&mut self) -> &mut Self::Target {
        // A fresh cell, not a cleared one: other snapshots still share the old list.
        self.list = Arc::default();
        &mut self.rows
    }
}

impl FromIterator<(String, Arc<Node>)> for NodeTable {
    fn from_iter<I: IntoIterator<Item = (String, Arc<Node>)>>(iter: I) -> Self {
        NodeTable {
            rows: iter.into_iter().collect(),
            list: Arc::default(),
        }
    }
}

impl std::fmt::Debug for NodeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.rows.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> Arc<Node> {
        Arc::new(Node {
            id: id.into(),
            ..Default::default()
        })
    }

    fn ids(t: &NodeTable) -> Vec<&str> {
        t.list().iter().map(|n| n.id.as_str()).collect()
    }

    #[test]
    fn the_list_follows_every_write_and_an_older_copy_keeps_its_own() {
        let mut t: NodeTable = [("b".to_string(), node("b"))].into_iter().collect();
        assert_eq!(ids(&t), ["b"]);
        let old = t.clone();
        t.insert("a".into(), node("a"));
        assert_eq!(ids(&t), ["a", "b"]);
        t.remove("b");
        assert_eq!(ids(&t), ["a"]);
        assert_eq!(ids(&old), ["b"]);
        // A copy made after the list was built shares it.
        let copy = t.clone();
        assert!(std::ptr::eq(copy.list().as_ptr(), t.list().as_ptr()));
    }
}
