//! A task's cgroups, v1 and v2 behind one seam.
//!
//! Every file operation goes through [`CgroupFs`]: [`RealFs`] on the host, [`RecordingFs`]
//! in tests (an in-memory tree that records writes), so the v2 layout is covered by unit
//! tests even on cgroup-v1 machines.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::CgroupSpec;

/// The cgroup filesystem operations the driver needs.
pub trait CgroupFs: Send + Sync {
    fn exists(&self, p: &Path) -> bool;
    fn mkdir(&self, p: &Path) -> io::Result<()>;
    fn rmdir(&self, p: &Path) -> io::Result<()>;
    fn read(&self, p: &Path) -> io::Result<String>;
    fn write(&self, p: &Path, data: &str) -> io::Result<()>;
}

/// The host's cgroup filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl CgroupFs for RealFs {
    fn exists(&self, p: &Path) -> bool {
        p.exists()
    }
    fn mkdir(&self, p: &Path) -> io::Result<()> {
        match std::fs::create_dir(p) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }
    fn rmdir(&self, p: &Path) -> io::Result<()> {
        match std::fs::remove_dir(p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
    fn read(&self, p: &Path) -> io::Result<String> {
        std::fs::read_to_string(p)
    }
    fn write(&self, p: &Path, data: &str) -> io::Result<()> {
        std::fs::write(p, data)
    }
}

/// An in-memory cgroup tree for tests: files you seed, plus every write in order.
#[derive(Debug, Clone, Default)]
pub struct RecordingFs {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Default)]
struct Recorded {
    files: BTreeMap<PathBuf, String>,
    dirs: Vec<PathBuf>,
    writes: Vec<(PathBuf, String)>,
}

impl RecordingFs {
    /// Seeds a file (and its directory).
    pub fn seed(&self, p: impl Into<PathBuf>, data: &str) {
        let p = p.into();
        let mut r = self.inner.lock().unwrap();
        if let Some(d) = p.parent() {
            r.dirs.push(d.to_path_buf());
        }
        r.files.insert(p, data.into());
    }
    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<(PathBuf, String)> {
        self.inner.lock().unwrap().writes.clone()
    }
    /// The directories that exist.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.inner.lock().unwrap().dirs.clone()
    }
}

impl CgroupFs for RecordingFs {
    fn exists(&self, p: &Path) -> bool {
        let r = self.inner.lock().unwrap();
        r.files.contains_key(p) || r.dirs.iter().any(|d| d == p)
    }
    fn mkdir(&self, p: &Path) -> io::Result<()> {
        let mut r = self.inner.lock().unwrap();
        if !r.dirs.iter().any(|d| d == p) {
            r.dirs.push(p.to_path_buf());
        }
        Ok(())
    }
    fn rmdir(&self, p: &Path) -> io::Result<()> {
        self.inner.lock().unwrap().dirs.retain(|d| d != p);
        Ok(())
    }
    fn read(&self, p: &Path) -> io::Result<String> {
        self.inner
            .lock()
            .unwrap()
            .files
            .get(p)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn write(&self, p: &Path, data: &str) -> io::Result<()> {
        let mut r = self.inner.lock().unwrap();
        r.writes.push((p.to_path_buf(), data.to_string()));
        r.files.insert(p.to_path_buf(), data.to_string());
        Ok(())
    }
}

/// Which hierarchy the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Version {
    V1,
    V2,
}

/// The v1 controllers a task joins.
const V1_CONTROLLERS: &[&str] = &["memory", "cpu", "cpuacct", "cpuset", "pids", "devices"];

/// The device nodes a task may create or open (v1 `devices.allow` lines): null, zero, full,
/// random, urandom and tty. Everything else (disks, memory, consoles, ptys of the host) is
/// denied, whatever capabilities the task holds. ptys (5:2, 136:*) would need a private
/// devpts, which tasks do not get.
pub const ALLOWED_DEVICES: &[&str] = &[
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
];
/// The v2 controllers a task's parent enables.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids"];

