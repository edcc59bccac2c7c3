//! Service discovery figures on a real dev agent:
//!
//! - DNS queries per second and p99 latency, the agent pinned to one core (the load
//!   generator on the other), for an SRV query of a service with 1,000 instances (EDNS0
//!   payload 1,232: the answer is cut with TC, as dig sees it), against Debian's dnsmasq
//!   pinned the same way and serving the same 1,000 SRV records from a static config, in
//!   the same run;
//! - registration-to-visible latency: from a task's start (the time it writes when it
//!   starts) until the HTTP API, then the DNS server, answer its service, p50;
//! - template re-render latency after a backend moves: from the moved backend's start until
//!   a frontend's `nomadService` template file is rewritten (its mtime), p50.
//!
//! `cargo build --release -p drover-agent && cargo bench -p drover-tests --bench discovery`

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover_tests::*;

const WAIT: Duration = Duration::from_secs(60);
/// Queries in flight during the throughput run.
const IN_FLIGHT: usize = 32;
const RUN: Duration = Duration::from_secs(5);

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

/// Sends `name`/`qtype` queries to `server` with IN_FLIGHT outstanding for RUN: answers per
/// second and the latencies.
fn load(server: SocketAddr, name: &str, qtype: u16) -> (f64, Vec<Duration>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent: Vec<Option<Instant>> = vec![None; 65536];
    let mut next_id: u16 = 0;
    let mut send = |s: &UdpSocket, sent: &mut Vec<Option<Instant>>| {
        next_id = next_id.wrapping_add(1);
        s.send_to(&dns::query(next_id, name, qtype, 1232), server)
            .unwrap();
        sent[usize::from(next_id)] = Some(Instant::now());
    };
    for _ in 0..IN_FLIGHT {
        send(&s, &mut sent);
    }
    let mut lat = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < RUN {
        match s.recv(&mut buf) {
            Ok(n) => {
                let Some(h) = dns::header(&buf[..n]) else {
                    continue;
                };
                if let Some(t) = sent[usize::from(h.id)].take() {
                    assert!(h.answers > 0 && h.rcode == 0, "{h:?}");
                    lat.push(t.elapsed());
                    send(&s, &mut sent);
                }
            }
            // Lost queries: send as many new ones.
            Err(_) => {
                let lost = sent.iter().filter(|t| t.is_some()).count();
                sent.iter_mut().for_each(|t| *t = None);
                for _ in 0..lost.max(1) {
                    send(&s, &mut sent);
                }
            }
        }
    }
    (lat.len() as f64 / start.elapsed().as_secs_f64(), lat)
}

fn report(who: &str, (qps, mut lat): (f64, Vec<Duration>)) {
    println!("BENCH dns_{who}_srv_1000_qps {qps:.0} queries/s");
    let p99 = percentile(&mut lat, 0.99);
    println!(
        "BENCH dns_{who}_srv_1000_p99 {:.3} ms",
        p99.as_secs_f64() * 1000.0
    );
}

/// dnsmasq on core 0 serving the same 1,000 SRV records.
fn dnsmasq(dir: &Path, port: u16) -> std::process::Child {
    let conf = dir.join("dnsmasq.conf");
    let mut text = String::from("no-resolv\nno-hosts\n");
    for i in 0..1000u16 {
        text.push_str(&format!(
            "srv-host=_big._tcp.service.drover,7f000001.addr.drover,{},1,1\n",
            30000 + i
        ));
    }
    std::fs::write(&conf, text).unwrap();
    let child = Command::new("taskset")
        .args(["-c", "0", "dnsmasq", "--keep-in-foreground", "--pid-file="])
        .arg(format!("--conf-file={}", conf.display()))
        .args([
            &format!("--port={port}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--user=root",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian's dnsmasq-base) and taskset run");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("dnsmasq to answer", WAIT, || {
        dns::ask(addr, "_big._tcp.service.drover", 33).filter(|h| h.answers > 0)
    });
    child
}

fn job(name: &str, port: u16) -> String {
    format!(
        r#"
job "{name}" {{
  group "g" {{
    network {{
      port "http" {{
        static = {port}
      }}
    }}
    service {{
      name     = "{name}"
      port     = "http"
      provider = "nomad"
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "date +%s%N > $NOMAD_ALLOC_DIR/started; exec sleep 3600"]
      }}
      resources {{
        cpu    = 10
        memory = 16
      }}
    }}
  }}
}}
"#
    )
}

const FRONTEND: &str = r#"
job "frontend" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["3600"]
      }
      template {
        data        = "{{ range nomadService \"mover\" }}{{ .Port }} {{ end }}"
        destination = "local/mover.txt"
        change_mode = "noop"
      }
      resources {
        cpu    = 10
        memory = 16
      }
    }
  }
}
"#;

/// The running allocation of `job`: its id and directory.
fn running(agent: &Agent, job: &str) -> (String, std::path::PathBuf) {
    let a = agent.wait_alloc_status(job, "running", WAIT);
    let id = a["ID"].as_str().unwrap().to_string();
    let dir = agent.data_dir_alloc(&id);
    (id, dir)
}

