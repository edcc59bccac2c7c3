//! Rotation of the CA made for you, in three phases, and the renewal of leaves.
//!
//! - **trust**: a new CA is made; every agent is told to trust old + new, and the servers
//!   count the leaves whose agents said they do.
//! - **issue**: leaves are issued by the new CA and served with the new CA's certificate
//!   cross-signed by the old one, so an agent still trusting only the old root accepts
//!   them; every agent renews its leaf at its next sync.
//! - **finish**: once every leaf seen recently is the new CA's, the old CA is dropped: the
//!   roots are the new CA alone and an old CA's leaf is refused.
//!
//! Each step is the operator's (`drover operator tls rotate-ca`), refused while the
//! previous one has not reached every leaf. A leaf is known by its certificate (the one an
//! agent proved it holds in its TLS handshake), not by what the agent says of itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Error;
use crate::authority::{Authority, CA_DAYS, LeafSpec};

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No rotation: one CA.
    Stable,
    /// A new CA is trusted beside the old one; leaves still come from the old.
    Trust,
    /// Leaves come from the new CA, served with its cross-signed certificate.
    Issue,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stable => "stable",
            Phase::Trust => "trust",
            Phase::Issue => "issue",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [Phase::Stable, Phase::Trust, Phase::Issue]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Why a step of a rotation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "{pending} of {total} leaves seen in the last {window:?} belong to agents that do not trust the new CA yet; they learn it at their next sync (run -status to follow)"
    )]
    NotTrustedEverywhere {
        pending: usize,
        total: usize,
        window: Duration,
    },
    #[error(
        "{pending} of {total} leaves seen in the last {window:?} are still the old CA's; agents renew theirs at their next sync (run -status to follow)"
    )]
    NotRenewedEverywhere {
        pending: usize,
        total: usize,
        window: Duration,
    },
    #[error("the CA's state is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error(transparent)]
    Tls(#[from] Error),
}

/// The CA in use and, during a rotation, the one replacing it.
pub struct Ring {
    active: Authority,
    next: Option<Successor>,
    phase: Phase,
}

/// The CA a rotation moves to, and its certificate signed by the old CA.
pub struct Successor {
    pub ca: Authority,
    pub cross: CertificateDer<'static>,
}

impl Ring {
    pub fn new(active: Authority) -> Ring {
        Ring {
            active,
            next: None,
            phase: Phase::Stable,
        }
    }

