//! The CA made for you at work.
//!
//! - [`CaAuthority`], on the server that holds the CA: the ring on disk (`<data_dir>/tls/`,
//!   beside `ca.pem`: `next-ca.pem`, `next-ca-key.pem` 0600, `next-ca-cross.pem` and
//!   `rotation` during a rotation), the `Certificates` service agents sync with, its own
//!   leaf renewed before expiry, and the operator's three steps of a rotation.
//! - [`ManagedLeaf`], on a client whose leaf is the CA's (`<data_dir>/tls/client.pem`,
//!   0600, chain and key in one file so a renewal replaces both at once, and `ca.pem`):
//!   it syncs with a server, learns the roots, and renews its leaf before expiry.
//!
//! Both put what they get in place through the agent's [`LiveIdentity`]: new connections
//! use it, established ones (node streams, running tasks' logs) are left alone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use drover_proto::certificates::certificates_server::{Certificates, CertificatesServer};
use drover_proto::certificates::{SyncReply, SyncRequest};
use drover_tls::authority::{Authority, LeafSpec};
use drover_tls::role::PeerRole;
use drover_tls::rotation::{
    CaState, Leaves, Phase, Ring, RotationError, Status, Successor, extra_names, leaf_window,
    new_request, renewal_due, root_hashes, sync_interval,
};
use drover_tls::{Dialer, Identity, LiveIdentity, Role, RoleCheck};

use crate::tls::ca_store;

const NEXT: &str = "next-ca.pem";
const NEXT_KEY: &str = "next-ca-key.pem";
const CROSS: &str = "next-ca-cross.pem";
const PHASE: &str = "rotation";
/// A client's leaf (chain and key) and the roots it trusts.
pub const CLIENT_LEAF: &str = "client.pem";
pub const CLIENT_ROOTS: &str = "ca.pem";

/// The largest certificate request accepted.
const MAX_CSR: usize = 16 << 10;
/// The most root hashes an agent may report.
const MAX_TRUSTED: usize = 16;

/// The server's CA: the ring, the leaves seen, its own identity.
pub struct CaAuthority {
    dir: PathBuf,
    region: String,
    lifetime: Duration,
    spec: LeafSpec,
    state: Mutex<CaState>,
    live: LiveIdentity,
}

impl CaAuthority {
    /// Opens the CA under `dir` (made the first time), resumes a rotation under way and
    /// issues this server its leaf. Blocking.
    pub fn open(
        dir: &Path,
        region: &str,
        advertise: &[String],
        lifetime: Duration,
    ) -> anyhow::Result<Arc<CaAuthority>> {
        let active = ca_store::open_ca(dir, region)?;
        let ring = read_ring(dir, active)?;
        let mut spec = ca_store::server_spec(region, advertise);
        spec.lifetime = Some(lifetime);
        let identity = issue_own(dir, &ring, &spec, region)?;
        Ok(Arc::new(CaAuthority {
            dir: dir.to_path_buf(),
            region: region.to_string(),
            lifetime,
            spec,
            state: Mutex::new(CaState {
                ring,
                leaves: Leaves::new(leaf_window(lifetime)),
            }),
            live: identity.live()?,
        }))
    }

