//! The CLI's HTTP client, built once from the global flags every command takes and the
//! variables Nomad's CLI reads: a flag wins over `DROVER_*`, which wins over `NOMAD_*`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The global flags (`-address`, `-namespace`, `-region`, `-token`, TLS), as Nomad's CLI has
/// them on every command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// The HTTP API address (DROVER_ADDR, NOMAD_ADDR; default http://127.0.0.1:4646).
    #[arg(long, global = true)]
    pub address: Option<String>,
    /// The namespace requests act in (DROVER_NAMESPACE, NOMAD_NAMESPACE).
    #[arg(long, global = true)]
    pub namespace: Option<String>,
    /// The region requests go to (DROVER_REGION, NOMAD_REGION).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// The ACL token, sent as X-Nomad-Token (DROVER_TOKEN, NOMAD_TOKEN).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// A PEM file of the CA certificates that sign the server's (DROVER_CACERT, NOMAD_CACERT).
    #[arg(long = "ca-cert", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// A directory of PEM CA certificates (DROVER_CAPATH, NOMAD_CAPATH).
    #[arg(long = "ca-path", global = true)]
    pub ca_path: Option<PathBuf>,
    /// A PEM client certificate (DROVER_CLIENT_CERT, NOMAD_CLIENT_CERT).
    #[arg(long = "client-cert", global = true)]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's PEM key (DROVER_CLIENT_KEY, NOMAD_CLIENT_KEY).
    #[arg(long = "client-key", global = true)]
    pub client_key: Option<PathBuf>,
    /// The name the server's certificate must carry (DROVER_TLS_SERVER_NAME,
    /// NOMAD_TLS_SERVER_NAME; default: the address's host).
    #[arg(long = "tls-server-name", global = true)]
    pub tls_server_name: Option<String>,
    /// Do not verify the server's certificate (DROVER_SKIP_VERIFY, NOMAD_SKIP_VERIFY).
    #[arg(long = "tls-skip-verify", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_skip_verify: Option<bool>,
}

/// What the flags and the environment settle on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub address: String,
    pub namespace: Option<String>,
    pub region: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub tls_skip_verify: bool,
}

impl Settings {
    /// The flags, else `DROVER_<name>`, else `NOMAD_<name>` from `env` (empty values unset).
    pub fn resolve(
        g: &GlobalArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        let var = |name: &str| {
            env(&format!("DROVER_{name}"))
                .filter(|v| !v.is_empty())
                .or_else(|| env(&format!("NOMAD_{name}")).filter(|v| !v.is_empty()))
        };
        let pick = |flag: &Option<String>, name: &str| flag.clone().or_else(|| var(name));
        let path = |flag: &Option<PathBuf>, name: &str| {
            flag.clone().or_else(|| var(name).map(PathBuf::from))
        };
        let tls_skip_verify = match g.tls_skip_verify {
            Some(b) => b,
            None => match var("SKIP_VERIFY") {
                None => false,
                Some(v) => parse_bool(&v).with_context(|| {
                    format!("SKIP_VERIFY={v:?} is not a boolean (true, false, 1, 0)")
                })?,
            },
        };
        let address = pick(&g.address, "ADDR").unwrap_or_else(|| "http://127.0.0.1:4646".into());
        let address = if address.contains("://") {
            address
        } else {
            format!("http://{address}")
        };
        Ok(Settings {
            address: address.trim_end_matches('/').to_string(),
            namespace: pick(&g.namespace, "NAMESPACE"),
            region: pick(&g.region, "REGION"),
            token: pick(&g.token, "TOKEN"),
            ca_cert: path(&g.ca_cert, "CACERT"),
            ca_path: path(&g.ca_path, "CAPATH"),
            client_cert: path(&g.client_cert, "CLIENT_CERT"),
            client_key: path(&g.client_key, "CLIENT_KEY"),
            tls_server_name: pick(&g.tls_server_name, "TLS_SERVER_NAME"),
            tls_skip_verify,
        })
    }
}

/// Go's `strconv.ParseBool`, which Nomad reads `NOMAD_SKIP_VERIFY` with.
fn parse_bool(v: &str) -> anyhow::Result<bool> {
    Ok(match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
        _ => bail!("not a boolean"),
    })
}

/// Largest PEM file read for a CA, a certificate or a key.
const MAX_PEM: u64 = 1 << 20;

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_PEM + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if buf.len() as u64 > MAX_PEM {
        bail!("the {what} {} is larger than 1 MiB", path.display());
    }
    Ok(buf)
}

