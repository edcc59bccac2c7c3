//! Fixtures of the integration tests: a named network namespace, a bridge network of
//! Debian's real plugins (loopback + bridge with host-local IPAM + portmap), each test
//! unique (names, bridge, subnet, host port) and cleaned up by Drop guards even when the
//! test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use drover_cni::{
    Attachment, CniRuntime, NetworkConfigList, PluginPath, PluginRunner, ResultCache,
};

/// Where Debian's `containernetworking-plugins` installs.
pub const DEBIAN_CNI_PATH: &str = "/usr/lib/cni";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A number unique within this test process.
pub fn unique() -> u32 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command; panics when it cannot run; returns (success, stdout+stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} cannot run: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Fails loudly when the plugins this suite drives are missing.
pub fn require_plugins() {
    for p in ["loopback", "bridge", "host-local", "portmap"] {
        let path = Path::new(DEBIAN_CNI_PATH).join(p);
        assert!(
            path.is_file(),
            "{} missing: install Debian's containernetworking-plugins",
            path.display()
        );
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(n: u32) -> Self {
        let name = format!("drover-cni-test-{}-{n}", std::process::id());
        let (ok, out) = run("ip", &["netns", "add", &name]);
        assert!(ok, "ip netns add {name}: {out}");
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// `ip -n NS addr show dev IF`, or None when the device is not there.
    pub fn addr(&self, ifname: &str) -> Option<String> {
        let (ok, out) = run("ip", &["-n", &self.name, "addr", "show", "dev", ifname]);
        ok.then_some(out)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// One test's bridge network: its conflist, namespace, runtime and cache; Drop runs the
/// plugins' DEL (removing portmap's rules, the veth and the lease), then deletes the bridge
/// and the namespace.
pub struct BridgeNet {
    pub tmp: tempfile::TempDir,
    pub net: NetworkConfigList,
    pub attachment: Attachment,
    pub bridge: String,
    /// The subnet's first three octets, e.g. `10.213.4`.
    pub prefix: String,
    pub host_port: u16,
    pub netns: Netns,
}

impl BridgeNet {
    pub fn new(cni_version: &str) -> Self {
        require_plugins();
        let n = unique();
        let pid = std::process::id();
        let netns = Netns::new(n);
        let tmp = tempfile::tempdir().unwrap();
        let bridge = format!("dcni{}x{n}", pid % 100_000);
        let prefix = format!("10.{}.{}", 100 + pid % 150, n % 250);
        let host_port = 20_000 + (pid % 20_000) as u16 + n as u16;
        let name = format!("drover-cni-test-{pid}-{n}");
        let list = serde_json::json!({
            "cniVersion": cni_version,
            "name": name,
            "plugins": [
                {"type": "loopback"},
                {"type": "bridge", "bridge": bridge, "isGateway": true,
                 "ipam": {"type": "host-local",
                          "ranges": [[{"subnet": format!("{prefix}.0/24")}]],
                          "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": tmp.path().join("ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        });
        let net = NetworkConfigList::from_value(list).unwrap();
        let container_id = format!("drover-test-{pid}-{n}");
        let mut attachment = Attachment::new(&container_id, netns.path(), "eth0");
        attachment.args = vec![("IgnoreUnknown".into(), "1".into())];
        attachment.capability_args.insert(
            "portMappings".into(),
            serde_json::json!([{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]),
        );
        BridgeNet {
            tmp,
            net,
            attachment,
            bridge,
            prefix,
            host_port,
            netns,
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// A fresh runtime on Debian's plugins and this test's cache directory.
    pub fn runtime(&self) -> CniRuntime {
        CniRuntime::new(
            PluginRunner::new(PluginPath::parse(&format!(
                "/opt/cni/bin:{DEBIAN_CNI_PATH}"
            ))),
            ResultCache::new(self.cache_dir()),
        )
    }

    /// host-local's lease files for this network.
    pub fn leases(&self) -> Vec<String> {
        let dir = self.tmp.path().join("ipam").join(&self.net.name);
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<_> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        names.sort();
        names
    }

    /// NAT rules (iptables, nf_tables backend) that name this container.
    pub fn nat_rules(&self) -> Vec<String> {
        let (ok, out) = run("iptables-save", &["-t", "nat"]);
        assert!(ok, "iptables-save: {out}");
        out.lines()
            .filter(|l| l.contains(&self.attachment.container_id))
            .map(str::to_string)
            .collect()
    }

    /// Whether the bridge's host-side veth for this container still exists: any link
    /// enslaved to the bridge.
    pub fn bridge_ports(&self) -> Vec<String> {
        let (_, out) = run("ip", &["-o", "link", "show", "master", &self.bridge]);
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for BridgeNet {
    fn drop(&mut self) {
        let rt = self.runtime();
        let net = self.net.clone();
        let att = self.attachment.clone();
        // Drop cannot await: the plugins' DEL runs on a runtime of its own in a thread.
        let _ = std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = tokio.block_on(rt.del(&net, &att));
        })
        .join();
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}
