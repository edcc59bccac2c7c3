//! Allocation networks end to end: real agents, exec tasks in bridge and `cni/<name>`
//! namespaces made by the client and configured by Debian's CNI plugins (/usr/lib/cni).
//! Root only (namespaces, iptables), as CI runs them.

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use drover_tests::*;
use serde_json::Value;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the network tests need root: run them as root");
}

/// A server on `NOMAD_PORT_http` (TCP and UDP) answering with its allocation id; it first
/// writes its environment, /etc/hosts and /etc/resolv.conf to its task directory.
const SERVER: &str = r#"
import os, socket, threading
env = os.environ
me = env["NOMAD_ALLOC_ID"]
port = int(env["NOMAD_PORT_http"])
with open(env["NOMAD_TASK_DIR"] + "/env.txt", "w") as f:
    f.write("\n".join(k + "=" + v for k, v in sorted(env.items())) + "\n")
for etc in ["hosts", "resolv.conf"]:
    with open("/etc/" + etc) as src, open(env["NOMAD_TASK_DIR"] + "/" + etc, "w") as dst:
        dst.write(src.read())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", port))
def udp():
    while True:
        d, a = u.recvfrom(100)
        u.sendto(("udp " + me).encode(), a)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen(8)
while True:
    c, _ = t.accept()
    c.sendall(("tcp " + me).encode())
    c.close()
"#;

fn job(name: &str, count: u32, mode: &str, network_extra: &str) -> String {
    format!(
        r#"job "{name}" {{
  group "g" {{
    count = {count}
    network {{
      mode = "{mode}"
{network_extra}
      port "http" {{
        to = 8080
      }}
      cni {{
        args = {{
          DROVER_TEST = "yes"
        }}
      }}
    }}
    restart {{
      attempts = 0
      mode = "fail"
    }}
    reschedule {{
      attempts = 0
      unlimited = false
    }}
    task "web" {{
      driver = "exec"
      config {{
        command = "/usr/bin/python3"
        args = ["-c", {SERVER:?}]
      }}
    }}
  }}
}}
"#
    )
}

/// A server agent and a client agent (with `client_extra` in its `client` block), so the
/// client can be down while the cluster changes.
struct Cluster {
    server: Agent,
    client: Agent,
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    /// Also after a failed assertion: the jobs stop (the client tears their networks down)
    /// before the agents go, since a client's tasks outlive it.
    fn drop(&mut self) {
        let jobs = self.server.get("/v1/jobs").unwrap_or_default();
        for j in jobs.as_array().into_iter().flatten() {
            if let Some(name) = j["ID"].as_str() {
                let _ = self.server.cli(&["job", "stop", "-detach", name]);
            }
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for("every allocation to stop", Duration::from_secs(30), || {
                let jobs = self.server.get("/v1/jobs")?;
                jobs.as_array()?
                    .iter()
                    .filter_map(|j| j["ID"].as_str())
                    .all(|j| {
                        self.server.allocs(j).iter().all(|a| {
                            a["ClientStatus"] != "running" && a["ClientStatus"] != "pending"
                        })
                    })
                    .then_some(())
            })
        }));
    }
}

fn cluster(client_extra: &str) -> Cluster {
    cluster_with(client_extra, |_| {})
}

/// [`cluster`], running `before_client` with the client's data dir before the client starts.
fn cluster_with(client_extra: &str, before_client: impl FnOnce(&Path)) -> Cluster {
    cluster_full(client_extra, "", before_client)
}

