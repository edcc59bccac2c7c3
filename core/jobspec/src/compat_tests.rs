//! Jobspecs in the shapes Nomad accepts parse into the same model as their canonical form;
//! every error of a file is reported; Nomad's port and scaling checks.

use std::time::Duration;

use super::*;

fn ok(src: &str) -> Parsed {
    parse(src, "j.hcl").unwrap_or_else(|e| panic!("{e}"))
}

fn errors(src: &str) -> Vec<JobspecError> {
    match parse(src, "j.hcl") {
        Ok(_) => panic!("parsed, but errors were expected"),
        Err(e) => e.all().to_vec(),
    }
}

/// Asserts two jobspecs parse into the same job.
fn same_job(shape: &str, canonical: &str) -> Parsed {
    let a = ok(shape);
    let b = ok(canonical);
    assert_eq!(
        a.job, b.job,
        "\n{shape}\n-- and its canonical form --\n{canonical}"
    );
    a
}

#[test]
fn a_job_level_task_is_a_group_of_its_own_name_placed_first() {
    let p = same_job(
        r#"
job "j" {
  group "g" {
    task "b" { driver = "raw_exec" }
  }
  task "a" {
    driver = "raw_exec"
  }
}"#,
        r#"
job "j" {
  group "a" {
    task "a" { driver = "raw_exec" }
  }
  group "g" {
    task "b" { driver = "raw_exec" }
  }
}"#,
    );
    assert_eq!(p.job.groups[0].name, "a");
    assert_eq!(p.job.groups[0].count, 1);
    assert_eq!(p.compatibility.len(), 1, "{:?}", p.compatibility);
    assert!(
        p.compatibility[0].starts_with("j.hcl:6:3: job \"j\": task \"a\" outside a group"),
        "{:?}",
        p.compatibility
    );
}

#[test]
fn a_task_network_moves_its_ports_to_the_group_network() {
    let p = same_job(
        r#"
job "j" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      resources {
        cpu = 50
        network {
          mbits = 10
          port "http" {}
          port "db" { static = 5432 }
        }
      }
    }
  }
}"#,
        r#"
job "j" {
  group "g" {
    network {
      port "http" {}
      port "db" { static = 5432 }
    }
    task "t" {
      driver = "raw_exec"
      resources { cpu = 50 }
    }
  }
}"#,
    );
    let n = &p.job.groups[0].networks[0];
    assert_eq!(n.mode, "host");
    assert_eq!(n.reserved_ports[0].value, 5432);
    assert_eq!(n.dynamic_ports[0].label, "http");
    assert!(p.job.groups[0].tasks[0].resources.networks.is_empty());
    assert_eq!(p.compatibility.len(), 1);
    assert!(
        p.compatibility[0].starts_with("j.hcl:8:9: job \"j\" > group \"g\" > task \"t\" > resources: network in a task's resources is deprecated")
            && p.compatibility[0].ends_with("mbits is ignored"),
        "{:?}",
        p.compatibility
    );

    // Into a group that has a network already; a label used twice is refused.
    same_job(
        r#"
job "j" {
  group "g" {
    network {
      port "a" {}
    }
    task "t" {
      driver = "raw_exec"
      resources {
        network {
          port "b" {}
        }
      }
    }
  }
}"#,
        r#"
job "j" {
  group "g" {
    network {
      port "a" {}
      port "b" {}
    }
    task "t" { driver = "raw_exec" }
  }
}"#,
    );
    let e = errors(
        r#"
job "j" {
  group "g" {
    network {
      port "web" {}
    }
    task "t" {
      driver = "raw_exec"
      resources {
        network {
          port "WEB" {}
        }
      }
    }
  }
}"#,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (11, 11));
    assert!(e[0].message.contains("\"WEB\" is already used"), "{}", e[0]);
}

