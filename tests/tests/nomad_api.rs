//! Nomad API compatibility: a stock Nomad client library talks to Drover; blocking queries
//! return as soon as the watched table changes.

use std::process::Command;
use std::time::{Duration, Instant};

use drover_tests::*;

/// Runs `tests/python/<script>.py` against a dev agent; it must succeed and print
/// `python-nomad <what>: ok`.
fn python_nomad(script: &str, what: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let script = repo_root().join(format!("tests/python/{script}.py"));
    let out = Command::new("python3")
        .arg(&script)
        .arg(agent.http_port.to_string())
        .output()
        .expect("python3 must be installed (tests/run.sh installs python-nomad)");
    assert!(
        out.status.success(),
        "python-nomad {what} test failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("python-nomad {what}: ok")));
}

#[test]
fn python_nomad_lists_registers_reads_and_stops_jobs() {
    python_nomad("nomad_smoke", "smoke");
}

#[test]
fn python_nomad_reads_and_deletes_services() {
    python_nomad("nomad_services", "services");
}

#[test]
fn blocking_query_returns_when_the_table_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let resp = reqwest::blocking::get(format!("{}/v1/jobs", agent.address())).unwrap();
    let index: u64 = resp.headers()["X-Nomad-Index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        resp.headers()["X-Drover-Index"],
        resp.headers()["X-Nomad-Index"]
    );
    let addr = agent.address();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let r = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .get(format!("{addr}/v1/jobs?index={index}&wait=30s"))
            .send()
            .unwrap();
        let new_index: u64 = r.headers()["X-Nomad-Index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body: serde_json::Value = r.json().unwrap();
        (t.elapsed(), new_index, body)
    });
    std::thread::sleep(Duration::from_millis(500));
    let job = write_job(
        tmp.path(),
        "b",
        "job \"b\" {\n group \"g\" {\n task \"t\" {\n driver = \"raw_exec\"\n config {\n command = \"/bin/sleep\"\n args = [\"60\"]\n }\n }\n }\n}\n",
    );
    agent.run_job(&job);
    let (elapsed, new_index, body) = waiter.join().unwrap();
    assert!(
        new_index > index,
        "index did not advance: {index} -> {new_index}"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "blocking query waited for its timeout instead of the change ({elapsed:?})"
    );
    assert!(
        elapsed >= Duration::from_millis(400),
        "blocking query returned before anything changed ({elapsed:?})"
    );
    assert_eq!(body[0]["ID"], "b");
}

#[test]
fn event_stream_reports_job_and_allocation_changes() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let addr = agent.address();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        let resp = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .unwrap()
            .get(format!(
                "{addr}/v1/event/stream?topic=Job:*&topic=Allocation:*"
            ))
            .send()
            .unwrap();
        for line in std::io::BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str(&line)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let job = write_job(
        tmp.path(),
        "ev",
        "job \"ev\" {\n group \"g\" {\n task \"t\" {\n driver = \"raw_exec\"\n config {\n command = \"/bin/sleep\"\n args = [\"60\"]\n }\n }\n }\n}\n",
    );
    agent.run_job(&job);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(frame) = rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        for e in frame["Events"].as_array().cloned().unwrap_or_default() {
            assert_ne!(e["Topic"], "Evaluation", "topic filter not applied: {e}");
            seen.push((
                e["Topic"].as_str().unwrap().to_string(),
                e["Type"].as_str().unwrap().to_string(),
            ));
            if e["Topic"] == "Allocation" && e["Payload"]["Allocation"]["ClientStatus"] == "running"
            {
                assert!(
                    seen.contains(&("Job".into(), "JobRegistered".into())),
                    "{seen:?}"
                );
                assert_eq!(e["Payload"]["Allocation"]["JobID"], "ev");
                return;
            }
        }
    }
    panic!("no running-allocation event; saw {seen:?}");
}
