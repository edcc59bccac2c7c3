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

fn full() -> Parsed {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/full.hcl"
    ))
    .unwrap();
    parse(&src, "full.hcl").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_block_parses_into_the_model() {
    let p = full();
    let j = &p.job;
    assert_eq!(j.priority, 70);
    assert_eq!(j.meta["team"], "storefront");
    assert_eq!(j.meta["version"], "V1.25");
    assert_eq!(j.constraints.len(), 2);
    assert_eq!(j.constraints[0].l_target, "${attr.kernel.name}");
    assert_eq!(j.constraints[0].r_target, "linux");
    assert_eq!(j.constraints[0].operand.as_str(), "=");
    assert_eq!(j.constraints[1].operand.as_str(), "distinct_hosts");
    assert_eq!(j.affinities[0].weight, 80);
    assert_eq!(j.spreads[0].spread_target.len(), 2);
    assert_eq!(j.spreads[0].spread_target[0].value, "dc1");
    assert_eq!(j.spreads[0].spread_target[0].percent, 70);
    let u = j.update.as_ref().unwrap();
    assert_eq!((u.max_parallel, u.canary, u.auto_revert), (2, 1, true));
    assert_eq!(u.healthy_deadline, Duration::from_secs(300));

    let g = &j.groups[0];
    assert_eq!(g.count, 3, "count from var.replicas");
    assert_eq!(g.constraints[0].operand.as_str(), "distinct_property");
    let n = &g.networks[0];
    assert_eq!(n.mode, "bridge");
    assert_eq!(n.dynamic_ports[0].label, "http");
    assert_eq!(n.dynamic_ports[0].to, 8080);
    assert_eq!(n.reserved_ports[0].value, 9090);
    assert_eq!(n.dns.as_ref().unwrap().servers, vec!["1.1.1.1"]);
    let s = &g.services[0];
    assert_eq!((s.name.as_str(), s.port_label.as_str()), ("web", "http"));
    assert_eq!(s.tags, vec!["web", "storefront"]);
    let c = &s.checks[0];
    assert_eq!(c.check_type, "http");
    assert_eq!(c.header["X-Probe"], vec!["drover"]);
    assert_eq!(c.check_restart.as_ref().unwrap().limit, 3);
    assert_eq!(g.volumes["data"].source, "web-data");
    let rs = g.reschedule.as_ref().unwrap();
    assert_eq!(
        (rs.attempts, rs.delay_function.as_str()),
        (3, "exponential")
    );
    assert_eq!(rs.max_delay, Duration::from_secs(600));
    assert_eq!(g.ephemeral_disk.as_ref().unwrap().size_mb, 500);
    assert_eq!(g.scaling.as_ref().unwrap().max, Some(10));
    assert_eq!(g.scaling.as_ref().unwrap().policy["cooldown"], "1m");
    assert_eq!(g.shutdown_delay, Some(Duration::from_secs(5)));

    let t = &g.tasks[0];
    assert_eq!(t.user, "nobody");
    assert_eq!(t.config["args"][1], "${NOMAD_PORT_http}");
    assert_eq!(t.config["args"][3], "v1.25");
    assert_eq!(t.env["GREETING"], "hello storefront");
    assert_eq!(t.env["REPLICAS"], "3");
    assert_eq!(
        (
            t.resources.cpu,
            t.resources.memory_mb,
            t.resources.memory_max_mb
        ),
        (500, 256, 512)
    );
    assert_eq!(t.resources.devices[0].name, "nvidia/gpu");
    assert_eq!(t.templates[0].dest_path, "local/app.conf");
    assert_eq!(t.templates[0].change_signal, "SIGHUP");
    assert!(
        t.templates[0]
            .embedded_tmpl
            .contains("{{ env \"NOMAD_ADDR_http\" }}")
    );
    assert_eq!(
        t.artifacts[0].getter_source,
        "https://example.com/app.tar.gz"
    );
    assert_eq!(t.artifacts[0].getter_options["checksum"], "sha256:abc");
    assert_eq!(t.lifecycle.as_ref().unwrap().hook.as_str(), "prestart");
    assert_eq!(t.volume_mounts[0].destination, "/srv/data");
    assert_eq!(t.identities[0].audience, vec!["drover"]);
    assert_eq!(t.vault.as_ref().unwrap().policies, vec!["web"]);
    assert_eq!(t.secrets[0].name, "db");
    assert_eq!((t.logs.max_files, t.logs.max_file_size_mb), (3, 5));
    assert_eq!(t.kill_timeout, Duration::from_secs(30));
    assert_eq!(t.kill_signal, "SIGINT");
    assert!(t.leader);
    let once = &j.groups[1].tasks[0];
    assert_eq!(once.dispatch_payload.as_ref().unwrap().file, "input.json");
    assert_eq!(once.csi_plugin.as_ref().unwrap().id, "hostpath");

    // Artifacts are fetched by the client: no warning for them.
    assert!(
        !p.warnings.iter().any(|w| w.contains("block \"artifact\"")),
        "{:?}",
        p.warnings
    );
    // Blocks parsed but not acted on are named in warnings, never dropped silently.
    for kind in ["volume", "update"] {
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains(&format!("block \"{kind}\""))),
            "no warning for {kind}: {:?}",
            p.warnings
        );
    }
    // And blocks that are acted on get none.
    for kind in [
        "constraint",
        "affinity",
        "spread",
        "reschedule",
        "lifecycle",
        "service",
        "check",
        "network",
        "secret",
    ] {
        assert!(
            !p.warnings
                .iter()
                .any(|w| w.contains(&format!("block \"{kind}\""))),
            "a warning for {kind}, which is acted on: {:?}",
            p.warnings
        );
    }
}

