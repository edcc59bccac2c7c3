//! Drover's domain model: jobs, task groups, tasks, allocations, evaluations, nodes,
//! deployments and variables.
//!
//! These are the types the state store, the scheduler and the client work with. Their serde
//! form is Nomad's JSON (PascalCase names, durations as integer nanoseconds, task times as
//! RFC 3339), as Nomad's own structs are: the same shape travels in Raft entries, snapshots,
//! the node stream and the HTTP API, so a field added here round-trips everywhere.
//! `drover-api-types` holds only the API's envelopes and list stubs.

mod acl;
mod alloc;
mod check;
mod closed_set;
mod deployment;
mod eval;
mod job;
mod namespace;
mod node;
mod node_pool;
mod root_key;
mod scheduler_config;
pub mod serde_fmt;
mod service;
mod variable;

pub use acl::*;
pub use alloc::*;
pub use check::*;
pub use closed_set::*;
pub use deployment::*;
pub use eval::*;
pub use job::*;
pub use namespace::*;
pub use node::*;
pub use node_pool::*;
pub use root_key::*;
pub use scheduler_config::*;
pub use service::*;
pub use variable::*;

/// A Raft log index: every object records the index that created and last modified it.
pub type Index = u64;

/// Wall-clock time as Unix nanoseconds. Inside the state machine it always comes from the
/// leader's timestamp on the Raft entry, so applying an entry is deterministic; the clock
/// ([`now_nanos`]) is never read inside Raft apply or the scheduler, which take the time
/// they are given.
pub use drover_clock::{UnixNanos, now_nanos};

/// The namespace objects live in when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A new random identifier (UUID v4 formatted), built from the given 16 random bytes.
pub fn format_uuid(bytes: [u8; 16]) -> String {
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(
    JobType,
    JobStatus,
    EvalStatus,
    ClientStatus,
    DesiredStatus,
    TaskLifecycle,
    NodeStatus,
    RestartMode
);