    /// A ring read back from storage: a successor exactly when a rotation is under way.
    pub fn resume(
        active: Authority,
        next: Option<Successor>,
        phase: Phase,
    ) -> Result<Ring, RotationError> {
        if next.is_some() != (phase != Phase::Stable) {
            return Err(RotationError::Inconsistent(
                "a new CA is stored exactly when a rotation is under way",
            ));
        }
        Ok(Ring {
            active,
            next,
            phase,
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn active(&self) -> &Authority {
        &self.active
    }

    pub fn successor(&self) -> Option<&Successor> {
        self.next.as_ref()
    }

    /// The roots agents trust: the CA, and its successor during a rotation.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.active.cert_der().clone())
            .chain(self.next.iter().map(|n| n.ca.cert_der().clone()))
            .collect()
    }

    /// The CA leaves are issued by now.
    pub fn issuing(&self) -> &Authority {
        match (&self.next, self.phase) {
            (Some(n), Phase::Issue) => &n.ca,
            _ => &self.active,
        }
    }

    /// What a leaf is served with after it: the successor's cross-signed certificate while
    /// leaves come from the successor.
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        match (&self.next, self.phase) {
            (Some(n), Phase::Issue) => vec![n.cross.clone()],
            _ => Vec::new(),
        }
    }

    /// A leaf certificate for a certificate request's key, with the chain to serve: PEM.
    pub fn sign_request(&self, spec: &LeafSpec, csr_der: &[u8]) -> Result<String, Error> {
        let leaf = self.issuing().sign_request(spec, csr_der)?;
        Ok(leaf + &crate::pem::encode_certs(&self.intermediates()))
    }

    /// A leaf and its new key, with the chain to serve: (chain PEM, key PEM).
    pub fn issue(&self, spec: &LeafSpec) -> Result<(String, String), Error> {
        let leaf = self.issuing().issue(spec)?;
        Ok((
            leaf.cert_pem + &crate::pem::encode_certs(&self.intermediates()),
            leaf.key_pem,
        ))
    }

    fn begin(&mut self, region: &str) -> Result<(), Error> {
        let suffix: [u8; 4] = rand::random();
        let name = format!("Drover Agent CA {region} {}", hex(&suffix));
        let (ca, cross) = self.active.successor(&name, CA_DAYS)?;
        self.next = Some(Successor { ca, cross });
        self.phase = Phase::Trust;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), RotationError> {
        let next = self
            .next
            .take()
            .ok_or(RotationError::Inconsistent("no new CA to finish with"))?;
        self.active = next.ca;
        self.phase = Phase::Stable;
        Ok(())
    }
}

/// A leaf the servers saw an agent hold.
#[derive(Debug, Clone)]
struct Seen {
    /// The leaf's issuer name (DER).
    issuer: Vec<u8>,
    /// The roots its agent trusts (`sha256:` hashes), as it said at its last sync.
    trusts: Vec<String>,
    last: Instant,
}

/// The leaves agents proved they hold at their syncs, forgotten after `window` unseen.
#[derive(Debug)]
pub struct Leaves {
    seen: BTreeMap<[u8; 32], Seen>,
    window: Duration,
}

impl Leaves {
    pub fn new(window: Duration) -> Leaves {
        Leaves {
            seen: BTreeMap::new(),
            window,
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// An agent holding `leaf` (DER) synced, trusting `trusts`.
    pub fn saw(&mut self, leaf: &[u8], trusts: Vec<String>, now: Instant) {
        let Some(issuer) = issuer_of(leaf) else {
            return;
        };
        self.seen.insert(
            digest(leaf),
            Seen {
                issuer,
                trusts,
                last: now,
            },
        );
    }

    /// The agent holding `old` renewed it to `new`: `old` is no longer in use.
    pub fn renewed(&mut self, old: &[u8], new: &[u8], trusts: Vec<String>, now: Instant) {
        self.seen.remove(&digest(old));
        self.saw(new, trusts, now);
    }

    fn current(&mut self, now: Instant) -> impl Iterator<Item = &Seen> {
        let window = self.window;
        self.seen
            .retain(|_, s| now.saturating_duration_since(s.last) <= window);
        self.seen.values()
    }

    /// (leaves seen, of which their agents trust `root_hash`).
    pub fn trusting(&mut self, root_hash: &str, now: Instant) -> (usize, usize) {
        let all: Vec<bool> = self
            .current(now)
            .map(|s| s.trusts.iter().any(|t| t == root_hash))
            .collect();
        (all.len(), all.iter().filter(|t| **t).count())
    }

    /// (leaves seen, of which issued by `ca`).
    pub fn issued_by(&mut self, ca: &Authority, now: Instant) -> (usize, usize) {
        let subject = subject_of(ca.cert_der().as_ref()).unwrap_or_default();
        let all: Vec<bool> = self.current(now).map(|s| s.issuer == subject).collect();
        (all.len(), all.iter().filter(|t| **t).count())
    }
}

/// A rotation's state as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    /// The hash of the CA in use (the old one during a rotation).
    pub active: String,
    /// The hash of the CA a rotation moves to.
    pub next: Option<String>,
    /// Leaves seen within the window.
    pub leaves: usize,
    /// Of which their agents trust the new CA.
    pub trusting_next: usize,
    /// Of which issued by the new CA.
    pub issued_by_next: usize,
}

/// The servers' CA state: the ring and the leaves seen.
pub struct CaState {
    pub ring: Ring,
    pub leaves: Leaves,
}

impl CaState {
    pub fn status(&mut self, now: Instant) -> Status {
        let next = self.ring.successor().map(|n| n.ca.spki_hash());
        let (leaves, trusting_next, issued_by_next) = match self.ring.successor() {
            Some(n) => {
                let hash = n.ca.spki_hash();
                let (total, trusting) = self.leaves.trusting(&hash, now);
                let (_, issued) = self.leaves.issued_by(&n.ca, now);
                (total, trusting, issued)
            }
            None => (self.leaves.current(now).count(), 0, 0),
        };
        Status {
            phase: self.ring.phase(),
            active: self.ring.active().spki_hash(),
            next,
            leaves,
            trusting_next,
            issued_by_next,
        }
    }