#[test]
fn every_block_round_trips_through_api_json() {
    let job = full().job;
    let json = serde_json::to_string(&job).unwrap();
    assert!(
        json.contains("\"TaskGroups\"")
            && json.contains("\"ReservedPorts\"")
            && json.contains("\"LTarget\"")
    );
    let back: drover_model::Job = serde_json::from_str(&json).unwrap();
    assert_eq!(back, job);
}

#[test]
fn variables_from_flags_and_files() {
    let src = "variable \"n\" {\n  type = number\n}\nvariable \"who\" {\n  default = \"world\"\n}\njob \"v\" {\n group \"g\" {\n  count = var.n\n  task \"t\" {\n   driver = \"raw_exec\"\n   env {\n    W = \"hi ${var.who} from ${NOMAD_TASK_NAME}\"\n   }\n  }\n }\n}\n";
    let e = parse(src, "v.hcl").unwrap_err();
    assert!(e.to_string().contains("variable \"n\" has no value"), "{e}");
    let vars = Variables {
        vars: vec![("n".into(), "4".into())],
        var_files: vec![("v.vars".into(), "who = \"drover\"\n".into())],
        ..Default::default()
    };
    let p = parse_with(src, "v.hcl", &vars).unwrap();
    assert_eq!(p.job.groups[0].count, 4);
    assert_eq!(
        p.job.groups[0].tasks[0].env["W"],
        "hi drover from ${NOMAD_TASK_NAME}"
    );
    let bad = Variables {
        vars: vec![("n".into(), "1".into()), ("nope".into(), "1".into())],
        ..Default::default()
    };
    let e = parse_with(src, "v.hcl", &bad).unwrap_err();
    assert!(
        e.to_string().contains("declares no variable \"nope\""),
        "{e}"
    );
}

#[test]
fn functions() {
    let src = "locals {\n  parts = split(\",\", \"a,b,c\")\n}\njob \"f\" {\n meta {\n  joined = join(\"-\", reverse(local.parts))\n  n = length(local.parts)\n  enc = base64encode(\"hi\")\n  dec = base64decode(\"aGk=\")\n  j = jsonencode({ a = 1 })\n  m = lookup({ x = \"y\" }, \"z\", \"dflt\")\n }\n group \"g\" {\n  task \"t\" { driver = \"raw_exec\" }\n }\n}\n";
    let m = parse(src, "f.hcl").unwrap().job.meta;
    assert_eq!(m["joined"], "c-b-a");
    assert_eq!(m["n"], "3");
    assert_eq!(m["enc"], "aGk=");
    assert_eq!(m["dec"], "hi");
    assert_eq!(m["j"], "{\"a\":1}");
    assert_eq!(m["m"], "dflt");
}

