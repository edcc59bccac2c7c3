//! What the node is: CPU, memory, disk, kernel, OS, host name, and its drivers' health.

use std::collections::BTreeMap;

use drover_model::{DriverInfo, Node, NodeResources, NodeStatus};
use drover_proto::driver::driver_client::DriverClient;
use drover_proto::driver::{FingerprintRequest, HealthState};
use tonic::transport::Channel;

use crate::{Client, driver_stream};

/// The clock of one core in MHz, from /proc/cpuinfo's text (1000 when it says nothing).
pub fn core_mhz(cpuinfo: &str) -> u64 {
    cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("cpu MHz")
                .and_then(|r| r.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|m| m as u64)
        .unwrap_or(1000)
}

/// The cores tasks may be pinned to: the root cpuset's (cgroup v2, then v1), else this
/// process's affinity; ascending.
pub fn reservable_cores() -> Vec<u16> {
    for path in [
        "/sys/fs/cgroup/cpuset.cpus.effective",
        "/sys/fs/cgroup/cpuset/cpuset.cpus",
    ] {
        if let Ok(s) = std::fs::read_to_string(path) {
            let cores = parse_cpu_list(&s);
            if !cores.is_empty() {
                return cores;
            }
        }
    }
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..nix::sched::CpuSet::count().min(u16::MAX as usize))
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .map(|c| c as u16)
        .collect()
}

/// Parses a cpuset list (`0-3,6`): ascending, without duplicates; what does not parse (or
/// lies beyond 65535) is skipped.
pub fn parse_cpu_list(s: &str) -> Vec<u16> {
    let mut out = std::collections::BTreeSet::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u16>(), b.trim().parse::<u16>()),
            None => (part.parse::<u16>(), part.parse::<u16>()),
        };
        if let (Ok(a), Ok(b)) = (a, b)
            && b >= a
            && b - a < 4096
        {
            out.extend(a..=b);
        }
    }
    out.into_iter().collect()
}

/// Host attributes and resources, read from /proc and the system; the networks are those of
/// `network_interface` and the host networks (see [`crate::node_network::fingerprint`]).
pub fn fingerprint(
    data_dir: &std::path::Path,
    network_interface: Option<&str>,
    host_networks: &BTreeMap<String, crate::HostNetwork>,
) -> (BTreeMap<String, String>, NodeResources) {
    let mut attrs = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let mhz = core_mhz(&cpuinfo);
    if let Some(model) = cpuinfo.lines().find_map(|l| {
        l.strip_prefix("model name")
            .and_then(|r| r.split(':').nth(1))
    }) {
        attrs.insert("cpu.modelname".into(), model.trim().to_string());
    }
    attrs.insert("cpu.numcores".into(), cores.to_string());
    attrs.insert("cpu.frequency".into(), mhz.to_string());
    attrs.insert("cpu.totalcompute".into(), (cores * mhz).to_string());
    attrs.insert("cpu.arch".into(), std::env::consts::ARCH.into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    attrs.insert("memory.totalbytes".into(), (mem_kb * 1024).to_string());
    let uts = nix::sys::utsname::uname().ok();
    attrs.insert("kernel.name".into(), "linux".into());
    if let Some(u) = &uts {
        attrs.insert(
            "kernel.version".into(),
            u.release().to_string_lossy().into(),
        );
        attrs.insert(
            "unique.hostname".into(),
            u.nodename().to_string_lossy().into(),
        );
    }
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    for (key, attr) in [("ID", "os.name"), ("VERSION_ID", "os.version")] {
        if let Some(v) = os.lines().find_map(|l| l.strip_prefix(&format!("{key}="))) {
            attrs.insert(attr.into(), v.trim_matches('"').to_string());
        }
    }
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    attrs.insert(
        "os.cgroups.version".into(),
        if cgroup_v2 { "2" } else { "1" }.into(),
    );
    attrs.insert("drover.version".into(), env!("CARGO_PKG_VERSION").into());
    let disk_mb = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| s.blocks_available() * s.fragment_size() / (1024 * 1024))
        .unwrap_or(0);
    attrs.insert(
        "unique.storage.volume".into(),
        data_dir.display().to_string(),
    );
    attrs.insert(
        "unique.storage.bytesfree".into(),
        (disk_mb * 1024 * 1024).to_string(),
    );
    let addresses = crate::node_network::fingerprint(network_interface, host_networks, &mut attrs);
    let reservable_cores = reservable_cores();
    attrs.insert(
        "cpu.reservablecores".into(),
        reservable_cores.len().to_string(),
    );
    (
        attrs,
        NodeResources {
            cpu: cores * mhz,
            memory_mb: mem_kb / 1024,
            disk_mb,
            networks: addresses.networks,
            node_networks: addresses.node_networks,
            reservable_cores,
        },
    )
}