    /// This server's identity, swapped in place at each renewal and rotation step.
    pub fn live(&self) -> &LiveIdentity {
        &self.live
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues this server a leaf again when due, and counts it among the leaves. Blocking.
    fn renew_own(&self, force: bool) -> anyhow::Result<()> {
        let mut st = self.lock();
        let current = self.live.identity();
        let due = renewal_due(
            current.chain[0].as_ref(),
            st.ring.issuing().cert_der().as_ref(),
            self.lifetime,
            SystemTime::now(),
        )?;
        let roots = st.ring.roots();
        let identity = if force || due.is_some() || current.roots != roots {
            if let Some(why) = due {
                tracing::info!(?why, "renewing this server's certificate");
            }
            let id = issue_own(&self.dir, &st.ring, &self.spec, &self.region)?;
            self.live.replace(id.clone())?;
            id
        } else {
            current
        };
        let trusted = root_hashes(&identity.roots);
        st.leaves
            .saw(identity.chain[0].as_ref(), trusted, Instant::now());
        Ok(())
    }

    /// Renews this server's leaf before expiry, for as long as the agent runs.
    pub fn spawn_renewal(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(sync_interval(me.lifetime)).await;
                let m = me.clone();
                match tokio::task::spawn_blocking(move || m.renew_own(false)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot renew this server's certificate")
                    }
                    Err(e) => tracing::error!(error = %e, "renewing the certificate panicked"),
                }
            }
        });
    }

    /// A sync of an agent holding `leaf` (verified by the handshake) with `role`.
    /// Blocking.
    fn sync(
        &self,
        leaf: &[u8],
        role: Role,
        csr: &[u8],
        trusted: Vec<String>,
    ) -> Result<SyncReply, tonic::Status> {
        let mut st = self.lock();
        let now = Instant::now();
        let chain_pem = if csr.is_empty() {
            st.leaves.saw(leaf, trusted, now);
            String::new()
        } else {
            let mut spec = LeafSpec::new(role, &self.region);
            spec.lifetime = Some(self.lifetime);
            // The names the CA already vouched for in the leaf being replaced.
            let (dns, ips) = extra_names(leaf);
            spec.dns_names = dns;
            spec.ip_addresses = ips;
            let chain = st.ring.sign_request(&spec, csr).map_err(|e| {
                tonic::Status::invalid_argument(format!("cannot renew the certificate: {e}"))
            })?;
            let new = drover_tls::pem::certs(chain.as_bytes(), "certificate", "renewal")
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            st.leaves.renewed(leaf, new[0].as_ref(), trusted, now);
            tracing::info!(%role, phase = st.ring.phase().as_str(), "renewed an agent's certificate");
            chain
        };
        Ok(SyncReply {
            roots_pem: drover_tls::pem::encode_certs(&st.ring.roots()),
            chain_pem,
            issuing_ca_pem: st.ring.issuing().cert_pem().to_string(),
            leaf_lifetime_secs: self.lifetime.as_secs(),
            phase: st.ring.phase().as_str().to_string(),
        })
    }

    /// Where a rotation stands.
    pub fn status(&self) -> Status {
        self.lock().status(Instant::now())
    }

    /// The next step of a rotation: persisted, then this server's identity follows.
    /// Blocking.
    pub fn advance(&self) -> Result<Status, AdvanceError> {
        {
            let mut st = self.lock();
            let before = st.ring.phase();
            match st.advance(&self.region, Instant::now()) {
                Ok(_) => {}
                Err(
                    e @ (RotationError::NotTrustedEverywhere { .. }
                    | RotationError::NotRenewedEverywhere { .. }),
                ) => return Err(AdvanceError::Refused(e)),
                Err(e) => return Err(AdvanceError::Failed(e.into())),
            }
            write_ring(&self.dir, &st.ring, before).map_err(AdvanceError::Failed)?;
            tracing::info!(
                phase = st.ring.phase().as_str(),
                "the rotation of the cluster's CA moved on"
            );
        }
        self.renew_own(true).map_err(AdvanceError::Failed)?;
        Ok(self.status())
    }

    /// The `Certificates` service over this CA.
    pub fn service(
        self: &Arc<Self>,
        enforce: bool,
    ) -> tonic::service::interceptor::InterceptedService<
        CertificatesServer<CertificatesService>,
        RoleCheck,
    > {
        tonic::service::interceptor::InterceptedService::new(
            CertificatesServer::new(CertificatesService(self.clone())),
            RoleCheck::new(
                "Certificates",
                &self.region,
                &[Role::Server, Role::Client],
                enforce,
            ),
        )
    }
}

/// Why a step of a rotation was not taken.
#[derive(Debug)]
pub enum AdvanceError {
    /// The previous step has not reached every leaf yet.
    Refused(RotationError),
    /// Storage or certificates failed.
    Failed(anyhow::Error),
}

/// The `Certificates` gRPC service.
pub struct CertificatesService(Arc<CaAuthority>);

