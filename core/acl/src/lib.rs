//! Nomad's ACL policy language and the object a token's policies compile into.
//!
//! - [`rules`]: a policy's text, HCL or JSON (HCL1's JSON form), as one tree of blocks and
//!   attributes.
//! - [`policy`]: that tree checked and decoded into a [`Policy`] (namespace, variables,
//!   node, agent, operator, quota, plugin, host_volume and node_pool rules), with Nomad's
//!   `policy` shorthands expanded into capabilities; unknown keys and words are refused.
//! - [`capability`]: Nomad's capability and policy words.
//! - [`compiled`]: [`Acl`], the union of a token's policies, with Nomad's precedence (deny
//!   wins; an exact namespace beats globs; the closest glob wins) and cheap checks.
#![deny(clippy::disallowed_types)]

pub mod capability;
pub mod compiled;
mod glob;
pub mod policy;
pub mod rules;

pub use capability::{Level, NsCap, VarCap};
pub use compiled::Acl;
pub use policy::{Policy, PolicyError, parse};
