//! Service discovery from the local copy of the catalog on a real agent: a frontend's
//! templates (`nomadService`, consul-template's `service`) render a backend's address and
//! port and re-render, signalling the task, when the backend moves to another port; the
//! agent's DNS server answers `dig` with the backend's SRV and A records, leaves critical
//! instances out, says NXDOMAIN for unknown services and REFUSED outside its domain, and
//! cuts a 1,000-instance answer over UDP (TC) while `+tcp` returns all of it.
//!
//! The critical instance and the 1,000 instances are written the way a client writes its
//! registrations: `NodeService.UpdateServices` with the node's id and secret (read from the
//! agent's data dir), for the backend's running allocation.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_model::{ServiceHealth, ServiceRegistration};
use drover_tests::dns::{dig, srv_ports, status};
use drover_tests::*;

const WAIT: Duration = Duration::from_secs(40);

fn backend(port: u16) -> String {
    format!(
        r#"
job "backend" {{
  group "api" {{
    network {{
      port "http" {{
        static = {port}
      }}
    }}
    service {{
      name     = "backend"
      port     = "http"
      tags     = ["v1"]
      provider = "nomad"
      meta {{
        zone = "z1"
      }}
    }}
    task "api" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
        args    = ["3600"]
      }}
      resources {{
        cpu    = 20
        memory = 32
      }}
    }}
  }}
}}
"#
    )
}

const FRONTEND: &str = r#"
job "frontend" {
  group "web" {
    task "web" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo hup >> $NOMAD_ALLOC_DIR/hups' HUP; while true; do sleep 0.1; done"]
      }
      template {
        data          = <<EOT
{{ range nomadService "backend" }}{{ .Address }}:{{ .Port }} {{ end }}
EOT
        destination   = "local/nomad.txt"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }
      template {
        data          = <<EOT
{{ range service "v1.backend|passing" }}{{ .Address }}:{{ .Port }} zone={{ .ServiceMeta.zone }} {{ end }}
EOT
        destination   = "local/consul.txt"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }
      resources {
        cpu    = 20
        memory = 32
      }
    }
  }
}
"#;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The running allocation of `job` and its directory.
fn running(agent: &Agent, job: &str) -> (String, PathBuf) {
    let a = agent.wait_alloc_status(job, "running", WAIT);
    let id = a["ID"].as_str().unwrap().to_string();
    let dir = agent.data_dir_alloc(&id);
    (id, dir)
}

#[test]
fn templates_and_dns_follow_a_backend_that_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let (p1, p2) = (free_port(), free_port());
    let job = write_job(tmp.path(), "backend.hcl", &backend(p1));
    agent.run_job(&job);
    running(&agent, "backend");
    let reg = wait_for("the backend's registration", WAIT, || {
        agent
            .get("/v1/service/backend")?
            .as_array()?
            .first()
            .cloned()
    });
    let address = reg["Address"].as_str().unwrap().to_string();
    assert_eq!(reg["Port"].as_u64(), Some(u64::from(p1)));

    agent.run_job(&write_job(tmp.path(), "frontend.hcl", FRONTEND));
    let (_, front) = running(&agent, "frontend");
    let (nomad_txt, consul_txt) = (
        front.join("web/local/nomad.txt"),
        front.join("web/local/consul.txt"),
    );
    let at_p1 = format!("{address}:{p1}");
    wait_for("the templates to render the backend", WAIT, || {
        (read(&nomad_txt).contains(&at_p1) && read(&consul_txt).contains(&at_p1)).then_some(())
    });
    assert_eq!(read(&nomad_txt).trim(), at_p1);
    assert_eq!(read(&consul_txt).trim(), format!("{at_p1} zone=z1"));

    // DNS: SRV with the port, A with the address, by tag and in the namespaced form.
    let srv = dig(&agent, &["backend.service.drover", "SRV", "+short"]);
    assert_eq!(srv_ports(&srv), vec![p1], "{srv}");
    let a = dig(&agent, &["backend.service.drover", "A", "+short"]);
    assert_eq!(a.trim(), address, "{a}");
    let tagged = dig(&agent, &["v1.backend.service.drover", "SRV", "+short"]);
    assert_eq!(srv_ports(&tagged), vec![p1], "{tagged}");
    let ns = dig(
        &agent,
        &["backend.service.default.ns.drover", "SRV", "+short"],
    );
    assert_eq!(srv_ports(&ns), vec![p1], "{ns}");
    let full = dig(&agent, &["backend.service.drover", "SRV"]);
    assert!(full.contains("ADDITIONAL SECTION"), "{full}");

    // The backend moves to another port: the files follow and the task is signalled.
    let moved = Instant::now();
    agent.run_job(&write_job(tmp.path(), "backend.hcl", &backend(p2)));
    let at_p2 = format!("{address}:{p2}");
    wait_for("the templates to render the moved backend", WAIT, || {
        let (n, c) = (read(&nomad_txt), read(&consul_txt));
        (n.trim() == at_p2 && c.trim() == format!("{at_p2} zone=z1")).then_some(())
    });
    eprintln!(
        "templates re-rendered {:?} after the job update",
        moved.elapsed()
    );
    wait_for("the frontend to be signalled", WAIT, || {
        read(&front.join("alloc/hups"))
            .contains("hup")
            .then_some(())
    });
    wait_for("DNS to answer the new port", WAIT, || {
        let srv = dig(&agent, &["backend.service.drover", "SRV", "+short"]);
        (srv_ports(&srv) == vec![p2]).then_some(())
    });
}