    /// The next step of a rotation, refused until the previous one reached every leaf seen
    /// within the window. Returns the phase reached.
    pub fn advance(&mut self, region: &str, now: Instant) -> Result<Phase, RotationError> {
        let window = self.leaves.window();
        match self.ring.phase() {
            Phase::Stable => self.ring.begin(region)?,
            Phase::Trust => {
                let s = self.status(now);
                if s.trusting_next < s.leaves {
                    return Err(RotationError::NotTrustedEverywhere {
                        pending: s.leaves - s.trusting_next,
                        total: s.leaves,
                        window,
                    });
                }
                self.ring.phase = Phase::Issue;
            }
            Phase::Issue => {
                let s = self.status(now);
                if s.issued_by_next < s.leaves {
                    return Err(RotationError::NotRenewedEverywhere {
                        pending: s.leaves - s.issued_by_next,
                        total: s.leaves,
                        window,
                    });
                }
                self.ring.finish()?;
            }
        }
        Ok(self.ring.phase())
    }
}

/// Why an agent renews its leaf now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Two thirds of its lifetime are gone.
    Aging,
    /// Another CA issues leaves now (a rotation).
    NewIssuer,
    /// It lives longer than the servers issue leaves for now.
    LifetimeChanged,
}

/// Whether the leaf `leaf` (DER) is due for renewal at `now`, given the CA issuing leaves
/// and the lifetime of leaves the servers issue.
pub fn renewal_due(
    leaf: &[u8],
    issuing_ca: &[u8],
    lifetime: Duration,
    now: SystemTime,
) -> Result<Option<Renewal>, Error> {
    let (_, c) = X509Certificate::from_der(leaf)
        .map_err(|e| Error::Certificate(format!("cannot parse this agent's certificate: {e}")))?;
    if Some(c.issuer().as_raw().to_vec()) != subject_of(issuing_ca) {
        return Ok(Some(Renewal::NewIssuer));
    }
    let (from, to) = (
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    );
    let span = to.saturating_sub(from).max(0) as u64;
    // The span includes the backdating (up to a quarter, at most a minute).
    if span > lifetime.as_secs() + lifetime.as_secs() / 4 + 60 {
        return Ok(Some(Renewal::LifetimeChanged));
    }
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let renew_at = from.saturating_add((span * 2 / 3) as i64);
    Ok((now >= renew_at).then_some(Renewal::Aging))
}

/// How often an agent syncs with the servers when its leaves live `lifetime`: a twelfth of
/// it (several tries before two thirds are gone), between 1 s and a minute.
pub fn sync_interval(lifetime: Duration) -> Duration {
    (lifetime / 12).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// How long the servers remember a leaf not seen again: several syncs missed.
pub fn leaf_window(lifetime: Duration) -> Duration {
    sync_interval(lifetime) * 5
}

/// A new key (PEM) and a certificate request for it (DER): the request carries no names,
/// the servers set them.
pub fn new_request() -> Result<(String, Vec<u8>), Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// `sha256:` hashes of roots (those that parse).
pub fn root_hashes(roots: &[CertificateDer<'_>]) -> Vec<String> {
    roots
        .iter()
        .filter_map(|r| crate::authority::spki_hash(r.as_ref()).ok())
        .collect()
}

/// A leaf's DNS names beyond its role's and `localhost`, and its IP addresses beyond
/// 127.0.0.1: what a renewal carries over (the CA vouched for them already).
pub fn extra_names(leaf: &[u8]) -> (Vec<String>, Vec<std::net::IpAddr>) {
    use x509_parser::prelude::GeneralName;
    let Ok((_, c)) = X509Certificate::from_der(leaf) else {
        return (Vec::new(), Vec::new());
    };
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return (Vec::new(), Vec::new());
    };
    let role_name = |n: &str| {
        n == "localhost"
            || ["server", "client", "cli"].iter().any(|r| {
                n.starts_with(&format!("{r}."))
                    && crate::role::DOMAINS
                        .iter()
                        .any(|d| n.ends_with(&format!(".{d}")))
            })
    };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in &san.value.general_names {
        match n {
            GeneralName::DNSName(d) if !role_name(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                    16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                    _ => None,
                };
                if let Some(ip) = ip.filter(|ip| !ip.is_loopback()) {
                    ips.push(ip);
                }
            }
            _ => {}
        }
    }
    (dns, ips)
}

/// How long a certificate lives (from not-before to not-after).
pub fn lifetime(der: &[u8]) -> Option<Duration> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    let span = c.validity().not_after.timestamp() - c.validity().not_before.timestamp();
    u64::try_from(span).ok().map(Duration::from_secs)
}

