//! mTLS between Drover agents (rustls on ring).
//!
//! - [`pem`]: certificate and key files, read bounded.
//! - [`role`]: what a certificate may do — `server.<region>.drover` (or Nomad's
//!   `server.<region>.nomad`), `client.<region>.*`, `cli.<region>.*` — and the check each
//!   gRPC service makes on its caller.
//! - [`authority`]: a CA (rcgen): created, loaded, issuing certificates, its public-key hash.
//! - [`identity`]: an agent's CA roots, certificate chain and key, and the rustls
//!   configurations made of them.
//! - [`dial`]: gRPC channels over TLS (or plaintext) to other agents.
//! - [`accept`]: TLS handshakes for accepted connections, off the accept loop.
//! - [`reload`]: one swappable handle on the identity, read by every configuration at each
//!   handshake (new leaves and roots without a restart).
//! - [`rotation`]: the CA made for you rotated in three phases; leaves renewed.

pub mod accept;
pub mod authority;
pub mod dial;
pub mod identity;
pub mod pem;
pub mod reload;
pub mod role;
pub mod rotation;
pub mod workload;

pub use accept::{Handshakes, handshakes};
pub use authority::Authority;
pub use dial::Dialer;
pub use identity::Identity;
pub use reload::LiveIdentity;
pub use role::{Role, RoleCheck};

/// Why TLS material could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the {what} {path} is larger than {max} bytes")]
    TooLarge {
        what: &'static str,
        path: String,
        max: u64,
    },
    #[error("the {what} {path} holds no PEM {kind}")]
    NoPem {
        what: &'static str,
        path: String,
        kind: &'static str,
    },
    #[error("the {what} {path} is not valid PEM: {reason}")]
    BadPem {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS configuration: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Certificate(e.to_string())
    }
}

/// The crypto provider every configuration uses: ring (no aws-lc: no cmake here).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