#[test]
fn unknown_key_names_position_and_path() {
    let src = "job \"web\" {\n  group \"frontend\" {\n    task \"web\" {\n      driver = \"raw_exec\"\n      imgae = \"x\"\n    }\n  }\n}\n";
    let e = parse(src, "web.hcl").unwrap_err();
    assert_eq!(
        e.to_string(),
        "web.hcl:5:7: job \"web\" > group \"frontend\" > task \"web\": unknown key \"imgae\""
    );
    let src = "job \"web\" {\n  group \"g\" {\n    network {\n      port \"http\" {\n        statik = 80\n      }\n    }\n    task \"t\" { driver = \"raw_exec\" }\n  }\n}\n";
    let e = parse(src, "web.hcl").unwrap_err();
    assert_eq!(
        e.to_string(),
        "web.hcl:5:9: job \"web\" > group \"g\" > network > port \"http\": unknown key \"statik\""
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
    assert_eq!(
        e.to_string(),
        "x.hcl:3:3: job \"x\" > group \"g\": \"count\": a number is required, found \"two\""
    );
    let src = "job \"x\" {\n group \"g\" {\n  task \"t\" {}\n }\n}";
    let e = parse(src, "x.hcl").unwrap_err();
    assert!(
        e.to_string().contains("missing required key \"driver\""),
        "{e}"
    );
    let src = "job \"x\" {\n group \"g\" {\n  restart {\n   delay = \"soon\"\n  }\n  task \"t\" { driver = \"raw_exec\" }\n }\n}";
    let e = parse(src, "x.hcl").unwrap_err();
    assert!(
        e.to_string().starts_with(
            "x.hcl:4:4: job \"x\" > group \"g\" > restart: \"delay\": \"soon\" is not a duration"
        ),
        "{e}"
    );
}

#[test]
fn closed_set_words_are_refused_with_position_and_accepted_words() {
    let task = |body: &str| {
        format!(
            "job \"x\" {{\n group \"g\" {{\n  task \"t\" {{\n   driver = \"raw_exec\"\n{body}  }}\n }}\n}}\n"
        )
    };
    let e = parse(
        &task("   lifecycle {\n    hook = \"prestrat\"\n   }\n"),
        "x.hcl",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("x.hcl:6:5: "), "{msg}");
    assert!(
        msg.contains("prestrat") && msg.contains("`prestart`, `poststart`, `poststop`"),
        "{msg}"
    );
    let e = parse(&task("   lifecycle {\n    sidecar = true\n   }\n"), "x.hcl").unwrap_err();
    assert_eq!(
        e.to_string(),
        "x.hcl:5:4: job \"x\" > group \"g\" > task \"t\" > lifecycle: missing field `Hook`"
    );
    let e = parse(
        &task("   template {\n    data = \"x\"\n    change_mode = \"reload\"\n   }\n"),
        "x.hcl",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("x.hcl:7:5: "), "{msg}");
    assert!(
        msg.contains("`restart`, `signal`, `script`, `noop`"),
        "{msg}"
    );
    let e = parse(
        &task("   constraint {\n    attribute = \"a\"\n    operator = \"~=\"\n    value = \"b\"\n   }\n"),
        "x.hcl",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("x.hcl:7:5: "), "{msg}");
    assert!(
        msg.contains("operator \"~=\" is not one of =, ==, is, !="),
        "{msg}"
    );
    let src = "job \"x\" {\n group \"g\" {\n  volume \"d\" {\n   type = \"nfs\"\n  }\n  task \"t\" { driver = \"raw_exec\" }\n }\n}\n";
    let e = parse(src, "x.hcl").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("x.hcl:4:4: ") && msg.contains("expected `host` or `csi`"),
        "{msg}"
    );
}

