//! The connection to the engine: `endpoint` (unix socket, or tcp with TLS), the API version
//! negotiated down to what the engine speaks, the `driver.docker.*` fingerprint, and a
//! watch on the engine's health that never touches containers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bollard::API_DEFAULT_VERSION;
use drover_plugin_sdk::proto::driver::{FingerprintResponse, HealthState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;

/// The oldest engine API this driver speaks (Docker 19.03).
pub const MIN_API_VERSION: (usize, usize) = (1, 40);
/// How often the engine's health is checked.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The longest the engine may take to answer a request's headers (pulls and loads stream
/// their bodies after that).
const REQUEST_TIMEOUT_SECS: u64 = 600;
/// The longest a health check waits.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to the docker engine at {endpoint}: {why}")]
    Connect { endpoint: String, why: String },
    #[error(
        "the docker engine at {endpoint} speaks API {found}, older than the oldest this driver supports ({}.{})",
        MIN_API_VERSION.0,
        MIN_API_VERSION.1
    )]
    TooOld { endpoint: String, found: String },
    #[error("the docker engine is not reachable: {0}")]
    Unreachable(String),
}

/// A client for `settings.endpoint` (not yet negotiated: see [`negotiate`]).
pub fn connect(settings: &Settings) -> Result<bollard::Docker, EngineError> {
    let endpoint = settings.endpoint.as_str();
    let err = |e: bollard::errors::Error| EngineError::Connect {
        endpoint: endpoint.into(),
        why: e.to_string(),
    };
    if endpoint.starts_with("unix://") {
        return bollard::Docker::connect_with_unix(
            endpoint,
            REQUEST_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        )
        .map_err(err);
    }
    match &settings.tls {
        Some(tls) => bollard::Docker::connect_with_ssl(
            endpoint,
            std::path::Path::new(&tls.key),
            std::path::Path::new(&tls.cert),
            std::path::Path::new(&tls.ca),
            REQUEST_TIMEOUT_SECS,
            API_DEFAULT_VERSION,
        )
        .map_err(err),
        None if endpoint.starts_with("https://") => Err(EngineError::Connect {
            endpoint: endpoint.into(),
            why: "an https endpoint needs tls { cert key ca } in the docker plugin's config".into(),
        }),
        None => {
            bollard::Docker::connect_with_http(endpoint, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
                .map_err(err)
        }
    }
}

/// Negotiates the API version down to the engine's, refusing engines older than
/// [`MIN_API_VERSION`].
pub async fn negotiate(
    docker: bollard::Docker,
    endpoint: &str,
) -> Result<bollard::Docker, EngineError> {
    let docker = tokio::time::timeout(PING_TIMEOUT, docker.negotiate_version())
        .await
        .map_err(|_| {
            EngineError::Unreachable(format!("{endpoint} did not answer within {PING_TIMEOUT:?}"))
        })?
        .map_err(|e| EngineError::Unreachable(format!("{endpoint}: {e}")))?;
    let v = docker.client_version();
    if (v.major_version, v.minor_version) < MIN_API_VERSION {
        return Err(EngineError::TooOld {
            endpoint: endpoint.into(),
            found: format!("{}.{}", v.major_version, v.minor_version),
        });
    }
    Ok(docker)
}

/// The `driver.docker.*` attributes of a healthy engine.
pub async fn attributes(
    docker: &bollard::Docker,
    settings: &Settings,
) -> Result<BTreeMap<String, String>, bollard::errors::Error> {
    let version = docker.version().await?;
    let info = docker.info().await?;
    let mut attrs = BTreeMap::new();
    attrs.insert("driver.docker".to_string(), "1".to_string());
    attrs.insert(
        "driver.docker.version".into(),
        version.version.unwrap_or_default(),
    );
    let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
    runtimes.sort();
    attrs.insert("driver.docker.runtimes".into(), runtimes.join(","));
    attrs.insert(
        "driver.docker.os_type".into(),
        info.os_type.unwrap_or_else(|| "linux".into()),
    );
    if settings.allow_privileged {
        attrs.insert("driver.docker.privileged.enabled".into(), "true".into());
    }
    if settings.volumes_enabled {
        attrs.insert("driver.docker.volumes.enabled".into(), "true".into());
    }
    if let Some(ip) = bridge_ip(docker).await {
        attrs.insert("driver.docker.bridge_ip".into(), ip);
    }
    Ok(attrs)
}

/// The engine's `bridge` network's gateway, or (an engine that records none, as 20.10
/// does) the IPv4 address of its bridge interface (docker0).
async fn bridge_ip(docker: &bollard::Docker) -> Option<String> {
    let net = docker
        .inspect_network(
            "bridge",
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .ok()?;
    let gateway = net
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| c.gateway.filter(|g| !g.is_empty()));
    if gateway.is_some() {
        return gateway;
    }
    let ifname = net
        .options
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
        .unwrap_or_else(|| "docker0".into());
    interface_ipv4(&ifname)
}

/// The first IPv4 address of the interface `name`.
fn interface_ipv4(name: &str) -> Option<String> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != name {
            return None;
        }
        let addr = ifa.address?;
        addr.as_sockaddr_in().map(|sin| sin.ip().to_string())
    })
}

