//! Bridge-mode network setup and teardown per allocation: Drover's against the reference CNI
//! runtime in the same run. Root only (namespaces, iptables).
//!
//! - Drover: what the client's network hook does for a bridge group — a named namespace
//!   (`NamedNetns`), then ADD of Nomad's built-in bridge conflist (`bridge_conflist`) through
//!   `drover-cni` with the allocation's attachment (`CNI_ARGS`, one port mapped TCP and UDP,
//!   the result cached); teardown is DEL from the cache, then the namespace's removal.
//! - Peer: libcni (Debian's `golang-github-appc-cni-dev`, `tests/go/cnipeer`) driving the same
//!   conflist with the same port mappings, namespaces made with `ip netns add`.
//!
//! Each round sets up `BENCH_NETWORK_ALLOCS` (default 100) allocations on one bridge, all of
//! them live at once, then tears them all down; rounds alternate Drover / peer, three each.
//! Growth compares the last ten setups of a round with its first ten: it stays near 1 when
//! setup time does not grow with the number of live allocations (and their rules). After
//! every round nothing of its allocations may be left — namespaces, veths on the bridge,
//! host-local leases, iptables/nft rules naming them — or the benchmark fails.

use std::process::Command;
use std::time::{Duration, Instant};

use drover_client::{BridgeNetwork, NamedNetns, bridge_conflist, cni_attachment};
use drover_cni::{CniRuntime, NetworkConfigList, PluginPath, PluginRunner, ResultCache};
use drover_model::{AllocatedPort, Allocation, Job, SharedResources, TaskGroup};
use drover_tests::go::cni_peer;
use drover_tests::percentile;

const CNI_PATH: &str = "/usr/lib/cni";
const BRIDGE: &str = "drvbench0";
const SUBNET: &str = "10.253.0.0/16";
const NETWORK: &str = "drvbench";
const ROUNDS: usize = 3;
const BASE_PORT: u16 = 41000;

fn main() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the network benchmark needs root");
    let n: usize = std::env::var("BENCH_NETWORK_ALLOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let mut list: NetworkConfigList = bridge_conflist(&BridgeNetwork {
        name: BRIDGE.into(),
        subnet: SUBNET.into(),
        ..BridgeNetwork::default()
    });
    list.name = NETWORK.into();
    let conflist = tmp.path().join("drvbench.conflist");
    std::fs::write(&conflist, list.to_value().to_string()).unwrap();
    let peer = cni_peer();
    let cni = CniRuntime::new(
        PluginRunner::new(PluginPath::parse(CNI_PATH)),
        ResultCache::new(tmp.path().join("cache")),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut drover, mut libcni) = (Samples::default(), Samples::default());
    for round in 0..ROUNDS {
        let prefix = format!("drvbench{}r{round}", std::process::id());
        drover.add(drover_round(&rt, &cni, &list, &prefix, n));
        assert_nothing_left(&prefix);
        let out = Command::new(&peer)
            .args(["bench", CNI_PATH])
            .arg(&conflist)
            .args([n.to_string(), BASE_PORT.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cnipeer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        libcni.add(parse_peer(&String::from_utf8_lossy(&out.stdout)));
        assert_nothing_left("cnipeer-");
        println!(
            "round {round}: setup p50 drover {:.1} ms, libcni {:.1} ms",
            ms(percentile(
                &mut drover.rounds.last().unwrap().0.clone(),
                0.5
            )),
            ms(percentile(
                &mut libcni.rounds.last().unwrap().0.clone(),
                0.5
            )),
        );
    }
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();

    for (name, s) in [("drover", &drover), ("libcni", &libcni)] {
        let (mut setup, mut teardown) = s.all();
        for (what, samples) in [("setup", &mut setup), ("teardown", &mut teardown)] {
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                println!(
                    "BENCH network_bridge_{what}_{label}_{name} {:.1} ms",
                    ms(percentile(samples, q))
                );
            }
        }
        let (first, last, growth) = s.growth();
        println!("BENCH network_bridge_setup_first10_mean_{name} {first:.1} ms");
        println!("BENCH network_bridge_setup_last10_mean_{name} {last:.1} ms");
        println!("BENCH network_bridge_setup_growth_{name} {growth:.2} x");
    }
    let (mut d, _) = drover.all();
    let (mut l, _) = libcni.all();
    println!(
        "BENCH network_bridge_setup_p50_drover_over_libcni {:.2} x",
        ms(percentile(&mut d, 0.5)) / ms(percentile(&mut l, 0.5))
    );
    println!("BENCH network_bridge_leftovers_after_teardown 0 objects");
}

