//! A certificate authority (rcgen, ECDSA P-256): created or loaded from PEM, issuing the
//! certificates of servers, clients and operators with the names and key usages of their
//! role, and identified by the SHA-256 of its public key (kubeadm's discovery hash).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{Error, Role};

/// How long a CA made by Drover is valid (Nomad's `tls ca create -days` default: 5 years).
pub const CA_DAYS: u32 = 1825;
/// How long a leaf certificate is valid (Nomad's `tls cert create -days` default).
pub const LEAF_DAYS: u32 = 365;

/// A CA: its certificate and signing key.
pub struct Authority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub role: Role,
    pub region: String,
    /// DNS names beyond the role's (and `localhost`).
    pub dns_names: Vec<String>,
    /// IP addresses beyond 127.0.0.1.
    pub ip_addresses: Vec<IpAddr>,
    pub days: u32,
    /// A lifetime finer than days (renewed leaves of the CA made for you); wins over `days`.
    pub lifetime: Option<std::time::Duration>,
}

impl LeafSpec {
    pub fn new(role: Role, region: &str) -> LeafSpec {
        LeafSpec {
            role,
            region: region.to_string(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            days: LEAF_DAYS,
            lifetime: None,
        }
    }

    /// The certificate's parameters: the role's names (Drover's and Nomad's), `localhost`
    /// and 127.0.0.1 (as Nomad's), the extra names; key usages and validity set here, never
    /// taken from a request.
    pub(crate) fn params(&self) -> Result<CertificateParams, Error> {
        let mut names = self.role.names(&self.region);
        if self.role != Role::Cli {
            names.push("localhost".into());
        }
        for n in &self.dns_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let mut p = CertificateParams::new(names)?;
        let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        for ip in &self.ip_addresses {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        if self.role != Role::Cli {
            p.subject_alt_names
                .extend(ips.into_iter().map(SanType::IpAddress));
        }
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("{}.{}.drover", self.role, self.region),
        );
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, self.lifetime.unwrap_or(days(self.days)));
        p.serial_number = Some(serial());
        Ok(p)
    }
}

/// A certificate and its new private key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(p: &mut CertificateParams, lifetime: std::time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    let lifetime = time::Duration::try_from(lifetime.max(std::time::Duration::from_secs(1)))
        .unwrap_or(time::Duration::days(i64::from(CA_DAYS)));
    // Up to a minute back (a quarter of a short lifetime): clocks of the agents differ a
    // little.
    p.not_before = now - (lifetime / 4_i32).min(time::Duration::minutes(1));
    p.not_after = now + lifetime;
}

fn days(days: u32) -> std::time::Duration {
    std::time::Duration::from_secs(86_400 * u64::from(days.max(1)))
}

/// A random positive 128-bit serial number.
fn serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

fn new_key() -> Result<KeyPair, Error> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

