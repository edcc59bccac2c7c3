//! What Drover's plugin host and its plugins agree on, with no runtime behind it: the
//! go-plugin handshake ([`handshake`]), the unary ABI of in-process plugins ([`abi`]) and
//! hclog's timestamps ([`hclog`]). The host (`drover-plugin-host`) links this crate alone;
//! plugins get it through `drover-plugin-sdk`, which re-exports it.

pub mod abi;
pub mod handshake;
pub mod hclog;