/// Setup and teardown times of each round.
#[derive(Default)]
struct Samples {
    rounds: Vec<(Vec<Duration>, Vec<Duration>)>,
}

impl Samples {
    fn add(&mut self, round: (Vec<Duration>, Vec<Duration>)) {
        self.rounds.push(round);
    }

    fn all(&self) -> (Vec<Duration>, Vec<Duration>) {
        let setup = self.rounds.iter().flat_map(|r| r.0.clone()).collect();
        let teardown = self.rounds.iter().flat_map(|r| r.1.clone()).collect();
        (setup, teardown)
    }

    /// The mean of the first ten setups of a round and of its last ten (the last ones run
    /// with every other allocation of the round live), averaged over the rounds, and their
    /// ratio.
    fn growth(&self) -> (f64, f64, f64) {
        let mean = |s: &[Duration]| s.iter().map(|d| ms(*d)).sum::<f64>() / s.len() as f64;
        let (mut first, mut last) = (0.0, 0.0);
        for (setup, _) in &self.rounds {
            let k = setup.len().min(10);
            first += mean(&setup[..k]);
            last += mean(&setup[setup.len() - k..]);
        }
        let n = self.rounds.len() as f64;
        (first / n, last / n, last / first)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `n` allocations set up as the network hook does, all live, then torn down.
fn drover_round(
    rt: &tokio::runtime::Runtime,
    cni: &CniRuntime,
    list: &NetworkConfigList,
    prefix: &str,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let netns = NamedNetns::host();
    let job = Job {
        id: "bench".into(),
        namespace: "default".into(),
        ..Job::default()
    };
    let group = TaskGroup {
        name: "g".into(),
        ..TaskGroup::default()
    };
    let (mut setup, mut teardown) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}a{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let alloc = Allocation {
            id: id.clone(),
            shared_resources: SharedResources {
                disk_mb: 0,
                ports: vec![AllocatedPort {
                    label: "http".into(),
                    value: BASE_PORT + i as u16,
                    to: 8080,
                    host_ip: String::new(),
                }],
            },
            ..Allocation::default()
        };
        let start = Instant::now();
        let path = netns.create(id).expect("namespace");
        let attachment = cni_attachment(&alloc, &job, &group, "global", path);
        rt.block_on(cni.add(list, &attachment)).expect("ADD");
        setup.push(start.elapsed());
    }
    for id in &ids {
        let start = Instant::now();
        let deleted = rt.block_on(cni.del_cached(&list.name, id)).expect("DEL");
        assert!(deleted, "no cached attachment for {id}");
        netns.remove(id).expect("namespace removal");
        teardown.push(start.elapsed());
    }
    (setup, teardown)
}

/// cnipeer's `setup <us>` / `teardown <us>` lines.
fn parse_peer(out: &str) -> (Vec<Duration>, Vec<Duration>) {
    let (mut setup, mut teardown) = (Vec::new(), Vec::new());
    for line in out.lines() {
        let Some((what, us)) = line.split_once(' ') else {
            continue;
        };
        let d = Duration::from_micros(us.trim().parse().expect("microseconds"));
        match what {
            "setup" => setup.push(d),
            "teardown" => teardown.push(d),
            _ => {}
        }
    }
    assert!(!setup.is_empty() && setup.len() == teardown.len(), "{out}");
    (setup, teardown)
}

/// Panics listing what a round left behind: namespaces, veths on the bridge, host-local
/// leases or iptables/nft rules naming its containers.
fn assert_nothing_left(prefix: &str) {
    let mut left = Vec::new();
    for e in std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            left.push(format!("namespace {name}"));
        }
    }
    let veths = sh(&format!("ip -o link show master {BRIDGE} 2>/dev/null"));
    left.extend(veths.lines().map(|l| format!("veth {l}")));
    for e in std::fs::read_dir(format!("/var/lib/cni/networks/{NETWORK}"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if text.contains(prefix) {
            left.push(format!("lease {}", e.path().display()));
        }
    }
    let rules = sh("iptables-save; nft list ruleset 2>/dev/null");
    left.extend(
        rules
            .lines()
            .filter(|l| l.contains(prefix))
            .map(|l| format!("rule {l}")),
    );
    assert!(left.is_empty(), "left behind: {left:#?}");
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
