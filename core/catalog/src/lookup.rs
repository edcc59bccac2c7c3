//! The one way readers ask the catalog: a client's local copy and a server's state store
//! both answer through [`ServiceLookup`].

use std::sync::Arc;

use drover_model::ServiceRegistration;

/// The instances of one service, by id: shared, so a lookup copies no row.
pub type Instances = Arc<[Arc<ServiceRegistration>]>;

/// A service of a namespace: its name and the union of its instances' tags, sorted (Nomad's
/// `ServiceRegistrationStub`, consul-template's `services` and `nomadServices` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStub {
    pub name: String,
    pub tags: Vec<String>,
}

/// Reads of the service catalog.
pub trait ServiceLookup: Send + Sync + 'static {
    /// Every instance of service `name` in `namespace`, healthy or not, by id.
    fn instances(&self, namespace: &str, name: &str) -> Instances;
    /// Every instance of the services whose namespace and name equal `namespace` and `name`
    /// ignoring ASCII case (DNS compares names so: `backend` finds a service registered as
    /// `Backend`, and both of `Web` and `web` when both exist).
    fn instances_any_case(&self, namespace: &str, name: &str) -> Instances;
    /// The services of `namespace`, by name.
    fn services(&self, namespace: &str) -> Vec<ServiceStub>;
    /// The services table's index the answers are read at (0: nothing known yet).
    fn index(&self) -> u64;
}
