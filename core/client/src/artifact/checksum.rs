//! Artifact checksums: go-getter's `checksum` option (`md5`, `sha1`, `sha256`, `sha512`),
//! computed while the artifact is written and compared before anything is unpacked.

use std::fmt;

use sha2::Digest;

use super::ArtifactError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumKind {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl ChecksumKind {
    const ALL: [ChecksumKind; 4] = [
        ChecksumKind::Md5,
        ChecksumKind::Sha1,
        ChecksumKind::Sha256,
        ChecksumKind::Sha512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ChecksumKind::Md5 => "md5",
            ChecksumKind::Sha1 => "sha1",
            ChecksumKind::Sha256 => "sha256",
            ChecksumKind::Sha512 => "sha512",
        }
    }

    /// The length of the digest in hex digits.
    fn hex_len(self) -> usize {
        match self {
            ChecksumKind::Md5 => 32,
            ChecksumKind::Sha1 => 40,
            ChecksumKind::Sha256 => 64,
            ChecksumKind::Sha512 => 128,
        }
    }
}

/// An expected digest, as the jobspec gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub kind: ChecksumKind,
    /// Lowercase hex.
    pub hex: String,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.hex)
    }
}

impl Checksum {
    /// Parses `type:hex`, or a bare hex digest whose type is guessed from its length, as
    /// go-getter does.
    pub fn parse(value: &str) -> Result<Checksum, ArtifactError> {
        let bad = |why: String| ArtifactError::BadChecksum {
            value: value.to_string(),
            why,
        };
        let value = value.trim();
        let (kind, hex) = match value.split_once(':') {
            Some(("file", _)) => {
                return Err(bad(
                    "checksum files (\"file:<url>\") are not supported: give the digest itself"
                        .into(),
                ));
            }
            Some((name, hex)) => {
                let kind = ChecksumKind::ALL
                    .into_iter()
                    .find(|k| k.name().eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        bad(format!(
                            "unknown checksum type {name:?}: use md5, sha1, sha256 or sha512"
                        ))
                    })?;
                (kind, hex)
            }
            None => {
                let kind = ChecksumKind::ALL
                    .into_iter()
                    .find(|k| k.hex_len() == value.len())
                    .ok_or_else(|| {
                        bad("give it as \"<type>:<hex digest>\", e.g. \"sha256:...\"".into())
                    })?;
                (kind, value)
            }
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the digest is not hexadecimal".into()));
        }
        if hex.len() != kind.hex_len() {
            return Err(bad(format!(
                "a {} digest has {} hex digits, this one has {}",
                kind.name(),
                kind.hex_len(),
                hex.len()
            )));
        }
        Ok(Checksum {
            kind,
            hex: hex.to_ascii_lowercase(),
        })
    }
}

/// A running digest of one of the supported kinds.
pub enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(kind: ChecksumKind) -> Hasher {
        match kind {
            ChecksumKind::Md5 => Hasher::Md5(md5::Md5::new()),
            ChecksumKind::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            ChecksumKind::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            ChecksumKind::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest in lowercase hex.
    pub fn finish(self) -> String {
        let bytes = match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Compares a finished digest with the expected one.
pub fn verify(expected: &Checksum, actual_hex: String) -> Result<(), ArtifactError> {
    if actual_hex == expected.hex {
        Ok(())
    } else {
        Err(ArtifactError::ChecksumMismatch {
            expected: expected.to_string(),
            actual: format!("{}:{actual_hex}", expected.kind.name()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(kind: ChecksumKind, data: &[u8]) -> String {
        let mut h = Hasher::new(kind);
        // In two pieces, as a download arrives.
        h.update(&data[..3]);
        h.update(&data[3..]);
        h.finish()
    }

    #[test]
    fn every_kind_matches_its_known_digest() {
        let data = b"hello world";
        let known = [
            (ChecksumKind::Md5, "5eb63bbbe01eeed093cb22bb8f5acdc3"),
            (
                ChecksumKind::Sha1,
                "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed",
            ),
            (
                ChecksumKind::Sha256,
                "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
            ),
            (
                ChecksumKind::Sha512,
                "309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f",
            ),
        ];
        for (kind, hex) in known {
            assert_eq!(digest(kind, data), hex, "{}", kind.name());
            let c = Checksum::parse(&format!("{}:{}", kind.name(), hex.to_uppercase())).unwrap();
            assert_eq!(c.kind, kind);
            verify(&c, digest(kind, data)).unwrap();
            // A bare digest: the type is guessed from its length.
            assert_eq!(Checksum::parse(hex).unwrap().kind, kind);
            let err = verify(&c, digest(kind, b"hello worle"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("expected {}:{hex}", kind.name())),
                "{err}"
            );
            assert!(err.contains(&format!("got {}:", kind.name())), "{err}");
        }
    }

    #[test]
    fn bad_checksums_are_refused_with_the_reason() {
        for (value, why) in [
            ("sha3:abcd", "unknown checksum type \"sha3\""),
            (
                "sha256:abcd",
                "a sha256 digest has 64 hex digits, this one has 4",
            ),
            ("md5:zz63bbbe01eeed093cb22bb8f5acdc3z", "not hexadecimal"),
            ("file:https://example.com/SHA256SUMS", "checksum files"),
            ("abc", "<type>:<hex digest>"),
        ] {
            let err = Checksum::parse(value).unwrap_err().to_string();
            assert!(err.contains(why), "{value}: {err}");
            assert!(err.contains(value), "{value}: {err}");
        }
    }
}