/// `client { cpu_total_compute, memory_total_mb }`: the totals the operator gives replace
/// the fingerprinted ones, in the resources and in the attributes constraints read.
pub fn apply_totals(
    totals: crate::ResourceTotals,
    attrs: &mut BTreeMap<String, String>,
    resources: &mut NodeResources,
) {
    if let Some(cpu) = totals.cpu {
        resources.cpu = cpu;
        attrs.insert("cpu.totalcompute".into(), cpu.to_string());
    }
    if let Some(mb) = totals.memory_mb {
        resources.memory_mb = mb;
        attrs.insert(
            "memory.totalbytes".into(),
            mb.saturating_mul(1024 * 1024).to_string(),
        );
    }
}

/// The secret providers a node advertises, as Nomad does: the built-in `nomad` (version
/// 1.0.0) and each exec plugin that answered its fingerprint.
fn secret_provider_attributes(
    exec_plugins: &BTreeMap<String, String>,
) -> impl Iterator<Item = (String, String)> + '_ {
    std::iter::once((crate::secret_sources::NOMAD_PROVIDER, "1.0.0"))
        .chain(exec_plugins.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .map(|(name, version)| {
            (
                format!("plugins.secrets.{name}.version"),
                version.to_string(),
            )
        })
}

/// The node as the client registers it.
pub async fn node(client: &Client) -> Node {
    let cfg = &client.inner.config;
    let dir = cfg.data_dir.clone();
    let iface = cfg.network_interface.clone();
    let host_networks = cfg.host_networks.clone();
    let (mut attributes, mut resources) =
        tokio::task::spawn_blocking(move || fingerprint(&dir, iface.as_deref(), &host_networks))
            .await
            .unwrap_or_default();
    let cni = client.inner.cni.scan().await;
    attributes.extend(cni.attributes.clone());
    resources.networks.extend(cni.networks());
    client.inner.cni.reported(&cni);
    apply_totals(cfg.resource_totals, &mut attributes, &mut resources);
    attributes.extend(secret_provider_attributes(&client.inner.secret_plugins));
    let mut drivers = BTreeMap::new();
    for name in client.host().driver_names().await {
        let info = driver_info(client, &name).await;
        if info.detected {
            attributes.insert(format!("driver.{name}"), "1".into());
        }
        for (k, v) in &info.attributes {
            attributes.insert(k.clone(), v.clone());
        }
        drivers.insert(name, info);
    }
    Node {
        id: client.node_id().to_string(),
        secret_id: client.inner.state.node_secret(),
        name: cfg.node_name.clone(),
        datacenter: cfg.datacenter.clone(),
        node_class: cfg.node_class.clone(),
        node_pool: cfg.node_pool.clone(),
        status: NodeStatus::Initializing,
        status_description: String::new(),
        scheduling_eligibility: drover_model::SchedulingEligibility::Eligible,
        attributes,
        meta: cfg.meta.clone(),
        resources,
        reserved: cfg.reserved.clone(),
        host_volumes: cfg.host_volumes.clone(),
        min_dynamic_port: cfg.dynamic_ports.0,
        max_dynamic_port: cfg.dynamic_ports.1,
        drivers,
        http_addr: cfg.http_addr.clone(),
        // Nomad binds the default host network on the wildcard only while no host network
        // is configured.
        bind_wildcard_default_host_network: Some(
            cfg.bind_wildcard_default_host_network && cfg.host_networks.is_empty(),
        ),
        drain: false,
        status_updated_at: 0,
        create_index: 0,
        modify_index: 0,
    }
}