#[tonic::async_trait]
impl Certificates for CertificatesService {
    async fn sync(
        &self,
        req: tonic::Request<SyncRequest>,
    ) -> Result<tonic::Response<SyncReply>, tonic::Status> {
        let leaf = RoleCheck::peer_certs(&req)
            .and_then(|c| c.first().cloned())
            .ok_or_else(|| tonic::Status::permission_denied("a sync needs a client certificate"))?;
        let role = req
            .extensions()
            .get::<PeerRole>()
            .map(|r| r.0)
            .ok_or_else(|| tonic::Status::permission_denied("the caller proved no role"))?;
        let body = req.into_inner();
        if body.csr.len() > MAX_CSR {
            return Err(tonic::Status::invalid_argument(format!(
                "the certificate request is larger than {MAX_CSR} bytes"
            )));
        }
        if body.trusted.len() > MAX_TRUSTED || body.trusted.iter().any(|t| t.len() > 80) {
            return Err(tonic::Status::invalid_argument(format!(
                "trusted: at most {MAX_TRUSTED} hashes of at most 80 characters"
            )));
        }
        let ca = self.0.clone();
        let reply = tokio::task::spawn_blocking(move || {
            ca.sync(leaf.as_ref(), role, &body.csr, body.trusted)
        })
        .await
        .map_err(|e| tonic::Status::internal(format!("the sync panicked: {e}")))??;
        Ok(tonic::Response::new(reply))
    }
}

/// The API's view of the CA.
impl drover_api::tls_rotation::CaRotation for CaAuthority {
    fn status(&self) -> drover_api::tls_rotation::RotationStatus {
        to_api(CaAuthority::status(self), self.lifetime)
    }

    fn advance(
        self: Arc<Self>,
    ) -> drover_api::tls_rotation::BoxFuture<
        Result<drover_api::tls_rotation::RotationStatus, drover_api::tls_rotation::RotationError>,
    > {
        use drover_api::tls_rotation::RotationError as E;
        Box::pin(async move {
            let lifetime = self.lifetime;
            match tokio::task::spawn_blocking(move || CaAuthority::advance(&self)).await {
                Ok(Ok(s)) => Ok(to_api(s, lifetime)),
                Ok(Err(AdvanceError::Refused(e))) => Err(E::Refused(e.to_string())),
                Ok(Err(AdvanceError::Failed(e))) => Err(E::Failed(format!("{e:#}"))),
                Err(e) => Err(E::Failed(format!("the rotation panicked: {e}"))),
            }
        })
    }
}

fn to_api(s: Status, lifetime: Duration) -> drover_api::tls_rotation::RotationStatus {
    drover_api::tls_rotation::RotationStatus {
        phase: s.phase.as_str().to_string(),
        active_ca: s.active,
        next_ca: s.next,
        leaves: s.leaves,
        leaves_trusting_next: s.trusting_next,
        leaves_issued_by_next: s.issued_by_next,
        leaf_lifetime_secs: lifetime.as_secs(),
    }
}

/// This server's leaf from the ring, written to `server.pem`/`server-key.pem`.
fn issue_own(dir: &Path, ring: &Ring, spec: &LeafSpec, region: &str) -> anyhow::Result<Identity> {
    let (chain, key) = ring.issue(spec)?;
    ca_store::write_private(&dir.join("server-key.pem"), &key)?;
    ca_store::write_private(&dir.join("server.pem"), &chain)?;
    Ok(Identity::from_pem(
        &drover_tls::pem::encode_certs(&ring.roots()),
        &chain,
        &key,
        region,
    )?)
}

/// The ring: the CA, and during a rotation its successor and the phase.
fn read_ring(dir: &Path, active: Authority) -> anyhow::Result<Ring> {
    let phase_file = dir.join(PHASE);
    if !phase_file.exists() {
        return Ok(Ring::new(active));
    }
    let text = std::fs::read_to_string(&phase_file)
        .with_context(|| format!("cannot read {}", phase_file.display()))?;
    let Some(phase) = Phase::parse(text.trim()).filter(|p| *p != Phase::Stable) else {
        bail!(
            "{} says {:?}: expected trust or issue",
            phase_file.display(),
            text.trim()
        );
    };
    let ca = Authority::load_files(&dir.join(NEXT), &dir.join(NEXT_KEY))
        .context("cannot load the CA a rotation moves to")?;
    if ca.spki_hash() == active.spki_hash() {
        // The last step was written, its cleanup was not.
        remove_rotation_files(dir)?;
        return Ok(Ring::new(active));
    }
    let cross = drover_tls::pem::cert_file(&dir.join(CROSS), "cross-signed CA certificate")?
        .into_iter()
        .next()
        .context("no cross-signed certificate")?;
    Ok(Ring::resume(active, Some(Successor { ca, cross }), phase)?)
}

