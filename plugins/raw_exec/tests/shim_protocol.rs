//! The shim's control protocol on the wire, against a committed transcript: a new agent (or
//! plugin) must reattach to shims that the previous one started, so the request lines the
//! client writes and the reply lines the shim writes stay byte for byte what they were.
//!
//! `shim/tests/fixtures/control-protocol.transcript` was recorded by this test
//! (`DROVER_RECORD_TRANSCRIPT=1`) against the shim and client as they were before the
//! protocol got its typed requests and replies. Run normally, the test replays the same
//! exchanges against today's shim and client and compares them with the transcript, with
//! the values that differ from run to run (pids, times, the shim id, statistics) masked.
//!
//! Transcript format, one line each: `# <connection>` starts a connection, `> <bytes>` is a
//! request line and `< <bytes>` its reply line (each sent with a trailing `\n`), and
//! `@ exit.json <bytes>` is the exit record the shim left in its state directory.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_plugin_sdk::shim::{self, LaunchSpec, ShimClient, ShimHandle};

const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-raw-exec");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shim/tests/fixtures/control-protocol.transcript")
}

type Log = Arc<Mutex<Vec<String>>>;

/// A socket that stands where a shim's would, forwards each line to the real shim and each
/// reply line back, and logs both: what today's [`ShimClient`] sends, byte for byte.
fn proxy(listen: &Path, target: PathBuf, log: Log) {
    let listener = UnixListener::bind(listen).unwrap();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(client) = conn else { return };
            let target = target.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let shim = UnixStream::connect(&target).unwrap();
                let mut from_client = BufReader::new(client.try_clone().unwrap());
                let mut from_shim = BufReader::new(shim.try_clone().unwrap());
                let (mut to_client, mut to_shim) = (client, shim);
                let mut lines = vec![format!("# client {n}")];
                loop {
                    let mut req = String::new();
                    if from_client.read_line(&mut req).unwrap_or(0) == 0 {
                        break;
                    }
                    to_shim.write_all(req.as_bytes()).unwrap();
                    let mut reply = String::new();
                    if from_shim.read_line(&mut reply).unwrap_or(0) == 0 {
                        break;
                    }
                    to_client.write_all(reply.as_bytes()).unwrap();
                    lines.push(format!("> {}", req.trim_end_matches('\n')));
                    lines.push(format!("< {}", reply.trim_end_matches('\n')));
                }
                let mut log = log.lock().unwrap();
                log.push(format!("{n}"));
                log.extend(lines);
            });
        }
    });
}

/// A direct connection that sends raw lines (refusals the client never provokes).
struct Raw {
    name: &'static str,
    reader: BufReader<UnixStream>,
    lines: Vec<String>,
}

impl Raw {
    fn connect(name: &'static str, sock: &Path) -> Self {
        let s = UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self {
            name,
            reader: BufReader::new(s),
            lines: Vec::new(),
        }
    }