#[test]
fn job_level_update_migrate_reschedule_and_vault_are_inherited() {
    let shape = r#"
job "j" {
  update {
    max_parallel = 2
    canary       = 1
  }
  migrate { max_parallel = 3 }
  reschedule {
    attempts = 4
    interval = "1h"
  }
  vault { policies = ["job"] }
  group "a" {
    update { canary = 2 }
    reschedule { delay = "10s" }
    vault { policies = ["group"] }
    task "own" {
      driver = "raw_exec"
      vault { policies = ["task"] }
    }
    task "from_group" { driver = "raw_exec" }
  }
  group "b" {
    task "from_job" { driver = "raw_exec" }
  }
}"#;
    let canonical = r#"
job "j" {
  update {
    max_parallel = 2
    canary       = 1
  }
  group "a" {
    update {
      max_parallel = 2
      canary       = 2
    }
    migrate { max_parallel = 3 }
    reschedule {
      attempts = 4
      interval = "1h"
      delay    = "10s"
    }
    task "own" {
      driver = "raw_exec"
      vault { policies = ["task"] }
    }
    task "from_group" {
      driver = "raw_exec"
      vault { policies = ["group"] }
    }
  }
  group "b" {
    update {
      max_parallel = 2
      canary       = 1
    }
    migrate { max_parallel = 3 }
    reschedule {
      attempts = 4
      interval = "1h"
    }
    task "from_job" {
      driver = "raw_exec"
      vault { policies = ["job"] }
    }
  }
}"#;
    let p = same_job(shape, canonical);
    let a = &p.job.groups[0];
    assert_eq!(a.update.as_ref().unwrap().canary, 2);
    assert_eq!(a.update.as_ref().unwrap().max_parallel, 2);
    let r = a.reschedule.as_ref().unwrap();
    assert_eq!((r.attempts, r.delay), (4, Duration::from_secs(10)));
    let v = a.tasks[1].vault.as_ref().unwrap();
    assert_eq!(v.policies, vec!["group"]);
    // Nomad's defaults for a vault block.
    assert!(v.env);
    assert_eq!(v.change_mode, "restart");
}

#[test]
fn secrets_at_job_and_group_level_reach_tasks_without_their_own() {
    let p = ok(r#"
job "j" {
  secret "db" {
    provider = "nomad"
    path     = "job/db"
  }
  group "g" {
    secret "api" {
      provider = "nomad"
      path     = "group/api"
    }
    task "t" {
      driver = "raw_exec"
      secret "db" {
        provider = "custom"
        path     = "task/db"
        config { key = "v" }
        env { TOKEN_FILE = "/x" }
      }
    }
  }
}"#);
    let s = &p.job.groups[0].tasks[0].secrets;
    let names: Vec<(&str, &str)> = s
        .iter()
        .map(|s| (s.name.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(names, vec![("db", "task/db"), ("api", "group/api")]);
    assert_eq!(s[0].env["TOKEN_FILE"], "/x");
    assert_eq!(s[0].config["key"], "v");
}

#[test]
fn hcl2_conversions_are_cty_s() {
    same_job(
        r#"
job "j" {
  priority = "70"
  constraint {
    distinct_hosts = "true"
  }
  constraint {
    attribute = "${meta.n}"
    value     = 3
  }
  group "g" {
    count = "2"
    network {
      port "http" { static = "8080" }
    }
    task "t" {
      driver = "raw_exec"
      leader = "true"
      resources {
        cpu    = "100"
        memory = "64"
      }
    }
  }
}"#,
        r#"
job "j" {
  priority = 70
  constraint {
    distinct_hosts = true
  }
  constraint {
    attribute = "${meta.n}"
    value     = "3"
  }
  group "g" {
    count = 2
    network {
      port "http" { static = 8080 }
    }
    task "t" {
      driver = "raw_exec"
      leader = true
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}"#,
    );
}

#[test]
fn a_value_that_does_not_convert_is_an_error_naming_its_key() {
    let e = errors(
        r#"
job "j" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      resources {
        cpu    = "abc"
        memory = "lots"
      }
    }
    constraint { distinct_hosts = "yes" }
  }
}"#,
    );
    let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "j.hcl:7:9: job \"j\" > group \"g\" > task \"t\" > resources: \"cpu\": a number is required, found \"abc\"",
            "j.hcl:8:9: job \"j\" > group \"g\" > task \"t\" > resources: \"memory\": a number is required, found \"lots\"",
            "j.hcl:11:18: job \"j\" > group \"g\" > constraint: \"distinct_hosts\": a bool is required, found \"yes\"",
        ]
    );
}