/// Writes what changed from phase `before` to the ring's.
fn write_ring(dir: &Path, ring: &Ring, before: Phase) -> anyhow::Result<()> {
    match (before, ring.phase(), ring.successor()) {
        (Phase::Stable, Phase::Trust, Some(n)) => {
            ca_store::write_private(&dir.join(NEXT_KEY), n.ca.key_pem())?;
            ca_store::write_private(&dir.join(NEXT), n.ca.cert_pem())?;
            ca_store::write_private(
                &dir.join(CROSS),
                &drover_tls::pem::encode("CERTIFICATE", n.cross.as_ref()),
            )?;
            ca_store::write_private(&dir.join(PHASE), "trust\n")
        }
        (Phase::Trust, Phase::Issue, _) => ca_store::write_private(&dir.join(PHASE), "issue\n"),
        (Phase::Issue, Phase::Stable, None) => {
            ca_store::write_ca(dir, ring.active())?;
            remove_rotation_files(dir)
        }
        _ => bail!("unexpected step of the rotation from {}", before.as_str()),
    }
}

fn remove_rotation_files(dir: &Path) -> anyhow::Result<()> {
    for f in [PHASE, CROSS, NEXT, NEXT_KEY] {
        match std::fs::remove_file(dir.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {f}")),
        }
    }
    Ok(())
}

/// A client's leaf of the CA made for you, kept current by syncing with a server.
#[derive(Clone)]
pub struct ManagedLeaf {
    dir: PathBuf,
    region: String,
    live: LiveIdentity,
}

impl ManagedLeaf {
    /// The leaf under `dir` (`client.pem` with its key, `ca.pem`), when there is one.
    /// Blocking.
    pub fn open(dir: &Path, region: &str) -> anyhow::Result<Option<ManagedLeaf>> {
        let (leaf, roots) = (dir.join(CLIENT_LEAF), dir.join(CLIENT_ROOTS));
        if !leaf.exists() {
            return Ok(None);
        }
        drover_durable::repair_files(dir)
            .with_context(|| format!("cannot repair the modes in {}", dir.display()))?;
        let identity = Identity::from_files(&roots, &leaf, &leaf, region).with_context(|| {
            format!(
                "cannot load this client's certificate from {}",
                dir.display()
            )
        })?;
        Ok(Some(ManagedLeaf {
            dir: dir.to_path_buf(),
            region: region.to_string(),
            live: identity.live()?,
        }))
    }

    pub fn live(&self) -> &LiveIdentity {
        &self.live
    }

    /// Syncs with one of `servers` now and then, for as long as the agent runs.
    pub fn spawn_sync(self, servers: Vec<String>, dialer: Dialer) {
        tokio::spawn(async move {
            // At once (the servers' lifetime may be shorter than this leaf's), then now and
            // then.
            let mut lifetime = None;
            loop {
                match self.sync_once(&servers, &dialer).await {
                    Ok(l) => lifetime = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot sync this client's certificate with the servers")
                    }
                }
                let every = sync_interval(lifetime.unwrap_or_else(|| self.own_lifetime()));
                tokio::time::sleep(every).await;
            }
        });
    }

    fn own_lifetime(&self) -> Duration {
        let id = self.live.identity();
        drover_tls::rotation::lifetime(id.chain[0].as_ref()).unwrap_or(Duration::from_secs(3600))
    }

    /// One sync: learns the roots, renews the leaf when due. Returns the servers' leaf
    /// lifetime.
    async fn sync_once(&self, servers: &[String], dialer: &Dialer) -> anyhow::Result<Duration> {
        use drover_proto::certificates::certificates_client::CertificatesClient;
        let current = self.live.identity();
        let trusted = root_hashes(&current.roots);
        let mut last = None;
        for addr in servers {
            let ep = dialer
                .endpoint(addr)?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10));
            let ch = match dialer.connect(ep).await {
                Ok(ch) => ch,
                Err(e) => {
                    last = Some(anyhow::anyhow!("{addr}: {e}"));
                    continue;
                }
            };
            let mut c = CertificatesClient::new(ch);
            // Learn the issuing CA and lifetime first; renew in a second call when due.
            let reply = c
                .sync(SyncRequest {
                    csr: Vec::new(),
                    trusted: trusted.clone(),
                })
                .await
                .with_context(|| format!("sync with {addr}"))?
                .into_inner();
            let lifetime = Duration::from_secs(reply.leaf_lifetime_secs.max(1));
            let issuing =
                drover_tls::pem::certs(reply.issuing_ca_pem.as_bytes(), "issuing CA", addr)?;
            let due = renewal_due(
                current.chain[0].as_ref(),
                issuing[0].as_ref(),
                lifetime,
                SystemTime::now(),
            )?;
            let (roots_pem, renewed) = match due {
                None => (reply.roots_pem, None),
                Some(why) => {
                    let (key, csr) = new_request()?;
                    let r = c
                        .sync(SyncRequest {
                            csr,
                            trusted: trusted.clone(),
                        })
                        .await
                        .with_context(|| format!("renewal with {addr}"))?
                        .into_inner();
                    tracing::info!(?why, phase = %r.phase, "renewed this client's certificate");
                    (r.roots_pem, Some((r.chain_pem, key)))
                }
            };
            self.apply(roots_pem, renewed).await?;
            return Ok(lifetime);
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no server to sync with")))
    }

    /// Writes and puts in place the roots and, when renewed, the new leaf and key.
    async fn apply(
        &self,
        roots_pem: String,
        renewed: Option<(String, String)>,
    ) -> anyhow::Result<()> {
        let current = self.live.identity();
        let (chain, key) = match &renewed {
            Some((c, k)) => (c.clone(), k.clone()),
            None => (drover_tls::pem::encode_certs(&current.chain), String::new()),
        };
        let roots = drover_tls::pem::certs(roots_pem.as_bytes(), "roots", "the servers' reply")?;
        if renewed.is_none() && roots == current.roots {
            return Ok(());
        }
        let mut next = current.clone();
        next.roots = roots;
        if renewed.is_some() {
            next = Identity::from_pem(&roots_pem, &chain, &key, &self.region)?;
        }
        let check = next.clone();
        // The new identity must be usable before it replaces the one on disk.
        check.live()?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            ca_store::write_private(&dir.join(CLIENT_ROOTS), &roots_pem)?;
            if let Some((chain, key)) = renewed {
                ca_store::write_private(&dir.join(CLIENT_LEAF), &format!("{chain}{key}"))?;
            }
            Ok(())
        })
        .await
        .context("writing the certificates panicked")??;
        self.live.replace(next)?;
        Ok(())
    }
}