/// [`cluster_with`], with `agent_extra` at the top level of the client agent's file.
fn cluster_full(
    client_extra: &str,
    agent_extra: &str,
    before_client: impl FnOnce(&Path),
) -> Cluster {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(
        dir.join("server.hcl"),
        "server {\n  enabled = true\n  bootstrap_expect = 1\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.hcl"),
        format!(
            "client {{\n  enabled = true\n  cni_path = \"/usr/lib/cni\"\n{client_extra}}}\n{agent_extra}"
        ),
    )
    .unwrap();
    let server = Agent::start(
        &["-config", dir.join("server.hcl").to_str().unwrap()],
        &dir.join("server"),
        free_port(),
        free_port(),
    );
    server.wait_ready();
    before_client(&dir.join("client"));
    let client = Agent::start(
        &[
            "-config",
            dir.join("client.hcl").to_str().unwrap(),
            "-servers",
            &server.rpc_addr(),
        ],
        &dir.join("client"),
        free_port(),
        free_port(),
    );
    server.wait_node_ready();
    Cluster {
        server,
        client,
        _tmp: tmp,
        dir,
    }
}

fn running_allocs(server: &Agent, job: &str, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} running allocations of {job} with their network"),
        Duration::from_secs(60),
        || {
            let allocs: Vec<Value> = server
                .allocs(job)
                .into_iter()
                .filter(|a| a["ClientStatus"] == "running")
                .filter_map(|a| server.alloc(a["ID"].as_str()?))
                .filter(|a| a["NetworkStatus"]["Address"].is_string())
                .collect();
            (allocs.len() == n).then_some(allocs)
        },
    )
}

fn id(a: &Value) -> String {
    a["ID"].as_str().unwrap().to_string()
}

fn alloc_ip(a: &Value) -> String {
    a["NetworkStatus"]["Address"].as_str().unwrap().to_string()
}

/// The host address and port of the allocation's `http` port.
fn host_port(a: &Value) -> (String, u16) {
    let p = &a["SharedResources"]["Ports"][0];
    assert_eq!(p["Label"], "http", "{a:#}");
    assert_eq!(p["To"], 8080);
    (
        p["HostIP"].as_str().unwrap().to_string(),
        p["Value"].as_u64().unwrap() as u16,
    )
}

fn tcp_answer(ip: &str, port: u16) -> Option<String> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn udp_answer(ip: &str, port: u16) -> Option<String> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.send_to(b"hi", format!("{ip}:{port}")).ok()?;
    let mut buf = [0u8; 200];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The inode of the allocation's named namespace, if it exists.
fn netns_inode(alloc_id: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/var/run/netns/{alloc_id}"))
        .ok()
        .map(|m| m.ino())
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the allocations could leave behind on the host: iptables/nft rules naming their ids
/// or addresses, their namespaces, host-local leases held for them, and the veths on the
/// bridge.
fn leftovers(ids: &[String], ips: &[String], bridge: Option<&str>) -> Vec<String> {
    let mut left = Vec::new();
    let rules = sh("iptables-save; nft list ruleset 2>/dev/null");
    for needle in ids.iter().chain(ips) {
        for line in rules.lines().filter(|l| l.contains(needle.as_str())) {
            left.push(format!("rule: {line}"));
        }
        if Path::new(&format!("/var/run/netns/{needle}")).exists() {
            left.push(format!("namespace {needle}"));
        }
    }
    for lease in std::fs::read_dir("/var/lib/cni/networks")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|net| {
            std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
        })
    {
        let text = std::fs::read_to_string(lease.path()).unwrap_or_default();
        if ids.iter().any(|id| text.contains(id.as_str())) {
            left.push(format!("lease {}", lease.path().display()));
        }
    }
    if let Some(bridge) = bridge {
        let veths = sh(&format!("ip -o link show master {bridge} 2>/dev/null"));
        left.extend(veths.lines().map(|l| format!("veth: {l}")));
    }
    left
}