#[test]
fn every_error_of_a_file_is_reported_in_file_order() {
    let e = errors(
        r#"
job "j" {
  group "g" {
    count = "many"
    task "t" {
      driver = "raw_exec"
      imgae  = "x"
    }
  }
  group "h" {
    network {
      port "my port" {}
    }
    task "t" { driver = "raw_exec" }
  }
}"#,
    );
    let at: Vec<(usize, usize)> = e.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, vec![(4, 5), (7, 7), (12, 7)], "{e:?}");
    assert!(
        e[0].message.contains("\"count\": a number is required"),
        "{}",
        e[0]
    );
    assert_eq!(e[1].path, "job \"j\" > group \"g\" > task \"t\"");
    assert_eq!(e[1].message, "unknown key \"imgae\"");
    assert!(e[2].message.contains("without spaces"), "{}", e[2]);
    // The error's text holds every one, a line each.
    let text = parse(
        "job \"j\" {\n  a = 1\n  b = 2\n  group \"g\" {\n    task \"t\" { driver = \"x\" }\n  }\n}",
        "k.hcl",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("k.hcl:2:3:") && text.contains("k.hcl:3:3:"),
        "{text}"
    );
}

#[test]
fn current_nomad_blocks_parse_into_the_model() {
    let p = ok(r#"
job "j" {
  ui {
    description = "The web tier"
    link {
      label = "Docs"
      url   = "https://example.com/docs"
    }
  }
  group "g" {
    disconnect {
      lost_after           = "1h"
      replace              = false
      stop_on_client_after = "30m"
    }
    volume "data" {
      type            = "csi"
      source          = "data"
      attachment_mode = "file-system"
      access_mode     = "single-node-writer"
      mount_options {
        fs_type     = "ext4"
        mount_flags = ["noatime"]
      }
    }
    service {
      name             = "web"
      on_update        = "ignore"
      tagged_addresses = { lan = "10.0.0.1" }
      canary_meta { version = "2" }
    }
    task "t" {
      driver = "raw_exec"
      action "dump" {
        command = "/bin/cat"
        args    = ["/proc/meminfo"]
      }
      template {
        data        = "x"
        destination = "local/x"
        vault_grace = "15s"
        wait {
          min = "2s"
          max = "10s"
        }
      }
    }
  }
}"#);
    let j = &p.job;
    let ui = j.ui.as_ref().unwrap();
    assert_eq!(ui.description, "The web tier");
    assert_eq!(ui.links[0].url, "https://example.com/docs");
    let g = &j.groups[0];
    let d = g.disconnect.as_ref().unwrap();
    assert_eq!(d.lost_after, Some(Duration::from_secs(3600)));
    assert_eq!(d.replace, Some(false));
    assert_eq!(d.reconcile, "best_score");
    assert_eq!(d.stop_on_client_after, Some(Duration::from_secs(1800)));
    let m = g.volumes["data"].mount_options.as_ref().unwrap();
    assert_eq!(
        (m.fs_type.as_str(), m.mount_flags.as_slice()),
        ("ext4", &["noatime".to_string()][..])
    );
    let s = &g.services[0];
    assert_eq!(s.on_update, "ignore");
    assert_eq!(s.tagged_addresses["lan"], "10.0.0.1");
    assert_eq!(s.canary_meta["version"], "2");
    let t = &g.tasks[0];
    assert_eq!(t.actions[0].name, "dump");
    assert_eq!(t.actions[0].args, vec!["/proc/meminfo"]);
    let w = t.templates[0].wait.as_ref().unwrap();
    assert_eq!(
        (w.min, w.max),
        (Some(Duration::from_secs(2)), Some(Duration::from_secs(10)))
    );
    // What is not acted on says so, naming the capability.
    let warned = |what: &str| p.warnings.iter().any(|w| w.contains(what));
    for what in [
        "block \"ui\" is parsed but not acted on yet",
        "block \"disconnect\" is parsed but not acted on yet",
        "block \"action\" is parsed but not acted on yet: task actions cannot be run yet",
        "block \"wait\" is parsed but not acted on yet",
        "key \"tagged_addresses\" is parsed but not acted on yet",
        "key \"canary_meta\" is parsed but not acted on yet: canaries are not driven yet",
    ] {
        assert!(warned(what), "{what}: {:?}", p.warnings);
    }
    assert_eq!(p.compatibility.len(), 1, "{:?}", p.compatibility);
    assert!(p.compatibility[0].contains("\"vault_grace\": deprecated"));
    // A JSON job says the same (the API path).
    assert!(
        model_warnings(j)
            .iter()
            .any(|w| w.contains("block \"disconnect\""))
    );
}

#[test]
fn deprecated_disconnect_keys_are_listed_and_refused_beside_the_block() {
    let p = ok(r#"
job "j" {
  group "g" {
    max_client_disconnect = "1h"
    task "t" { driver = "raw_exec" }
  }
}"#);
    assert_eq!(
        p.job.groups[0].max_client_disconnect,
        Some(Duration::from_secs(3600))
    );
    assert!(
        p.compatibility[0].contains("write disconnect { lost_after = ... }"),
        "{:?}",
        p.compatibility
    );
    let e = errors(
        r#"
job "j" {
  group "g" {
    max_client_disconnect = "1h"
    disconnect {
      lost_after = "1h"
      reconcile  = "newest"
    }
    task "t" { driver = "raw_exec" }
  }
}"#,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].message.contains("cannot both be given"));
    assert!(
        e[1].message
            .contains("reconcile \"newest\" is not one of best_score")
    );
}

#[test]
fn scaling_blocks_are_checked_as_nomad_does() {
    let e = errors(
        r#"
job "j" {
  group "g" {
    scaling {
      min = 1
    }
    task "t" {
      driver = "raw_exec"
      scaling "gpu" { max = 1 }
      scaling "cpu" {
        type = "horizontal"
        max  = 2
      }
    }
  }
  group "h" {
    count = 2
    scaling {
      type = "vertical"
      max  = 3
    }
    task "t" {
      driver = "raw_exec"
      scaling "mem" { min = 1 }
    }
  }
}"#,
    );
    let shown: Vec<String> = e
        .iter()
        .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
        .collect();
    assert_eq!(e.len(), 5, "{shown:#?}");
    assert!(
        shown[0].starts_with("4:5 missing required key \"max\""),
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with("9:7 a task's scaling block is named \"cpu\" or \"mem\""),
        "{shown:#?}"
    );
    assert!(
        shown[2].starts_with(
            "11:9 scaling policy type \"horizontal\" is not valid here: expected \"vertical_cpu\""
        ),
        "{shown:#?}"
    );
    assert!(
        shown[3].starts_with("19:7 scaling policy type \"vertical\""),
        "{shown:#?}"
    );
    assert!(
        shown[4].starts_with("24:7 missing required key \"max\""),
        "{shown:#?}"
    );

    // Without a count, a group starts at its scaling min; the task policies are kept.
    let p = ok(r#"
job "j" {
  group "g" {
    scaling {
      min = 2
      max = 5
    }
    task "t" {
      driver = "raw_exec"
      scaling "cpu" { max = 500 }
    }
  }
}"#);
    let g = &p.job.groups[0];
    assert_eq!(g.count, 2);
    assert_eq!(g.scaling.as_ref().unwrap().policy_type, "horizontal");
    let ts = &g.tasks[0].scaling_policies[0];
    assert_eq!(
        (ts.policy_type.as_str(), ts.max),
        ("vertical_cpu", Some(500))
    );
    let e = errors(
        "job \"j\" {\n  group \"g\" {\n    count = 9\n    scaling { max = 3 }\n    task \"t\" { driver = \"x\" }\n  }\n}",
    );
    assert!(
        e[0].message
            .contains("count (9) must not be greater than the scaling block's max (3)"),
        "{e:?}"
    );
    assert_eq!(e[0].line, 3);
}

#[test]
fn port_labels_are_unique_without_case_and_have_no_spaces() {
    let e = errors(
        r#"
job "j" {
  group "g" {
    network {
      port "http" {}
      port "HTTP" {}
    }
    network {
      port "http" {}
    }
    task "t" { driver = "raw_exec" }
  }
  group "h" {
    network {
      port "http" {}
    }
    task "t" { driver = "raw_exec" }
  }
}"#,
    );
    let at: Vec<usize> = e.iter().map(|e| e.line).collect();
    assert_eq!(at, vec![6, 9], "{e:?}");
    assert!(e[0].message.contains("(at line 5, column 7)"), "{}", e[0]);
}