impl Authority {
    /// A new CA named `common_name`, valid `days`.
    pub fn create(common_name: &str, days: u32) -> Result<Authority, Error> {
        let key = new_key()?;
        let cert = ca_params(common_name, days).self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A new CA to rotate to, and the same CA certificate signed by this one (its subject
    /// and key, this CA as issuer): served after a leaf of the new CA, it lets an agent
    /// that trusts only this CA accept that leaf.
    pub fn successor(
        &self,
        common_name: &str,
        days: u32,
    ) -> Result<(Authority, CertificateDer<'static>), Error> {
        let key = new_key()?;
        let p = ca_params(common_name, days);
        let cert = p.self_signed(&key)?;
        let cross = p.signed_by(&key, &self.issuer()?)?;
        Ok((
            Authority {
                cert_pem: cert.pem(),
                cert_der: cert.der().clone(),
                key_pem: key.serialize_pem(),
            },
            cross.der().clone(),
        ))
    }

    /// A certificate for the key of a certificate signing request (DER), whose signature
    /// proves the requester holds it. Only the key is taken from the request: names, key
    /// usages and validity are `spec`'s. Returns the certificate, PEM.
    pub fn sign_request(&self, spec: &LeafSpec, csr_der: &[u8]) -> Result<String, Error> {
        let csr = rcgen::CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| Error::Certificate(format!("the certificate request: {e}")))?;
        Ok(spec
            .params()?
            .signed_by(&csr.public_key, &self.issuer()?)?
            .pem())
    }

    /// A CA from its PEM certificate and key; refused when the key is not the
    /// certificate's, or the certificate is no CA.
    pub fn load(cert_pem: &[u8], key_pem: &[u8], source: &str) -> Result<Authority, Error> {
        let der = crate::pem::certs(cert_pem, "CA certificate", source)?
            .into_iter()
            .next()
            .expect("certs returns at least one");
        let key_text = std::str::from_utf8(key_pem)
            .map_err(|_| Error::Certificate(format!("the CA key of {source} is not PEM text")))?;
        let key = KeyPair::from_pem(key_text)
            .map_err(|e| Error::Certificate(format!("the CA key of {source}: {e}")))?;
        let (_, parsed) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| Error::Certificate(format!("the CA certificate {source}: {e}")))?;
        if !parsed.is_ca() {
            return Err(Error::Certificate(format!(
                "the certificate {source} is not a CA (basic constraints say so)"
            )));
        }
        if parsed.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
            return Err(Error::Certificate(format!(
                "the CA key does not belong to the CA certificate {source}"
            )));
        }
        Ok(Authority {
            cert_pem: crate::pem::encode("CERTIFICATE", der.as_ref()),
            cert_der: der,
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA from a certificate file and a key file.
    pub fn load_files(cert: &Path, key: &Path) -> Result<Authority, Error> {
        let c = crate::pem::read(cert, "CA certificate")?;
        let k = crate::pem::read(key, "CA key")?;
        Authority::load(&c, &k, &cert.display().to_string())
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The private key, PEM. Whoever stores it keeps it 0600 (see the agent's CA store).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// `sha256:<hex>` of the CA's SubjectPublicKeyInfo: what a joining agent pins.
    pub fn spki_hash(&self) -> String {
        spki_hash(self.cert_der.as_ref()).expect("our own CA certificate parses")
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, Error> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Ok(Issuer::from_ca_cert_der(&self.cert_der, key)?)
    }

    /// A new key and a certificate for it, signed by this CA.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Leaf, Error> {
        let key = new_key()?;
        let cert = spec.params()?.signed_by(&key, &self.issuer()?)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A CA certificate's parameters.
fn ca_params(common_name: &str, days_valid: u32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, days(days_valid));
    p.serial_number = Some(serial());
    p
}

/// `sha256:<hex>` of a certificate's SubjectPublicKeyInfo (DER).
pub fn spki_hash(cert_der: &[u8]) -> Result<String, Error> {
    let (_, c) = X509Certificate::from_der(cert_der)
        .map_err(|e| Error::Certificate(format!("cannot parse a certificate: {e}")))?;
    let digest = Sha256::digest(c.tbs_certificate.subject_pki.raw);
    Ok(format!("sha256:{}", hex(&digest)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_leaf_carries_its_role_names_and_a_ca_reloads_with_its_key_only() {
        let ca = Authority::create("Drover CA test", 30).unwrap();
        let leaf = ca.issue(&LeafSpec::new(Role::Server, "eu")).unwrap();
        let der = crate::pem::certs(leaf.cert_pem.as_bytes(), "leaf", "leaf").unwrap();
        assert_eq!(Role::of_cert(der[0].as_ref(), "eu"), Some(Role::Server));
        // Another region's server is no server here.
        assert_eq!(Role::of_cert(der[0].as_ref(), "us"), None);
        let names = crate::role::dns_names(der[0].as_ref()).unwrap();
        assert!(names.contains(&"server.eu.nomad".to_string()), "{names:?}");
        let client = ca.issue(&LeafSpec::new(Role::Client, "eu")).unwrap();
        let der = crate::pem::certs(client.cert_pem.as_bytes(), "leaf", "leaf").unwrap();
        assert_eq!(Role::of_cert(der[0].as_ref(), "eu"), Some(Role::Client));

        let again =
            Authority::load(ca.cert_pem().as_bytes(), ca.key_pem().as_bytes(), "ca.pem").unwrap();
        assert_eq!(again.spki_hash(), ca.spki_hash());
        assert!(ca.spki_hash().starts_with("sha256:") && ca.spki_hash().len() == 7 + 64);
        let other = Authority::create("other", 30).unwrap();
        let e = Authority::load(
            ca.cert_pem().as_bytes(),
            other.key_pem().as_bytes(),
            "ca.pem",
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("does not belong"), "{e}");
        // A leaf is no CA.
        let e = Authority::load(
            leaf.cert_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
            "leaf.pem",
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("not a CA"), "{e}");
    }
}