fn unhealthy(why: String) -> FingerprintResponse {
    FingerprintResponse {
        attributes: Default::default(),
        health: HealthState::Unhealthy as i32,
        health_description: why,
    }
}

/// The engine connection shared by the driver's modules, kept healthy by a background check.
pub struct Engine {
    client: RwLock<Option<bollard::Docker>>,
    fingerprint: watch::Sender<FingerprintResponse>,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            client: RwLock::new(None),
            fingerprint: watch::channel(FingerprintResponse {
                attributes: Default::default(),
                health: HealthState::Undetected as i32,
                health_description: "not configured yet".into(),
            })
            .0,
            monitor: Mutex::new(None),
        }
    }
}

impl Engine {
    /// A client for the engine, or why there is none (the engine is down or too old).
    pub fn client(&self) -> Result<bollard::Docker, EngineError> {
        let c = self.client.read().unwrap_or_else(|p| p.into_inner());
        c.clone().ok_or_else(|| {
            EngineError::Unreachable(self.fingerprint.borrow().health_description.clone())
        })
    }

    /// The fingerprint as it changes.
    pub fn fingerprint(&self) -> watch::Receiver<FingerprintResponse> {
        self.fingerprint.subscribe()
    }

    fn set_client(&self, c: Option<bollard::Docker>) {
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = c;
    }

    /// (Re)starts the health check against `settings.endpoint`; the first check runs now.
    pub async fn start(self: &Arc<Self>, settings: Settings) {
        if let Some(old) = self
            .monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            old.abort();
        }
        self.set_client(None);
        self.check(&settings).await;
        let me = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEALTH_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(engine) = me.upgrade() else { return };
                engine.check(&settings).await;
            }
        });
        *self.monitor.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    /// One health check: a ping when connected, else a new connection and fingerprint.
    async fn check(&self, settings: &Settings) {
        let current = self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(c) = current {
            match tokio::time::timeout(PING_TIMEOUT, c.ping()).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => self.lost(settings, e.to_string()),
                Err(_) => self.lost(
                    settings,
                    format!("no answer to a ping within {PING_TIMEOUT:?}"),
                ),
            }
            return;
        }
        match self.detect(settings).await {
            Ok((client, attrs)) => {
                tracing::info!(endpoint = %settings.endpoint, version = ?attrs.get("driver.docker.version"), "docker engine healthy");
                self.set_client(Some(client));
                self.fingerprint.send_replace(FingerprintResponse {
                    attributes: attrs,
                    health: HealthState::Healthy as i32,
                    health_description: "healthy".into(),
                });
            }
            Err(e) => {
                let why = e.to_string();
                self.fingerprint.send_if_modified(|fp| {
                    let changed = fp.health_description != why;
                    *fp = unhealthy(why.clone());
                    changed
                });
            }
        }
    }

    fn lost(&self, settings: &Settings, why: String) {
        tracing::warn!(endpoint = %settings.endpoint, %why, "docker engine lost; containers are left alone");
        self.set_client(None);
        self.fingerprint.send_replace(unhealthy(format!(
            "the docker engine at {} is not reachable: {why}",
            settings.endpoint
        )));
    }

    async fn detect(
        &self,
        settings: &Settings,
    ) -> Result<(bollard::Docker, BTreeMap<String, String>), EngineError> {
        let client = connect(settings)?;
        let client = negotiate(client, &settings.endpoint).await?;
        let attrs = tokio::time::timeout(PING_TIMEOUT, attributes(&client, settings))
            .await
            .map_err(|_| {
                EngineError::Unreachable(format!("{} did not answer in time", settings.endpoint))
            })?
            .map_err(|e| EngineError::Unreachable(format!("{}: {e}", settings.endpoint)))?;
        Ok((client, attrs))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(h) = self
            .monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            h.abort();
        }
    }
}
