//! ADD, CHECK and DEL of a real bridge network (Debian's loopback, bridge, host-local and
//! portmap) in a real named network namespace. Needs root.

mod common;

use common::BridgeNet;
use drover_cni::{CniResult, CniRuntime, Command, Error, PluginConfig};

/// After ADD: the address is in the subnet, on eth0 in the namespace, leased, port-mapped,
/// cached.
async fn assert_attached(t: &BridgeNet, rt: &CniRuntime, result: &CniResult) -> String {
    let ip = result.address_on("eth0").expect("an address on eth0");
    let (addr, prefix) = ip.cidr().expect("a CIDR address");
    let addr = addr.to_string();
    assert!(
        addr.starts_with(&format!("{}.", t.prefix)),
        "{addr} outside {}.0/24",
        t.prefix
    );
    assert_eq!(prefix, 24);
    assert_eq!(
        ip.gateway.as_deref(),
        Some(format!("{}.1", t.prefix).as_str())
    );
    let shown = t.netns.addr("eth0").expect("eth0 in the namespace");
    assert!(shown.contains(&format!("{addr}/24")), "ip -n addr: {shown}");
    assert_eq!(t.leases(), std::slice::from_ref(&addr));
    assert!(
        !t.bridge_ports().is_empty(),
        "the host side of the veth is on the bridge"
    );
    let rules = t.nat_rules();
    assert!(
        rules.iter().any(|r| r.contains(&t.host_port.to_string())),
        "portmap's DNAT for {}: {rules:?}",
        t.host_port
    );
    let cached = rt
        .cache()
        .load(&t.net.name, &t.attachment.container_id)
        .await
        .unwrap()
        .expect("ADD is cached");
    assert_eq!(&cached.result, result);
    addr
}

/// After DEL: no eth0, veth, lease, NAT rule or cache entry of this container is left.
async fn assert_detached(t: &BridgeNet, rt: &CniRuntime) {
    assert_eq!(t.netns.addr("eth0"), None, "eth0 is gone");
    assert!(
        t.bridge_ports().is_empty(),
        "veth left: {:?}",
        t.bridge_ports()
    );
    assert!(t.leases().is_empty(), "leases left: {:?}", t.leases());
    assert!(t.nat_rules().is_empty(), "rules left: {:?}", t.nat_rules());
    let cached = rt
        .cache()
        .load(&t.net.name, &t.attachment.container_id)
        .await;
    assert_eq!(cached.unwrap(), None, "the cache entry is removed");
}

async fn add_check_del(version: &str) {
    let t = BridgeNet::new(version);
    let rt = t.runtime();
    let result = rt.add(&t.net, &t.attachment).await.unwrap();
    assert_eq!(result.cni_version, version);
    if version == "0.4.0" {
        assert_eq!(result.ips[0].version.as_deref(), Some("4"));
    }
    assert_attached(&t, &rt, &result).await;
    // Debian's portmap 1.1.1 fails CHECK here (IPv4 only, #819): the runtime tolerates it.
    rt.check(&t.net, &t.attachment).await.unwrap();
    rt.del(&t.net, &t.attachment).await.unwrap();
    assert_detached(&t, &rt).await;
    // DEL again (nothing cached, nothing there) is not an error, as the spec asks of plugins.
    rt.del(&t.net, &t.attachment).await.unwrap();
}

#[tokio::test]
async fn add_check_del_a_bridge_network_cni_1_0_0() {
    add_check_del("1.0.0").await;
}

#[tokio::test]
async fn add_check_del_a_bridge_network_cni_0_4_0() {
    add_check_del("0.4.0").await;
}

#[tokio::test]
async fn check_finds_a_broken_attachment() {
    let t = BridgeNet::new("1.0.0");
    let rt = t.runtime();
    rt.add(&t.net, &t.attachment).await.unwrap();
    let (ok, out) = common::run("ip", &["-n", &t.netns.name, "link", "del", "eth0"]);
    assert!(ok, "{out}");
    let e = rt.check(&t.net, &t.attachment).await.unwrap_err();
    assert!(
        matches!(&e, Error::Plugin { plugin, command: Command::Check, .. } if plugin == "bridge"),
        "{e}"
    );
    rt.del(&t.net, &t.attachment).await.unwrap();
}