/// Which cgroup hierarchy `root` (usually `/sys/fs/cgroup`) holds, or why none is usable.
pub fn detect(fs: &dyn CgroupFs, root: &Path) -> Result<Version, String> {
    if let Ok(c) = fs.read(&root.join("cgroup.controllers")) {
        let have: Vec<&str> = c.split_whitespace().collect();
        let missing: Vec<&str> = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !have.contains(c))
            .collect();
        if missing.is_empty() {
            return Ok(Version::V2);
        }
        // A hybrid host: v2 mounted without controllers, v1 holding them.
        if !V1_CONTROLLERS
            .iter()
            .all(|c| fs.exists(&root.join(c).join("cgroup.procs")))
        {
            return Err(format!(
                "the cgroup v2 hierarchy at {} lacks the controllers {} and no cgroup v1 hierarchy has them",
                root.display(),
                missing.join(", ")
            ));
        }
    }
    let missing: Vec<&str> = V1_CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !fs.exists(&root.join(c).join("cgroup.procs")))
        .collect();
    if missing.is_empty() {
        Ok(Version::V1)
    } else {
        Err(format!(
            "no usable cgroups under {}: the v1 controllers {} are not mounted and there is no v2 hierarchy with them",
            root.display(),
            missing.join(", ")
        ))
    }
}

/// Resource usage read from a task's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupStats {
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    pub rss: u64,
    pub cache: u64,
    pub swap: u64,
    pub pids: u64,
}

/// One task's cgroup, in every controller.
pub struct Cgroup<F: CgroupFs = RealFs> {
    fs: F,
    root: PathBuf,
    version: Version,
    /// `<parent>/<id>`.
    name: String,
}

/// Reads a `key value` line out of a flat-keyed file (`memory.stat`, `cpu.stat`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// v2's cpu.weight (1..10000) for v1 shares (2..262144), as runc converts it.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

impl Cgroup<RealFs> {
    /// The task cgroup `<parent>/<id>` on this host.
    pub fn host(parent: &str, id: &str) -> Result<Self, String> {
        let root = PathBuf::from("/sys/fs/cgroup");
        let version = detect(&RealFs, &root)?;
        Ok(Self::new(RealFs, root, version, parent, id))
    }
}

impl<F: CgroupFs> Cgroup<F> {
    pub fn new(fs: F, root: PathBuf, version: Version, parent: &str, id: &str) -> Self {
        Self {
            fs,
            root,
            version,
            name: format!("{}/{id}", parent.trim_matches('/')),
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    fn parent_name(&self) -> &str {
        self.name.rsplit_once('/').map_or("", |(p, _)| p)
    }

    /// The task's directory in `controller` (v1) or the unified directory (v2).
    fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            Version::V1 => self.root.join(controller).join(&self.name),
            Version::V2 => self.root.join(&self.name),
        }
    }

    fn write(&self, p: PathBuf, data: &str) -> Result<(), String> {
        self.fs
            .write(&p, data)
            .map_err(|e| format!("cannot write {data:?} to {}: {e}", p.display()))
    }

