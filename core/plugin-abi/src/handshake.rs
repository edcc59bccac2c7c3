//! The go-plugin handshake, shared by plugins (which print the line) and the host (which parses it).
//!
//! A host starts a plugin binary with [`MAGIC_COOKIE_KEY`]=[`MAGIC_COOKIE_VALUE`] in its
//! environment and `PLUGIN_PROTOCOL_VERSIONS` listing the application protocol versions it
//! speaks. The plugin answers with exactly one line on stdout:
//!
//! ```text
//! CORE-PROTOCOL-VERSION|APP-PROTOCOL-VERSION|NETWORK-TYPE|NETWORK-ADDR|PROTOCOL|SERVER-CERT
//! 1|1|unix|/var/lib/drover/plugins/raw_exec-1a2b/plugin-4242-9f3c.sock|grpc|
//! ```

use std::fmt;

/// The environment variable carrying the magic cookie.
pub const MAGIC_COOKIE_KEY: &str = "DROVER_PLUGIN_MAGIC_COOKIE";

/// The magic cookie's value: a fixed, random 256-bit constant (64 hex characters).
///
/// It is not a secret. Its only job is to tell a plugin binary that it was started by a
/// Drover host, so that someone running it by hand gets an explanation instead of a
/// silent gRPC server.
pub const MAGIC_COOKIE_VALUE: &str =
    "5e3f1c0a9b7d4e2f8a6c1b3d5f7e9a0c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f";

/// The go-plugin core protocol version: the shape of the handshake line itself.
pub const CORE_PROTOCOL_VERSION: u32 = 1;

/// Environment variable: the comma-separated application protocol versions the host offers.
pub const ENV_PROTOCOL_VERSIONS: &str = "PLUGIN_PROTOCOL_VERSIONS";
/// Environment variable: the directory the plugin creates its Unix socket in.
pub const ENV_UNIX_SOCKET_DIR: &str = "PLUGIN_UNIX_SOCKET_DIR";
/// Environment variable: when `1`, the plugin exits once its stdin reaches end of file.
/// Drover's host sets it and holds the pipe; other go-plugin hosts pass their own stdin.
pub const ENV_STDIN_LIFELINE: &str = "DROVER_PLUGIN_STDIN_LIFELINE";

/// Longest path a Unix socket address may hold (`sun_path` is 108 bytes with its NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// What went wrong choosing an application protocol version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// `PLUGIN_PROTOCOL_VERSIONS` held something that is not a list of numbers.
    #[error("{ENV_PROTOCOL_VERSIONS}={value:?} is not a comma-separated list of versions")]
    Malformed { value: String },
    /// No version is spoken by both sides.
    #[error(
        "the host offers protocol versions [{offered}] but this plugin speaks only [{supported}]: \
         upgrade the one that is older"
    )]
    NoCommonVersion { offered: String, supported: String },
    /// The plugin declared no versions at all.
    #[error("the plugin declares no protocol versions")]
    NothingSupported,
}

/// Chooses the newest application protocol version both sides speak.
///
/// `offered` is the value of `PLUGIN_PROTOCOL_VERSIONS` (`None` when unset: then the plugin's
/// newest version is used, as go-plugin does).
pub fn negotiate_version(offered: Option<&str>, supported: &[u32]) -> Result<u32, NegotiateError> {
    let newest = supported
        .iter()
        .copied()
        .max()
        .ok_or(NegotiateError::NothingSupported)?;
    let Some(offered) = offered.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(newest);
    };
    let mut versions = Vec::new();
    for part in offered.split(',') {
        let v: u32 = part.trim().parse().map_err(|_| NegotiateError::Malformed {
            value: offered.to_string(),
        })?;
        versions.push(v);
    }
    versions
        .iter()
        .copied()
        .filter(|v| supported.contains(v))
        .max()
        .ok_or_else(|| NegotiateError::NoCommonVersion {
            offered: join(&versions),
            supported: join(supported),
        })
}

fn join(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The line a plugin prints once it listens: `1|<app version>|unix|<socket path>|grpc|`.
pub fn format_handshake_line(app_version: u32, socket_path: &std::path::Path) -> String {
    format!(
        "{CORE_PROTOCOL_VERSION}|{app_version}|unix|{}|grpc|",
        socket_path.display()
    )
}

/// A parsed handshake line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeLine {
    pub core_version: u32,
    pub app_version: u32,
    /// `unix` or `tcp`.
    pub network: String,
    pub address: String,
    /// `grpc` or `netrpc` (the 4-field form implies `netrpc`).
    pub protocol: String,
    /// Base64 server certificate for go-plugin's AutoMTLS; empty when absent.
    pub server_cert: String,
}

/// Why a handshake line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeLineError {
    #[error("the handshake line {line:?} is not of the form CORE|APP|NETWORK|ADDRESS|PROTOCOL")]
    Garbage { line: String },
    #[error(
        "the plugin speaks core protocol version {0}, this host speaks {CORE_PROTOCOL_VERSION}"
    )]
    CoreVersion(u32),
    #[error(
        "the plugin chose protocol version {got}, which the host did not offer (offered [{offered}])"
    )]
    UnsupportedVersion { got: u32, offered: String },
    #[error("the plugin listens on network {0:?}; Drover plugins must listen on a unix socket")]
    Network(String),
    #[error("the plugin speaks {0:?}; Drover speaks only grpc")]
    Protocol(String),
    #[error("the plugin asks for go-plugin's AutoMTLS, which this host does not offer")]
    Tls,
}

