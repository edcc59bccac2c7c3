//! `drover agent`: wires Raft, the server, the HTTP API, the plugin host and the client.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use drover_api::{AgentInfo, ApiState};
use drover_client::{Client, ClientConfig};
use drover_plugin_host::{HostConfig, PluginHost};
use drover_raft::{RaftNode, RaftNodeConfig};
use drover_server::{NodeStreamService, Server, ServerConfig};

use crate::config::AgentConfig;
use crate::tls::AgentTls;

/// How often the plugin host pings each plugin.
const PLUGIN_HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    tracing::info!(data_dir = %cfg.data_dir.display(), server = cfg.server, client = cfg.client, dev = cfg.dev, "starting agent");
    let tls = {
        let (s, dir, region, server) = (
            cfg.tls.clone(),
            cfg.data_dir.clone(),
            cfg.region.clone(),
            cfg.server,
        );
        let advertise = vec![cfg.advertise_rpc.clone(), cfg.advertise_http.clone()];
        tokio::task::spawn_blocking(move || AgentTls::load(&s, &dir, &region, server, &advertise))
            .await
            .context("loading TLS panicked")??
    };
    if let Some((files, live)) = &tls.files {
        crate::tls_rotation::reload_on_hangup(files.clone(), live.clone())?;
    }
    let host = if cfg.client {
        Some(start_plugin_host(&cfg).await?)
    } else {
        None
    };
    let server = if cfg.server {
        Some(start_server(&cfg, host.clone(), &tls).await?)
    } else {
        None
    };
    let client = match host {
        Some(host) => Some(start_client(&cfg, host, &tls).await?),
        None => None,
    };

    let dns = start_dns(&cfg, client.as_ref(), server.as_ref()).await?;

    let terminated = wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(d) = dns {
        d.stop();
    }
    if let Some(c) = client {
        c.shutdown().await;
    }
    if let Some(s) = server {
        let leave = if terminated {
            cfg.leave_on_terminate
        } else {
            cfg.leave_on_interrupt
        };
        if leave {
            s.leave().await;
        } else {
            s.hand_over_leadership().await;
        }
        s.shutdown().await;
    }
    if cfg.dev {
        let _ = drover_client::remove_dir_with_mounts(&cfg.data_dir);
    }
    Ok(())
}

/// Opens the client's plugin host: the built-in plugins, plugin_dir's executables and
/// *.wasm modules, each started with its configured settings and supervised.
async fn start_plugin_host(cfg: &AgentConfig) -> anyhow::Result<Arc<PluginHost>> {
    let plugins = crate::plugins::launches(cfg)?;
    // Task shims keep their state in memory: starting a task writes nothing to disk.
    drover_plugin_sdk::shim::state_in_memory(&cfg.data_dir.join("shims"));
    let settings = crate::plugins::settings(cfg)?;
    let configured: Vec<String> = settings.keys().cloned().collect();
    let config = HostConfig {
        data_dir: cfg.data_dir.clone(),
        node_id: String::new(),
        plugins,
        plugin_dir: cfg.plugin_dir.clone(),
        settings,
        ..HostConfig::default()
    };
    // *.wasm in plugin_dir load through the Extism transport (drover-plugin-wasm).
    let host = PluginHost::open(config, Some(drover_plugin_wasm::loader())).await;
    for m in host.modules() {
        tracing::info!(plugin = %m.name, transport = m.transport.as_str(), path = %m.path.display(), "plugin ready");
    }
    let found: Vec<String> = host
        .plugin_names()
        .into_iter()
        .chain(host.modules().into_iter().map(|m| m.name))
        .chain(host.refused().into_iter().map(|r| r.name))
        .collect();
    for name in configured.iter().filter(|n| !found.contains(n)) {
        tracing::warn!(
            plugin = %name,
            plugin_dir = ?cfg.plugin_dir,
            "a plugin \"{name}\" block is configured but no such plugin is built in or in plugin_dir"
        );
    }
    let host = Arc::new(host);
    // A plugin block the plugin refuses is the operator's to fix: fail now, naming it.
    host.start_all()
        .await
        .context("a plugin refused its configuration")?;
    host.supervise(PLUGIN_HEALTH_INTERVAL);
    Ok(host)
}

/// The keyring's KEK file: configured (`keyring "file" { path }`, relative to data_dir) or
/// `<data_dir>/server/keyring.kek`; never inside the Raft directory, whose copies (backups
/// of the disk, a server's data sent for debugging) must decrypt nothing.
fn kek_provider(cfg: &AgentConfig) -> anyhow::Result<Arc<dyn drover_keyring::KekProvider>> {
    let path = match &cfg.kek_file {
        Some(p) => cfg.data_dir.join(p),
        None => cfg.data_dir.join("server").join("keyring.kek"),
    };
    let raft_dir = cfg.data_dir.join("server").join("raft");
    if path.starts_with(&raft_dir) {
        anyhow::bail!(
            "keyring \"file\" path {} is inside the Raft directory {}: the key-encryption key must be kept apart from what it protects",
            path.display(),
            raft_dir.display()
        );
    }
    Ok(Arc::new(drover_keyring::FileKekProvider::new(path)))
}

