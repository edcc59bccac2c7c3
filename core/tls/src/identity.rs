//! An agent's TLS identity — the CA roots it trusts, its certificate chain and key — and the
//! rustls configurations made of it: the RPC listener (a client certificate is asked for and
//! verified when sent; each service checks the role it proves), the HTTP listener (a client
//! certificate required when `verify_https_client`), and the dialer's (the peer must prove
//! the server role).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ServerConfig};

use crate::reload::LiveIdentity;
use crate::{Error, Role};

/// What an agent presents and trusts.
pub struct Identity {
    pub roots: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The region whose role names peers must carry.
    pub region: String,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            region: self.region.clone(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Nomad's `tls { ca_file cert_file key_file }`.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path, region: &str) -> Result<Identity, Error> {
        Ok(Identity {
            roots: crate::pem::cert_file(ca, "ca_file")?,
            chain: crate::pem::cert_file(cert, "cert_file")?,
            key: crate::pem::key_file(key, "key_file")?,
            region: region.to_string(),
        })
    }

    /// The same from PEM texts.
    pub fn from_pem(ca: &str, cert: &str, key: &str, region: &str) -> Result<Identity, Error> {
        Ok(Identity {
            roots: crate::pem::certs(ca.as_bytes(), "CA certificate", "ca")?,
            chain: crate::pem::certs(cert.as_bytes(), "certificate", "cert")?,
            key: crate::pem::key(key.as_bytes(), "key", "key")?,
            region: region.to_string(),
        })
    }

    /// The role this agent's own certificate proves.
    pub fn role(&self) -> Option<Role> {
        Role::of_cert(self.chain.first()?.as_ref(), &self.region)
    }

    /// A handle on this identity alone (see [`LiveIdentity`] to swap it later).
    pub fn live(&self) -> Result<LiveIdentity, Error> {
        LiveIdentity::new(self.clone())
    }

    /// The RPC listener's configuration ([`LiveIdentity::rpc_server_config`]).
    pub fn rpc_server_config(&self) -> Result<Arc<ServerConfig>, Error> {
        self.live()?.rpc_server_config()
    }

    /// The HTTP listener's configuration ([`LiveIdentity::http_server_config`]).
    pub fn http_server_config(&self, verify_client: bool) -> Result<Arc<ServerConfig>, Error> {
        self.live()?.http_server_config(verify_client)
    }

    /// The dialer's configuration ([`LiveIdentity::client_config`]).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        self.live()?.client_config()
    }
}
