//! `drover tls ca create` and `drover tls cert create`: certificate files for operators who
//! run their own, named as Nomad's `nomad tls` names them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use drover_tls::authority::{CA_DAYS, LEAF_DAYS, LeafSpec};
use drover_tls::{Authority, Role};

/// The CA's files (Nomad's names).
const CA_FILE: &str = "nomad-agent-ca.pem";
const CA_KEY_FILE: &str = "nomad-agent-ca-key.pem";

#[derive(Subcommand)]
pub enum TlsCmd {
    /// The certificate authority.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Certificates signed by the CA.
    #[command(subcommand)]
    Cert(CertCmd),
}

#[derive(Subcommand)]
pub enum CaCmd {
    /// Writes a new CA: nomad-agent-ca.pem and nomad-agent-ca-key.pem (0600).
    Create {
        /// How long the CA is valid, in days.
        #[arg(long, default_value_t = CA_DAYS)]
        days: u32,
        /// The CA's common name.
        #[arg(long = "common-name")]
        common_name: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum CertCmd {
    /// Writes a certificate and its key (0600) for a server, a client or the CLI of
    /// `-region` (default global): <region>-<server|client|cli>-nomad.pem and -key.pem.
    Create {
        #[arg(long)]
        server: bool,
        #[arg(long)]
        client: bool,
        #[arg(long)]
        cli: bool,
        /// The CA certificate.
        #[arg(long, default_value = CA_FILE)]
        ca: PathBuf,
        /// The CA's key.
        #[arg(long, default_value = CA_KEY_FILE)]
        key: PathBuf,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = LEAF_DAYS)]
        days: u32,
        /// A DNS name the certificate also carries; may repeat.
        #[arg(long = "additional-dnsname")]
        dns_names: Vec<String>,
        /// An IP address the certificate also carries; may repeat.
        #[arg(long = "additional-ipaddress")]
        ip_addresses: Vec<IpAddr>,
    },
}

/// Writes a new file, refusing to replace one (as `nomad tls` does).
fn write_new(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never replaced)",
                path.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("==> Created {}", path.display());
    Ok(())
}

pub fn run(cmd: TlsCmd, region: Option<&str>) -> anyhow::Result<i32> {
    match cmd {
        TlsCmd::Ca(CaCmd::Create { days, common_name }) => {
            for f in [CA_FILE, CA_KEY_FILE] {
                if Path::new(f).exists() {
                    bail!("{f} already exists: remove it or work in another directory");
                }
            }
            let name = common_name.unwrap_or_else(|| "Drover Agent CA".to_string());
            let ca = Authority::create(&name, days)?;
            write_new(Path::new(CA_FILE), ca.cert_pem(), false)?;
            write_new(Path::new(CA_KEY_FILE), ca.key_pem(), true)?;
            println!("CA public-key hash: {}", ca.spki_hash());
            Ok(0)
        }
        TlsCmd::Cert(CertCmd::Create {
            server,
            client,
            cli,
            ca,
            key,
            days,
            dns_names,
            ip_addresses,
        }) => {
            let role = match (server, client, cli) {
                (true, false, false) => Role::Server,
                (false, true, false) => Role::Client,
                (false, false, true) => Role::Cli,
                _ => bail!("give exactly one of -server, -client or -cli"),
            };
            let region = region.unwrap_or("global");
            if region.is_empty()
                || !region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                bail!("-region {region:?}: a region is letters, digits and '-'");
            }
            let authority = Authority::load_files(&ca, &key)?;
            let mut spec = LeafSpec::new(role, region);
            spec.days = days;
            spec.dns_names = dns_names;
            spec.ip_addresses = ip_addresses;
            let leaf = authority.issue(&spec)?;
            let base = format!("{region}-{role}-nomad");
            let (cert_path, key_path) = (
                PathBuf::from(format!("{base}.pem")),
                PathBuf::from(format!("{base}-key.pem")),
            );
            for p in [&cert_path, &key_path] {
                if p.exists() {
                    bail!(
                        "{} already exists: remove it or work in another directory",
                        p.display()
                    );
                }
            }
            write_new(&cert_path, &leaf.cert_pem, false)?;
            write_new(&key_path, &leaf.key_pem, true)?;
            println!("Names: {}", role.names(region).join(", "));
            Ok(0)
        }
    }
}
