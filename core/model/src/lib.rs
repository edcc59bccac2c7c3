//! Drover's domain model: jobs, task groups, tasks, allocations, evaluations and nodes.
//!
//! These are the types the state store, the scheduler and the client work with. They are
//! serialized (serde, snake_case) into Raft entries, snapshots and the node stream; the
//! Nomad-compatible JSON shapes of the HTTP API live in `drover-api-types`, never here.

mod alloc;
mod eval;
mod job;
mod node;

pub use alloc::*;
pub use eval::*;
pub use job::*;
pub use node::*;

/// A Raft log index: every object records the index that created and last modified it.
pub type Index = u64;

/// Wall-clock time as Unix nanoseconds. Inside the state machine it always comes from the
/// leader's timestamp on the Raft entry, so applying an entry is deterministic.
pub type UnixNanos = i64;

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