/// `drover operator tls rotate-ca [-status]`.
pub async fn rotate_ca(c: &crate::cli::ApiClient, status_only: bool) -> anyhow::Result<i32> {
    let path = "/v1/operator/tls/rotate-ca";
    let s: serde_json::Value = if status_only {
        c.get(path).await?
    } else {
        c.send(reqwest::Method::PUT, path, None).await?
    };
    let phase = s["Phase"].as_str().unwrap_or("");
    println!("Phase      = {phase}");
    println!("Active CA  = {}", s["ActiveCA"].as_str().unwrap_or(""));
    if let Some(next) = s["NextCA"].as_str() {
        println!("New CA     = {next}");
    }
    println!(
        "Leaves     = {} seen, {} trusting the new CA, {} issued by it",
        s["Leaves"], s["LeavesTrustingNext"], s["LeavesIssuedByNext"]
    );
    let next = match phase {
        "trust" => {
            "run rotate-ca again once every leaf trusts the new CA: leaves are then issued by it"
        }
        "issue" => {
            "run rotate-ca again once every leaf is issued by the new CA: the old CA is then dropped"
        }
        _ => "no rotation under way; rotate-ca starts one",
    };
    println!("Next step  = {next}");
    Ok(0)
}

/// Reads the operator's `ca_file`, `cert_file` and `key_file` again at each SIGHUP (as
/// Nomad does) and puts them in place for new connections; files that do not load, or a
/// certificate of another role, leave the identity in use and are logged.
pub fn reload_on_hangup(files: crate::tls::TlsFiles, live: LiveIdentity) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let (f, l) = (files.clone(), live.clone());
            let done = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let current = l.identity();
                let next = Identity::from_files(&f.ca, &f.cert, &f.key, &current.region)?;
                if next.role() != current.role() {
                    bail!(
                        "{} proves the {} role, this agent's certificate the {}",
                        f.cert.display(),
                        next.role().map_or("no", Role::word),
                        current.role().map_or("no", Role::word)
                    );
                }
                l.replace(next)?;
                Ok(())
            })
            .await;
            match done {
                Ok(Ok(())) => tracing::info!("SIGHUP: reloaded the TLS certificates"),
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: the TLS certificates were not reloaded; the ones in use stay")
                }
                Err(e) => tracing::error!(error = %e, "reloading the TLS certificates panicked"),
            }
        }
    });
    Ok(())
}
