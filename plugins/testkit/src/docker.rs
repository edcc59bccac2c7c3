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

/// Whether the engine has the image `reference`.
pub fn has_image(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Builds [`BUSYBOX`] if the engine lacks it, and returns its reference.
pub fn busybox_image() -> &'static str {
    build_busybox(BUSYBOX);
    BUSYBOX
}

/// Builds the busybox image under `reference` (another tag of the same content: tests that
/// count image references or remove images use their own) if the engine lacks it.
pub fn build_busybox(reference: &str) {
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
         RUN [\"/bin/busybox\", \"mkdir\", \"-p\", \"/tmp\", \"/etc\", \"/root\"]\n",
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