    fn send(&mut self, req: &str) -> String {
        self.reader
            .get_mut()
            .write_all(format!("{req}\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        let reply = reply.trim_end_matches('\n').to_string();
        self.lines.push(format!("> {req}"));
        self.lines.push(format!("< {reply}"));
        reply
    }

    fn transcript(self) -> Vec<String> {
        let mut out = vec![format!("# {}", self.name)];
        out.extend(self.lines);
        out
    }
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

/// Takes the client's connections out of the proxy's log in the order they were made.
fn client_transcript(log: &Log) -> Vec<String> {
    let log = log.lock().unwrap();
    let mut conns: Vec<(usize, Vec<String>)> = Vec::new();
    let mut it = log.iter().peekable();
    while let Some(n) = it.next() {
        let n: usize = n.parse().unwrap();
        let mut lines = Vec::new();
        while let Some(l) = it.next_if(|l| l.parse::<usize>().is_err()) {
            lines.push(l.clone());
        }
        conns.push((n, lines));
    }
    conns.sort_by_key(|(n, _)| *n);
    conns.into_iter().flat_map(|(_, l)| l).collect()
}

/// Runs every exchange against a fresh shim and returns the transcript.
async fn record() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let spec = LaunchSpec::new(
        "transcript",
        "/bin/sleep",
        vec!["1000".into()],
        dir.path().to_path_buf(),
    );
    let shims = dir.path().join("shims");
    let handle = tokio::task::spawn_blocking({
        let shims = shims.clone();
        move || shim::launch(&spec, Path::new(PLUGIN), &shims).unwrap()
    })
    .await
    .unwrap();
    let sock = handle.socket_path();

    let log: Log = Arc::default();
    let fake_dir = dir.path().join("proxy");
    std::fs::create_dir(&fake_dir).unwrap();
    proxy(&fake_dir.join(shim::SOCKET_FILE), sock.clone(), log.clone());
    let client = ShimClient::from_handle(ShimHandle {
        shim_dir: fake_dir,
        ..handle.clone()
    });

    // Held open across the task's exit, so the shim lingers for the requests after it.
    let mut after = Raw::connect("raw after-exit", &sock);
    after.send("hello");

    client.inspect().await.unwrap();
    client.stats().await.unwrap();
    client.signal("SIGCONT").await.unwrap();
    client.signal("18").await.unwrap();
    let session = client
        .exec(
            &["true".to_string()],
            false,
            [devnull(), devnull(), devnull()],
        )
        .await
        .unwrap();
    assert!(session.wait().await.is_err());

    let mut refusals = Raw::connect("raw refusals", &sock);
    for req in [
        "signal SIGNOPE",
        "signal",
        "stop SIGTERM soon",
        "stop NOPE 10",
        "stop SIGTERM",
        "hello again",
        "frobnicate",
        "exec {not json",
        r#"exec {"argv":[],"tty":false}"#,
        r#"exec {"argv":["true"],"tty":false}"#,
        "  inspect  ",
    ] {
        refusals.send(req);
    }

    client
        .stop("SIGTERM", Duration::from_secs(5))
        .await
        .unwrap();
    client.wait().await.unwrap();
    for req in [
        "inspect",
        "stats",
        "signal TERM",
        "stop TERM 10",
        "wait",
        "exec {\"argv\":[\"true\"],\"tty\":false}",
    ] {
        after.send(req);
    }
    let exit_file = std::fs::read_to_string(handle.shim_dir.join(shim::EXIT_FILE)).unwrap();

    // Each proxied connection is logged when the client closes it: wait for all seven.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.parse::<usize>().is_ok())
        .count()
        < 7
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy lost a connection"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = client_transcript(&log);
    out.extend(refusals.transcript());
    out.extend(after.transcript());
    out.push(format!("@ exit.json {exit_file}"));
    out
}

/// Masks what differs between runs: the shim id, and every number except the ones the
/// protocol fixes (exit codes, signals, the protocol version, the stop timeout).
fn masked(lines: &[String], shim_id: &str) -> Vec<String> {
    let keep = ["\"protocol\":1", "\"version\":1"];
    lines
        .iter()
        .map(|l| {
            let l = l.replace(shim_id, "<shim id>");
            mask_numbers(&l, &keep)
        })
        .collect()
}

fn mask_numbers(line: &str, keep: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = line;
    while !rest.is_empty() {
        if let Some(k) = keep.iter().find(|k| rest.starts_with(**k)) {
            out.push_str(k);
            rest = &rest[k.len()..];
            continue;
        }
        let c = rest.chars().next().unwrap();
        // A number that is a JSON value: `":123` or `":1.5`.
        if out.ends_with("\":") && (c.is_ascii_digit() || c == '-') {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
                .unwrap_or(rest.len());
            let value = &rest[..end];
            let fixed = matches!(value, "0" | "15" | "143");
            out.push_str(if fixed { value } else { "N" });
            rest = &rest[end..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn shim_id_of(lines: &[String]) -> String {
    let hello = lines
        .iter()
        .find(|l| l.starts_with("< ") && l.contains("\"shim_id\""))
        .expect("a hello reply");
    let v: serde_json::Value = serde_json::from_str(&hello[2..]).unwrap();
    v["shim_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_control_protocol_matches_the_recorded_transcript() {
    let live = record().await;
    let path = fixture();
    if std::env::var_os("DROVER_RECORD_TRANSCRIPT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, live.join("\n") + "\n").unwrap();
        return;
    }
    let recorded: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        masked(&live, &shim_id_of(&live)),
        masked(&recorded, &shim_id_of(&recorded)),
    );
}
