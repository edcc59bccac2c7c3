//! The client's copy of the catalog: rows arrive on the node stream in parts (a full set
//! after every attach, then what changed), are staged until a part says the change is
//! complete, then published at once as a new immutable [`CatalogView`] — so a reader never
//! sees half a change. A tokio watch channel carries each new view to whoever waits for one
//! (templates re-render from it).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use drover_model::ServiceRegistration;
use im::OrdMap;
use tokio::sync::watch;

use crate::lookup::{Instances, ServiceLookup, ServiceStub};

/// Bounds on the copy.
pub mod limits {
    /// Instances kept; rows beyond are dropped with an error in the log (the servers bound
    /// what one client may register, not the catalog as a whole).
    pub const MAX_INSTANCES: usize = 200_000;
}

/// (namespace, service name).
type NameKey = (String, String);

/// A name key in ASCII lower case: every spelling of a service as DNS sees it.
fn fold(key: &NameKey) -> NameKey {
    (key.0.to_ascii_lowercase(), key.1.to_ascii_lowercase())
}

/// The catalog at one index: immutable, cheap to clone (persistent maps of shared rows).
#[derive(Debug, Clone, Default)]
pub struct CatalogView {
    index: u64,
    synced: bool,
    /// (namespace, name, id) -> row.
    rows: OrdMap<(String, String, String), Arc<ServiceRegistration>>,
    /// id -> (namespace, name), to find a row by its id.
    ids: OrdMap<String, NameKey>,
    /// Each service's instances, built once per change of that service.
    by_name: OrdMap<NameKey, Instances>,
    /// Folded name -> the instances of every spelling of it (DNS's case-insensitive names),
    /// built once per change as `by_name`.
    by_folded: OrdMap<NameKey, Instances>,
    /// Folded name -> the spellings `by_name` holds.
    spellings: OrdMap<NameKey, BTreeSet<NameKey>>,
}

impl CatalogView {
    /// The services table's index this view is complete at.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Whether a full set has arrived (before, the view is empty because nothing is known).
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// How many instances the view holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn instances(&self, namespace: &str, name: &str) -> Instances {
        self.by_name
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// The instances of every spelling of `namespace` and `name` (ASCII case ignored).
    pub fn instances_any_case(&self, namespace: &str, name: &str) -> Instances {
        self.by_folded
            .get(&fold(&(namespace.to_string(), name.to_string())))
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    pub fn services(&self, namespace: &str) -> Vec<ServiceStub> {
        let lo = (namespace.to_string(), String::new());
        self.by_name
            .range(lo..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|((_, name), instances)| {
                let tags: BTreeSet<&str> = instances
                    .iter()
                    .flat_map(|r| r.tags.iter().map(String::as_str))
                    .collect();
                ServiceStub {
                    name: name.clone(),
                    tags: tags.into_iter().map(str::to_string).collect(),
                }
            })
            .collect()
    }

    fn remove(&mut self, id: &str, touched: &mut BTreeSet<NameKey>) {
        if let Some((ns, name)) = self.ids.remove(id) {
            self.rows
                .remove(&(ns.clone(), name.clone(), id.to_string()));
            touched.insert((ns, name));
        }
    }

    /// Rebuilds the instance lists of the services a change touched.
    fn rebuild(&mut self, touched: BTreeSet<NameKey>) {
        let mut folds = BTreeSet::new();
        for (ns, name) in touched {
            let lo = (ns.clone(), name.clone(), String::new());
            let list: Vec<Arc<ServiceRegistration>> = self
                .rows
                .range(lo..)
                .take_while(|((n, s, _), _)| *n == ns && *s == name)
                .map(|(_, r)| r.clone())
                .collect();
            let key = (ns, name);
            let folded = fold(&key);
            let mut spellings = self.spellings.get(&folded).cloned().unwrap_or_default();
            if list.is_empty() {
                self.by_name.remove(&key);
                spellings.remove(&key);
            } else {
                self.by_name.insert(key.clone(), Arc::from(list));
                spellings.insert(key);
            }
            if spellings.is_empty() {
                self.spellings.remove(&folded);
            } else {
                self.spellings.insert(folded.clone(), spellings);
            }
            folds.insert(folded);
        }
        for folded in folds {
            let lists: Vec<Instances> = self
                .spellings
                .get(&folded)
                .into_iter()
                .flatten()
                .filter_map(|k| self.by_name.get(k).cloned())
                .collect();
            match lists.as_slice() {
                [] => {
                    self.by_folded.remove(&folded);
                }
                [one] => {
                    self.by_folded.insert(folded, one.clone());
                }
                many => {
                    let all: Vec<_> = many.iter().flat_map(|l| l.iter().cloned()).collect();
                    self.by_folded.insert(folded, Arc::from(all));
                }
            }
        }
    }
}

/// One part of a change sent down the node stream.
#[derive(Debug, Clone, Default)]
pub struct CatalogPart {
    /// The services table's index the change brings the copy to.
    pub index: u64,
    /// The first part of a full set: what was held is forgotten.
    pub reset: bool,
    /// Rows new or changed.
    pub upserts: Vec<ServiceRegistration>,
    /// Ids of rows removed.
    pub deletes: Vec<String>,
    /// The last part: the change is published.
    pub complete: bool,
}

/// A change being received.
struct Staging {
    view: CatalogView,
    touched: BTreeSet<NameKey>,
}

/// The client's copy of the catalog, shared by DNS and templates.
#[derive(Clone)]
pub struct ServiceCatalog {
    inner: Arc<Inner>,
}

struct Inner {
    published: watch::Sender<Arc<CatalogView>>,
    staging: Mutex<Option<Staging>>,
}

impl Default for ServiceCatalog {
    fn default() -> Self {
        ServiceCatalog::new()
    }
}

impl ServiceCatalog {
    /// An empty copy, not synced.
    pub fn new() -> ServiceCatalog {
        ServiceCatalog {
            inner: Arc::new(Inner {
                published: watch::channel(Arc::new(CatalogView::default())).0,
                staging: Mutex::new(None),
            }),
        }
    }

