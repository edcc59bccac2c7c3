//! What the node offers CNI networking: the plugins on `cni_path` and their versions
//! (Nomad's `plugins.cni.version.<name>` attributes), and the network modes allocations can
//! ask for (Nomad's `NodeResources.Networks`): `bridge` when its prerequisites hold (the
//! kernel's bridge module loaded or built in, and the plugins Nomad's bridge conflist runs,
//! nomad#23583), and `cni/<name>` for each valid network configuration in `cni_config_dir`.
//!
//! A plugin's version is what it prints when run without `CNI_COMMAND` (the
//! containernetworking plugins print `CNI bridge plugin v1.1.1`): only regular executable
//! files are run, with no arguments, a cleared environment, bounded output and a timeout,
//! and each answer is cached by path, size and modification time, so a re-scan runs only
//! what changed. The client re-scans every [`RESCAN_EVERY`] and registers the node again when
//! the report changed: an added conflist or plugin reaches the servers without a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use drover_model::NodeNetwork;
use tokio::io::AsyncReadExt;

use crate::CniLocations;

/// The attribute prefix of a plugin's version (Nomad's).
pub const VERSION_ATTRIBUTE: &str = "plugins.cni.version";
/// The version reported for a plugin that runs but prints none.
pub const UNKNOWN_VERSION: &str = "unknown";
/// The plugins Nomad's bridge network runs: without any of them bridge mode cannot work.
pub const BRIDGE_PLUGINS: [&str; 5] = ["bridge", "firewall", "host-local", "loopback", "portmap"];
/// How often the client looks for changed plugins and configurations.
pub const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// Time a plugin may take to print its version (Nomad's).
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);
/// Output of a version run that is read (the rest is drained).
const VERSION_OUTPUT: u64 = 4096;
/// Entries of one `cni_path` directory looked at.
const MAX_ENTRIES: usize = 512;

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniReport {
    /// `plugins.cni.version.<name>` for every plugin found.
    pub attributes: BTreeMap<String, String>,
    /// The network modes beyond "host": "bridge", "cni/<name>".
    pub modes: Vec<String>,
    /// Configuration files that could not be used, and why bridge mode is missing.
    pub problems: Vec<String>,
}

impl CniReport {
    /// The modes as entries of `NodeResources.Networks`.
    pub fn networks(&self) -> Vec<NodeNetwork> {
        self.modes
            .iter()
            .map(|m| NodeNetwork {
                mode: m.clone(),
                ..Default::default()
            })
            .collect()
    }
}

/// What identifies one version of a plugin file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

/// A plugin found on `cni_path`: the first executable of its name.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    path: PathBuf,
    stamp: Stamp,
}

/// The node's CNI fingerprint, with the version cache.
#[derive(Debug)]
pub struct CniFingerprint {
    locations: CniLocations,
    /// The version printed by each plugin file, by path, for the stamp it had.
    versions: Mutex<BTreeMap<PathBuf, (Stamp, Option<String>)>>,
    /// What the node was last registered with.
    reported: Mutex<Option<CniReport>>,
    /// Where the kernel says which modules it has (a test points it elsewhere).
    kernel: KernelFiles,
}

/// The kernel's lists of modules: loaded ones, built-in ones, and the sysfs module tree.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    pub proc_modules: PathBuf,
    pub modules_builtin: PathBuf,
    pub sys_module: PathBuf,
}

impl Default for KernelFiles {
    fn default() -> Self {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        KernelFiles {
            proc_modules: "/proc/modules".into(),
            modules_builtin: PathBuf::from(format!("/lib/modules/{release}/modules.builtin")),
            sys_module: "/sys/module".into(),
        }
    }
}

impl KernelFiles {
    /// Whether kernel module `name` is loaded or built in. Blocking.
    pub fn has_module(&self, name: &str) -> bool {
        if self.sys_module.join(name).is_dir() {
            return true;
        }
        let read = |p: &Path| {
            std::fs::File::open(p).and_then(|f| {
                let mut s = String::new();
                f.take(4 << 20).read_to_string(&mut s).map(|_| s)
            })
        };
        let loaded = read(&self.proc_modules)
            .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().next() == Some(name)));
        let ko = format!("/{name}.ko");
        loaded
            || read(&self.modules_builtin).is_ok_and(|s| s.lines().any(|l| l.trim().ends_with(&ko)))
    }
}

impl CniFingerprint {
    pub fn new(locations: CniLocations) -> Self {
        Self::with_kernel(locations, KernelFiles::default())
    }

    pub fn with_kernel(locations: CniLocations, kernel: KernelFiles) -> Self {
        CniFingerprint {
            locations,
            versions: Mutex::default(),
            reported: Mutex::default(),
            kernel,
        }
    }

