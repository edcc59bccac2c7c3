use std::time::Duration;

use super::*;

const HELLO: &str = r#"
job "hello" {
  datacenters = ["dc1"]
  type = "batch"

  group "g" {
    count = 2
    restart {
      attempts = 1
      delay    = "1s"
      mode     = "fail"
    }
    task "say" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo hi from ${NOMAD_ALLOC_ID}"]
      }
      env {
        GREETING = "hello"
        N        = 3
      }
      resources {
        cpu    = 200
        memory = 64
      }
      kill_timeout = "10s"
    }
  }
}
"#;

#[test]
fn parses_common_blocks() {
    let p = parse(HELLO, "hello.hcl").unwrap();
    let j = p.job;
    assert_eq!(j.id, "hello");
    assert_eq!(j.job_type, JobType::Batch);
    assert_eq!(j.datacenters, vec!["dc1"]);
    let g = &j.groups[0];
    assert_eq!(g.count, 2);
    assert_eq!(g.restart.as_ref().unwrap().attempts, 1);
    assert_eq!(g.restart.as_ref().unwrap().delay, Duration::from_secs(1));
    let t = &g.tasks[0];
    assert_eq!(t.driver, "raw_exec");
    assert_eq!(t.config["command"], "/bin/sh");
    assert_eq!(t.config["args"][1], "echo hi from ${NOMAD_ALLOC_ID}");
    assert_eq!(t.env["GREETING"], "hello");
    assert_eq!(t.env["N"], "3");
    assert_eq!(t.resources.cpu, 200);
    assert_eq!(t.resources.memory_mb, 64);
    assert_eq!(t.kill_timeout, Duration::from_secs(10));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn unknown_key_names_position_and_path() {
    let src = "job \"web\" {\n  group \"frontend\" {\n    task \"web\" {\n      driver = \"raw_exec\"\n      imgae = \"x\"\n    }\n  }\n}\n";
    let e = parse(src, "web.hcl").unwrap_err();
    assert_eq!(
        e.to_string(),
        "web.hcl:5:7: job \"web\" > group \"frontend\" > task \"web\": unknown key \"imgae\""
    );
}

#[test]
fn bad_hcl_is_a_positioned_error() {
    let e = parse("job \"x\" {\n  group = = \n}", "x.hcl").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.starts_with("invalid HCL"), "{e}");
}

#[test]
fn wrong_type_and_missing_driver() {
    let src = "job \"x\" {\n group \"g\" {\n  count = \"two\"\n  task \"t\" { driver = \"raw_exec\" }\n }\n}";
    let e = parse(src, "x.hcl").unwrap_err();
    assert!(
        e.to_string()
            .contains("\"count\" must be a whole number, found a string"),
        "{e}"
    );
    let src = "job \"x\" {\n group \"g\" {\n  task \"t\" {}\n }\n}";
    let e = parse(src, "x.hcl").unwrap_err();
    assert!(
        e.to_string().contains("missing required key \"driver\""),
        "{e}"
    );
}

#[test]
fn unimplemented_blocks_warn() {
    let src = "job \"x\" {\n group \"g\" {\n  network { mode = \"host\" }\n  task \"t\" { driver = \"raw_exec\" }\n }\n}";
    let p = parse(src, "x.hcl").unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0].contains("x.hcl:3:3") && p.warnings[0].contains("\"network\""),
        "{:?}",
        p.warnings
    );
}