impl HandshakeLine {
    /// Parses the 4-, 5- and 6-field forms go-plugin plugins print.
    pub fn parse(line: &str) -> Result<Self, HandshakeLineError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let garbage = || HandshakeLineError::Garbage {
            line: line.to_string(),
        };
        let parts: Vec<&str> = line.split('|').collect();
        if !(4..=6).contains(&parts.len()) {
            return Err(garbage());
        }
        let core_version: u32 = parts[0].trim().parse().map_err(|_| garbage())?;
        let app_version: u32 = parts[1].trim().parse().map_err(|_| garbage())?;
        let network = parts[2].trim().to_string();
        let address = parts[3].trim().to_string();
        if network.is_empty() || address.is_empty() {
            return Err(garbage());
        }
        let protocol = parts.get(4).map_or("netrpc", |p| p.trim()).to_string();
        let protocol = if protocol.is_empty() {
            "netrpc".to_string()
        } else {
            protocol
        };
        let server_cert = parts.get(5).map_or("", |p| p.trim()).to_string();
        Ok(Self {
            core_version,
            app_version,
            network,
            address,
            protocol,
            server_cert,
        })
    }

    /// Checks the line against what a Drover host accepts: core version 1, one of the
    /// `offered` application versions, a unix socket, gRPC, no TLS.
    pub fn validate(&self, offered: &[u32]) -> Result<(), HandshakeLineError> {
        if self.core_version != CORE_PROTOCOL_VERSION {
            return Err(HandshakeLineError::CoreVersion(self.core_version));
        }
        if !offered.contains(&self.app_version) {
            return Err(HandshakeLineError::UnsupportedVersion {
                got: self.app_version,
                offered: join(offered),
            });
        }
        if self.network != "unix" {
            return Err(HandshakeLineError::Network(self.network.clone()));
        }
        if self.protocol != "grpc" {
            return Err(HandshakeLineError::Protocol(self.protocol.clone()));
        }
        if !self.server_cert.is_empty() {
            return Err(HandshakeLineError::Tls);
        }
        Ok(())
    }
}

impl fmt::Display for HandshakeLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|{}|{}|{}|{}|{}",
            self.core_version,
            self.app_version,
            self.network,
            self.address,
            self.protocol,
            self.server_cert
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn cookie_is_64_hex() {
        assert_eq!(MAGIC_COOKIE_VALUE.len(), 64);
        assert!(MAGIC_COOKIE_VALUE.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn formats_the_line() {
        let line = format_handshake_line(1, Path::new("/run/drover/p1/plugin.sock"));
        assert_eq!(line, "1|1|unix|/run/drover/p1/plugin.sock|grpc|");
        let parsed = HandshakeLine::parse(&line).unwrap();
        assert_eq!(parsed.address, "/run/drover/p1/plugin.sock");
        assert_eq!(parsed.protocol, "grpc");
        parsed.validate(&[1]).unwrap();
    }

    #[test]
    fn parses_all_forms() {
        let four = HandshakeLine::parse("1|1|unix|/tmp/x.sock").unwrap();
        assert_eq!(four.protocol, "netrpc");
        assert_eq!(
            four.validate(&[1]),
            Err(HandshakeLineError::Protocol("netrpc".into()))
        );
        HandshakeLine::parse("1|1|unix|/tmp/x.sock|grpc")
            .unwrap()
            .validate(&[1])
            .unwrap();
        let five = HandshakeLine::parse("1|2|unix|/tmp/x.sock|grpc\n").unwrap();
        assert_eq!(five.app_version, 2);
        assert!(matches!(
            five.validate(&[1]),
            Err(HandshakeLineError::UnsupportedVersion { got: 2, .. })
        ));
        let six = HandshakeLine::parse("1|1|tcp|127.0.0.1:1234|grpc|").unwrap();
        assert_eq!(
            six.validate(&[1]),
            Err(HandshakeLineError::Network("tcp".into()))
        );
        let tls = HandshakeLine::parse("1|1|unix|/tmp/x|grpc|MIIB").unwrap();
        assert_eq!(tls.validate(&[1]), Err(HandshakeLineError::Tls));
        assert_eq!(
            HandshakeLine::parse("2|1|unix|/x|grpc|")
                .unwrap()
                .validate(&[1]),
            Err(HandshakeLineError::CoreVersion(2))
        );
        for bad in [
            "hello world",
            "",
            "1|x|unix|/a|grpc|",
            "1|1|unix||grpc|",
            "1|1|unix|/a|grpc||x",
        ] {
            assert!(
                matches!(
                    HandshakeLine::parse(bad),
                    Err(HandshakeLineError::Garbage { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn negotiates_newest_common_version() {
        assert_eq!(negotiate_version(None, &[1, 2]), Ok(2));
        assert_eq!(negotiate_version(Some(""), &[1]), Ok(1));
        assert_eq!(negotiate_version(Some("1"), &[1, 2]), Ok(1));
        assert_eq!(negotiate_version(Some("1, 2,3"), &[1, 2]), Ok(2));
        assert!(matches!(
            negotiate_version(Some("3,4"), &[1, 2]),
            Err(NegotiateError::NoCommonVersion { .. })
        ));
        assert!(matches!(
            negotiate_version(Some("one"), &[1]),
            Err(NegotiateError::Malformed { .. })
        ));
        assert_eq!(
            negotiate_version(None, &[]),
            Err(NegotiateError::NothingSupported)
        );
    }
}