    /// Scans plugins and configurations (running only plugins not seen at their current
    /// size and modification time).
    pub async fn scan(&self) -> CniReport {
        let (dirs, config_dir, kernel) = (
            self.locations.plugin_path.dirs().to_vec(),
            self.locations.config_dir.clone(),
            self.kernel.clone(),
        );
        let listed = tokio::task::spawn_blocking(move || {
            let found = list_plugins(&dirs);
            let configs = drover_cni::load_dir(&config_dir);
            let bridge_module = kernel.has_module("bridge");
            (found, configs, bridge_module)
        })
        .await;
        let Ok((found, configs, bridge_module)) = listed else {
            return CniReport::default();
        };
        let mut report = CniReport::default();
        let mut names = BTreeSet::new();
        for f in &found {
            if let Some(v) = self.version(f).await {
                report
                    .attributes
                    .insert(format!("{VERSION_ATTRIBUTE}.{}", f.name), v);
            }
            names.insert(f.name.as_str());
        }
        self.forget_all_but(&found);
        let missing: Vec<&str> = BRIDGE_PLUGINS
            .iter()
            .copied()
            .filter(|p| !names.contains(p))
            .collect();
        if !bridge_module {
            report
                .problems
                .push("bridge mode: the kernel has no bridge module".into());
        } else if !missing.is_empty() {
            report.problems.push(format!(
                "bridge mode: CNI plugins {} are not on cni_path {}",
                missing.join(", "),
                self.locations.plugin_path.to_env()
            ));
        } else {
            report.modes.push("bridge".into());
        }
        match configs {
            Ok(loaded) => {
                let mut seen = BTreeSet::new();
                for (path, net) in &loaded.networks {
                    // The first file (by name) with a network name wins, as in Nomad.
                    if seen.insert(net.name.clone()) {
                        report.modes.push(format!("cni/{}", net.name));
                    } else {
                        report.problems.push(format!(
                            "{}: network {:?} is already defined by an earlier file; ignored",
                            path.display(),
                            net.name
                        ));
                    }
                }
                report
                    .problems
                    .extend(loaded.errors.iter().map(|e| e.to_string()));
            }
            Err(e) => report.problems.push(format!(
                "cni_config_dir {}: {e}",
                self.locations.config_dir.display()
            )),
        }
        report
    }

    /// The version `f` prints, from the cache when its file is unchanged. None: it could
    /// not be run (then it is not reported, as in Nomad).
    async fn version(&self, f: &Found) -> Option<String> {
        if let Some((stamp, v)) = self.versions.lock().expect("versions lock").get(&f.path)
            && *stamp == f.stamp
        {
            return v.clone();
        }
        let v = match run_for_version(&f.path).await {
            Ok(out) => Some(parse_version(&out)),
            Err(e) => {
                tracing::debug!(plugin = %f.path.display(), error = %e, "cannot run CNI plugin for its version");
                None
            }
        };
        self.versions
            .lock()
            .expect("versions lock")
            .insert(f.path.clone(), (f.stamp, v.clone()));
        v
    }

    fn forget_all_but(&self, found: &[Found]) {
        let keep: BTreeSet<&Path> = found.iter().map(|f| f.path.as_path()).collect();
        self.versions
            .lock()
            .expect("versions lock")
            .retain(|p, _| keep.contains(p.as_path()));
    }

    /// Records what the node was registered with.
    pub fn reported(&self, report: &CniReport) {
        let mut last = self.reported.lock().expect("reported lock");
        if last.as_ref().is_none_or(|l| l.problems != report.problems) {
            for p in &report.problems {
                tracing::warn!(problem = %p, "CNI fingerprint");
            }
        }
        *last = Some(report.clone());
    }

    /// Whether `report` differs from what the node was registered with (false before the
    /// first registration, which carries a fresh scan anyway).
    pub fn changed(&self, report: &CniReport) -> bool {
        self.reported
            .lock()
            .expect("reported lock")
            .as_ref()
            .is_some_and(|last| last != report)
    }
}

/// The first regular executable file of each name on the path (in the order of the
/// directories, as plugins are looked up). Names that are not plain plugin names are
/// skipped. Blocking.
fn list_plugins(dirs: &[PathBuf]) -> Vec<Found> {
    let mut out: BTreeMap<String, Found> = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot list a cni_path directory");
                continue;
            }
        };
        for entry in entries.flatten().take(MAX_ENTRIES) {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if out.contains_key(&name) || drover_cni::plugins::check_type(&name).is_err() {
                continue;
            }
            let path = dir.join(&name);
            // The directory is the operator's: a link there is followed, as the runtime does.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                continue;
            }
            let stamp = Stamp {
                size: meta.len(),
                mtime: meta.mtime(),
                mtime_nsec: meta.mtime_nsec(),
            };
            out.insert(name.clone(), Found { name, path, stamp });
        }
    }
    out.into_values().collect()
}