#[tokio::test]
async fn check_is_skipped_when_the_list_disables_it() {
    let mut t = BridgeNet::new("1.0.0");
    t.net.disable_check = true;
    let rt = t.runtime();
    // Nothing was added: a CHECK that ran would fail for want of a cached result.
    rt.check(&t.net, &t.attachment).await.unwrap();
    t.net.disable_check = false;
    let e = rt.check(&t.net, &t.attachment).await.unwrap_err();
    assert!(matches!(e, Error::NotCached { .. }), "{e}");
}

#[tokio::test]
async fn del_after_a_crash_needs_only_the_cache() {
    let t = BridgeNet::new("1.0.0");
    let added = {
        let rt = t.runtime();
        rt.add(&t.net, &t.attachment).await.unwrap()
    };
    // A new runtime (the agent restarted) that knows neither the conflist nor the attachment.
    let rt = t.runtime();
    assert_attached(&t, &rt, &added).await;
    let keys = rt.cache().keys().await.unwrap();
    assert_eq!(
        keys,
        [(t.net.name.clone(), t.attachment.container_id.clone())]
    );
    assert!(
        rt.del_cached(&t.net.name, &t.attachment.container_id)
            .await
            .unwrap()
    );
    assert_detached(&t, &rt).await;
    assert!(
        !rt.del_cached(&t.net.name, &t.attachment.container_id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_missing_plugin_is_named_and_what_was_added_is_deleted() {
    let mut t = BridgeNet::new("1.0.0");
    let missing = PluginConfig {
        plugin_type: "drover-no-such-plugin".into(),
        capabilities: Default::default(),
        raw: serde_json::json!({"type": "drover-no-such-plugin"})
            .as_object()
            .unwrap()
            .clone(),
    };
    t.net.plugins[2] = missing;
    let rt = t.runtime();
    let e = rt.add(&t.net, &t.attachment).await.unwrap_err();
    let Error::Add {
        source, rollback, ..
    } = &e
    else {
        panic!("not an ADD error: {e}");
    };
    assert!(
        matches!(&**source, Error::PluginNotFound { plugin, .. } if plugin == "drover-no-such-plugin"),
        "{e}"
    );
    assert!(e.to_string().contains("drover-no-such-plugin"), "{e}");
    // The rollback's DEL of the missing plugin fails the same way; bridge and loopback ran.
    assert_eq!(rollback.len(), 1, "{rollback:?}");
    assert_detached(&t, &rt).await;
}

#[tokio::test]
async fn a_plugins_json_error_is_surfaced() {
    let mut t = BridgeNet::new("1.0.0");
    t.net.plugins[1].raw["ipam"]["ranges"] = serde_json::json!([[{"subnet": "10.0.0.0/99"}]]);
    let rt = t.runtime();
    let e = rt.add(&t.net, &t.attachment).await.unwrap_err();
    let (plugin, msg) = e.plugin_failure().expect("a plugin failure");
    assert_eq!(plugin, "bridge");
    assert!(msg.contains("10.0.0.0/99"), "{msg}");
    let Error::Add { source, .. } = &e else {
        panic!("{e}");
    };
    assert!(
        matches!(&**source, Error::Plugin { command: Command::Add, code, .. } if *code != 0),
        "{e}"
    );
    assert!(
        e.to_string().contains("CNI plugin bridge ADD failed"),
        "{e}"
    );
    assert_detached(&t, &rt).await;
}

#[tokio::test]
async fn del_from_the_cache_works_when_the_namespace_is_already_gone() {
    let t = BridgeNet::new("1.0.0");
    {
        let rt = t.runtime();
        rt.add(&t.net, &t.attachment).await.unwrap();
    }
    // The allocation's namespace went away while the agent was down (its veth with it).
    let (ok, out) = common::run("ip", &["netns", "del", &t.netns.name]);
    assert!(ok, "{out}");
    let rt = t.runtime();
    assert!(
        rt.del_cached(&t.net.name, &t.attachment.container_id)
            .await
            .unwrap()
    );
    assert!(t.leases().is_empty(), "leases left: {:?}", t.leases());
    assert!(t.nat_rules().is_empty(), "rules left: {:?}", t.nat_rules());
    assert!(t.bridge_ports().is_empty());
    assert!(rt.cache().keys().await.unwrap().is_empty());
}
