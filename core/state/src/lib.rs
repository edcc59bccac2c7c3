//! The cluster state: an in-memory store of persistent (structurally shared) maps, changed
//! only by applying Raft [`Command`]s, with per-table modify indexes that blocking queries
//! and the node stream watch.
//!
//! A [`StateSnapshot`] is a clone of the maps, which costs O(1): scheduler workers each take
//! their own and never block writers.
#![deny(clippy::disallowed_types)]

mod apply;
mod command;
mod events;
mod node_table;
mod snapshot;
mod store;
mod version;

pub use command::*;
pub use events::*;
pub use snapshot::*;
pub use store::*;
pub use version::*;
