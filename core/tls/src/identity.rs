//! An agent's TLS identity — the CA roots it trusts, its certificate chain and key — and the
//! rustls configurations made of it: the RPC listener (a client certificate is asked for and
//! verified when sent; each service checks the role it proves), the HTTP listener (a client
//! certificate required when `verify_https_client`), and the dialer's (the peer must prove
//! the server role).

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

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

    fn root_store(&self) -> Result<Arc<RootCertStore>, Error> {
        let mut roots = RootCertStore::empty();
        for c in &self.roots {
            roots.add(c.clone())?;
        }
        Ok(Arc::new(roots))
    }

    /// The RPC listener's: a client certificate is asked for, verified against the CA when
    /// one is sent, and may be absent (enrollment is reachable without one); the services
    /// check the role (`RoleCheck`).
    pub fn rpc_server_config(&self) -> Result<Arc<ServerConfig>, Error> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.root_store()?, crate::provider())
                .allow_unauthenticated()
                .build()?;
        let mut c = ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        c.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(c))
    }

    /// The HTTP listener's: a client certificate signed by the CA is required when
    /// `verify_client` (Nomad's `verify_https_client`), not asked for otherwise.
    pub fn http_server_config(&self, verify_client: bool) -> Result<Arc<ServerConfig>, Error> {
        let b = ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?;
        let b = if verify_client {
            b.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(self.root_store()?, crate::provider())
                    .build()?,
            )
        } else {
            b.with_no_client_auth()
        };
        let mut c = b.with_single_cert(self.chain.clone(), self.key.clone_key())?;
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }

    /// The dialer's: this agent's certificate as the client certificate, and the peer must
    /// be a server of the region signed by the CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(self.root_store()?, crate::provider())
                .build()?;
        let verifier = Arc::new(ServerRoleVerifier {
            inner,
            names: Role::Server.names(&self.region),
        });
        let mut c = ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        c.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(c))
    }
}

/// Verifies the chain against the CA, then that the certificate names a server of the
/// region (`server.<region>.drover` or Nomad's `server.<region>.nomad`), whatever address
/// was dialled: Nomad's `verify_server_hostname`, always on.
#[derive(Debug)]
struct ServerRoleVerifier {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<String>,
}

impl ServerCertVerifier for ServerRoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = None;
        for n in &self.names {
            let name = ServerName::try_from(n.as_str())
                .map_err(|_| rustls::Error::General(format!("{n:?} is not a DNS name")))?;
            match self.inner.verify_server_cert(
                end_entity,
                intermediates,
                &name,
                ocsp_response,
                now,
            ) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(rustls::Error::General("no server name to verify".into())))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
