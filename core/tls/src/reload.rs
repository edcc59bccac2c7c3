//! One swappable handle on an agent's TLS identity. The listeners' and the dialer's rustls
//! configurations are built once over it: the certificate they present
//! ([`ResolvesServerCert`]/[`ResolvesClientCert`]) and the roots they verify peers against
//! (custom verifiers) are read from the handle at each handshake. [`LiveIdentity::replace`]
//! puts a new leaf or new roots in place: new connections use them, established ones are
//! left alone (no restart, no dropped connection).
//!
//! Session resumption is off: a resumed session would skip the verification against the
//! roots of the moment (an old CA's leaf must be refused once that CA is dropped).

use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::{Error, Identity, Role};

/// What one identity makes: the key with its chain, and the verifiers of its roots.
struct Current {
    identity: Identity,
    certified: Arc<CertifiedKey>,
    /// Peers dialled must chain to the roots (their server role is checked on top).
    server_verifier: Arc<WebPkiServerVerifier>,
    /// The RPC listener's: a certificate is optional, verified when sent.
    optional_client: Arc<dyn ClientCertVerifier>,
    /// The HTTP listener's with `verify_https_client`: a certificate is required.
    required_client: Arc<dyn ClientCertVerifier>,
}

impl Current {
    fn new(identity: Identity) -> Result<Current, Error> {
        let mut roots = RootCertStore::empty();
        for c in &identity.roots {
            roots.add(c.clone())?;
        }
        let roots = Arc::new(roots);
        let provider = crate::provider();
        let certified = Arc::new(CertifiedKey::from_der(
            identity.chain.clone(),
            identity.key.clone_key(),
            &provider,
        )?);
        Ok(Current {
            server_verifier: WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .build()?,
            optional_client: WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .allow_unauthenticated()
            .build()?,
            required_client: WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()?,
            certified,
            identity,
        })
    }
}

/// An agent's identity of the moment, shared by every configuration made from it.
#[derive(Clone)]
pub struct LiveIdentity {
    current: Arc<RwLock<Arc<Current>>>,
    region: Arc<str>,
}

impl std::fmt::Debug for LiveIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveIdentity")
            .field("identity", &self.load().identity)
            .finish()
    }
}

impl LiveIdentity {
    pub fn new(identity: Identity) -> Result<LiveIdentity, Error> {
        let region = identity.region.as_str().into();
        Ok(LiveIdentity {
            current: Arc::new(RwLock::new(Arc::new(Current::new(identity)?))),
            region,
        })
    }

    fn load(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The identity in use.
    pub fn identity(&self) -> Identity {
        self.load().identity.clone()
    }

    /// Puts `identity` in place for the handshakes to come. Refused (and the one in use
    /// kept) when its key is not its certificate's, a root does not parse, or it is of
    /// another region.
    pub fn replace(&self, identity: Identity) -> Result<(), Error> {
        if *identity.region != *self.region {
            return Err(Error::Certificate(format!(
                "a new identity is for region {}, this agent's is {}",
                identity.region, self.region
            )));
        }
        let next = Arc::new(Current::new(identity)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// The RPC listener's: a client certificate is asked for, verified against the roots
    /// when one is sent, and may be absent; the services check the role (`RoleCheck`).
    pub fn rpc_server_config(&self) -> Result<Arc<ServerConfig>, Error> {
        let mut c = ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(LiveClientVerifier {
                live: self.clone(),
                required: false,
            }))
            .with_cert_resolver(Arc::new(LiveCert(self.clone())));
        c.alpn_protocols = vec![b"h2".to_vec()];
        c.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(Arc::new(c))
    }

    /// The HTTP listener's: a client certificate of the roots is required when
    /// `verify_client` (Nomad's `verify_https_client`), not asked for otherwise.
    pub fn http_server_config(&self, verify_client: bool) -> Result<Arc<ServerConfig>, Error> {
        let b = ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?;
        let b = if verify_client {
            b.with_client_cert_verifier(Arc::new(LiveClientVerifier {
                live: self.clone(),
                required: true,
            }))
        } else {
            b.with_no_client_auth()
        };
        let mut c = b.with_cert_resolver(Arc::new(LiveCert(self.clone())));
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(Arc::new(c))
    }

    /// The dialer's: this agent's certificate as the client certificate, and the peer must
    /// be a server of the region chaining to the roots.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let mut c = ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerRoleVerifier {
                live: self.clone(),
                names: Role::Server.names(&self.region),
            }))
            .with_client_cert_resolver(Arc::new(LiveCert(self.clone())));
        c.alpn_protocols = vec![b"h2".to_vec()];
        c.resumption = Resumption::disabled();
        Ok(Arc::new(c))
    }
}

/// Presents the certificate of the moment, as a server and as a client.
#[derive(Debug)]
struct LiveCert(LiveIdentity);

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().certified.clone())
    }
}

impl ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies a client's chain against the roots of the moment.
#[derive(Debug)]
struct LiveClientVerifier {
    live: LiveIdentity,
    required: bool,
}

impl LiveClientVerifier {
    fn inner(&self) -> Arc<dyn ClientCertVerifier> {
        let c = self.live.load();
        if self.required {
            c.required_client.clone()
        } else {
            c.optional_client.clone()
        }
    }
}

impl ClientCertVerifier for LiveClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    /// No hints: the roots change, and Drover's agents send their one certificate anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner().supported_verify_schemes()
    }
}

/// Verifies the chain against the roots of the moment, then that the certificate names a
/// server of the region (`server.<region>.drover` or Nomad's `server.<region>.nomad`),
/// whatever address was dialled: Nomad's `verify_server_hostname`, always on.
#[derive(Debug)]
struct ServerRoleVerifier {
    live: LiveIdentity,
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
        let inner = self.live.load().server_verifier.clone();
        let mut last = None;
        for n in &self.names {
            let name = ServerName::try_from(n.as_str())
                .map_err(|_| rustls::Error::General(format!("{n:?} is not a DNS name")))?;
            match inner.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now) {
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
        self.live
            .load()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.live
            .load()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.live.load().server_verifier.supported_verify_schemes()
    }
}
