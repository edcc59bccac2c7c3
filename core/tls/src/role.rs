//! What a certificate may do. Drover's (and Nomad's) certificates say it in a DNS name:
//! `server.<region>.drover` / `server.<region>.nomad` for servers, `client.<region>.*` for
//! clients, `cli.<region>.*` for operators' command-line certificates. Each gRPC service
//! checks the caller's certificate for the roles it serves ([`RoleCheck`]): a client
//! certificate can never speak Raft.

use std::fmt;
use std::sync::Arc;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The role a certificate proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Server,
    Client,
    Cli,
}

/// The domains a role's name may end in: Drover's, and Nomad's for certificates made by
/// `nomad tls cert create`.
pub const DOMAINS: [&str; 2] = ["drover", "nomad"];

impl Role {
    pub fn word(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }

    /// The DNS names a certificate of this role carries in `region`.
    pub fn names(self, region: &str) -> Vec<String> {
        DOMAINS
            .iter()
            .map(|d| format!("{}.{region}.{d}", self.word()))
            .collect()
    }

    /// The role a certificate (DER) proves in `region`: the first of server, client and
    /// cli whose name is one of its DNS names. None for a certificate that does not parse
    /// or names none.
    pub fn of_cert(der: &[u8], region: &str) -> Option<Role> {
        let names = dns_names(der)?;
        [Role::Server, Role::Client, Role::Cli]
            .into_iter()
            .find(|r| r.names(region).iter().any(|n| names.contains(n)))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A certificate's DNS subject alternative names, lowercased.
pub fn dns_names(der: &[u8]) -> Option<Vec<String>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    Some(
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
    )
}

/// The role a gRPC caller proved, put in the request's extensions by [`RoleCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRole(pub Role);

/// A gRPC interceptor admitting only callers whose certificate (already verified against
/// the cluster's CA by the TLS handshake) proves one of `allowed` in `region`. Without TLS
/// (`enforce` false) every caller passes: the listener is plaintext.
#[derive(Clone)]
pub struct RoleCheck {
    service: &'static str,
    region: Arc<str>,
    allowed: &'static [Role],
    enforce: bool,
}

impl RoleCheck {
    pub fn new(
        service: &'static str,
        region: &str,
        allowed: &'static [Role],
        enforce: bool,
    ) -> Self {
        RoleCheck {
            service,
            region: region.into(),
            allowed,
            enforce,
        }
    }

    /// The certificate chain a request came with (over TLS, when one was sent).
    pub fn peer_certs<T>(
        req: &tonic::Request<T>,
    ) -> Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>> {
        req.extensions()
            .get::<crate::accept::PeerInfo>()?
            .certs
            .clone()
    }
}

impl tonic::service::Interceptor for RoleCheck {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if !self.enforce {
            return Ok(req);
        }
        let presented = Self::peer_certs(&req).and_then(|c| c.first().cloned());
        let role = presented
            .as_ref()
            .and_then(|c| Role::of_cert(c.as_ref(), &self.region));
        match role {
            Some(r) if self.allowed.contains(&r) => {
                req.extensions_mut().insert(PeerRole(r));
                Ok(req)
            }
            _ => {
                let wanted: Vec<String> = self
                    .allowed
                    .iter()
                    .map(|r| format!("{r}.{}.drover", self.region))
                    .collect();
                let got = match (&presented, role) {
                    (None, _) => "no certificate".to_string(),
                    (Some(_), None) => {
                        format!("a certificate with no role in region {}", self.region)
                    }
                    (Some(_), Some(r)) => format!("a {r} certificate"),
                };
                let remote = req
                    .extensions()
                    .get::<crate::accept::PeerInfo>()
                    .and_then(|p| p.remote_addr);
                tracing::warn!(service = self.service, ?remote, %got, "refused an RPC caller");
                Err(tonic::Status::permission_denied(format!(
                    "the {} service needs a certificate for {}; the caller presented {got}",
                    self.service,
                    wanted.join(" or ")
                )))
            }
        }
    }
}