fn started_nanos(alloc_dir: &Path) -> u128 {
    wait_for("the task to write its start time", WAIT, || {
        std::fs::read_to_string(alloc_dir.join("alloc/started"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

fn ms(d: u128) -> f64 {
    d as f64 / 1e6
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, r) = (free_port(), free_port());
    let agent = Agent::start_on(
        "127.0.0.1",
        &["taskset", "-c", "0"],
        &["-dev"],
        &tmp.path().join("dev"),
        h,
        r,
    );
    agent.wait_ready();
    agent.wait_node_ready();
    let dns_addr: SocketAddr = format!("127.0.0.1:{}", agent.dns_port).parse().unwrap();

    // 1,000 instances of "big" for a running allocation.
    agent.run_job(&write_job(
        tmp.path(),
        "holder.hcl",
        &job("holder", free_port()),
    ));
    let (holder, _) = running(&agent, "holder");
    catalog::update_services(&agent, &catalog::instances(&holder, "big", 1000, 30000));
    wait_for(
        "the agent's DNS to answer the 1,000 instances",
        WAIT,
        || {
            dns::ask(dns_addr, "_big._tcp.service.drover", 33)
                .filter(|h| h.answers > 0 && h.truncated)
        },
    );

    pin(1);
    let dm_port = free_port();
    let mut dm = dnsmasq(tmp.path(), dm_port);
    let dm_addr: SocketAddr = format!("127.0.0.1:{dm_port}").parse().unwrap();
    // Alternate, so both see the same machine.
    for _ in 0..2 {
        report("drover", load(dns_addr, "_big._tcp.service.drover", 33));
        report("dnsmasq", load(dm_addr, "_big._tcp.service.drover", 33));
    }
    let _ = dm.kill();
    let _ = dm.wait();

    // Registration to visible: task start -> API, -> DNS.
    let (mut api, mut dns_lat) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let name = format!("reg{i}");
        let file = write_job(tmp.path(), &format!("{name}.hcl"), &job(&name, free_port()));
        agent.run_job(&file);
        let (mut seen_api, mut seen_dns) = (None, None);
        let deadline = Instant::now() + WAIT;
        while (seen_api.is_none() || seen_dns.is_none()) && Instant::now() < deadline {
            if seen_api.is_none()
                && agent
                    .get(&format!("/v1/service/{name}"))
                    .and_then(|v| v.as_array().map(|a| !a.is_empty()))
                    == Some(true)
            {
                seen_api = Some(now_nanos());
            }
            if seen_dns.is_none()
                && dns::ask(dns_addr, &format!("{name}.service.drover"), 33)
                    .is_some_and(|h| h.answers > 0)
            {
                seen_dns = Some(now_nanos());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let (_, dir) = running(&agent, &name);
        let started = started_nanos(&dir);
        api.push(Duration::from_nanos(
            seen_api.expect("API answer").saturating_sub(started) as u64,
        ));
        dns_lat.push(Duration::from_nanos(
            seen_dns.expect("DNS answer").saturating_sub(started) as u64,
        ));
        agent.cli(&["job", "stop", "-purge", "-detach", &name]);
    }
    println!(
        "BENCH discovery_registration_visible_api_p50 {:.1} ms",
        percentile(&mut api, 0.5).as_secs_f64() * 1000.0
    );
    println!(
        "BENCH discovery_registration_visible_dns_p50 {:.1} ms",
        percentile(&mut dns_lat, 0.5).as_secs_f64() * 1000.0
    );

    // Template re-render after the backend moves.
    agent.run_job(&write_job(
        tmp.path(),
        "mover.hcl",
        &job("mover", free_port()),
    ));
    running(&agent, "mover");
    agent.run_job(&write_job(tmp.path(), "frontend.hcl", FRONTEND));
    let (_, front) = running(&agent, "frontend");
    let file = front.join("t/local/mover.txt");
    let mut lat = Vec::new();
    for _ in 0..6 {
        let port = free_port();
        agent.run_job(&write_job(tmp.path(), "mover.hcl", &job("mover", port)));
        let want = port.to_string();
        let mtime = wait_for("the template to follow the backend", WAIT, || {
            let text = std::fs::read_to_string(&file).ok()?;
            (text.trim() == want).then(|| {
                std::fs::metadata(&file)
                    .unwrap()
                    .modified()
                    .unwrap()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            })
        });
        // The newest running allocation runs the backend on its new port.
        let moved = wait_for("the moved backend", WAIT, || {
            agent
                .allocs("mover")
                .into_iter()
                .filter(|a| a["ClientStatus"] == "running")
                .max_by_key(|a| a["CreateIndex"].as_u64().unwrap_or(0))
        });
        let started = started_nanos(&agent.data_dir_alloc(moved["ID"].as_str().unwrap()));
        lat.push(Duration::from_nanos(mtime.saturating_sub(started) as u64));
        eprintln!("re-render {:.1} ms", ms(mtime.saturating_sub(started)));
    }
    println!(
        "BENCH discovery_template_rerender_after_move_p50 {:.1} ms",
        percentile(&mut lat, 0.5).as_secs_f64() * 1000.0
    );
}
