//! Against the real engine: a container printing a counter, followed, its follower killed
//! mid-run (with bytes written past the cursor, as a kill -9 between the write and the
//! cursor leaves them), and followed again: every integer once, in order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::test_engine::{self, Spec};

/// Prints 0..499 on stdout every 10 ms, and `e<i>` on stderr for every 50th.
const COUNTER: &str = "i=0; while [ $i -lt 500 ]; do echo $i; \
     if [ $((i % 50)) -eq 0 ]; then echo e$i >&2; fi; i=$((i+1)); sleep 0.01; done";

struct Dirs {
    alloc: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let d = Dirs {
            alloc: tempfile::tempdir().unwrap(),
            data: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(d.logs()).unwrap();
        d
    }

    fn logs(&self) -> PathBuf {
        self.alloc.path().join("alloc/logs")
    }

    fn target(&self, max_files: u32) -> LogTarget {
        LogTarget {
            stdout_path: self.logs().join("web.stdout"),
            stderr_path: self.logs().join("web.stderr"),
            logs_dir_root: self.alloc.path().to_path_buf(),
            max_files,
            max_file_size_mb: 1,
            cursor_path: self.data.path().join("cursors/web.json"),
        }
    }
}

/// `<name>.<n>` files of `dir`, by increasing `n`.
fn numbered_files(dir: &Path, name: &str) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// All of a stream's files, concatenated in order. A file the follower's rotation removed
/// between the listing and the read is left out (a poll reads again; once the follower is
/// done nothing rotates).
fn read_stream(dir: &Path, name: &str) -> String {
    numbered_files(dir, name)
        .into_iter()
        .filter_map(|(_, p)| match std::fs::read_to_string(&p) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("{}: {e}", p.display()),
        })
        .collect()
}