/// The HTTP client the commands share, with the base URL and what every request carries
/// (the token header, `region` and `namespace`).
pub struct ApiClient {
    pub(crate) base: String,
    pub(crate) settings: Settings,
    pub(crate) http: reqwest::Client,
}

impl ApiClient {
    /// Builds the client from the global flags and this process's environment.
    pub fn from_args(g: &GlobalArgs) -> anyhow::Result<ApiClient> {
        ApiClient::build(Settings::resolve(g, |k| std::env::var(k).ok())?)
    }

    /// The client of [`Settings`]: TLS when the address is `https://` (the CA, the client
    /// certificate, the server name and skip-verify apply), the token as `X-Nomad-Token`.
    pub fn build(settings: Settings) -> anyhow::Result<ApiClient> {
        // The token travels in a default header, and reqwest strips only `Authorization`
        // when a redirect leaves the host: a redirect to another origin would hand the
        // token to whatever it names. Only same-origin redirects are followed.
        let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::custom(
            |attempt| {
                let from = attempt.previous().first().map(|u| u.origin());
                if from.as_ref() != Some(&attempt.url().origin()) {
                    let to = attempt.url().origin().ascii_serialization();
                    attempt.error(format!(
                        "the server redirected to another origin ({to}); not following it, so the token is not sent there"
                    ))
                } else if attempt.previous().len() > 10 {
                    attempt.error("more than 10 redirects")
                } else {
                    attempt.follow()
                }
            },
        ));
        if let Some(t) = &settings.token {
            let mut h = reqwest::header::HeaderMap::new();
            let mut v = reqwest::header::HeaderValue::from_str(t)
                .context("the token has characters a header cannot carry")?;
            v.set_sensitive(true);
            h.insert("X-Nomad-Token", v);
            b = b.default_headers(h);
        }
        let mut base = settings.address.clone();
        let url = reqwest::Url::parse(&base)
            .with_context(|| format!("the address {base:?} is not a URL"))?;
        if url.scheme() == "https" {
            let mut cas = Vec::new();
            if let Some(f) = &settings.ca_cert {
                cas.push(f.clone());
            }
            if let Some(dir) = &settings.ca_path {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .with_context(|| format!("cannot read the CA directory {}", dir.display()))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                cas.extend(files);
            }
            if !cas.is_empty() {
                // The given CAs only, as Nomad: the system's are not trusted too.
                b = b.tls_built_in_root_certs(false);
            }
            for f in &cas {
                let certs = reqwest::Certificate::from_pem_bundle(&read_pem(f, "CA certificate")?)
                    .with_context(|| format!("{} holds no PEM certificate", f.display()))?;
                if certs.is_empty() {
                    bail!("{} holds no PEM certificate", f.display());
                }
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
            match (&settings.client_cert, &settings.client_key) {
                (Some(cert), Some(key)) => {
                    let mut pem = read_pem(cert, "client certificate")?;
                    pem.push(b'\n');
                    pem.extend(read_pem(key, "client key")?);
                    b = b.identity(reqwest::Identity::from_pem(&pem).with_context(|| {
                        format!(
                            "{} and {} are not a PEM certificate and its key",
                            cert.display(),
                            key.display()
                        )
                    })?);
                }
                (None, None) => {}
                _ => bail!("give both -client-cert and -client-key, or neither"),
            }
            if settings.tls_skip_verify {
                b = b.danger_accept_invalid_certs(true);
            }
            if let Some(name) = &settings.tls_server_name {
                // The name is checked in the certificate (and sent as SNI): reach the
                // address's host under that name.
                let port = url.port_or_known_default().unwrap_or(443);
                let host = url.host_str().unwrap_or_default().to_string();
                let addrs: Vec<std::net::SocketAddr> = {
                    use std::net::ToSocketAddrs;
                    (host.trim_matches(['[', ']']), port)
                        .to_socket_addrs()
                        .with_context(|| format!("cannot resolve {host}"))?
                        .collect()
                };
                b = b.resolve_to_addrs(name, &addrs);
                let mut named = url.clone();
                named
                    .set_host(Some(name))
                    .with_context(|| format!("-tls-server-name {name:?} is not a host name"))?;
                base = named.as_str().trim_end_matches('/').to_string();
            }
        }
        let http = b.build().context("cannot build the HTTP client")?;
        Ok(ApiClient {
            base,
            settings,
            http,
        })
    }

    /// The URL of an API path, with `region` and `namespace` added unless the path has them.
    pub(crate) fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("{path:?} makes no URL"))?;
        let has = |k: &str| url.query_pairs().any(|(key, _)| key == k);
        let add: Vec<(&str, &String)> = [
            ("region", self.settings.region.as_ref()),
            ("namespace", self.settings.namespace.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|_| !has(k)).map(|v| (k, v)))
        .collect();
        if !add.is_empty() {
            url.query_pairs_mut().extend_pairs(add);
        }
        Ok(url)
    }
}