/// Opens Raft, starts the server, and serves its RPC (Raft, node streams) and HTTP API.
async fn start_server(
    cfg: &AgentConfig,
    host: Option<Arc<PluginHost>>,
    tls: &AgentTls,
) -> anyhow::Result<Server> {
    let raft = RaftNode::open_with_dialer(
        RaftNodeConfig {
            data_dir: cfg.data_dir.join("server"),
            advertise_http: cfg.advertise_http.clone(),
            advertise_rpc: cfg.advertise_rpc.clone(),
            name: cfg.name.clone(),
            join: drover_raft::JoinConfig {
                bootstrap_expect: cfg.bootstrap_expect,
                retry_join: cfg.retry_join.clone(),
                retry_interval: cfg.retry_interval,
                retry_max: cfg.retry_max,
            },
            snapshot_threshold: cfg.raft_snapshot_threshold,
            trailing_logs: cfg.raft_trailing_logs,
        },
        tls.dialer.clone(),
    )
    .await
    .context("cannot start Raft")?;
    let server = Server::start(
        raft.clone(),
        ServerConfig {
            heartbeat_ttl: cfg.heartbeat_ttl,
            workers: cfg.num_schedulers,
            scheduler: cfg.default_scheduler_config,
            dead_server_cleanup: cfg.dead_server_cleanup,
            gc: cfg.gc,
            job_max_count: cfg.job_max_count,
            max_placements_per_eval: cfg.max_placements_per_eval,
            kek: Some(kek_provider(cfg)?),
        },
    );
    let rpc_addr = serve_rpc(cfg, raft, &server, tls).await?;
    let http_addr = serve_http(cfg, &server, host, tls).await?;
    if let Some(ca) = &tls.authority {
        ca.spawn_renewal();
    }
    tracing::info!(http = %http_addr, rpc = %rpc_addr, "server listening");
    Ok(server)
}

/// Serves Raft's RPCs and the clients' node streams on the RPC address: with `tls { rpc }`
/// over TLS, Raft only to server certificates, node streams to client or server ones.
async fn serve_rpc(
    cfg: &AgentConfig,
    raft: RaftNode,
    server: &Server,
    tls: &AgentTls,
) -> anyhow::Result<SocketAddr> {
    use drover_tls::{Role, RoleCheck};
    use tonic::service::interceptor::InterceptedService;
    let rpc_addr = SocketAddr::new(
        cfg.rpc_bind
            .parse()
            .with_context(|| format!("RPC address {:?} is not an IP address", cfg.rpc_bind))?,
        cfg.rpc_port,
    );
    let rpc_listener = tokio::net::TcpListener::bind(rpc_addr)
        .await
        .with_context(|| format!("cannot listen for RPC on {rpc_addr}"))?;
    let enforce = tls.rpc.is_some();
    let router = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(
            drover_raft::network::RaftService::server(raft),
            RoleCheck::new("Raft", &cfg.region, &[Role::Server], enforce),
        ))
        .add_service(InterceptedService::new(
            NodeStreamService::server(server.clone()),
            RoleCheck::new("Node", &cfg.region, &[Role::Server, Role::Client], enforce),
        ))
        .add_optional_service(tls.authority.as_ref().map(|ca| ca.service(enforce)));
    let failed = |e: tonic::transport::Error| tracing::error!(error = %e, "RPC server failed");
    match &tls.rpc {
        Some(config) => {
            let grpc =
                router.serve_with_incoming(drover_tls::accept::tcp(rpc_listener, config.clone()));
            tokio::spawn(async move { grpc.await.map_err(failed) });
        }
        None => {
            let grpc = router.serve_with_incoming(
                // Without TCP_NODELAY a reply's small writes wait for the peer's delayed
                // ACK (~40 ms): Raft rounds and forwarded writes stall on it.
                tonic::transport::server::TcpIncoming::from(rpc_listener).with_nodelay(Some(true)),
            );
            tokio::spawn(async move { grpc.await.map_err(failed) });
        }
    }
    Ok(rpc_addr)
}