/// Runs a plugin with no arguments and no `CNI_COMMAND`; its output (stdout, then stderr),
/// at most [`VERSION_OUTPUT`] bytes of each.
async fn run_for_version(path: &Path) -> std::io::Result<String> {
    let mut child = tokio::process::Command::new(path)
        .env_clear()
        .env("PATH", drover_cni::exec::PLUGIN_PATH_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()?;
    let group = child.id();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let run = async {
        let (mut out, err) = tokio::try_join!(read_head(stdout), read_head(stderr))?;
        child.wait().await?;
        out.extend_from_slice(b"\n");
        out.extend_from_slice(&err);
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(VERSION_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => {
            if let Some(pid) = group.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {VERSION_TIMEOUT:?}"),
            ))
        }
    }
}

/// The first [`VERSION_OUTPUT`] bytes of a stream; the rest is drained, so the writer
/// never blocks on a full pipe.
async fn read_head(mut stream: impl tokio::io::AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    (&mut stream)
        .take(VERSION_OUTPUT)
        .read_to_end(&mut head)
        .await?;
    tokio::io::copy(&mut stream, &mut tokio::io::sink()).await?;
    Ok(head)
}

/// The version in a plugin's answer: the first token of its first non-empty line that is a
/// semantic version (`v1.1.1`, `1.4.0-rc1`), kept as printed; else "unknown" (Debian's
/// plugins print `version unknown`; the protocol versions on the next line are not the
/// plugin's).
pub fn parse_version(output: &str) -> String {
    let first = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    first
        .split_whitespace()
        .find(|t| is_semver(t))
        .map(|t| t.chars().take(64).collect())
        .unwrap_or_else(|| UNKNOWN_VERSION.to_string())
}