/// The requests the commands make.
impl ApiClient {
    pub(crate) async fn check(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("{what}: {} ({status})", body.trim())
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Sends a request; the answer unchecked.
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = self.url(path)?;
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send()
            .await
            .with_context(|| format!("cannot reach the Drover API at {}", self.base))
    }

    pub async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<T> {
        let resp = self.request(method.clone(), path, body).await?;
        let resp = self.check(resp, &format!("{method} {path}")).await?;
        resp.json()
            .await
            .with_context(|| format!("unexpected answer from {method} {path}"))
    }

    /// Sends a request whose answer has no body.
    pub async fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<()> {
        let resp = self.request(method.clone(), path, None).await?;
        self.check(resp, &format!("{method} {path}")).await?;
        Ok(())
    }

    /// PUTs raw bytes, with extra headers.
    pub async fn put_bytes<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<T> {
        let url = self.url(path)?;
        let mut req = self.http.put(url).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the Drover API at {}", self.base))?;
        let resp = self.check(resp, &format!("PUT {path}")).await?;
        resp.json()
            .await
            .with_context(|| format!("unexpected answer from PUT {path}"))
    }

    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.stream_with(path, &[]).await
    }

    /// GETs a streamed answer, with extra headers.
    pub async fn stream_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let url = self.url(path)?;
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the Drover API at {}", self.base))?;
        self.check(resp, &format!("GET {path}")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn a_flag_wins_over_drover_which_wins_over_nomad() {
        let g = GlobalArgs {
            namespace: Some("flag".into()),
            ..Default::default()
        };
        let s = Settings::resolve(
            &g,
            env(&[
                ("NOMAD_NAMESPACE", "nomad"),
                ("DROVER_NAMESPACE", "drover"),
                ("NOMAD_REGION", "nomad"),
                ("DROVER_REGION", "drover"),
                ("NOMAD_TOKEN", "nomad"),
                ("DROVER_TOKEN", ""),
                ("NOMAD_ADDR", "10.0.0.1:4646"),
                ("NOMAD_SKIP_VERIFY", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.namespace.as_deref(), Some("flag"));
        assert_eq!(s.region.as_deref(), Some("drover"));
        // An empty DROVER_ variable is unset.
        assert_eq!(s.token.as_deref(), Some("nomad"));
        assert_eq!(s.address, "http://10.0.0.1:4646");
        assert!(s.tls_skip_verify);
        let e = Settings::resolve(&GlobalArgs::default(), env(&[("NOMAD_SKIP_VERIFY", "yes")]))
            .unwrap_err();
        assert!(e.to_string().contains("SKIP_VERIFY=\"yes\""), "{e}");
    }

    /// A one-shot HTTP server: answers one request with `reply` and hands back what it read.
    fn one_shot(reply: String) -> (u16, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            l.set_nonblocking(false).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(reply.as_bytes());
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, h)
    }

    #[tokio::test]
    async fn the_token_never_follows_a_redirect_to_another_origin() {
        // The "other origin" listens but must never be asked.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        other.set_nonblocking(true).unwrap();
        let other_port = other.local_addr().unwrap().port();
        let (port, server) = one_shot(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{other_port}/v1/jobs\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let c = ApiClient::build(Settings {
            address: format!("http://127.0.0.1:{port}"),
            token: Some("s3cret-token".into()),
            ..Default::default()
        })
        .unwrap();
        let e = c
            .http
            .get(c.url("/v1/jobs").unwrap())
            .send()
            .await
            .unwrap_err();
        assert!(format!("{e:?}").contains("another origin"), "{e:?}");
        assert!(server.join().unwrap().contains("s3cret-token"));
        assert!(
            other.accept().is_err(),
            "the other origin was contacted: the token went with the redirect"
        );
    }

    #[test]
    fn region_and_namespace_join_every_url_unless_it_has_them() {
        let c = ApiClient::build(Settings {
            address: "http://127.0.0.1:4646".into(),
            namespace: Some("prod".into()),
            region: Some("eu".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.url("/v1/jobs").unwrap().as_str(),
            "http://127.0.0.1:4646/v1/jobs?region=eu&namespace=prod"
        );
        assert_eq!(
            c.url("/v1/job/x/allocations?namespace=dev")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:4646/v1/job/x/allocations?namespace=dev&region=eu"
        );
    }
}