    /// The latest complete view.
    pub fn view(&self) -> Arc<CatalogView> {
        self.inner.published.borrow().clone()
    }

    /// A receiver that sees every newly published view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<CatalogView>> {
        self.inner.published.subscribe()
    }

    /// Waits until a full set has arrived; returns the view then.
    pub async fn synced(&self) -> Arc<CatalogView> {
        let mut rx = self.subscribe();
        loop {
            let v = rx.borrow_and_update().clone();
            if v.synced() {
                return v;
            }
            if rx.changed().await.is_err() {
                return v;
            }
        }
    }

    /// Applies one part of a change; publishes the change when the part completes it.
    pub fn apply(&self, part: CatalogPart) {
        let mut staging = self.inner.staging.lock().expect("catalog staging lock");
        if part.reset {
            let touched = self.view().by_name.keys().cloned().collect();
            *staging = Some(Staging {
                view: CatalogView::default(),
                touched,
            });
        }
        let st = staging.get_or_insert_with(|| Staging {
            view: (*self.view()).clone(),
            touched: BTreeSet::new(),
        });
        for id in &part.deletes {
            st.view.remove(id, &mut st.touched);
        }
        let mut dropped = 0usize;
        for reg in part.upserts {
            if !st.view.ids.contains_key(&reg.id) && st.view.ids.len() >= limits::MAX_INSTANCES {
                dropped += 1;
                continue;
            }
            st.view.remove(&reg.id, &mut st.touched);
            let key = (reg.namespace.clone(), reg.service_name.clone());
            st.view.ids.insert(reg.id.clone(), key.clone());
            st.view.rows.insert(
                (key.0.clone(), key.1.clone(), reg.id.clone()),
                Arc::new(reg),
            );
            st.touched.insert(key);
        }
        if dropped > 0 {
            tracing::error!(
                dropped,
                max = limits::MAX_INSTANCES,
                "the service catalog holds its most instances; rows beyond are not kept"
            );
        }
        if part.complete {
            let Staging { mut view, touched } = staging.take().expect("staged above");
            view.rebuild(touched);
            view.index = part.index;
            view.synced = true;
            self.inner.published.send_replace(Arc::new(view));
        }
    }
}

impl ServiceLookup for ServiceCatalog {
    fn instances(&self, namespace: &str, name: &str) -> Instances {
        self.view().instances(namespace, name)
    }

    fn instances_any_case(&self, namespace: &str, name: &str) -> Instances {
        self.view().instances_any_case(namespace, name)
    }

    fn services(&self, namespace: &str) -> Vec<ServiceStub> {
        self.view().services(namespace)
    }

    fn index(&self) -> u64 {
        self.view().index()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ns: &str, name: &str, id: &str, port: u16, tags: &[&str]) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            namespace: ns.into(),
            service_name: name.into(),
            port,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    fn ports(i: &Instances) -> Vec<u16> {
        i.iter().map(|r| r.port).collect()
    }

