//! The service catalog as its readers see it (DNS, templates, the API's `choose`).
//!
//! The catalog itself is Raft's services table (Nomad's `ServiceRegistration` rows). Every
//! client keeps a copy of it, [`ServiceCatalog`], kept current through its node stream (an
//! initial full set, then the rows changed and removed), so that a DNS query or a template
//! render never waits on a server. Servers answer from their state store. Both are read
//! through one trait, [`ServiceLookup`].
//!
//! What is shared by every reader lives here too: the rendezvous choice of `choose=N|key`
//! ([`choose`]), and consul-template's health filters ([`HealthFilter`]).

#![deny(clippy::disallowed_types)]

mod choose;
mod copy;
mod health;
mod lookup;

pub use choose::{ChooseError, choose, parse_choose};
pub use copy::{CatalogPart, CatalogView, ServiceCatalog, limits};
pub use health::{HealthFilter, HealthFilterError, health_word};
pub use lookup::{Instances, ServiceLookup, ServiceStub};