#[test]
fn dns_answers_healthy_instances_refuses_strangers_and_cuts_large_answers_over_udp() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let p1 = free_port();
    agent.run_job(&write_job(tmp.path(), "backend.hcl", &backend(p1)));
    let (alloc_id, _) = running(&agent, "backend");
    wait_for("the backend's registration", WAIT, || {
        agent
            .get("/v1/service/backend")?
            .as_array()?
            .first()
            .cloned()
    });

    // A critical instance of backend, and a service of 1,000 instances.
    let reg = |id: &str, name: &str, port: u16, health: ServiceHealth| ServiceRegistration {
        id: format!("_nomad-task-{alloc_id}-probe-{id}"),
        service_name: name.into(),
        alloc_id: alloc_id.clone(),
        address: "127.0.0.1".into(),
        port,
        health,
        ..Default::default()
    };
    let mut regs = vec![reg("sick", "backend", 40001, ServiceHealth::Critical)];
    regs.extend(catalog::instances(&alloc_id, "big", 1000, 30000));
    catalog::update_services(&agent, &regs);
    wait_for("the registrations in the API", WAIT, || {
        let all = agent.get("/v1/service/backend")?.as_array()?.len();
        let big = agent.get("/v1/service/big")?.as_array()?.len();
        (all == 2 && big == 1000).then_some(())
    });

    // Only the healthy instance of backend (the catalog copy is current once big is).
    wait_for("DNS to hold the large service", WAIT, || {
        (srv_ports(&dig(
            &agent,
            &["+tcp", "big.service.drover", "SRV", "+short"],
        ))
        .len()
            == 1000)
            .then_some(())
    });
    let srv = dig(&agent, &["backend.service.drover", "SRV", "+short"]);
    assert_eq!(srv_ports(&srv), vec![p1], "{srv}");

    // Unknown names and names outside the domain.
    let nx = dig(&agent, &["nope.service.drover", "SRV"]);
    assert_eq!(status(&nx), "NXDOMAIN", "{nx}");
    let nx = dig(&agent, &["something.else.drover", "A"]);
    assert_eq!(status(&nx), "NXDOMAIN", "{nx}");
    let refused = dig(&agent, &["example.com", "A"]);
    assert_eq!(status(&refused), "REFUSED", "{refused}");
    assert!(!refused.contains(" ra"), "no recursion offered: {refused}");

    // 1,000 instances: cut over UDP with TC (dig +ignore keeps the UDP answer), whole over
    // TCP.
    let udp = dig(&agent, &["+ignore", "big.service.drover", "SRV"]);
    let flags = udp
        .lines()
        .find(|l| l.starts_with(";; flags:"))
        .unwrap_or_default()
        .to_string();
    assert!(flags.contains(" tc"), "{flags}\n{udp}");
    let udp_count = udp.lines().filter(|l| l.contains("\tSRV\t")).count();
    assert!(
        udp_count > 0 && udp_count < 1000,
        "{udp_count} SRV records over UDP"
    );
    let tcp = dig(&agent, &["+tcp", "big.service.drover", "SRV", "+short"]);
    let ports = srv_ports(&tcp);
    assert_eq!(ports.len(), 1000);
    assert_eq!(ports, (30000..31000).collect::<Vec<u16>>());
}