fn is_semver(token: &str) -> bool {
    let t = token.strip_prefix('v').unwrap_or(token);
    let core = t.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && t[core.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
}

/// Re-scans every [`RESCAN_EVERY`] for as long as the client runs; a changed report
/// registers the node again.
pub async fn watch(client: crate::Client) {
    let mut shutdown = client.inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RESCAN_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let report = client.inner.cni.scan().await;
        if client.inner.cni.changed(&report) {
            tracing::info!(
                modes = ?report.modes,
                plugins = report.attributes.len(),
                "CNI plugins or network configurations changed: updating the node"
            );
            client.inner.node_changed.send_modify(|v| *v += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(dir: &Path, name: &str, script: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn locations(plugins: &str, config: &Path) -> CniLocations {
        CniLocations {
            plugin_path: drover_cni::PluginPath::parse(plugins),
            config_dir: config.to_path_buf(),
        }
    }

    /// A kernel with (or without) the bridge module, in files the test writes.
    fn kernel(dir: &Path, bridge: bool) -> KernelFiles {
        let modules = dir.join("modules");
        std::fs::write(
            &modules,
            if bridge {
                "stp 16384 1 llc, Live 0x0\nbridge 311296 0 - Live 0x0\n"
            } else {
                "bridgex 1 0 - Live 0x0\n"
            },
        )
        .unwrap();
        KernelFiles {
            proc_modules: modules,
            modules_builtin: dir.join("none"),
            sys_module: dir.join("none"),
        }
    }

    #[test]
    fn versions_are_read_from_the_first_line() {
        assert_eq!(parse_version("CNI bridge plugin v1.1.1\n"), "v1.1.1");
        assert_eq!(
            parse_version(
                "\nCNI portmap plugin version unknown\nCNI protocol versions supported: 0.1.0, 0.4.0, 1.0.0\n"
            ),
            "unknown"
        );
        assert_eq!(parse_version("custom 2.0.0-rc1+abc"), "2.0.0-rc1+abc");
        assert_eq!(parse_version("v1.2 1.2.3.4 x1.2.3"), "unknown");
        assert_eq!(parse_version(""), "unknown");
    }

    #[test]
    fn the_bridge_module_is_found_loaded_or_built_in() {
        let dir = tempfile::tempdir().unwrap();
        assert!(kernel(dir.path(), true).has_module("bridge"));
        assert!(!kernel(dir.path(), false).has_module("bridge"));
        let builtin = dir.path().join("modules.builtin");
        std::fs::write(&builtin, "kernel/net/bridge/bridge.ko\n").unwrap();
        let k = KernelFiles {
            modules_builtin: builtin,
            ..kernel(dir.path(), false)
        };
        assert!(k.has_module("bridge"));
        assert!(!k.has_module("veth"));
    }

    #[tokio::test]
    async fn plugins_report_their_versions_and_are_run_once_per_file_version() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, conf) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("conf"),
        );
        for d in [&a, &b, &conf] {
            std::fs::create_dir(d).unwrap();
        }
        let runs = dir.path().join("runs");
        let count = format!("echo run >> {}", runs.display());
        exe(
            &a,
            "bridge",
            &format!("{count}\necho 'CNI bridge plugin v1.1.1' >&2"),
        );
        exe(&b, "bridge", "echo 'CNI bridge plugin v9.9.9'");
        exe(&a, "quiet", "exit 0");
        exe(&b, "hangs", "sleep 30");
        std::fs::write(a.join("notexec"), "#!/bin/sh\necho v1.0.0\n").unwrap();
        std::fs::create_dir(a.join("adir")).unwrap();
        let fp = CniFingerprint::with_kernel(
            locations(&format!("{}:{}", a.display(), b.display()), &conf),
            kernel(dir.path(), true),
        );
        let started = std::time::Instant::now();
        let r = fp.scan().await;
        assert!(started.elapsed() < Duration::from_secs(10));
        let attr = |n: &str| {
            r.attributes
                .get(&format!("plugins.cni.version.{n}"))
                .cloned()
        };
        assert_eq!(attr("bridge").as_deref(), Some("v1.1.1"), "{r:?}");
        assert_eq!(attr("quiet").as_deref(), Some("unknown"));
        assert_eq!(
            attr("hangs"),
            None,
            "a plugin that times out is not reported"
        );
        assert_eq!(attr("notexec"), None);
        assert_eq!(attr("adir"), None);
        // A second scan runs nothing again: the files did not change.
        let again = fp.scan().await;
        assert_eq!(again, r);
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
        // A changed file is run again.
        exe(
            &a,
            "bridge",
            &format!("{count}\necho 'CNI bridge plugin v1.2.0'"),
        );
        let r = fp.scan().await;
        assert_eq!(
            r.attributes["plugins.cni.version.bridge"], "v1.2.0",
            "{r:?}"
        );
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 2);
    }

    #[tokio::test]
    async fn network_modes_follow_plugins_kernel_and_conflists() {
        let dir = tempfile::tempdir().unwrap();
        let (bin, conf) = (dir.path().join("bin"), dir.path().join("conf"));
        std::fs::create_dir(&bin).unwrap();
        std::fs::create_dir(&conf).unwrap();
        for p in &BRIDGE_PLUGINS[..4] {
            exe(&bin, p, &format!("echo 'CNI {p} plugin v1.0.0'"));
        }
        let fp = CniFingerprint::with_kernel(
            locations(&bin.display().to_string(), &conf),
            kernel(dir.path(), true),
        );
        let r = fp.scan().await;
        assert!(r.modes.is_empty(), "portmap is missing: {r:?}");
        assert!(r.problems.iter().any(|p| p.contains("portmap")), "{r:?}");
        exe(&bin, "portmap", "echo 'CNI portmap plugin v1.0.0'");
        std::fs::write(
            conf.join("10-testnet.conflist"),
            r#"{"cniVersion":"1.0.0","name":"testnet","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        std::fs::write(
            conf.join("20-again.conflist"),
            r#"{"cniVersion":"1.0.0","name":"testnet","plugins":[{"type":"macvlan"}]}"#,
        )
        .unwrap();
        std::fs::write(conf.join("30-broken.conflist"), "{").unwrap();
        let r2 = fp.scan().await;
        assert_eq!(r2.modes, ["bridge", "cni/testnet"]);
        assert!(
            r2.problems.iter().any(|p| p.contains("30-broken")),
            "{r2:?}"
        );
        assert!(r2.problems.iter().any(|p| p.contains("20-again")), "{r2:?}");
        let nets = r2.networks();
        assert_eq!(nets[1].mode, "cni/testnet");
        assert!(nets[1].ip.is_empty());
        // Change detection against what was registered.
        assert!(!fp.changed(&r2), "nothing registered yet");
        fp.reported(&r);
        assert!(fp.changed(&r2));
        fp.reported(&r2);
        assert!(!fp.changed(&fp.scan().await));
        // Without the bridge module there is no bridge mode.
        let no_bridge = CniFingerprint::with_kernel(
            locations(&bin.display().to_string(), &conf),
            kernel(dir.path(), false),
        );
        assert_eq!(no_bridge.scan().await.modes, ["cni/testnet"]);
    }
}