async fn driver_info(client: &Client, name: &str) -> DriverInfo {
    let unhealthy = |d: String| DriverInfo {
        detected: false,
        healthy: false,
        health_description: d,
        attributes: BTreeMap::new(),
    };
    let mut driver = match client.host().driver(name).await {
        Ok(d) => d,
        Err(e) => return unhealthy(format!("plugin failed to start: {e}")),
    };
    let first = async {
        let mut s = driver
            .fingerprint(FingerprintRequest {})
            .await?
            .into_inner();
        s.message().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), first).await {
        Ok(Ok(Some(f))) => DriverInfo {
            detected: f.health() != HealthState::Undetected,
            healthy: f.health() == HealthState::Healthy,
            health_description: f.health_description,
            attributes: f.attributes.into_iter().collect(),
        },
        Ok(Ok(None)) => unhealthy("fingerprint stream ended without a message".into()),
        Ok(Err(e)) => unhealthy(format!("fingerprint failed: {}", e.message())),
        Err(_) => unhealthy("fingerprint timed out".into()),
    }
}

/// Follows a driver's fingerprint stream for as long as the client runs; when its health or
/// attributes change, the node is registered again. A broken stream (the plugin restarted)
/// is re-opened.
pub async fn watch_driver(client: Client, name: String) {
    let mut last: Option<(i32, String, BTreeMap<String, String>)> = None;
    let open =
        |mut d: DriverClient<Channel>| async move { d.fingerprint(FingerprintRequest {}).await };
    driver_stream::follow(&client, &name, "fingerprint", open, |f| {
        let now = (
            f.health,
            f.health_description.clone(),
            f.attributes.clone().into_iter().collect(),
        );
        if last.as_ref().is_some_and(|l| *l != now) {
            tracing::info!(driver = %name, health = f.health, "driver fingerprint changed: updating the node");
            client.inner.node_changed.send_modify(|v| *v += 1);
        }
        last = Some(now);
    })
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn operator_totals_replace_the_fingerprinted_cpu_and_memory() {
        let (mut attrs, mut res) = super::fingerprint(
            std::path::Path::new("/"),
            Some("lo"),
            &std::collections::BTreeMap::new(),
        );
        let fingerprinted = res.clone();
        super::apply_totals(Default::default(), &mut attrs, &mut res);
        assert_eq!(res, fingerprinted);
        super::apply_totals(
            crate::ResourceTotals {
                cpu: Some(12345),
                memory_mb: Some(2048),
            },
            &mut attrs,
            &mut res,
        );
        assert_eq!((res.cpu, res.memory_mb), (12345, 2048));
        assert_eq!(attrs["cpu.totalcompute"], "12345");
        assert_eq!(attrs["memory.totalbytes"], (2048u64 << 20).to_string());
        assert_eq!(res.disk_mb, fingerprinted.disk_mb);
    }

    use super::*;

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("5,1-2,2"), vec![1, 2, 5]);
        assert_eq!(parse_cpu_list(""), Vec::<u16>::new());
        assert_eq!(parse_cpu_list("3-1,x,70000,0-65535"), Vec::<u16>::new());
    }

    #[test]
    fn the_node_reports_its_reservable_cores() {
        let cores = reservable_cores();
        assert!(!cores.is_empty());
        assert!(cores.windows(2).all(|w| w[0] < w[1]), "{cores:?}");
    }
}
