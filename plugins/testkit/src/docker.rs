//! Test images for the docker driver's tests, built offline: these machines reach no public
//! registry. The image is `FROM scratch` with Debian's static busybox (`busybox-static`, which
//! `tests/run.sh` installs): its `sh`, `nc`, `httpd`, `sleep`, ... are there; its `wget`
//! crashes in such an image. A missing engine or busybox fails the test loudly.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// The busybox test image's reference (an explicit, non-`latest` tag).
pub const BUSYBOX: &str = "drover-test/busybox:1.0";

/// Where Debian's busybox-static installs the binary.
const BUSYBOX_BIN: &str = "/bin/busybox";

static BUILD: Mutex<()> = Mutex::new(());

/// Runs `docker args...` and returns its stdout; panics with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI (docker {args:?}): {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `docker args...` succeeds.
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether the engine has the image `reference`.
pub fn has_image(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The offline stand-in for Nomad's `infra_image` (`registry.k8s.io/pause-amd64:3.3`): the
/// busybox image whose entrypoint sleeps until SIGTERM, then exits 0, as pause does.
pub const PAUSE: &str = "drover-test/pause:1.0";

/// Builds [`BUSYBOX`] if the engine lacks it, and returns its reference.
pub fn busybox_image() -> &'static str {
    build_busybox(BUSYBOX);
    BUSYBOX
}

/// Builds [`PAUSE`] if the engine lacks it, and returns its reference (what tests set as the
/// docker plugin's `infra_image`).
pub fn pause_image() -> &'static str {
    build_pause(PAUSE);
    PAUSE
}

/// Builds the pause image under `reference` (a tag of a test's own, for tests that count
/// its references) if the engine lacks it.
pub fn build_pause(reference: &str) {
    build_image(
        reference,
        "ENTRYPOINT [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM INT; sleep 2147483647 & wait\"]\n",
    );
}

/// Builds the busybox image under `reference` (another tag of the same content: tests that
/// count image references or remove images use their own) if the engine lacks it.
pub fn build_busybox(reference: &str) {
    build_image(reference, "");
}

/// Builds the busybox image with `extra` Dockerfile lines under `reference`, if the engine
/// lacks it.
fn build_image(reference: &str, extra: &str) {
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if has_image(reference) {
        return;
    }
    assert!(
        Path::new(BUSYBOX_BIN).exists(),
        "{BUSYBOX_BIN} is missing: install Debian's busybox-static (tests/run.sh does)"
    );
    let dir = std::env::temp_dir().join(format!(
        "drover-busybox-{}-{}",
        std::process::id(),
        reference.replace(['/', ':'], "_")
    ));
    std::fs::create_dir_all(&dir).expect("image build dir");
    std::fs::copy(BUSYBOX_BIN, dir.join("busybox")).expect("copy busybox");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/tmp\", \"/etc\", \"/root\"]\n"
            .to_string()
            + extra,
    )
    .expect("Dockerfile");
    docker(&[
        "build",
        "-q",
        "-t",
        reference,
        dir.to_str().expect("utf-8 path"),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `docker save` of the busybox image, tagged `reference`, to `dest` (a tarball a job
/// can fetch with an `artifact` and `load`).
pub fn save_busybox(reference: &str, dest: &Path) {
    build_busybox(reference);
    docker(&["save", "-o", dest.to_str().expect("utf-8 path"), reference]);
}

/// Runs `docker args...` with its client configuration in `config_dir` (so a login stays
/// with the test that made it) and `stdin`; panics with its stderr on failure.
pub fn docker_in(config_dir: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", config_dir)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI (docker {args:?}): {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write docker's stdin");
    let out = child.wait_with_output().expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A local registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 with basic
/// auth; the engine treats 127.0.0.0/8 registries as insecure, so plain HTTP works. Killed
/// and its storage removed when dropped.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub user: String,
    pub password: String,
    /// A docker client config directory logged in to the registry; its `config.json` holds
    /// the credentials in `auths` (what the plugin's `auth.config` reads).
    pub docker_config: std::path::PathBuf,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Registry {
    /// Starts a registry that wants `user`/`password`, and logs the test's client in.
    pub fn start(user: &str, password: &str) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry (tests/run.sh does)"
        );
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("drover-registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("registry dir");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd (apache2-utils) runs");
        assert!(htpasswd.status.success(), "htpasswd failed");
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: drover-test\n    path: {pw}\n",
            data = dir.join("data").display(),
            pw = dir.join("htpasswd").display(),
        );
        std::fs::write(dir.join("config.yml"), config).expect("registry config");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let docker_config = dir.join("docker-config");
        std::fs::create_dir_all(&docker_config).expect("docker config dir");
        let reg = Registry {
            addr: format!("127.0.0.1:{port}"),
            user: user.into(),
            password: password.into(),
            docker_config,
            dir,
            child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not listen on {}",
                reg.addr
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        docker_in(
            &reg.docker_config,
            &["login", "-u", user, "--password-stdin", &reg.addr],
            password,
        );
        reg
    }

    /// Tags the busybox image as `<registry>/<repo_tag>`, pushes it, removes the local tag,
    /// and returns the pushed reference.
    pub fn push_busybox(&self, repo_tag: &str) -> String {
        let local = busybox_image();
        let remote = format!("{}/{repo_tag}", self.addr);
        docker(&["tag", local, &remote]);
        docker_in(&self.docker_config, &["push", &remote], "");
        docker(&["rmi", &remote]);
        remote
    }

    /// The logged-in client's `config.json` (its `auths` hold this registry's credentials).
    pub fn auth_config_file(&self) -> std::path::PathBuf {
        self.docker_config.join("config.json")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes, when dropped, every container labelled with one of the task ids (even when the
/// test failed).
pub struct RemoveContainers(pub Vec<String>);

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        for id in &self.0 {
            let out = Command::new("docker")
                .args([
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=drover.task_id={id}"),
                ])
                .output();
            if let Ok(out) = out {
                for c in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
                }
            }
        }
    }
}