fn digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

fn issuer_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    Some(c.issuer().as_raw().to_vec())
}

fn subject_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    Some(c.subject().as_raw().to_vec())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, Role};
    use std::sync::Arc;

    fn leaf(ring: &Ring, role: Role) -> Identity {
        let (chain, key) = ring.issue(&LeafSpec::new(role, "global")).unwrap();
        let roots = crate::pem::encode_certs(&ring.roots());
        Identity::from_pem(&roots, &chain, &key, "global").unwrap()
    }

    fn with_roots(id: &Identity, roots: Vec<CertificateDer<'static>>) -> Identity {
        let mut id = id.clone();
        id.roots = roots;
        id
    }

    /// A handshake in memory between a client and the RPC listener's configuration.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> Result<(), rustls::Error> {
        let mut s = rustls::ServerConnection::new(server)?;
        let mut c =
            rustls::ClientConnection::new(client, "server.global.drover".try_into().unwrap())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                // The client's certificate arrives with its last flight.
                let mut buf = Vec::new();
                c.write_tls(&mut buf).unwrap();
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets()?;
                return match s.peer_certificates() {
                    Some(_) => Ok(()),
                    None => Err(rustls::Error::General("no client certificate".into())),
                };
            }
        }
        Err(rustls::Error::General("the handshake did not end".into()))
    }

    #[test]
    fn a_rotation_keeps_old_agents_working_until_it_drops_the_old_ca() {
        let old = Authority::create("old", 30).unwrap();
        let mut state = CaState {
            ring: Ring::new(old),
            leaves: Leaves::new(Duration::from_secs(60)),
        };
        let t0 = Instant::now();
        let server_old = leaf(&state.ring, Role::Server);
        let client_old = leaf(&state.ring, Role::Client);
        let old_roots = state.ring.roots();
        state.leaves.saw(
            client_old.chain[0].as_ref(),
            vec![state.ring.active().spki_hash()],
            t0,
        );

        // Phase 1: trust old + new. Issuing is refused until the client trusts the new.
        assert_eq!(state.advance("global", t0).unwrap(), Phase::Trust);
        assert_eq!(state.ring.roots().len(), 2);
        let next_hash = state.ring.successor().unwrap().ca.spki_hash();
        let e = state.advance("global", t0).unwrap_err();
        assert!(
            matches!(e, RotationError::NotTrustedEverywhere { pending: 1, .. }),
            "{e}"
        );
        state.leaves.saw(
            client_old.chain[0].as_ref(),
            vec![state.ring.active().spki_hash(), next_hash.clone()],
            t0,
        );
        assert_eq!(state.advance("global", t0).unwrap(), Phase::Issue);

        // Phase 2: a new leaf with the cross-signed CA; an agent trusting only the old
        // root accepts it, and the server accepts the old client's leaf.
        let server_new = leaf(&state.ring, Role::Server);
        assert_eq!(
            server_new.chain.len(),
            2,
            "the leaf and the cross-signed CA"
        );
        let live = server_new.live().unwrap();
        handshake(
            live.rpc_server_config().unwrap(),
            client_old.client_config().unwrap(),
        )
        .expect("an agent trusting only the old root accepts the new leaf");
        // Without the cross-signed certificate it would not.
        let mut bare = server_new.clone();
        bare.chain.truncate(1);
        assert!(
            handshake(
                bare.rpc_server_config().unwrap(),
                client_old.client_config().unwrap()
            )
            .is_err()
        );
        // Finishing waits for the client's renewal.
        let e = state.advance("global", t0).unwrap_err();
        assert!(
            matches!(e, RotationError::NotRenewedEverywhere { pending: 1, .. }),
            "{e}"
        );
        let client_new = leaf(&state.ring, Role::Client);
        state.leaves.renewed(
            client_old.chain[0].as_ref(),
            client_new.chain[0].as_ref(),
            vec![next_hash.clone()],
            t0,
        );
        assert_eq!(state.advance("global", t0).unwrap(), Phase::Stable);
        assert_eq!(state.ring.active().spki_hash(), next_hash);

        // Phase 3: the old CA is dropped, by swapping the server's identity in place.
        live.replace(with_roots(&server_new, state.ring.roots()))
            .unwrap();
        let server_config = live.rpc_server_config().unwrap();
        handshake(
            server_config.clone(),
            with_roots(&client_new, state.ring.roots())
                .client_config()
                .unwrap(),
        )
        .expect("a renewed client");
        let e = handshake(server_config, client_old.client_config().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("UnknownIssuer") || e.to_string().contains("issuer"),
            "{e}"
        );
        // And an agent still holding the old server leaf is refused by the new roots.
        let e = handshake(
            server_old.rpc_server_config().unwrap(),
            with_roots(&client_new, state.ring.roots())
                .client_config()
                .unwrap(),
        )
        .unwrap_err();
        assert!(!e.to_string().is_empty());
        assert_ne!(old_roots, state.ring.roots());
    }

    #[test]
    fn a_leaf_is_due_at_two_thirds_of_its_life_or_when_another_ca_issues() {
        let ca = Authority::create("ca", 30).unwrap();
        let mut spec = LeafSpec::new(Role::Client, "global");
        spec.lifetime = Some(Duration::from_secs(60));
        let l = ca.issue(&spec).unwrap();
        let der = crate::pem::certs(l.cert_pem.as_bytes(), "x", "x").unwrap();
        let now = SystemTime::now();
        let life = Duration::from_secs(60);
        let due = |at: SystemTime, ca: &Authority, life| {
            renewal_due(der[0].as_ref(), ca.cert_der().as_ref(), life, at).unwrap()
        };
        assert_eq!(due(now, &ca, life), None);
        assert_eq!(
            due(now + Duration::from_secs(40), &ca, life),
            Some(Renewal::Aging)
        );
        let other = Authority::create("other", 30).unwrap();
        assert_eq!(due(now, &other, life), Some(Renewal::NewIssuer));
        assert_eq!(
            due(now, &ca, Duration::from_secs(10)),
            Some(Renewal::LifetimeChanged)
        );
    }

    #[test]
    fn a_request_gives_only_its_key() {
        let ca = Authority::create("ca", 30).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut asked = rcgen::CertificateParams::new(vec!["server.global.drover".into()]).unwrap();
        asked.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let csr = asked.serialize_request(&key).unwrap();
        let ring = Ring::new(ca);
        let pem = ring
            .sign_request(&LeafSpec::new(Role::Client, "global"), csr.der())
            .unwrap();
        let der = crate::pem::certs(pem.as_bytes(), "x", "x").unwrap();
        assert_eq!(Role::of_cert(der[0].as_ref(), "global"), Some(Role::Client));
        let (_, c) = X509Certificate::from_der(der[0].as_ref()).unwrap();
        assert!(!c.is_ca());
        let garbage = ring.sign_request(&LeafSpec::new(Role::Client, "global"), b"junk");
        assert!(garbage.is_err());
    }
}
