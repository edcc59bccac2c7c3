//! CNI fingerprints and network-aware scheduling against a real agent: the node reports the
//! Debian containernetworking plugins' versions (`plugins.cni.version.<name>`) and its
//! network modes; a group asking for `cni/testnet` waits, explained as a missing network,
//! until the test writes `testnet.conflist` into `cni_config_dir` — then it is placed
//! without an agent restart.

use std::time::Duration;

use drover_tests::*;

/// Debian's `containernetworking-plugins` (tests/run.sh installs it).
const CNI_PATH: &str = "/usr/lib/cni";

const JOB: &str = r#"
job "cninet" {
  group "g" {
    network {
      mode = "cni/testnet"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
    }
  }
}
"#;

const TESTNET: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "testnet",
  "plugins": [
    {"type": "ptp", "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "172.30.99.0/24"}]]}}
  ]
}"#;

#[test]
fn a_cni_network_added_while_a_job_waits_lets_it_place() {
    assert!(
        std::path::Path::new(CNI_PATH).join("bridge").is_file(),
        "the containernetworking plugins are not installed in {CNI_PATH} (tests/run.sh installs containernetworking-plugins)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let conf_dir = tmp.path().join("cni-conf");
    std::fs::create_dir(&conf_dir).unwrap();
    let cfg = tmp.path().join("agent.hcl");
    std::fs::write(
        &cfg,
        format!(
            "client {{\n  cni_path = \"{CNI_PATH}\"\n  cni_config_dir = \"{}\"\n}}\n",
            conf_dir.display()
        ),
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let nodes = agent.get("/v1/nodes").unwrap();
    let node_id = nodes[0]["ID"].as_str().unwrap().to_string();
    let node = agent.get(&format!("/v1/node/{node_id}")).unwrap();
    for plugin in [
        "bridge",
        "host-local",
        "loopback",
        "portmap",
        "firewall",
        "ptp",
    ] {
        let v = &node["Attributes"][format!("plugins.cni.version.{plugin}")];
        assert!(
            v.as_str().is_some_and(|v| !v.is_empty()),
            "no version attribute for {plugin}: {}",
            node["Attributes"]
        );
    }
    let modes: Vec<String> = node["NodeResources"]["Networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Mode"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        modes.iter().any(|m| m == "bridge"),
        "the bridge prerequisites hold here (kernel bridge module, plugins in {CNI_PATH}): {modes:?}"
    );
    assert!(!modes.iter().any(|m| m.starts_with("cni/")), "{modes:?}");

    let job = write_job(tmp.path(), "cninet.hcl", JOB);
    agent.run_job(&job);
    // Blocked, explained as the missing network.
    let explained = wait_for(
        "the evaluation to explain the missing network",
        Duration::from_secs(30),
        || {
            agent
                .get("/v1/job/cninet/evaluations")?
                .as_array()?
                .iter()
                .find_map(|e| {
                    let f = &e["FailedTGAllocs"]["g"]["ConstraintFiltered"];
                    f.get("missing network cni/testnet").cloned()
                })
        },
    );
    assert_eq!(explained, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        agent.allocs("cninet").is_empty(),
        "placed without the network"
    );

    // The operator adds the network: the node picks it up and the job is placed.
    std::fs::write(conf_dir.join("testnet.conflist"), TESTNET).unwrap();
    let node = wait_for(
        "the node to report cni/testnet",
        Duration::from_secs(30),
        || {
            let n = agent.get(&format!("/v1/node/{node_id}"))?;
            n["NodeResources"]["Networks"]
                .as_array()?
                .iter()
                .any(|x| x["Mode"] == "cni/testnet")
                .then_some(n)
        },
    );
    assert!(node["Attributes"]["plugins.cni.version.ptp"].is_string());
    let alloc = wait_for("the job to be placed", Duration::from_secs(30), || {
        agent.allocs("cninet").into_iter().next()
    });
    assert_eq!(alloc["NodeID"], node_id);
    assert_eq!(alloc["TaskGroup"], "g");
}