#[test]
fn bridge_allocations_get_their_own_addresses_mapped_ports_and_survive_an_agent_crash() {
    require_root();
    let mut c = cluster("");
    let veths_before = sh("ip -o link show master nomad 2>/dev/null")
        .lines()
        .count();
    c.server
        .run_job(&write_job(&c.dir, "web", &job("web", 2, "bridge", "")));
    let allocs = running_allocs(&c.server, "web", 2);
    let ids: Vec<String> = allocs.iter().map(id).collect();
    let ips: Vec<String> = allocs.iter().map(alloc_ip).collect();

    // Two addresses in Nomad's default bridge subnet, both serving on 8080.
    let subnet = |ip: &str| {
        let o: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
        o[0] == 172 && o[1] == 26 && (64..80).contains(&o[2])
    };
    assert!(ips.iter().all(|ip| subnet(ip)), "{ips:?}");
    assert_ne!(ips[0], ips[1]);
    for a in &allocs {
        assert_eq!(a["NetworkStatus"]["InterfaceName"], "eth0", "{a:#}");
        let (host_ip, port) = host_port(a);
        let want = id(a);
        let tcp = wait_for("the TCP mapped port", Duration::from_secs(30), || {
            tcp_answer(&host_ip, port)
        });
        assert_eq!(tcp, format!("tcp {want}"));
        let udp = wait_for("the UDP mapped port", Duration::from_secs(10), || {
            udp_answer(&host_ip, port)
        });
        assert_eq!(udp, format!("udp {want}"));

        // The task's environment, as Nomad sets it in bridge mode.
        let env = std::fs::read_to_string(
            c.dir
                .join("client/alloc")
                .join(&want)
                .join("web/local/env.txt"),
        )
        .unwrap();
        let ip = alloc_ip(a);
        let alloc_dir = c.dir.join("client/alloc").join(&want).join("web/local");
        let hosts = std::fs::read_to_string(alloc_dir.join("hosts")).unwrap();
        assert!(
            hosts.lines().any(|l| l == format!("{ip} {}", &want[..8])),
            "the task's /etc/hosts names its allocation:\n{hosts}"
        );
        let resolv = std::fs::read_to_string(alloc_dir.join("resolv.conf")).unwrap();
        assert!(
            !resolv.contains("nameserver 127."),
            "a loopback resolver is unreachable from the namespace:\n{resolv}"
        );
        for line in [
            "NOMAD_PORT_http=8080".to_string(),
            "NOMAD_ALLOC_PORT_http=8080".to_string(),
            format!("NOMAD_HOST_PORT_http={port}"),
            format!("NOMAD_IP_http={host_ip}"),
            format!("NOMAD_HOST_IP_http={host_ip}"),
            format!("NOMAD_ADDR_http={host_ip}:{port}"),
            format!("NOMAD_HOST_ADDR_http={host_ip}:{port}"),
            format!("NOMAD_ALLOC_IP_http={ip}"),
            format!("NOMAD_ALLOC_ADDR_http={ip}:8080"),
            "NOMAD_ALLOC_INTERFACE_http=eth0".to_string(),
        ] {
            assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
        }
    }
    // Each reaches the other by its allocation address, from inside its namespace.
    let probe = |from: &str, ip: &str| {
        sh(&format!(
            "ip netns exec {from} /usr/bin/python3 -c 'import socket; s=socket.create_connection((\"{ip}\", 8080), 3); print(s.recv(100).decode())'"
        ))
    };
    assert_eq!(probe(&ids[0], &ips[1]).trim(), format!("tcp {}", ids[1]));
    assert_eq!(probe(&ids[1], &ips[0]).trim(), format!("tcp {}", ids[0]));

    // kill -9 of the client: after its restart, the same namespace and address (CHECK, not ADD).
    let inodes: Vec<Option<u64>> = ids.iter().map(|i| netns_inode(i)).collect();
    assert!(inodes.iter().all(Option::is_some), "{inodes:?}");
    c.client.kill9();
    c.client.start_again();
    wait_for(
        "the tasks to be reattached",
        Duration::from_secs(60),
        || {
            ids.iter()
                .all(|i| {
                    c.server
                        .alloc(i)
                        .is_some_and(|a| !task_events(&a, "web", "Reattached").is_empty())
                })
                .then_some(())
        },
    );
    assert_eq!(
        ids.iter().map(|i| netns_inode(i)).collect::<Vec<_>>(),
        inodes,
        "the namespaces were made again"
    );
    let log = c.client.log_text();
    assert!(
        log.contains("CHECK passed"),
        "no CHECK after the restart:\n{log}"
    );
    for a in &allocs {
        let now = c.server.alloc(&id(a)).unwrap();
        assert_eq!(alloc_ip(&now), alloc_ip(a), "the address changed");
        let (host_ip, port) = host_port(a);
        assert_eq!(tcp_answer(&host_ip, port), Some(format!("tcp {}", id(a))));
    }

    // The job stops while the client is down: once it is back, DEL runs from the cache.
    c.client.kill9();
    let out = c.server.cli(&["job", "stop", "-detach", "web"]);
    assert!(out.status.success());
    c.client.start_again();
    wait_for("the allocations to stop", Duration::from_secs(60), || {
        ids.iter()
            .all(|i| {
                c.server
                    .alloc(i)
                    .is_some_and(|a| a["ClientStatus"] != "running")
            })
            .then_some(())
    });
    let left = wait_for(
        "the networks to be torn down",
        Duration::from_secs(30),
        || {
            let left = leftovers(&ids, &ips, Some("nomad"));
            let veths = left.iter().filter(|l| l.starts_with("veth")).count();
            (left.iter().all(|l| l.starts_with("veth")) && veths == veths_before).then_some(left)
        },
    );
    assert_eq!(left.len(), veths_before, "{left:#?}");
    let cache = std::fs::read_dir(c.dir.join("client/cni"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cache, 0, "the result cache still holds entries");
}

#[test]
fn a_cni_conflist_by_name_is_used_and_a_broken_one_is_a_clear_task_event() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("cni");
    std::fs::create_dir(&conf).unwrap();
    let third = std::process::id() % 200 + 20;
    let subnet = format!("10.199.{third}.0/24");
    std::fs::write(
        conf.join("10-testptp.conflist"),
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "testptp",
            "plugins": [
                {"type": "ptp", "ipMasq": true,
                 "ipam": {"type": "host-local", "subnet": subnet,
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(conf.join("20-broken.conflist"), "{ \"name\": \"broken\", ").unwrap();
    std::fs::write(
        conf.join("30-failing.conflist"),
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "failing",
            "plugins": [{"type": "ptp", "ipam": {"type": "host-local", "subnet": "not-a-subnet"}}]
        })
        .to_string(),
    )
    .unwrap();
    let c = cluster(&format!("  cni_config_dir = \"{}\"\n", conf.display()));

    c.server
        .run_job(&write_job(&c.dir, "ptp", &job(
            "ptp",
            1,
            "cni/testptp",
            "      hostname = \"ptp-web\"\n      dns {\n        servers = [\"192.0.2.53\"]\n        searches = [\"drover.test\"]\n      }\n",
        )));
    let a = running_allocs(&c.server, "ptp", 1).remove(0);
    let ip = alloc_ip(&a);
    assert!(
        ip.starts_with(&format!("10.199.{third}.")),
        "{ip} not in {subnet}"
    );
    let (host_ip, port) = host_port(&a);
    let answer = wait_for(
        "the ptp allocation's mapped port",
        Duration::from_secs(30),
        || tcp_answer(&host_ip, port),
    );
    assert_eq!(answer, format!("tcp {}", id(&a)));
    let alloc_dir = c.dir.join("client/alloc").join(id(&a)).join("web/local");
    let hosts = std::fs::read_to_string(alloc_dir.join("hosts")).unwrap();
    assert!(
        hosts.lines().any(|l| l == format!("{ip} ptp-web")),
        "{hosts}"
    );
    let resolv = std::fs::read_to_string(alloc_dir.join("resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 192.0.2.53\nsearch drover.test\n"),
        "{resolv}"
    );
    let out = c.server.cli(&["job", "stop", "-detach", "ptp"]);
    assert!(out.status.success());

    // mode = "none": a namespace of its own with only its loopback, up.
    c.server
        .run_job(&write_job(&c.dir, "lo", &job("lo", 1, "none", "")));
    let lo = running_allocs(&c.server, "lo", 1).remove(0);
    assert_eq!(lo["NetworkStatus"]["Address"], "", "{lo:#}");
    let links = sh(&format!("ip netns exec {} ip -o link", id(&lo)));
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    let out = c.server.cli(&["job", "stop", "-detach", "lo"]);
    assert!(out.status.success());
    wait_for("the none namespace to go", Duration::from_secs(30), || {
        netns_inode(&id(&lo)).is_none().then_some(())
    });

    // A list that is not JSON: the node does not offer that network, so the job is not
    // placed, and its evaluation says which network is missing.
    c.server.run_job(&write_job(
        &c.dir,
        "broken",
        &job("broken", 1, "cni/broken", ""),
    ));
    let explained = wait_for(
        "the evaluation to explain the missing network",
        Duration::from_secs(30),
        || {
            c.server
                .get("/v1/job/broken/evaluations")?
                .as_array()?
                .iter()
                .find_map(|e| {
                    e["FailedTGAllocs"]["g"]["ConstraintFiltered"]
                        .get("missing network cni/broken")
                        .cloned()
                })
        },
    );
    assert_eq!(explained, 1);
    let out = c.server.cli(&["job", "stop", "-detach", "broken"]);
    assert!(out.status.success());

    // A plugin that refuses its configuration: the allocation fails before its task
    // starts, and the task's event names the plugin and says why.
    c.server.run_job(&write_job(
        &c.dir,
        "failing",
        &job("failing", 1, "cni/failing", ""),
    ));
    let a = c
        .server
        .wait_alloc_status("failing", "failed", Duration::from_secs(60));
    let a = c.server.alloc(&id(&a)).unwrap();
    let ev = task_events(&a, "web", "Setup Failure");
    assert_eq!(ev.len(), 1, "{a:#}");
    let msg = ev[0]["DisplayMessage"]
        .as_str()
        .or(ev[0]["Message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("CNI plugin "), "{msg}");
    assert!(msg.contains("ptp") || msg.contains("host-local"), "{msg}");
    assert!(!Path::new(&format!("/var/run/netns/{}", id(&a))).exists());
    let ids = [id(&a)];
    let left = wait_for(
        "the ptp network to be torn down",
        Duration::from_secs(30),
        || {
            let left = leftovers(&ids, std::slice::from_ref(&ip), None);
            left.is_empty().then_some(left)
        },
    );
    assert!(left.is_empty());
}

#[test]
fn attachments_of_allocations_the_client_no_longer_has_are_deleted_at_start() {
    require_root();
    // An attachment left in the client's result cache by an allocation its local state no
    // longer knows (its state lost with a crash): a real namespace, address and lease.
    let orphan = format!("0rphan-{}", std::process::id());
    let third = std::process::id() % 200 + 20;
    let list = drover_cni::NetworkConfigList::from_value(serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "orphans",
        "plugins": [{"type": "ptp",
                     "ipam": {"type": "host-local", "subnet": format!("10.198.{third}.0/24")}}]
    }))
    .unwrap();
    let st = Command::new("ip")
        .args(["netns", "add", &orphan])
        .status()
        .unwrap();
    assert!(st.success());
    let mut ip = String::new();
    let c = cluster_with("", |client_dir| {
        let rt = drover_cni::CniRuntime::new(
            drover_cni::PluginRunner::new(drover_cni::PluginPath::parse("/usr/lib/cni")),
            drover_cni::ResultCache::new(client_dir.join("cni")),
        );
        let att = drover_cni::Attachment::new(&orphan, format!("/var/run/netns/{orphan}"), "eth0");
        let result = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(rt.add(&list, &att))
            .unwrap();
        ip = result.ips[0].ip().unwrap().to_string();
        assert!(
            std::fs::read_dir("/var/lib/cni/networks/orphans")
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_str() == Some(ip.as_str())),
            "the lease exists before the client starts"
        );
    });
    let ids = [orphan.clone()];
    wait_for("the orphan's DEL", Duration::from_secs(30), || {
        leftovers(&ids, std::slice::from_ref(&ip), None)
            .is_empty()
            .then_some(())
    });
    let cache = std::fs::read_dir(c.dir.join("client/cni"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cache, 0, "the orphan's cache entry is gone");
    assert!(
        c.client.log_text().contains("no longer has"),
        "{}",
        c.client.log_text()
    );
}

/// The docker driver makes the allocation's namespace with its infra container
/// (`CreateNetwork`), the client configures it with the bridge conflist, a docker task and a
/// raw_exec task of the same group both run in it, and everything goes when the job stops.
#[test]
fn docker_makes_the_namespace_and_raw_exec_joins_it_in_a_bridge_group() {
    use drover_driver_testkit::docker::{busybox_image, docker, pause_image};
    require_root();
    let (image, pause) = (busybox_image(), pause_image());
    let c = cluster_full(
        "",
        &format!(
            "plugin \"docker\" {{\n  config {{\n    infra_image = \"{pause}\"\n  }}\n}}\n\
             plugin \"raw_exec\" {{\n  config {{\n    enabled = true\n  }}\n}}\n"
        ),
        |_| {},
    );
    let job = format!(
        r#"job "mixed" {{
  group "g" {{
    network {{
      mode = "bridge"
      port "http" {{
        to = 8080
      }}
    }}
    restart {{
      attempts = 0
      mode = "fail"
    }}
    task "web" {{
      driver = "docker"
      template {{
        data        = "docker in the bridge"
        destination = "local/index.html"
      }}
      config {{
        image   = "{image}"
        command = "httpd"
        args    = ["-f", "-p", "8080", "-h", "/local"]
      }}
    }}
    task "side" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "readlink /proc/self/ns/net > $NOMAD_TASK_DIR/ns; ip -o link > $NOMAD_TASK_DIR/links; exec sleep 3600"]
      }}
    }}
  }}
}}
"#
    );
    c.server.run_job(&write_job(&c.dir, "mixed", &job));
    let a = running_allocs(&c.server, "mixed", 1).remove(0);
    let alloc = id(&a);
    let ip = alloc_ip(&a);
    assert!(ip.starts_with("172.26."), "{a:#}");
    // The driver made the namespace: no client-made one, an infra container instead.
    assert!(netns_inode(&alloc).is_none());
    let infra = format!("nomad_init_{alloc}");
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &infra]);
    let infra_ns = std::fs::read_link(format!("/proc/{}/ns/net", pid.trim()))
        .unwrap()
        .display()
        .to_string();
    // The raw_exec task is in the same namespace, and sees only its interfaces.
    let task_dir = c.dir.join("client/alloc").join(&alloc).join("side/local");
    let (ns, links) = wait_for(
        "the raw_exec task's report",
        Duration::from_secs(30),
        || {
            let ns = std::fs::read_to_string(task_dir.join("ns")).ok()?;
            let links = std::fs::read_to_string(task_dir.join("links")).ok()?;
            (!links.is_empty()).then_some((ns, links))
        },
    );
    assert_eq!(ns.trim(), infra_ns);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert_eq!(names, ["lo", "eth0"], "{links}");
    // The docker task serves on 8080 inside the namespace, reached from the host through
    // the mapped port.
    let (host_ip, port) = host_port(&a);
    let body = wait_for("the docker task's answer", Duration::from_secs(30), || {
        let addr = format!("{host_ip}:{port}").parse().ok()?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.contains("docker in the bridge").then_some(out)
    });
    assert!(body.starts_with("HTTP/1."), "{body}");

    let out = c.server.cli(&["job", "stop", "-detach", "mixed"]);
    assert!(out.status.success());
    let ids = [alloc.clone()];
    let left = wait_for(
        "the network to be torn down",
        Duration::from_secs(60),
        || {
            let mut left = leftovers(&ids, std::slice::from_ref(&ip), None);
            let infra_left = docker(&["ps", "-aq", "--filter", &format!("name={infra}")]);
            if !infra_left.trim().is_empty() {
                left.push(format!("infra container {infra}"));
            }
            left.is_empty().then_some(left)
        },
    );
    assert!(left.is_empty());
}
