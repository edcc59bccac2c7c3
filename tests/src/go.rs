//! The Go side of the go-plugin interop tests and benchmarks: builds `tests/go/host` and
//! `tests/go/plugin` against HashiCorp's go-plugin as Debian packages it (1.0.1, in
//! `/usr/share/gocode`), in GOPATH mode, offline. tests/run.sh installs `golang-go`,
//! `golang-github-hashicorp-go-plugin-dev` and `golang-google-grpc-dev` (which go-plugin's
//! package needs but does not depend on).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where Debian installs Go library sources.
pub const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// The built Go programs.
#[derive(Debug, Clone)]
pub struct GoBins {
    /// A go-plugin host: `host check [-proto N] [-expect-log TEXT] CMD...`, `host bench N CMD...`.
    pub host: PathBuf,
    /// A go-plugin gRPC plugin that serves no Drover service.
    pub plugin: PathBuf,
}

/// The directory of this build's binaries (`target/<profile>`), from the running test's
/// own path (`target/<profile>/deps/<test>`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile> above the test executable")
        .to_path_buf()
}

/// The standalone raw_exec plugin binary (built on the plugin SDK alone).
pub fn raw_exec_bin() -> PathBuf {
    let bin = target_profile_dir().join("drover-raw-exec");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build --bins` first",
        bin.display()
    );
    bin
}

/// Builds the go-plugin programs once per process (into `target/<profile>/go-interop/`), or
/// panics explaining what is missing.
pub fn go_bins() -> GoBins {
    static BINS: OnceLock<GoBins> = OnceLock::new();
    BINS.get_or_init(|| {
        require_sources(&[
            (
                "github.com/hashicorp/go-plugin",
                "golang-github-hashicorp-go-plugin-dev",
            ),
            ("google.golang.org/grpc", "golang-google-grpc-dev"),
        ]);
        GoBins {
            host: go_build("host"),
            plugin: go_build("plugin"),
        }
    })
    .clone()
}

/// `tests/go/cnipeer`: the reference CNI runtime (libcni, Debian's
/// `golang-github-appc-cni-dev`) driving a conflist, built once per process.
pub fn cni_peer() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        require_sources(&[(
            "github.com/containernetworking/cni/libcni",
            "golang-github-appc-cni-dev",
        )]);
        go_build("cnipeer")
    })
    .clone()
}

/// Panics naming the Debian package of each Go source directory that is missing.
fn require_sources(sources: &[(&str, &str)]) {
    for (dir, package) in sources {
        let dir = Path::new(DEBIAN_GOPATH).join("src").join(dir);
        assert!(
            dir.is_dir(),
            "{} is missing: install the Debian package {package} (tests/run.sh does)",
            dir.display()
        );
    }
}

/// Builds `tests/go/<name>` into `target/<profile>/go-interop/<name>` (GOPATH mode, offline),
/// or panics with go's output.
fn go_build(name: &str) -> PathBuf {
    let out = target_profile_dir().join("go-interop");
    std::fs::create_dir_all(&out)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out.display()));
    let src = crate::repo_root().join("tests/go").join(name);
    let dest = out.join(name);
    // Another test process may build at the same time: build aside, then rename.
    let tmp = out.join(format!(".{name}.{}", std::process::id()));
    let result = Command::new("go")
        .args(["build", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", DEBIAN_GOPATH)
        .env("GOCACHE", out.join("cache"))
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `go` ({e}): install the Debian package golang-go (tests/run.sh does)"
            )
        });
    assert!(
        result.status.success(),
        "go build in {} failed ({}):\n{}{}",
        src.display(),
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &dest)
        .unwrap_or_else(|e| panic!("cannot move {} into place: {e}", tmp.display()));
    dest
}
