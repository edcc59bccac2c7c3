//! The agent's TLS: Nomad's `tls { ... }` block resolved, the identity loaded (the
//! operator's files, or the CA the first server makes for you), and what the listeners and
//! the dialer are given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use drover_tls::authority::LeafSpec;
use drover_tls::{Authority, Dialer, Identity, Role};

use crate::config::TlsBlock;
use crate::tls_rotation::{CaAuthority, ManagedLeaf};

/// `tls { ca_file cert_file key_file }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The `tls` block, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// HTTPS on the HTTP API.
    pub http: bool,
    /// mTLS on the RPC port (Raft, node streams) and when dialling it.
    pub rpc: bool,
    /// The operator's certificates; None with `http` or `rpc`: the CA made for you.
    pub files: Option<TlsFiles>,
    /// The HTTP API requires a client certificate signed by the CA.
    pub verify_https_client: bool,
    /// How long the leaves of the CA made for you live (Drover's `leaf_lifetime`); they
    /// renew at two thirds of it.
    pub leaf_lifetime: std::time::Duration,
}

/// The default lifetime of the leaves of the CA made for you (as `drover tls cert create`).
pub const LEAF_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(86_400 * drover_tls::authority::LEAF_DAYS as u64);

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.http || self.rpc
    }

    /// The block as Nomad reads it; what Drover cannot honour is refused with the key.
    pub fn resolve(
        block: Option<&TlsBlock>,
        server: bool,
        joins: bool,
    ) -> anyhow::Result<TlsSettings> {
        let Some(b) = block else {
            return Ok(TlsSettings::default());
        };
        let files = match (&b.ca_file, &b.cert_file, &b.key_file) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
                ca: PathBuf::from(ca),
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (ca, cert, key) => {
                let missing: Vec<&str> = [("ca_file", ca), ("cert_file", cert), ("key_file", key)]
                    .into_iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| k)
                    .collect();
                bail!(
                    "tls: ca_file, cert_file and key_file go together; {} missing",
                    missing.join(" and ")
                );
            }
        };
        if b.rpc_upgrade_mode == Some(true) {
            bail!(
                "tls.rpc_upgrade_mode: accepting plaintext and TLS on one port is not supported; turn rpc on for every agent at once"
            );
        }
        if b.tls_cipher_suites.is_some() {
            bail!("tls.tls_cipher_suites: not configurable; rustls's safe defaults are used");
        }
        if let Some(v) = &b.tls_min_version
            && v != "tls12"
        {
            bail!("tls.tls_min_version {v:?}: only \"tls12\" (the default) is supported");
        }
        if b.verify_server_hostname == Some(false) {
            tracing::warn!(
                "tls.verify_server_hostname = false is ignored: Drover always checks that a server's certificate names server.<region>.drover or server.<region>.nomad"
            );
        }
        let s = TlsSettings {
            http: b.http.unwrap_or(false),
            rpc: b.rpc.unwrap_or(false),
            files,
            verify_https_client: b.verify_https_client.unwrap_or(false),
            leaf_lifetime: match &b.leaf_lifetime {
                None => LEAF_LIFETIME,
                Some(v) => drover_jobspec::parse_duration(v)
                    .filter(|d| {
                        (std::time::Duration::from_secs(10)..=LEAF_LIFETIME * 10).contains(d)
                    })
                    .with_context(|| {
                        format!(
                            "tls.leaf_lifetime {v:?}: a duration between \"10s\" and \"87600h\""
                        )
                    })?,
            },
        };
        if s.enabled() && s.files.is_none() {
            // A client without files uses the leaf of the CA made for you kept under its
            // data_dir (checked when loading).
            if server && joins {
                bail!(
                    "tls: with the CA made for you (no ca_file, cert_file, key_file) a server cannot join others yet; give every server files made with `drover tls`"
                );
            }
        }
        Ok(s)
    }
}

/// What the listeners and the dialer run with.
#[derive(Clone, Default)]
pub struct AgentTls {
    pub dialer: Dialer,
    /// The RPC listener's configuration, when `rpc`.
    pub rpc: Option<Arc<rustls::ServerConfig>>,
    /// The HTTP listener's configuration, when `http`.
    pub http: Option<Arc<rustls::ServerConfig>>,
    /// How a follower forwards node-bound requests to the leader: HTTPS with this agent's
    /// certificate when `http`.
    pub leader_proxy: drover_api::leader_proxy::LeaderProxy,
    /// The CA made for you, on the server holding it.
    pub authority: Option<Arc<CaAuthority>>,
    /// A client's leaf of the CA made for you, synced with the servers.
    pub managed: Option<ManagedLeaf>,
    /// The operator's files and the identity made of them: read again on SIGHUP.
    pub files: Option<(TlsFiles, drover_tls::LiveIdentity)>,
}