/// Serves the HTTP API on the HTTP address.
async fn serve_http(
    cfg: &AgentConfig,
    server: &Server,
    host: Option<Arc<PluginHost>>,
    tls: &AgentTls,
) -> anyhow::Result<SocketAddr> {
    let http_addr = SocketAddr::new(
        cfg.http_bind
            .parse()
            .with_context(|| format!("HTTP address {:?} is not an IP address", cfg.http_bind))?,
        cfg.http_port,
    );
    let http_listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
    let api = drover_api::router(ApiState {
        server: server.clone(),
        agent: AgentInfo {
            name: cfg.name.clone(),
            region: cfg.region.clone(),
            datacenter: cfg.datacenter.clone(),
            http_addr: cfg.advertise_http.clone(),
            rpc_addr: cfg.advertise_rpc.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        plugins: host,
        // Over HTTPS the client checks the certificate: a rebound DNS name cannot reach the
        // API, so the Host check for DNS rebinding is not needed (and `-tls-server-name`
        // sends the certificate's name as the Host).
        exposure: drover_api::guard::Exposure {
            loopback: http_addr.ip().is_loopback() && tls.http.is_none(),
        },
        acl: Arc::new(drover_api::acl::Resolver::new(cfg.acl.clone())),
        leader_proxy: tls.leader_proxy.clone(),
        ca_rotation: tls
            .authority
            .clone()
            .map(|ca| ca as Arc<dyn drover_api::tls_rotation::CaRotation>),
    });
    // Bounded connections, no Nagle delay on replies (drover_api::limits).
    let http_listener = drover_api::limits::LimitedListener::new(http_listener);
    match &tls.http {
        Some(config) => {
            let https = crate::tls::HttpsListener::new(http_listener, config.clone())
                .context("cannot start the HTTPS listener")?;
            tokio::spawn(drover_api::limits::serve(https, api));
        }
        None => {
            tokio::spawn(drover_api::limits::serve(http_listener, api));
        }
    }
    Ok(http_addr)
}

/// Starts the client on the plugin host.
async fn start_client(
    cfg: &AgentConfig,
    host: Arc<PluginHost>,
    tls: &AgentTls,
) -> anyhow::Result<Client> {
    let c = Client::start(
        ClientConfig {
            data_dir: cfg.data_dir.clone(),
            servers: cfg.servers.clone(),
            node_name: cfg.name.clone(),
            datacenter: cfg.datacenter.clone(),
            region: cfg.region.clone(),
            node_class: cfg.node_class.clone(),
            node_pool: cfg.node_pool.clone(),
            meta: cfg.meta.clone(),
            http_addr: cfg.advertise_http.clone(),
            network_interface: cfg.network_interface.clone(),
            reserved: cfg.reserved.clone(),
            host_volumes: cfg.host_volumes.clone(),
            dynamic_ports: cfg.dynamic_ports,
            gc_max_allocs: cfg.gc_max_allocs,
            gc_disk_usage_threshold: cfg.gc_disk_usage_threshold,
            artifacts: cfg.artifacts.clone(),
            cni: cfg.cni.clone(),
            host_networks: cfg.host_networks.clone(),
            bind_wildcard_default_host_network: cfg.bind_wildcard_default_host_network,
            resource_totals: cfg.resource_totals,
            max_kill_timeout: cfg.max_kill_timeout,
            disable_remote_exec: cfg.disable_remote_exec,
            bridge: cfg.bridge.clone(),
            dialer: tls.dialer.clone(),
            common_plugin_dir: cfg.common_plugin_dir.clone(),
            stop_tasks_on_shutdown: cfg.dev,
        },
        host,
    )
    .await?;
    tracing::info!(node_id = c.node_id(), "client started");
    if let Some(leaf) = &tls.managed {
        leaf.clone()
            .spawn_sync(cfg.servers.clone(), tls.dialer.clone());
    }
    Ok(c)
}

/// Starts the DNS server (unless `dns { enabled = false }`): a client answers from its
/// local copy of the catalog, a server without a client from its state store.
async fn start_dns(
    cfg: &AgentConfig,
    client: Option<&Client>,
    server: Option<&Server>,
) -> anyhow::Result<Option<drover_dns::DnsServer>> {
    let Some(dns) = &cfg.dns else {
        return Ok(None);
    };
    let lookup: Arc<dyn drover_catalog::ServiceLookup> = match (client, server) {
        (Some(c), _) => Arc::new(c.catalog().clone()),
        (None, Some(s)) => Arc::new(drover_server::StateCatalog::new(s.store().clone())),
        (None, None) => return Ok(None),
    };
    let d = drover_dns::serve(dns, lookup).await.with_context(|| {
        format!(
            "cannot start the DNS server on {} (set dns {{ port }} or -dns-port, or dns {{ enabled = false }})",
            dns.addr
        )
    })?;
    tracing::info!(dns = %d.local_addr(), domain = %dns.domain, "DNS server listening");
    Ok(Some(d))
}

/// Waits for SIGTERM (true) or SIGINT (false).
async fn wait_for_signal() -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => true,
        _ = int.recv() => false,
    }
}
