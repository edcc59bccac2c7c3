//! Support for the end-to-end tests: start real `drover` agents on free ports, talk to their
//! HTTP API, run the CLI, and wait for conditions.
//!
//! The tests run the `drover` binary built next to the test executable
//! (`target/<profile>/drover`): build it first (`cargo build --bins`, as tests/run.sh does).

pub mod catalog;
pub mod cluster;
pub mod dns;
pub mod go;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `drover` binary of this build.
pub fn drover_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/drover
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("drover");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build --bins` before the end-to-end tests",
        bin.display()
    );
    bin
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `drover agent` process.
pub struct Agent {
    pub child: Option<Child>,
    /// The address the agent's HTTP and RPC listen on (127.0.0.1 unless started with
    /// [`Agent::start_on`]).
    pub host: String,
    /// A command the agent runs under (e.g. `ip netns exec NAME`).
    pub wrapper: Vec<String>,
    pub http_port: u16,
    pub rpc_port: u16,
    /// The DNS server's port (`-dns-port`; UDP and TCP on the agent's loopback).
    pub dns_port: u16,
    pub data_dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl Agent {
    /// Starts an agent with these extra arguments; `http_port`/`rpc_port` are passed for it.
    pub fn start(args: &[&str], data_dir: &Path, http_port: u16, rpc_port: u16) -> Agent {
        Agent::start_on("127.0.0.1", &[], args, data_dir, http_port, rpc_port)
    }

    /// Starts an agent bound to `host` (its config must set `bind_addr` to it), under
    /// `wrapper` (may be empty).
    pub fn start_on(
        host: &str,
        wrapper: &[&str],
        args: &[&str],
        data_dir: &Path,
        http_port: u16,
        rpc_port: u16,
    ) -> Agent {
        let mut a = Agent {
            child: None,
            host: host.to_string(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            http_port,
            rpc_port,
            dns_port: free_port(),
            data_dir: data_dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: data_dir.with_extension(format!("{http_port}.log")),
        };
        a.spawn();
        a
    }

    /// `drover agent -dev` on free ports.
    pub fn dev(tmp: &Path) -> Agent {
        Agent::dev_with_config_opt(tmp, None)
    }

    /// `drover agent -dev -config CONFIG` on free ports.
    pub fn dev_with_config(tmp: &Path, config: &Path) -> Agent {
        Agent::dev_with_config_opt(tmp, Some(config))
    }

    fn dev_with_config_opt(tmp: &Path, config: Option<&Path>) -> Agent {
        let (h, r) = (free_port(), free_port());
        let mut args = vec!["-dev"];
        if let Some(c) = config {
            args.extend(["-config", c.to_str().expect("a UTF-8 config path")]);
        }
        let a = Agent::start(&args, &tmp.join("dev"), h, r);
        a.wait_ready();
        a.wait_node_ready();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(drover_bin());
                c
            }
            None => Command::new(drover_bin()),
        };
        cmd.arg("agent").args(&self.args);
        cmd.args([
            "-http-port",
            &self.http_port.to_string(),
            "-rpc-port",
            &self.rpc_port.to_string(),
            "-dns-port",
            &self.dns_port.to_string(),
        ]);
        if !self.args.iter().any(|a| a == "-dev") {
            cmd.args(["-data-dir", self.data_dir.to_str().unwrap()]);
        }
        cmd.env("DROVER_LOG", "info,drover=debug");
        cmd.stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .stdin(Stdio::null());
        self.child = Some(cmd.spawn().expect("start drover agent"));
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("agent running").id() as i32
    }

    pub fn address(&self) -> String {
        format!("http://{}:{}", self.host, self.http_port)
    }

    pub fn rpc_addr(&self) -> String {
        format!("{}:{}", self.host, self.rpc_port)
    }

    /// Starts the agent again (after kill9/terminate) with the same arguments.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "agent is still running");
        self.spawn();
    }

    /// Waits until the HTTP API answers and has a leader.
    pub fn wait_ready(&self) {
        wait_for(
            "agent HTTP API and a Raft leader",
            Duration::from_secs(30),
            || {
                reqwest::blocking::get(format!("{}/v1/status/leader", self.address()))
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        );
    }

    /// The directory of an allocation on this agent's client.
    pub fn data_dir_alloc(&self, alloc_id: &str) -> PathBuf {
        let data = if self.args.iter().any(|a| a == "-dev") {
            std::env::temp_dir().join(format!("drover-dev-{}", self.pid()))
        } else {
            self.data_dir.clone()
        };
        data.join("alloc").join(alloc_id)
    }

    /// Waits until a client node is registered and ready.
    pub fn wait_node_ready(&self) {
        wait_for("a ready client node", Duration::from_secs(30), || {
            self.get("/v1/nodes")?
                .as_array()?
                .iter()
                .find(|n| n["Status"] == "ready")
                .cloned()
        });
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a JSON document from the API.
    pub fn get(&self, path: &str) -> Option<Value> {
        let r = http()
            .get(format!("{}{path}", self.address()))
            .send()
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().ok()
    }

    /// Runs the CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(drover_bin())
            .args(args)
            .env("DROVER_ADDR", self.address())
            .current_dir(repo_root())
            .output()
            .expect("run drover CLI")
    }

    /// The allocations of a job.
    pub fn allocs(&self, job: &str) -> Vec<Value> {
        self.get(&format!("/v1/job/{job}/allocations"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub fn alloc(&self, id: &str) -> Option<Value> {
        self.get(&format!("/v1/allocation/{id}"))
    }

    /// Waits for the job's first allocation to reach `status`, and returns it.
    pub fn wait_alloc_status(&self, job: &str, status: &str, timeout: Duration) -> Value {
        wait_for(
            &format!("an allocation of {job} to be {status}"),
            timeout,
            || {
                self.allocs(job)
                    .into_iter()
                    .find(|a| a["ClientStatus"] == status)
            },
        )
    }

    /// Registers an HCL jobspec through the CLI (`job run -detach`).
    pub fn run_job(&self, path: &Path) {
        let out = self.cli(&["job", "run", "-detach", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "job run failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.terminate();
        // What the agent mounted (shims' and tasks' secrets tmpfs), so the test's temporary
        // directory can go.
        drover_client::unmount_below(&self.data_dir);
    }
}

/// A blocking HTTP client with timeouts (a server that is cut off must not hang a test).
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// A task's events of a kind, from an allocation document.
pub fn task_events<'a>(alloc: &'a Value, task: &str, kind: &str) -> Vec<&'a Value> {
    alloc["TaskStates"][task]["Events"]
        .as_array()
        .map(|v| v.iter().filter(|e| e["Type"] == kind).collect())
        .unwrap_or_default()
}

/// /proc/<pid>/stat fields: (parent pid, start time in clock ticks).
pub fn proc_stat(pid: i32) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f[1].parse().ok()?, f[19].parse().ok()?))
}

pub fn proc_cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Proportional set size of process `pid` in KiB (0 when it is gone).
pub fn pss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Finds the pid of the process whose command line contains `needle`.
pub fn find_process(needle: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| proc_cmdline(*pid).contains(needle) && *pid != std::process::id() as i32)
}

/// Writes a jobspec into `dir` and returns its path.
pub fn write_job(dir: &Path, name: &str, hcl: &str) -> PathBuf {
    let p = dir.join(format!("{name}.hcl"));
    std::fs::write(&p, hcl).unwrap();
    p
}

/// The example plugins of `examples/plugins`, built for the tests.
#[derive(Debug, Clone)]
pub struct ExamplePlugins {
    /// `wasm_secrets.wasm` (wasm32-unknown-unknown).
    pub wasm: PathBuf,
    /// `libnative_secrets.so`.
    pub native: PathBuf,
}

/// Builds `examples/plugins` (their own workspace, outside the main one) into
/// `target/example-plugins`: the Extism module for wasm32-unknown-unknown and the native
/// library for this machine. Runs cargo once per test process; cargo's lock serializes
/// concurrent test processes. Panics with cargo's output when the build fails.
pub fn example_plugins() -> ExamplePlugins {
    static BUILT: std::sync::OnceLock<ExamplePlugins> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| build_example_plugins(false)).clone()
}

/// [`example_plugins`], optimized (for benchmarks).
pub fn example_plugins_release() -> ExamplePlugins {
    build_example_plugins(true)
}

fn build_example_plugins(release: bool) -> ExamplePlugins {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .join("example-plugins");
    let manifest = repo_root().join("examples/plugins/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile = if release { "release" } else { "debug" };
    let build = |args: &[&str]| {
        let out = Command::new(&cargo)
            .arg("build")
            .args(release.then_some("--release"))
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .args(args)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building the example plugins ({args:?}) failed \
             (is the wasm32-unknown-unknown target installed? `rustup target add wasm32-unknown-unknown`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    build(&["-p", "wasm-secrets", "--target", "wasm32-unknown-unknown"]);
    build(&["-p", "native-secrets"]);
    ExamplePlugins {
        wasm: target.join(format!(
            "wasm32-unknown-unknown/{profile}/wasm_secrets.wasm"
        )),
        native: target.join(format!("{profile}/libnative_secrets.so")),
    }
}

/// The `p` quantile (0..=1) of `samples` (sorted here), nearest rank: what the benchmarks
/// report as p50 and p99.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}