    fn read_u64(&self, p: PathBuf) -> u64 {
        self.fs
            .read(&p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn mkdir(&self, p: &Path) -> Result<(), String> {
        self.fs
            .mkdir(p)
            .map_err(|e| format!("cannot create the cgroup {}: {e}", p.display()))
    }

    /// Whether this cgroup holds a task to the device allow list ([`ALLOWED_DEVICES`]): on
    /// v1 it does; on v2 that takes a BPF device program, which Drover does not load yet.
    pub fn restricts_devices(&self) -> bool {
        self.version == Version::V1
    }

    /// The `cgroup.procs` files a process writes `0` to, to join the task's cgroups.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self.version {
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.dir(c).join("cgroup.procs"))
                .collect(),
            Version::V2 => vec![self.dir("").join("cgroup.procs")],
        }
    }

    /// Creates the cgroups and sets the limits.
    pub fn create(&self, spec: &CgroupSpec) -> Result<(), String> {
        let limit = spec.memory_max_bytes.max(spec.memory_bytes);
        let soft = (spec.memory_max_bytes > spec.memory_bytes && spec.memory_bytes > 0)
            .then_some(spec.memory_bytes);
        match self.version {
            Version::V1 => {
                for c in V1_CONTROLLERS {
                    let parent = self.root.join(c).join(self.parent_name());
                    self.mkdir(&parent)?;
                    self.mkdir(&self.dir(c))?;
                }
                // Devices: deny all at once, before anything joins, then allow the few.
                let dev = self.dir("devices");
                self.write(dev.join("devices.deny"), "a")?;
                for line in ALLOWED_DEVICES {
                    self.write(dev.join("devices.allow"), line)?;
                }
                // cpuset: clone_children is 0 here, so new cgroups start with no cpus or
                // mems; copy them down from the root.
                let top = self.root.join("cpuset");
                let parent = top.join(self.parent_name());
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let cur = self.fs.read(&parent.join(f)).unwrap_or_default();
                    if cur.trim().is_empty() {
                        let from = self.fs.read(&top.join(f)).unwrap_or_default();
                        self.write(parent.join(f), from.trim())?;
                    }
                }
                let mems = self
                    .fs
                    .read(&parent.join("cpuset.mems"))
                    .unwrap_or_default();
                let cpus = if spec.cpuset_cpus.is_empty() {
                    self.fs
                        .read(&parent.join("cpuset.cpus"))
                        .unwrap_or_default()
                } else {
                    spec.cpuset_cpus.clone()
                };
                let cs = self.dir("cpuset");
                self.write(cs.join("cpuset.cpus"), cpus.trim())?;
                self.write(cs.join("cpuset.mems"), mems.trim())?;
                let mem = self.dir("memory");
                if limit > 0 {
                    self.write(mem.join("memory.limit_in_bytes"), &limit.to_string())?;
                    // Without swap accounting this file is missing: nothing to limit.
                    let memsw = mem.join("memory.memsw.limit_in_bytes");
                    if self.fs.exists(&memsw) {
                        self.write(memsw, &limit.to_string())?;
                    }
                }
                if let Some(soft) = soft {
                    self.write(mem.join("memory.soft_limit_in_bytes"), &soft.to_string())?;
                }
                if spec.cpu_shares > 0 {
                    self.write(
                        self.dir("cpu").join("cpu.shares"),
                        &spec.cpu_shares.max(2).to_string(),
                    )?;
                }
                if spec.pids_max > 0 {
                    self.write(
                        self.dir("pids").join("pids.max"),
                        &spec.pids_max.to_string(),
                    )?;
                }
            }
            Version::V2 => {
                // Enable the controllers on the way down: root -> parent -> task.
                let enable = V2_CONTROLLERS
                    .iter()
                    .map(|c| format!("+{c}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let parent = self.root.join(self.parent_name());
                self.write(self.root.join("cgroup.subtree_control"), &enable)?;
                self.mkdir(&parent)?;
                self.write(parent.join("cgroup.subtree_control"), &enable)?;
                let dir = self.dir("");
                self.mkdir(&dir)?;
                if limit > 0 {
                    self.write(dir.join("memory.max"), &limit.to_string())?;
                    self.write(dir.join("memory.swap.max"), "0")?;
                }
                if let Some(soft) = soft {
                    self.write(dir.join("memory.low"), &soft.to_string())?;
                }
                if spec.cpu_shares > 0 {
                    self.write(
                        dir.join("cpu.weight"),
                        &shares_to_weight(spec.cpu_shares).to_string(),
                    )?;
                }
                if !spec.cpuset_cpus.is_empty() {
                    self.write(dir.join("cpuset.cpus"), &spec.cpuset_cpus)?;
                }
                if spec.pids_max > 0 {
                    self.write(dir.join("pids.max"), &spec.pids_max.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The processes in the task's cgroup (host pids).
    pub fn pids(&self) -> Vec<i32> {
        let f = match self.version {
            Version::V1 => self.dir("pids").join("cgroup.procs"),
            Version::V2 => self.dir("").join("cgroup.procs"),
        };
        self.fs
            .read(&f)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// How many times the kernel's OOM killer killed a process of the task.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V1 => self
                .fs
                .read(&self.dir("memory").join("memory.oom_control"))
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
            Version::V2 => self
                .fs
                .read(&self.dir("").join("memory.events"))
                .ok()
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
        }
    }

    /// Resource usage.
    pub fn stats(&self) -> CgroupStats {
        match self.version {
            Version::V1 => {
                let mem = self.dir("memory");
                let stat = self.fs.read(&mem.join("memory.stat")).unwrap_or_default();
                let acct = self.dir("cpuacct");
                CgroupStats {
                    cpu_user_ns: self.read_u64(acct.join("cpuacct.usage_user")),
                    cpu_system_ns: self.read_u64(acct.join("cpuacct.usage_sys")),
                    memory_usage: self.read_u64(mem.join("memory.usage_in_bytes")),
                    memory_max_usage: self.read_u64(mem.join("memory.max_usage_in_bytes")),
                    rss: keyed(&stat, "rss").unwrap_or(0),
                    cache: keyed(&stat, "cache").unwrap_or(0),
                    swap: keyed(&stat, "swap").unwrap_or(0),
                    pids: self.read_u64(self.dir("pids").join("pids.current")),
                }
            }
            Version::V2 => {
                let dir = self.dir("");
                let cpu = self.fs.read(&dir.join("cpu.stat")).unwrap_or_default();
                let stat = self.fs.read(&dir.join("memory.stat")).unwrap_or_default();
                CgroupStats {
                    cpu_user_ns: keyed(&cpu, "user_usec").unwrap_or(0) * 1000,
                    cpu_system_ns: keyed(&cpu, "system_usec").unwrap_or(0) * 1000,
                    memory_usage: self.read_u64(dir.join("memory.current")),
                    memory_max_usage: self.read_u64(dir.join("memory.peak")),
                    rss: keyed(&stat, "anon").unwrap_or(0),
                    cache: keyed(&stat, "file").unwrap_or(0),
                    swap: self.read_u64(dir.join("memory.swap.current")),
                    pids: self.read_u64(dir.join("pids.current")),
                }
            }
        }
    }

    /// SIGKILLs every process in the cgroup (v2: `cgroup.kill`); returns how many were left.
    pub fn kill_all(&self) -> usize {
        if self.version == Version::V2 {
            let _ = self.fs.write(&self.dir("").join("cgroup.kill"), "1");
        }
        let pids = self.pids();
        for &p in &pids {
            // SAFETY: kill(2). A pid listed in the task's cgroup belongs to the task, and a
            // member cannot be recycled before it leaves the cgroup (at exit).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        pids.len()
    }

    /// Removes the task's cgroups (they must be empty).
    pub fn destroy(&self) -> Result<(), String> {
        let dirs: Vec<PathBuf> = match self.version {
            Version::V1 => V1_CONTROLLERS.iter().map(|c| self.dir(c)).collect(),
            Version::V2 => vec![self.dir("")],
        };
        let mut errors = Vec::new();
        for d in dirs {
            if let Err(e) = self.fs.rmdir(&d) {
                errors.push(format!("{}: {e}", d.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("cannot remove the cgroups {}", errors.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_host() -> RecordingFs {
        let fs = RecordingFs::default();
        for c in V1_CONTROLLERS {
            fs.seed(format!("/cg/{c}/cgroup.procs"), "");
        }
        fs.seed("/cg/cpuset/cpuset.cpus", "0-3\n");
        fs.seed("/cg/cpuset/cpuset.mems", "0\n");
        fs
    }

    #[test]
    fn detects_v1_v2_and_hybrid() {
        let fs = v1_host();
        assert_eq!(detect(&fs, Path::new("/cg")), Ok(Version::V1));
        // The unified hierarchy mounted without controllers (this machine kind): still v1.
        fs.seed("/cg/cgroup.controllers", "");
        assert_eq!(detect(&fs, Path::new("/cg")), Ok(Version::V1));
        let v2 = RecordingFs::default();
        v2.seed("/cg/cgroup.controllers", "cpuset cpu io memory pids\n");
        assert_eq!(detect(&v2, Path::new("/cg")), Ok(Version::V2));
        let none = RecordingFs::default();
        let e = detect(&none, Path::new("/cg")).unwrap_err();
        assert!(e.contains("memory"), "{e}");
    }

    #[test]
    fn v1_devices_deny_everything_first_then_allow_the_few() {
        let fs = v1_host();
        let cg = Cgroup::new(fs.clone(), "/cg".into(), Version::V1, "drover", "abc");
        cg.create(&CgroupSpec::default()).unwrap();
        let dev: Vec<(String, String)> = fs
            .writes()
            .into_iter()
            .filter(|(p, _)| p.starts_with("/cg/devices/drover/abc"))
            .map(|(p, v)| (p.file_name().unwrap().to_string_lossy().into_owned(), v))
            .collect();
        assert_eq!(dev[0], ("devices.deny".to_string(), "a".to_string()));
        let allowed: Vec<&str> = dev[1..].iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(allowed, ALLOWED_DEVICES);
        assert!(dev[1..].iter().all(|(f, _)| f == "devices.allow"));
        assert!(cg.restricts_devices());
        assert!(
            cg.procs_files()
                .contains(&PathBuf::from("/cg/devices/drover/abc/cgroup.procs"))
        );
    }

    #[test]
    fn v1_limits_and_cpuset_copied_from_the_root() {
        let fs = v1_host();
        let cg = Cgroup::new(fs.clone(), "/cg".into(), Version::V1, "drover", "abc");
        cg.create(&CgroupSpec {
            parent: "drover".into(),
            memory_bytes: 64 << 20,
            memory_max_bytes: 128 << 20,
            cpu_shares: 500,
            cpuset_cpus: String::new(),
            pids_max: 32,
        })
        .unwrap();
        let w = fs.writes();
        let has = |p: &str, v: &str| w.iter().any(|(wp, wv)| wp == Path::new(p) && wv == v);
        assert!(has("/cg/cpuset/drover/cpuset.cpus", "0-3"), "{w:?}");
        assert!(has("/cg/cpuset/drover/cpuset.mems", "0"));
        assert!(has("/cg/cpuset/drover/abc/cpuset.cpus", "0-3"));
        assert!(has(
            "/cg/memory/drover/abc/memory.limit_in_bytes",
            "134217728"
        ));
        assert!(has(
            "/cg/memory/drover/abc/memory.soft_limit_in_bytes",
            "67108864"
        ));
        assert!(has("/cg/cpu/drover/abc/cpu.shares", "500"));
        assert!(has("/cg/pids/drover/abc/pids.max", "32"));
        assert_eq!(cg.procs_files().len(), V1_CONTROLLERS.len());
        fs.seed(
            "/cg/memory/drover/abc/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        assert_eq!(cg.oom_kills(), 1);
    }

    #[test]
    fn v2_limits_weights_and_events() {
        let fs = RecordingFs::default();
        fs.seed("/cg/cgroup.controllers", "cpuset cpu io memory pids\n");
        let cg = Cgroup::new(fs.clone(), "/cg".into(), Version::V2, "drover", "abc");
        cg.create(&CgroupSpec {
            parent: "drover".into(),
            memory_bytes: 64 << 20,
            memory_max_bytes: 0,
            cpu_shares: 1024,
            cpuset_cpus: "1".into(),
            pids_max: 10,
        })
        .unwrap();
        let w = fs.writes();
        let has = |p: &str, v: &str| w.iter().any(|(wp, wv)| wp == Path::new(p) && wv == v);
        assert!(
            has("/cg/cgroup.subtree_control", "+cpu +cpuset +memory +pids"),
            "{w:?}"
        );
        assert!(has(
            "/cg/drover/cgroup.subtree_control",
            "+cpu +cpuset +memory +pids"
        ));
        assert!(has("/cg/drover/abc/memory.max", "67108864"));
        assert!(has("/cg/drover/abc/cpu.weight", "39"));
        assert!(has("/cg/drover/abc/cpuset.cpus", "1"));
        assert!(has("/cg/drover/abc/pids.max", "10"));
        assert!(!w.iter().any(|(p, _)| p.ends_with("memory.low")));
        assert_eq!(
            cg.procs_files(),
            vec![PathBuf::from("/cg/drover/abc/cgroup.procs")]
        );
        fs.seed(
            "/cg/drover/abc/memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n",
        );
        assert_eq!(cg.oom_kills(), 2);
        fs.seed(
            "/cg/drover/abc/cpu.stat",
            "usage_usec 30\nuser_usec 20\nsystem_usec 10\n",
        );
        fs.seed("/cg/drover/abc/memory.current", "4096\n");
        let s = cg.stats();
        assert_eq!(
            (s.cpu_user_ns, s.cpu_system_ns, s.memory_usage),
            (20_000, 10_000, 4096)
        );
        fs.seed("/cg/drover/abc/cgroup.procs", "");
        assert_eq!(cg.kill_all(), 0);
        assert!(
            fs.writes()
                .iter()
                .any(|(p, v)| p.ends_with("cgroup.kill") && v == "1")
        );
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
    }
}
