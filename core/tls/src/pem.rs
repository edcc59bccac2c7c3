//! Certificate and key files: read with a size bound, parsed from PEM.

use std::io::Read;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The largest PEM file read (a CA bundle, a chain or a key).
pub const MAX_PEM: u64 = 1 << 20;

/// A file's bytes, refused above [`MAX_PEM`].
pub fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    let shown = || path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| Error::Read {
        what,
        path: shown(),
        source,
    })?;
    let mut buf = Vec::new();
    f.take(MAX_PEM + 1)
        .read_to_end(&mut buf)
        .map_err(|source| Error::Read {
            what,
            path: shown(),
            source,
        })?;
    if buf.len() as u64 > MAX_PEM {
        return Err(Error::TooLarge {
            what,
            path: shown(),
            max: MAX_PEM,
        });
    }
    Ok(buf)
}

/// Every certificate of a PEM text (`source` names it in errors); at least one.
pub fn certs(
    pem: &[u8],
    what: &'static str,
    source: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadPem {
            what,
            path: source.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::NoPem {
            what,
            path: source.to_string(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

/// The private key of a PEM text (PKCS#8, PKCS#1 or SEC1).
pub fn key(pem: &[u8], what: &'static str, source: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => Error::NoPem {
            what,
            path: source.to_string(),
            kind: "private key",
        },
        e => Error::BadPem {
            what,
            path: source.to_string(),
            reason: e.to_string(),
        },
    })
}

/// Certificates read from a file.
pub fn cert_file(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    certs(&read(path, what)?, what, &path.display().to_string())
}

/// A private key read from a file.
pub fn key_file(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, Error> {
    key(&read(path, what)?, what, &path.display().to_string())
}

/// PEM text of DER certificates.
pub fn encode_certs(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| encode("CERTIFICATE", c.as_ref()))
        .collect()
}

/// One PEM block.
pub fn encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_above_the_bound_is_refused_and_garbage_named() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'a'; MAX_PEM as usize + 1]).unwrap();
        let e = cert_file(&big, "CA file").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let e = cert_file(&junk, "CA file").unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        let e = key_file(&junk, "key file").unwrap_err();
        assert!(e.to_string().contains("holds no PEM private key"), "{e}");
    }

    #[test]
    fn encoding_round_trips() {
        for n in [1usize, 2, 3, 47, 48, 49, 200] {
            let der: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let pem = encode("CERTIFICATE", &der);
            let back = certs(pem.as_bytes(), "x", "x").unwrap();
            assert_eq!(back[0].as_ref(), &der[..]);
        }
    }
}
