//! Jobspecs users already have for Nomad: `drover job validate` reports every error of a file
//! with its position and lists the lines accepted only for compatibility; a job written in
//! those shapes (a job-level task, a task-level network, string numbers) runs on a dev agent.

use std::time::Duration;

use drover_tests::*;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn drover(args: &[&str]) -> std::process::Output {
    std::process::Command::new(drover_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn validate_reports_all_three_errors_of_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = write_job(
        tmp.path(),
        "three",
        r#"job "three" {
  group "g" {
    count = "several"
    network {
      port "my port" {}
    }
    task "t" {
      driver = "raw_exec"
      imgae  = "x"
    }
  }
}
"#,
    );
    let out = drover(&["job", "validate", bad.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let f = bad.display().to_string();
    for line in [
        format!(
            "{f}:3:5: job \"three\" > group \"g\": \"count\": a number is required, found \"several\""
        ),
        format!(
            "{f}:5:7: job \"three\" > group \"g\" > network > port \"my port\": port label \"my port\" must be a non-empty word without spaces"
        ),
        format!("{f}:9:7: job \"three\" > group \"g\" > task \"t\": unknown key \"imgae\""),
    ] {
        assert!(t.contains(&line), "missing {line:?} in:\n{t}");
    }
    assert!(!t.contains("Job validation successful"), "{t}");
}

const COMPAT: &str = r#"job "compat" {
  type     = "batch"
  priority = "60"
  reschedule {
    attempts  = 0
    unlimited = false
  }
  task "t" {
    driver = "raw_exec"
    config {
      command = "/bin/sh"
      args    = ["-c", "echo port=$NOMAD_PORT_http > $NOMAD_ALLOC_DIR/port"]
    }
    resources {
      cpu    = "50"
      memory = "32"
      network {
        mbits = 10
        port "http" {}
      }
    }
  }
}
"#;

#[test]
fn validate_lists_the_lines_accepted_for_compatibility() {
    let tmp = tempfile::tempdir().unwrap();
    let job = write_job(tmp.path(), "compat", COMPAT);
    let out = drover(&["job", "validate", job.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let f = job.display().to_string();
    let section = stdout
        .split("Compatibility:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Compatibility section:\n{t}"));
    assert!(
        section.contains(&format!(
            "{f}:8:3: job \"compat\": task \"t\" outside a group: read as group \"t\""
        )),
        "{t}"
    );
    assert!(
        section.contains(&format!("{f}:17:7: job \"compat\" > task \"t\" > resources: network in a task's resources is deprecated: its ports are read as ports of the group's network; mbits is ignored")),
        "{t}"
    );
}

#[test]
fn a_job_in_nomad_s_older_shapes_runs_with_its_port() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = write_job(tmp.path(), "compat", COMPAT);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("compat", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    assert_eq!(alloc["TaskGroup"], "t", "{alloc:#}");
    let full = agent.alloc(id).unwrap();
    let port = full["SharedResources"]["Ports"][0]["Value"]
        .as_u64()
        .unwrap_or_else(|| panic!("no group port: {full:#}"));
    let written = std::fs::read_to_string(agent.data_dir_alloc(id).join("alloc/port")).unwrap();
    assert_eq!(written.trim(), format!("port={port}"), "{full:#}");
    let job = agent.get("/v1/job/compat").unwrap();
    assert_eq!(job["Priority"], 60);
    assert_eq!(job["TaskGroups"][0]["Tasks"][0]["Resources"]["CPU"], 50);
}