#[test]
fn operator_aliases_are_kept_as_written() {
    let src = "job \"x\" {\n constraint {\n  attribute = \"a\"\n  operator = \"is\"\n  value = \"b\"\n }\n affinity {\n  attribute = \"a\"\n  operator = \"not\"\n  value = \"b\"\n }\n group \"g\" {\n  task \"t\" { driver = \"raw_exec\" }\n }\n}\n";
    let j = parse(src, "x.hcl").unwrap().job;
    let json = serde_json::to_value(&j).unwrap();
    assert_eq!(json["Constraints"][0]["Operand"], "is");
    assert_eq!(json["Affinities"][0]["Operand"], "not");
}

fn schema_field(name: &str, ty: &str, required: bool) -> drover_proto::base::ConfigField {
    drover_proto::base::ConfigField {
        name: name.into(),
        r#type: ty.into(),
        required,
        ..Default::default()
    }
}

/// A docker-like schema: image (required), args, ports, a repeatable `mount` block, labels.
fn docker_like(driver: &str) -> Option<Vec<drover_proto::base::ConfigField>> {
    match driver {
        "docker" => Some(vec![
            schema_field("image", "string", true),
            schema_field("args", "list(string)", false),
            schema_field("ports", "list(string)", false),
            schema_field("pids_limit", "number", false),
            schema_field("labels", "map(string)", false),
            drover_proto::base::ConfigField {
                fields: vec![
                    schema_field("type", "string", false),
                    schema_field("source", "string", false),
                    schema_field("target", "string", true),
                ],
                ..schema_field("mount", "list(block)", false)
            },
        ]),
        "unchecked" => Some(Vec::new()),
        _ => None,
    }
}

fn docker_job(config: &str) -> String {
    format!(
        "job \"x\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"docker\"\n      config {{\n{config}\n      }}\n    }}\n  }}\n}}\n"
    )
}

fn checked(src: &str) -> Result<Parsed, JobspecErrors> {
    parse_checked(src, "x.hcl", &Variables::default(), &docker_like)
}

#[test]
fn task_configs_are_checked_against_the_drivers_schema() {
    let good = docker_job(
        "        image = \"busybox:1.0\"\n        args = [\"-c\", \"${NOMAD_TASK_DIR}\"]\n        pids_limit = \"${NOMAD_META_pids}\"\n        labels {\n          a = \"b\"\n        }\n        mount {\n          type = \"bind\"\n          target = \"/a\"\n        }\n        mount {\n          target = \"/b\"\n        }",
    );
    let p = checked(&good).unwrap();
    // Nested blocks become objects, repeated ones arrays of objects.
    assert_eq!(p.job.groups[0].tasks[0].config["labels"]["a"], "b");
    assert_eq!(p.job.groups[0].tasks[0].config["mount"][0]["type"], "bind");
    assert_eq!(p.job.groups[0].tasks[0].config["mount"][1]["target"], "/b");

    // Both errors: the unknown key, and the required key it was meant to be.
    let e = checked(&docker_job("        imagee = \"busybox:1.0\"")).unwrap_err();
    assert_eq!(e.all().len(), 2, "{e}");
    assert_eq!(
        e.all()[1].to_string(),
        "x.hcl:6:9: job \"x\" > group \"g\" > task \"t\" > config: unknown key \"imagee\" (it accepts: image, args, ports, pids_limit, labels, mount)"
    );
    assert!(e.message.contains("missing required key \"image\""), "{e}");

    let e = checked(&docker_job(
        "        image = \"b\"\n        mount {\n          target = \"/a\"\n          sourc = \"x\"\n        }",
    ))
    .unwrap_err();
    assert_eq!(e.line, 9, "{e}");
    assert_eq!(
        e.path,
        "job \"x\" > group \"g\" > task \"t\" > config > mount"
    );
    assert!(
        e.message
            .contains("unknown key \"sourc\" (it accepts: type, source, target)"),
        "{e}"
    );

    let e = checked(&docker_job("        image = \"b\"\n        args = \"-c\"")).unwrap_err();
    assert_eq!(e.line, 7);
    assert!(e.message.contains("\"args\" must be a list(string)"), "{e}");

    let e = checked(&docker_job(
        "        image = \"b\"\n        mount {\n        }",
    ))
    .unwrap_err();
    assert!(e.message.contains("missing required key \"target\""), "{e}");

    let e = checked(&docker_job("        args = []")).unwrap_err();
    assert!(e.message.contains("missing required key \"image\""), "{e}");

    let e = checked(&docker_job(
        "        image = \"b\"\n        mounts {\n        }",
    ))
    .unwrap_err();
    assert!(e.message.contains("unknown block \"mounts\""), "{e}");

    // Unknown drivers and empty schemas are not checked; nor is anything without a lookup.
    let other = docker_job("        anything = 1").replace("docker", "mine");
    assert!(checked(&other).is_ok());
    assert!(checked(&other.replace("mine", "unchecked")).is_ok());
    assert!(parse(&docker_job("        imagee = 1"), "x.hcl").is_ok());
}