impl AgentTls {
    /// Loads the identity (files, or the CA made for you under `<data_dir>/tls`) and builds
    /// the configurations. Blocking: call it off the runtime.
    pub fn load(
        s: &TlsSettings,
        data_dir: &Path,
        region: &str,
        server: bool,
        advertise: &[String],
    ) -> anyhow::Result<AgentTls> {
        if !s.enabled() {
            return Ok(AgentTls::default());
        }
        let dir = data_dir.join("tls");
        let (mut authority, mut managed) = (None, None);
        let live = match &s.files {
            Some(f) => Identity::from_files(&f.ca, &f.cert, &f.key, region)
                .context("tls: cannot load the agent's certificates")?
                .live()?,
            None if server => {
                let ca = CaAuthority::open(&dir, region, advertise, s.leaf_lifetime)?;
                let live = ca.live().clone();
                authority = Some(ca);
                live
            }
            None => {
                let Some(leaf) = ManagedLeaf::open(&dir, region)? else {
                    bail!(
                        "tls: a client needs ca_file, cert_file and key_file (make them with `drover tls cert create -client` and the servers' CA), or a certificate of the CA made for you in {}",
                        dir.join(crate::tls_rotation::CLIENT_LEAF).display()
                    );
                };
                let live = leaf.live().clone();
                managed = Some(leaf);
                live
            }
        };
        let identity = live.identity();
        match identity.role() {
            Some(Role::Server) => {}
            Some(Role::Client) if !server => {}
            other => {
                let wanted = if server { Role::Server } else { Role::Client };
                bail!(
                    "tls.cert_file: this agent's certificate must name {} (it proves {}); make one with `drover tls cert create -{wanted}`",
                    wanted.names(region).join(" or "),
                    other.map_or("no role".to_string(), |r| format!("the {r} role"))
                );
            }
        }
        let rpc_client = live
            .client_config()
            .context("tls: the RPC client configuration")?;
        Ok(AgentTls {
            leader_proxy: if s.http {
                drover_api::leader_proxy::LeaderProxy::https(&rpc_client)
            } else {
                drover_api::leader_proxy::LeaderProxy::http()
            },
            dialer: if s.rpc {
                Dialer::tls(rpc_client)
            } else {
                Dialer::plaintext()
            },
            rpc: s
                .rpc
                .then(|| live.rpc_server_config())
                .transpose()
                .context("tls: the RPC listener's configuration")?,
            http: s
                .http
                .then(|| live.http_server_config(s.verify_https_client))
                .transpose()
                .context("tls: the HTTP listener's configuration")?,
            authority,
            managed,
            files: s.files.clone().map(|f| (f, live.clone())),
        })
    }
}

/// The CA made for you: `<data_dir>/tls/` (0700, beside `server/`, outside the Raft
/// directory) holds `ca.pem`, `ca-key.pem` (0600) and this server's `server.pem` and
/// `server-key.pem` (0600), issued again at every start.
///
/// The seam for the keyring: the CA key is read and written only by [`read_ca`] and
/// [`write_ca`]; wrapping it with the keyring's key-encryption key changes those two.
pub(crate) mod ca_store {
    use super::*;

    const CA: &str = "ca.pem";
    const CA_KEY: &str = "ca-key.pem";

    pub(crate) fn read_ca(dir: &Path) -> anyhow::Result<Option<Authority>> {
        let (cert, key) = (dir.join(CA), dir.join(CA_KEY));
        match (cert.exists(), key.exists()) {
            (false, false) => Ok(None),
            (true, true) => Ok(Some(Authority::load_files(&cert, &key).with_context(
                || format!("cannot load the cluster's CA from {}", dir.display()),
            )?)),
            _ => bail!(
                "{} has only one of {CA} and {CA_KEY}: restore the other, or remove both to make a new CA (every agent must then get new certificates)",
                dir.display()
            ),
        }
    }

    pub(crate) fn write_ca(dir: &Path, ca: &Authority) -> anyhow::Result<()> {
        write_private(&dir.join(CA_KEY), ca.key_pem())?;
        write_private(&dir.join(CA), ca.cert_pem())
    }

    pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
        drover_durable::write_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The CA made for you under `dir` (0700), created the first time.
    pub(crate) fn open_ca(dir: &Path, region: &str) -> anyhow::Result<Authority> {
        drover_durable::ensure_dir(dir, drover_durable::DIR_MODE)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        drover_durable::repair_files(dir)
            .with_context(|| format!("cannot repair the modes in {}", dir.display()))?;
        let ca = match read_ca(dir)? {
            Some(ca) => ca,
            None => {
                let ca = Authority::create(
                    &format!("Drover Agent CA {region}"),
                    drover_tls::authority::CA_DAYS,
                )?;
                write_ca(dir, &ca)?;
                tracing::info!(dir = %dir.display(), ca_hash = %ca.spki_hash(), "created the cluster's CA");
                ca
            }
        };
        tracing::info!(ca_hash = %ca.spki_hash(), "TLS with the CA made for you: {}", dir.join(CA).display());
        Ok(ca)
    }

    /// A server's leaf: its role's names and its advertised addresses.
    pub(crate) fn server_spec(region: &str, advertise: &[String]) -> LeafSpec {
        let mut spec = LeafSpec::new(Role::Server, region);
        for a in advertise {
            let host = a
                .rsplit_once(':')
                .map_or(a.as_str(), |(h, _)| h)
                .trim_matches(['[', ']']);
            match host.parse() {
                Ok(ip) => spec.ip_addresses.push(ip),
                Err(_) if !host.is_empty() => spec.dns_names.push(host.to_string()),
                Err(_) => {}
            }
        }
        spec
    }
}

/// The HTTP API's TLS listener: connections accepted by the limited listener, handshaken
/// off the accept loop.
pub struct HttpsListener {
    conns: drover_tls::Handshakes<drover_api::limits::LimitedConn>,
    local: SocketAddr,
}

impl HttpsListener {
    pub fn new(
        mut inner: drover_api::limits::LimitedListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<HttpsListener> {
        use axum::serve::Listener;
        let local = inner.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let conn = inner.accept().await;
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
        });
        Ok(HttpsListener {
            conns: drover_tls::handshakes(rx, config),
            local,
        })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<drover_api::limits::LimitedConn>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.conns.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(f: impl FnOnce(&mut TlsBlock)) -> TlsBlock {
        let mut b = TlsBlock::default();
        f(&mut b);
        b
    }

    #[test]
    fn files_go_together_and_a_client_needs_them() {
        let e = TlsSettings::resolve(
            Some(&block(|b| {
                b.rpc = Some(true);
                b.ca_file = Some("ca.pem".into());
            })),
            true,
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("cert_file and key_file missing"),
            "{e}"
        );
        // A client without files: the leaf of the CA made for you, when it has one.
        let s = TlsSettings::resolve(Some(&block(|b| b.rpc = Some(true))), false, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = AgentTls::load(&s, dir.path(), "global", false, &[])
            .err()
            .unwrap();
        assert!(e.to_string().contains("a client needs ca_file"), "{e}");
        let e = TlsSettings::resolve(
            Some(&block(|b| b.leaf_lifetime = Some("1s".into()))),
            true,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("leaf_lifetime"), "{e}");
        // A lone server makes its CA.
        let s = TlsSettings::resolve(Some(&block(|b| b.rpc = Some(true))), true, false).unwrap();
        assert!(s.rpc && s.files.is_none());
        let e = TlsSettings::resolve(Some(&block(|b| b.rpc = Some(true))), true, true).unwrap_err();
        assert!(e.to_string().contains("cannot join"), "{e}");
        let e = TlsSettings::resolve(
            Some(&block(|b| b.tls_cipher_suites = Some("x".into()))),
            true,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("tls_cipher_suites"), "{e}");
    }

    #[test]
    fn the_ca_made_for_you_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let open = |adv: &[String]| {
            CaAuthority::open(&tls, "global", adv, LEAF_LIFETIME).map(|ca| ca.live().identity())
        };
        let a = open(&["10.1.2.3:4647".into()]).unwrap();
        for f in ["ca-key.pem", "server-key.pem"] {
            let mode = std::fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let mode = std::fs::metadata(&tls).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let b = open(&[]).unwrap();
        assert_eq!(a.roots, b.roots, "the CA is made once");
        assert_eq!(a.role(), Some(Role::Server));
        std::fs::remove_file(tls.join("ca-key.pem")).unwrap();
        let e = open(&[]).unwrap_err();
        assert!(e.to_string().contains("only one of"), "{e}");
    }
}
