//! Artifacts on a dev agent: a raw_exec batch task whose artifacts come from an HTTP server
//! this test runs on loopback and from a local file. The tar.gz is unpacked and its script
//! run by the task, the checksum-verified file reaches local/, the header is sent, the node's
//! attributes are interpolated into a destination; a wrong checksum fails the task with an
//! event naming both digests, and the task never starts; a failed download is retried under
//! the restart policy.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_tests::*;
use sha2::Digest;

/// A one-thread HTTP/1.1 server on 127.0.0.1 for fixed paths; it records each request's head.
struct FileServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(files: BTreeMap<String, Vec<u8>>) -> FileServer {
    serve_failing_first(files, 0)
}

/// As `serve`, but the first `failures` requests are answered 503.
fn serve_failing_first(files: BTreeMap<String, Vec<u8>>, failures: usize) -> FileServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let path = target.split('?').next().unwrap().to_string();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(head);
                seen.len()
            };
            let reply = match files.get(&path) {
                Some(_) if n <= failures => {
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = conn.write_all(&reply);
        }
    });
    FileServer { port, requests }
}

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// app.tar.gz: `app/run.sh` (0755), which records what the task sees.
fn app_tar_gz() -> Vec<u8> {
    let script = b"#!/bin/sh\n\
        out=\"$NOMAD_ALLOC_DIR/ran.txt\"\n\
        echo \"run.sh ran in $NOMAD_TASK_NAME\" > \"$out\"\n\
        cat \"$NOMAD_TASK_DIR/config.json\" >> \"$out\"\n\
        cat \"$NOMAD_TASK_DIR/notes-linux/note.txt\" >> \"$out\"\n";
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(script.len() as u64);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "app/run.sh", &script[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

fn job(name: &str, artifacts: &str, command: &str) -> String {
    job_with_attempts(name, artifacts, command, 0)
}

fn job_with_attempts(name: &str, artifacts: &str, command: &str, attempts: u32) -> String {
    format!(
        r#"job "{name}" {{
  type = "batch"
  group "g" {{
    restart {{
      attempts = {attempts}
      delay    = "1s"
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "t" {{
      driver = "raw_exec"
{artifacts}
      config {{
        command = "{command}"
      }}
    }}
  }}
}}
"#
    )
}

fn event_kinds(alloc: &serde_json::Value) -> Vec<String> {
    alloc["TaskStates"]["t"]["Events"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|e| e["Type"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn artifacts_are_fetched_verified_and_unpacked_before_the_task_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let config = br#"{"greeting":"hello from the artifact server"}"#.to_vec();
    let srv = serve(
        [
            ("/dl/app.tar.gz".to_string(), app_tar_gz()),
            ("/dl/config.json".to_string(), config.clone()),
        ]
        .into(),
    );
    let note = tmp.path().join("note.txt");
    std::fs::write(&note, "a note from the local disk\n").unwrap();
    // Local artifacts come only from directories the client allows.
    let cfg = tmp.path().join("artifacts.hcl");
    std::fs::write(
        &cfg,
        format!(
            "client {{\n  artifact {{\n    allowed_host_paths = [\"{}\"]\n  }}\n}}\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);

    let artifacts = format!(
        r#"      artifact {{
        source      = "http://127.0.0.1:{port}/dl/app.tar.gz"
        destination = "local/"
      }}
      artifact {{
        source = "http://127.0.0.1:{port}/dl/config.json"
        options {{
          checksum = "sha256:{sum}"
        }}
        headers {{
          X-Drover-Job = "${{NOMAD_JOB_NAME}}"
        }}
      }}
      artifact {{
        source      = "file://{note}"
        destination = "local/notes-${{attr.kernel.name}}"
      }}"#,
        port = srv.port,
        sum = sha256_hex(&config),
        note = note.display()
    );
    let spec = job("fetch", &artifacts, "${NOMAD_TASK_DIR}/app/run.sh");
    agent.run_job(&write_job(tmp.path(), "fetch", &spec));
    let alloc = agent.wait_alloc_status("fetch", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let full = agent.alloc(id).unwrap();

    // The script came out of the tar.gz, executable, and saw the other two artifacts.
    let dir = agent.data_dir_alloc(id);
    let ran = std::fs::read_to_string(dir.join("alloc/ran.txt")).unwrap_or_else(|e| {
        panic!(
            "the unpacked script did not run ({e}): {full:#}\n{}",
            agent.log_text()
        )
    });
    assert_eq!(
        ran,
        "run.sh ran in t\n{\"greeting\":\"hello from the artifact server\"}a note from the local disk\n"
    );
    assert_eq!(
        std::fs::read(dir.join("t/local/config.json")).unwrap(),
        config
    );

    // Events in Nomad's order: the download before the start.
    let kinds = event_kinds(&full);
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("no {k} event: {kinds:?}"))
    };
    assert!(pos("Downloading Artifacts") < pos("Started"), "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| k == "Failed Artifact Download"),
        "{kinds:?}"
    );

    // The header was interpolated and sent.
    let reqs = srv.requests.lock().unwrap().clone();
    let cfg_req = reqs
        .iter()
        .find(|r| r.starts_with("GET /dl/config.json "))
        .unwrap_or_else(|| panic!("config.json was not requested: {reqs:?}"));
    assert!(
        cfg_req.to_ascii_lowercase().contains("x-drover-job: fetch"),
        "{cfg_req}"
    );
}

#[test]
fn a_wrong_checksum_fails_the_task_naming_both_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let body = b"#!/bin/sh\necho should never run\n".to_vec();
    let actual = sha256_hex(&body);
    let srv = serve([("/tool.sh".to_string(), body)].into());
    let agent = Agent::dev(tmp.path());
    let wrong = "ab".repeat(32);
    let artifacts = format!(
        r#"      artifact {{
        source = "http://127.0.0.1:{port}/tool.sh"
        options {{
          checksum = "sha256:{wrong}"
        }}
      }}"#,
        port = srv.port
    );
    let spec = job("badsum", &artifacts, "${NOMAD_TASK_DIR}/tool.sh");
    agent.run_job(&write_job(tmp.path(), "badsum", &spec));
    let alloc = agent.wait_alloc_status("badsum", "failed", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let full = agent.alloc(&id).unwrap();

    let failed = task_events(&full, "t", "Failed Artifact Download");
    let ev = failed
        .first()
        .unwrap_or_else(|| panic!("no Failed Artifact Download event: {full:#}"));
    let msg = ev["DisplayMessage"].as_str().unwrap();
    let url = format!("http://127.0.0.1:{}/tool.sh", srv.port);
    assert!(
        msg.contains(&format!("failed to download artifact \"{url}\"")),
        "{msg}"
    );
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains(&format!("expected sha256:{wrong}")), "{msg}");
    assert!(msg.contains(&format!("got sha256:{actual}")), "{msg}");
    assert_eq!(ev["DownloadError"], msg, "{ev:#}");
    assert!(task_events(&full, "t", "Started").is_empty(), "{full:#}");
    assert!(
        !task_events(&full, "t", "Not Restarting").is_empty(),
        "{full:#}"
    );
    assert_eq!(full["TaskStates"]["t"]["Failed"], true);
    // Nothing unverified was left in the task directory.
    assert!(!Path::new(&agent.data_dir_alloc(&id).join("t/local/tool.sh")).exists());

    // What a user reads from the CLI.
    let out = agent.cli(&["alloc", "status", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Failed Artifact Download") && text.contains("checksum mismatch"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failed_download_is_retried_under_the_restart_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let script = b"#!/bin/sh\necho fetched-on-retry > \"$NOMAD_ALLOC_DIR/ok.txt\"\n".to_vec();
    // The first request fails (503); the restart policy allows one more attempt.
    let srv = serve_failing_first([("/run.sh".to_string(), script)].into(), 1);
    let agent = Agent::dev(tmp.path());
    let artifacts = format!(
        r#"      artifact {{
        source      = "http://127.0.0.1:{port}/run.sh"
        destination = "local/run.sh"
        mode        = "file"
      }}"#,
        port = srv.port
    );
    // The file keeps no mode bits over HTTP: the task runs it through sh.
    let spec = job_with_attempts("retry", &artifacts, "/bin/sh", 1).replace(
        "command = \"/bin/sh\"",
        "command = \"/bin/sh\"\n        args = [\"${NOMAD_TASK_DIR}/run.sh\"]",
    );
    agent.run_job(&write_job(tmp.path(), "retry", &spec));
    let alloc = agent.wait_alloc_status("retry", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let full = agent.alloc(id).unwrap();
    let kinds = event_kinds(&full);
    let failed = task_events(&full, "t", "Failed Artifact Download");
    assert_eq!(failed.len(), 1, "{kinds:?}");
    let msg = failed[0]["DisplayMessage"].as_str().unwrap();
    assert!(msg.contains("503 Service Unavailable"), "{msg}");
    let at = |k: &str| kinds.iter().position(|x| x == k).unwrap_or(usize::MAX);
    assert!(
        at("Failed Artifact Download") < at("Restarting"),
        "{kinds:?}"
    );
    assert!(at("Restarting") < at("Started"), "{kinds:?}");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "Downloading Artifacts")
            .count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(full["TaskStates"]["t"]["Restarts"], 1, "{full:#}");
    let ok = std::fs::read_to_string(agent.data_dir_alloc(id).join("alloc/ok.txt")).unwrap();
    assert_eq!(ok, "fetched-on-retry\n");
}