const SERVICES: &str = r#"
job "svc" {
  group "g" {
    network {
      port "http" {}
    }
    service {
      name = "backend"
      port = "http"
      provider = "PROVIDER"
      on_update = "ignore_warnings"
      check {
        type = "http"
        path = "/health"
        method = "POST"
        body = "{}"
        interval = "5s"
        timeout = "1s"
        tls_skip_verify = true
        tls_server_name = "backend.example"
        success_before_passing = 2
        failures_before_critical = 3
        failures_before_warning = 1
        on_update = "ignore"
        grpc_service = "health"
        grpc_use_tls = true
        initial_status = "warning"
        expose = true
        protocol = "https"
        header {
          Authorization = ["Bearer x"]
        }
      }
      check {
        type = "script"
        task = "t"
        command = "/bin/check"
        args = ["-q"]
        check_restart {
          limit = 5
        }
      }
      check_restart {
        limit = 2
        grace = "30s"
        ignore_warnings = true
      }
    }
    task "t" {
      driver = "raw_exec"
      config { command = "/bin/true" }
      service {
        name = "sidecar"
        TASKPROVIDER
      }
    }
  }
}
"#;

fn services_job(provider: &str, task_provider: &str) -> Result<Parsed, JobspecErrors> {
    let src = SERVICES
        .replace("TASKPROVIDER", task_provider)
        .replace("PROVIDER", provider);
    parse(&src, "svc.hcl")
}