    #[test]
    fn a_full_set_then_changes_are_published_whole() {
        let c = ServiceCatalog::new();
        assert!(!c.view().synced());
        let mut rx = c.subscribe();
        // A full set in two parts: nothing shows until the last.
        c.apply(CatalogPart {
            index: 5,
            reset: true,
            upserts: vec![reg("default", "web", "w1", 80, &["a"])],
            ..Default::default()
        });
        assert!(c.instances("default", "web").is_empty());
        assert!(!rx.has_changed().unwrap());
        c.apply(CatalogPart {
            index: 5,
            upserts: vec![
                reg("default", "web", "w2", 81, &["b"]),
                reg("prod", "web", "p1", 90, &[]),
                reg("default", "db", "d1", 5432, &[]),
            ],
            complete: true,
            ..Default::default()
        });
        assert!(rx.has_changed().unwrap());
        let v = rx.borrow_and_update().clone();
        assert!(v.synced());
        assert_eq!((v.index(), v.len()), (5, 4));
        assert_eq!(ports(&c.instances("default", "web")), vec![80, 81]);
        assert_eq!(ports(&c.instances("prod", "web")), vec![90]);
        assert_eq!(
            c.services("default"),
            vec![
                ServiceStub {
                    name: "db".into(),
                    tags: vec![]
                },
                ServiceStub {
                    name: "web".into(),
                    tags: vec!["a".into(), "b".into()]
                }
            ]
        );
        // A change: one moved, one removed.
        c.apply(CatalogPart {
            index: 9,
            upserts: vec![reg("default", "web", "w2", 82, &["b"])],
            deletes: vec!["w1".into(), "unknown".into()],
            complete: true,
            ..Default::default()
        });
        assert_eq!(ports(&c.instances("default", "web")), vec![82]);
        assert_eq!(c.index(), 9);
        // A new full set (a reconnect) replaces everything.
        c.apply(CatalogPart {
            index: 12,
            reset: true,
            upserts: vec![reg("default", "db", "d2", 5433, &[])],
            complete: true,
            ..Default::default()
        });
        assert!(c.instances("default", "web").is_empty());
        assert!(c.instances("prod", "web").is_empty());
        assert_eq!(ports(&c.instances("default", "db")), vec![5433]);
        assert_eq!(c.services("default").len(), 1);
    }

    #[test]
    fn a_row_that_changes_name_leaves_its_old_service() {
        let c = ServiceCatalog::new();
        c.apply(CatalogPart {
            index: 1,
            reset: true,
            upserts: vec![reg("default", "a", "x", 1, &[])],
            complete: true,
            ..Default::default()
        });
        c.apply(CatalogPart {
            index: 2,
            upserts: vec![reg("default", "b", "x", 1, &[])],
            complete: true,
            ..Default::default()
        });
        assert!(c.instances("default", "a").is_empty());
        assert_eq!(c.instances("default", "b").len(), 1);
        assert_eq!(c.view().len(), 1);
    }

    #[test]
    fn every_spelling_of_a_name_is_found_ignoring_case() {
        let c = ServiceCatalog::new();
        c.apply(CatalogPart {
            index: 1,
            reset: true,
            upserts: vec![
                reg("Prod", "Backend", "x", 1, &[]),
                reg("Prod", "backend", "y", 2, &[]),
                reg("Prod", "other", "z", 3, &[]),
            ],
            complete: true,
            ..Default::default()
        });
        assert_eq!(ports(&c.instances_any_case("prod", "backend")), vec![1, 2]);
        assert_eq!(ports(&c.instances_any_case("PROD", "BackEnd")), vec![1, 2]);
        assert_eq!(ports(&c.instances("Prod", "Backend")), vec![1]);
        assert!(
            c.instances("prod", "backend").is_empty(),
            "exact reads stay exact"
        );
        // One spelling leaves: the other is still found; then none is.
        c.apply(CatalogPart {
            index: 2,
            deletes: vec!["y".into()],
            complete: true,
            ..Default::default()
        });
        assert_eq!(ports(&c.instances_any_case("prod", "backend")), vec![1]);
        c.apply(CatalogPart {
            index: 3,
            deletes: vec!["x".into()],
            complete: true,
            ..Default::default()
        });
        assert!(c.instances_any_case("prod", "backend").is_empty());
        assert_eq!(ports(&c.instances_any_case("prod", "OTHER")), vec![3]);
    }

    #[tokio::test]
    async fn synced_waits_for_the_first_full_set() {
        let c = ServiceCatalog::new();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.synced().await.index() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.apply(CatalogPart {
            index: 3,
            reset: true,
            complete: true,
            ..Default::default()
        });
        assert_eq!(waiter.await.unwrap(), 3);
    }
}
