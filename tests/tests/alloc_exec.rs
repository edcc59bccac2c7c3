//! `drover alloc exec` and `drover alloc status -stats` on a dev agent, through the API's
//! WebSocket and the node stream down to the driver's ExecTask and TaskStats.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use drover_tests::*;

const JOB: &str = r#"
job "busy" {
  group "g" {
    task "web" {
      driver = "raw_exec"
      env {
        GREETING = "hello-from-env"
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "while :; do :; done"]
      }
    }
  }
}
"#;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn exec_into_a_running_task_and_read_its_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    agent.run_job(&write_job(tmp.path(), "busy", JOB));
    let alloc = agent.wait_alloc_status("busy", "running", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let short = &id[..8];

    // A command with its own flags, in the task's environment and directory; its exit code
    // becomes the CLI's.
    let out = agent.cli(&[
        "alloc",
        "exec",
        "-i=false",
        short,
        "sh",
        "-c",
        "echo $GREETING $NOMAD_TASK_NAME; pwd; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hello-from-env web"), "{}", text(&out));
    assert!(stdout.contains(&format!("{id}/web")), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));

    // Stdin reaches the command, and its end closes the command's stdin.
    let mut child = Command::new(drover_bin())
        .args(["alloc", "exec", &id, "sh", "-c", "tr a-z A-Z"])
        .env("DROVER_ADDR", agent.address())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "THROUGH STDIN\n");

    // -t gives the command a terminal even when ours is not one.
    let out = agent.cli(&[
        "alloc",
        "exec",
        "-i=false",
        "-t",
        short,
        "sh",
        "-c",
        "test -t 1 && echo on-a-tty",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("on-a-tty"));

    // Mistakes are named.
    let out = agent.cli(&["alloc", "exec", "-task", "nope", short, "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("\"nope\""), "{}", text(&out));
    let out = agent.cli(&["alloc", "exec", "-i=false", short, "no-such-program-xyz"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no-such-program-xyz"), "{}", text(&out));

    // Stats: the busy loop uses CPU and memory.
    let out = agent.cli(&["alloc", "status", "-stats", short]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("CPU Percent"), "{}", text(&out));
    let out = agent.cli(&["alloc", "status", "-stats", "-json", short]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let usage = &v["ResourceUsage"]["Tasks"]["web"]["ResourceUsage"];
    assert!(usage["MemoryStats"]["RSS"].as_u64().unwrap() > 0, "{v:#}");
    assert!(
        usage["CpuStats"]["Percent"].as_f64().unwrap() > 5.0,
        "a busy loop uses CPU: {usage:#}"
    );
}