#[test]
fn service_and_check_keys_of_nomad_are_accepted() {
    let p = services_job("nomad", "provider = \"nomad\"").unwrap();
    let s = &p.job.groups[0].services[0];
    assert_eq!(
        (s.provider.as_str(), s.on_update.as_str()),
        ("nomad", "ignore_warnings")
    );
    let c = &s.checks[0];
    assert_eq!((c.method.as_str(), c.body.as_str()), ("POST", "{}"));
    assert!(c.tls_skip_verify && c.grpc_use_tls);
    assert_eq!(c.tls_server_name, "backend.example");
    assert_eq!(
        (
            c.success_before_passing,
            c.failures_before_critical,
            c.failures_before_warning
        ),
        (2, 3, 1)
    );
    assert_eq!(
        (c.on_update.as_str(), c.grpc_service.as_str()),
        ("ignore", "health")
    );
    assert_eq!(c.interval, Duration::from_secs(5));
    assert!(c.expose && c.protocol == "https" && c.initial_status == "warning");
    assert_eq!(c.header["Authorization"], vec!["Bearer x"]);
    // The service's check_restart reaches the check without its own; not the other.
    let r = c.check_restart.as_ref().unwrap();
    assert_eq!(
        (r.limit, r.grace, r.ignore_warnings),
        (2, Duration::from_secs(30), true)
    );
    let script = &s.checks[1];
    assert_eq!(
        (
            script.task_name.as_str(),
            script.command.as_str(),
            script.args.as_slice()
        ),
        ("t", "/bin/check", &["-q".to_string()][..])
    );
    assert_eq!(script.check_restart.as_ref().unwrap().limit, 5);
    assert!(
        !p.warnings.iter().any(|w| w.contains("block \"check\"")),
        "{:?}",
        p.warnings
    );
    assert!(
        !p.warnings.iter().any(|w| w.contains("Consul itself")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn the_consul_provider_is_nomads_default_and_warns_once() {
    let p = services_job("consul", "").unwrap();
    assert_eq!(p.job.groups[0].tasks[0].services[0].provider, "consul");
    let n = p
        .warnings
        .iter()
        .filter(|w| w.contains("Consul itself is not used"))
        .count();
    assert_eq!(n, 1, "{:?}", p.warnings);
}

#[test]
fn one_group_may_not_mix_providers() {
    let e = services_job("nomad", "provider = \"consul\"").unwrap_err();
    assert!(e.to_string().contains("one provider"), "{e}");
    let e = services_job("zookeeper", "").unwrap_err();
    assert!(
        e.to_string()
            .contains("\"zookeeper\" is not one of consul, nomad"),
        "{e}"
    );
}

#[test]
fn a_networks_cni_args_are_parsed() {
    let src = r#"
job "j" {
  group "g" {
    network {
      mode = "cni/mynet"
      cni {
        args = {
          FOO = "bar"
          "K8S_POD_NAME" = "x"
        }
      }
    }
    task "t" {
      driver = "exec"
      config { command = "/bin/true" }
    }
  }
}
"#;
    let p = parse(src, "cni.hcl").unwrap_or_else(|e| panic!("{e}"));
    let n = &p.job.groups[0].networks[0];
    assert_eq!(n.mode, "cni/mynet");
    let args = &n.cni.as_ref().unwrap().args;
    assert_eq!(args["FOO"], "bar");
    assert_eq!(args["K8S_POD_NAME"], "x");
    let bad = src.replace("args =", "argz =");
    let e = parse(&bad, "cni.hcl").unwrap_err().to_string();
    assert!(e.contains("argz"), "{e}");
}

#[test]
fn identity_blocks_are_the_default_one_or_named_by_their_label() {
    let src = r#"
job "j" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config { command = "/bin/true" }
      identity {
        env  = true
        file = true
      }
      identity "vault" {
        aud           = ["vault.io"]
        ttl           = "1h"
        file          = true
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }
    }
  }
}
"#;
    let p = parse(src, "id.hcl").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !p.warnings.iter().any(|w| w.contains("identity")),
        "{:?}",
        p.warnings
    );
    let ids = &p.job.groups[0].tasks[0].identities;
    assert_eq!(ids.len(), 2);
    assert_eq!(
        (ids[0].name.as_str(), ids[0].env, ids[0].file),
        ("default", true, true)
    );
    assert_eq!(ids[1].name, "vault");
    assert_eq!(ids[1].audience, ["vault.io"]);
    assert_eq!(ids[1].ttl, Duration::from_secs(3600));
    assert_eq!(
        (ids[1].change_mode.as_str(), ids[1].change_signal.as_str()),
        ("signal", "SIGHUP")
    );
    let twice = src.replace("identity \"vault\"", "identity \"default\"");
    let e = parse(&twice, "id.hcl").unwrap_err().to_string();
    assert!(e.contains("identity \"default\" is defined twice"), "{e}");
}

#[test]
fn secret_interpolations_are_kept_for_the_client() {
    let src = r#"
job "s" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      secret "db" {
        provider = "nomad"
        path     = "nomad/jobs/s"
      }
      config {
        command = "/bin/echo"
        args    = ["${secret.db.password}"]
      }
      env {
        PW = "${secret.db.password}"
      }
    }
  }
}
"#;
    let p = parse(src, "s.hcl").unwrap_or_else(|e| panic!("{e}"));
    let t = &p.job.groups[0].tasks[0];
    assert_eq!(t.env["PW"], "${secret.db.password}");
    assert_eq!(t.config["args"][0], "${secret.db.password}");
}