/// Waits until stdout holds at least `lines` lines.
async fn wait_for_lines(dir: &Path, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_stream(dir, "web.stdout").lines().count() < lines {
        assert!(Instant::now() < deadline, "the follower wrote too little");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no follower holds the cursor (a killed one finishes its batch first).
async fn wait_for_cursor_free(cursor: &Path) {
    let name = super::lock_path(cursor);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let f = std::fs::File::open(&name).unwrap();
        if nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped follower kept its lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a kill -9 between a write and the cursor update leaves: bytes past the recorded
/// length of the current file, and a file begun after it.
fn append_past_cursor(dirs: &Dirs) {
    let files = numbered_files(&dirs.logs(), "web.stdout");
    let (n, last) = files.last().expect("a stdout file");
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, b"999999\ngarbage past the cursor\n").unwrap();
    std::fs::write(dirs.logs().join(format!("web.stdout.{}", n + 1)), "12345\n").unwrap();
}

/// Follows the counter, killing the follower at each of `kill_at` (stdout line counts) and
/// planting bytes past its cursor, then checks the files.
async fn counter_across_kills(max_file_size: u64, max_files: u32, kill_at: &[usize]) {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let target = dirs.target(max_files);
    let name = test_engine::unique("logs");
    let c = test_engine::run(&docker, &name, &Spec::busybox(&["sh", "-c", COUNTER])).await;
    for at in kill_at {
        let follower =
            follow_with_file_size(docker.clone(), c.id.clone(), target.clone(), max_file_size);
        wait_for_lines(&dirs.logs(), *at).await;
        drop(follower);
        wait_for_cursor_free(&target.cursor_path).await;
        append_past_cursor(&dirs);
    }
    let mut follower = follow_with_file_size(docker.clone(), c.id.clone(), target, max_file_size);
    tokio::time::timeout(Duration::from_secs(120), follower.finished())
        .await
        .expect("the follower did not finish")
        .expect("the follower failed");
    let want: Vec<String> = (0..500).map(|i| i.to_string()).collect();
    let got: Vec<String> = read_stream(&dirs.logs(), "web.stdout")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, want, "stdout is not 0..499 exactly once in order");
    let want_err: String = (0..500).step_by(50).map(|i| format!("e{i}\n")).collect();
    assert_eq!(read_stream(&dirs.logs(), "web.stderr"), want_err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_is_written_exactly_once_across_follower_kills() {
    counter_across_kills(1024 * 1024, 10, &[50, 200]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_tiny_files_keeps_exactly_once() {
    counter_across_kills(64, 1000, &[120, 300]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_numbers_files_and_stops_at_exit() {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let name = test_engine::unique("logs-rot");
    let c = test_engine::run(
        &docker,
        &name,
        &Spec::busybox(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); done",
        ]),
    )
    .await;
    let mut follower = follow_with_file_size(docker.clone(), c.id.clone(), dirs.target(1000), 32);
    tokio::time::timeout(Duration::from_secs(60), follower.finished())
        .await
        .expect("the follower did not finish")
        .expect("the follower failed");
    let files = numbered_files(&dirs.logs(), "web.stdout");
    assert!(files.len() > 10, "no rotation: {files:?}");
    assert!(
        files
            .iter()
            .all(|(_, p)| std::fs::metadata(p).unwrap().len() <= 32)
    );
    let want: String = (0..100).map(|i| format!("line{i}\n")).collect();
    assert_eq!(read_stream(&dirs.logs(), "web.stdout"), want);
    // Followed again once finished: nothing is repeated.
    let mut again = follow_with_file_size(docker.clone(), c.id.clone(), dirs.target(1000), 32);
    again.finished().await.expect("the second follower failed");
    assert_eq!(read_stream(&dirs.logs(), "web.stdout"), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_planted_at_the_log_path_is_not_followed() {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("authorized_keys");
    std::fs::write(&victim, "root's keys\n").unwrap();
    std::os::unix::fs::symlink(&victim, dirs.logs().join("web.stdout.0")).unwrap();
    let name = test_engine::unique("logs-link");
    let c = test_engine::run(
        &docker,
        &name,
        &Spec::busybox(&["echo", "ssh-ed25519 AAAA"]),
    )
    .await;
    let mut follower = follow(docker.clone(), c.id.clone(), dirs.target(10));
    let r = tokio::time::timeout(Duration::from_secs(60), follower.finished())
        .await
        .expect("the follower did not finish");
    assert!(
        matches!(r, Err(LogsError::File(..))),
        "wrote through a link: {r:?}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's keys\n");
    // The whole logs directory swapped for a link to a host directory.
    std::fs::remove_dir_all(dirs.logs()).unwrap();
    std::os::unix::fs::symlink(host.path(), dirs.logs()).unwrap();
    let mut follower = follow(docker.clone(), c.id.clone(), dirs.target(10));
    let r = follower.finished().await;
    assert!(
        matches!(r, Err(LogsError::File(..))),
        "followed a linked dir: {r:?}"
    );
    assert!(!host.path().join("web.stdout.0").exists());
}

/// Environment of [`kill9_child`]: `<container id>\n<alloc dir>\n<data dir>`.
const CHILD_ENV: &str = "DROVER_TEST_LOG_FOLLOWER";

/// Not a test: the follower process that [`counter_is_written_exactly_once_across_kill_9`]
/// starts and kills with SIGKILL at arbitrary instants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by counter_is_written_exactly_once_across_kill_9"]
async fn kill9_child() {
    let spec = std::env::var(CHILD_ENV).expect("started by the kill -9 test");
    let parts: Vec<&str> = spec.lines().collect();
    let dirs_target = LogTarget {
        stdout_path: Path::new(parts[1]).join("alloc/logs/web.stdout"),
        stderr_path: Path::new(parts[1]).join("alloc/logs/web.stderr"),
        logs_dir_root: PathBuf::from(parts[1]),
        max_files: 10_000,
        max_file_size_mb: 1,
        cursor_path: Path::new(parts[2]).join("cursors/web.json"),
    };
    let docker = test_engine::docker().await;
    let mut follower = follow_with_file_size(docker, parts[0].to_string(), dirs_target, 64);
    follower
        .finished()
        .await
        .expect("the child follower failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_is_written_exactly_once_across_kill_9() {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let name = test_engine::unique("logs-kill9");
    let c = test_engine::run(&docker, &name, &Spec::busybox(&["sh", "-c", COUNTER])).await;
    let spec = format!(
        "{}\n{}\n{}",
        c.id,
        dirs.alloc.path().display(),
        dirs.data.path().display()
    );
    let exe = std::env::current_exe().unwrap();
    // Each child is killed once it has written something, at varied instants after that:
    // mid-batch, between the files and the cursor, mid-rotation.
    let lines = || read_stream(&dirs.logs(), "web.stdout").lines().count();
    for extra_ms in [0u64, 7, 23, 3, 41, 13, 0, 31] {
        let seen = lines();
        if seen >= 500 {
            break;
        }
        let mut child = std::process::Command::new(&exe)
            .args(["--ignored", "--exact", "logs::tests::kill9_child"])
            .args(["--test-threads=1", "--quiet"])
            .env(CHILD_ENV, &spec)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the child follower");
        let deadline = Instant::now() + Duration::from_secs(60);
        while lines() <= seen {
            assert!(
                Instant::now() < deadline,
                "the child follower wrote nothing"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(extra_ms)).await;
        child.kill().expect("SIGKILL the child follower");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
    }
    let mut target = dirs.target(10_000);
    target.max_file_size_mb = 1;
    let mut follower = follow_with_file_size(docker.clone(), c.id.clone(), target, 64);
    tokio::time::timeout(Duration::from_secs(120), follower.finished())
        .await
        .expect("the follower did not finish")
        .expect("the follower failed");
    let got: Vec<String> = read_stream(&dirs.logs(), "web.stdout")
        .lines()
        .map(String::from)
        .collect();
    let want: Vec<String> = (0..500).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "stdout is not 0..499 exactly once in order");
    let want_err: String = (0..500).step_by(50).map(|i| format!("e{i}\n")).collect();
    assert_eq!(read_stream(&dirs.logs(), "web.stderr"), want_err);
}

/// Follows a container of `spec` to its end; returns its stdout and stderr.
async fn follow_to_end(spec: &Spec<'_>) -> (String, String) {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let c = test_engine::run(&docker, &test_engine::unique("logs-end"), spec).await;
    let mut follower = follow(docker.clone(), c.id.clone(), dirs.target(10));
    tokio::time::timeout(Duration::from_secs(60), follower.finished())
        .await
        .expect("the follower did not finish")
        .expect("the follower failed");
    (
        read_stream(&dirs.logs(), "web.stdout"),
        read_stream(&dirs.logs(), "web.stderr"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_the_engine_splits_are_joined_and_overlong_ones_cut() {
    // The engine splits lines at 16 KiB; a line over MAX_LINE is cut there.
    let script = "head -c 40000 /dev/zero | tr '\\0' a; echo; \
                  head -c 3000000 /dev/zero | tr '\\0' b; echo; echo end";
    let (out, err) = follow_to_end(&Spec::busybox(&["sh", "-c", script])).await;
    let lines: Vec<&str> = out.split_inclusive('\n').collect();
    assert_eq!(
        lines.len(),
        3,
        "lines: {:?}",
        lines.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert_eq!(lines[0], format!("{}\n", "a".repeat(40_000)));
    assert_eq!(lines[1], format!("{}\n", "b".repeat(MAX_LINE as usize)));
    assert_eq!(lines[2], "end\n");
    assert_eq!(err, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_container_s_output_is_its_stdout() {
    let spec = Spec {
        tty: true,
        ..Spec::busybox(&["sh", "-c", "echo hi; echo there >&2"])
    };
    let (out, err) = follow_to_end(&spec).await;
    assert_eq!(out.replace('\r', ""), "hi\nthere\n");
    assert_eq!(err, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_without_a_readable_log_ends_the_follower() {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let name = test_engine::unique("logs-none");
    let c = test_engine::run(&docker, &name, &Spec::busybox(&["echo", "hi"])).await;
    test_engine::remove(&docker, &c.id).await;
    let mut follower = follow(docker.clone(), c.id.clone(), dirs.target(10));
    let r = tokio::time::timeout(Duration::from_secs(30), follower.finished())
        .await
        .expect("the follower did not give up");
    assert!(matches!(r, Err(LogsError::ContainerGone(_))), "{r:?}");
    // A logging driver the engine cannot read back.
    let spec = Spec {
        log_driver: Some("none"),
        ..Spec::busybox(&["echo", "hi"])
    };
    let c = test_engine::run(&docker, &test_engine::unique("logs-none"), &spec).await;
    let mut follower = follow(docker.clone(), c.id.clone(), dirs.target(10));
    let r = tokio::time::timeout(Duration::from_secs(30), follower.finished())
        .await
        .expect("the follower did not give up");
    assert!(matches!(r, Err(LogsError::Unreadable(..))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_restarted_in_a_new_container_appends_its_whole_output() {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let script = |word: &str| format!("for i in 1 2 3; do echo {word}$i; done");
    let mut want = String::new();
    for word in ["first", "second"] {
        let cmd = script(word);
        let argv = ["sh", "-c", cmd.as_str()];
        let spec = Spec::busybox(&argv);
        let c = test_engine::run(&docker, &test_engine::unique("logs-restart"), &spec).await;
        let mut follower = follow(docker.clone(), c.id.clone(), dirs.target(10));
        tokio::time::timeout(Duration::from_secs(60), follower.finished())
            .await
            .expect("the follower did not finish")
            .expect("the follower failed");
        want.push_str(&format!("{word}1\n{word}2\n{word}3\n"));
        assert_eq!(read_stream(&dirs.logs(), "web.stdout"), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_catches_up_when_output_pauses() {
    let docker = test_engine::docker().await;
    let dirs = Dirs::new();
    let script = "for i in 1 2 3; do echo $i; done; sleep 300";
    let c = test_engine::run(
        &docker,
        &test_engine::unique("logs-pause"),
        &Spec::busybox(&["sh", "-c", script]),
    )
    .await;
    let target = dirs.target(10);
    let _follower = follow(docker.clone(), c.id.clone(), target.clone());
    wait_for_lines(&dirs.logs(), 3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cursor = super::cursor::Cursor::load(&target.cursor_path).unwrap();
        if cursor.is_some_and(|k| k.stdout.len == 6 && k.container_id == c.id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cursor never recorded the pause"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
