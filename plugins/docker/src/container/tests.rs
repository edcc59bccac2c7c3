//! The translation of hostile task configs.

use bollard::models::{MountBindOptionsPropagationEnum, MountType};
use drover_plugin_sdk::proto::driver::{Mount as HostVolume, PortMapping, Resources};
use serde_json::json;

use super::*;

fn task(config: serde_json::Value) -> Task {
    Task {
        id: "a1/web/0".into(),
        name: "web".into(),
        alloc_id: "a1".into(),
        job_name: "job".into(),
        group_name: "grp".into(),
        driver_config_json: serde_json::to_vec(&config).unwrap(),
        env: [
            ("NOMAD_TASK_DIR", "/data/a1/web/local"),
            ("NOMAD_SECRETS_DIR", "/data/a1/web/secrets"),
            ("NOMAD_ALLOC_DIR", "/data/a1/alloc"),
            ("FOO", "bar"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        resources: Some(Resources {
            cpu_mhz: 100,
            memory_mb: 64,
            ..Default::default()
        }),
        task_dir: "/data/a1/web".into(),
        alloc_dir: "/data/a1/alloc".into(),
        ports: vec![
            PortMapping {
                label: "http".into(),
                value: 23000,
                to: 8080,
                host_ip: "10.1.2.3".into(),
            },
            PortMapping {
                label: "admin".into(),
                value: 23001,
                to: 0,
                host_ip: "10.1.2.3".into(),
            },
        ],
        ..Default::default()
    }
}

fn spec_with(config: serde_json::Value, settings: &Settings) -> Result<ContainerSpec, SpecError> {
    let t = task(config);
    let cfg = parse_config(&t)?;
    build(&t, &cfg, &cfg.image, settings, 1000, None)
}

fn spec(config: serde_json::Value) -> Result<ContainerSpec, SpecError> {
    spec_with(config, &Settings::default())
}

fn privileged_settings() -> Settings {
    Settings {
        allow_privileged: true,
        ..Settings::default()
    }
}

fn hc(s: &ContainerSpec) -> &HostConfig {
    s.body.host_config.as_ref().unwrap()
}

#[test]
fn basics_command_env_labels_and_task_dirs() {
    let s = spec(json!({
        "image": "busybox:1", "command": "/bin/sh", "args": ["-c", "true"],
        "work_dir": "/w", "hostname": "h", "labels": {"team": "a"},
    }))
    .unwrap();
    assert_eq!(s.name, "a1-web-0");
    assert_eq!(s.body.cmd.as_ref().unwrap(), &["/bin/sh", "-c", "true"]);
    let env = s.body.env.as_ref().unwrap();
    for want in [
        "NOMAD_TASK_DIR=/local",
        "NOMAD_SECRETS_DIR=/secrets",
        "NOMAD_ALLOC_DIR=/alloc",
        "FOO=bar",
    ] {
        assert!(env.contains(&want.to_string()), "{want} in {env:?}");
    }
    let labels = s.body.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_MANAGED], "true");
    assert_eq!(labels[LABEL_ALLOC_ID], "a1");
    assert_eq!(labels[LABEL_TASK_NAME], "web");
    assert_eq!(labels[LABEL_TASK_ID], "a1/web/0");
    assert_eq!(labels["team"], "a");
    assert!(
        !labels.contains_key(LABEL_JOB_NAME),
        "extra_labels is empty by default"
    );
    assert!(
        !labels.contains_key(LABEL_NODE_ID),
        "no node: no node label"
    );
    let on_node = Settings {
        node_id: "n1".into(),
        ..Settings::default()
    };
    let s2 = spec_with(json!({ "image": "busybox:1" }), &on_node).unwrap();
    assert_eq!(s2.body.labels.as_ref().unwrap()[LABEL_NODE_ID], "n1");
    let refused = spec(json!({ "image": "busybox:1", "labels": {"drover.node_id": "x"} }));
    assert!(refused.is_err(), "a job cannot claim another node's label");
    let mounts = hc(&s).mounts.as_ref().unwrap();
    let find = |t: &str| {
        mounts
            .iter()
            .find(|m| m.target.as_deref() == Some(t))
            .unwrap()
    };
    assert_eq!(find("/local").source.as_deref(), Some("/data/a1/web/local"));
    assert_eq!(
        find("/secrets").source.as_deref(),
        Some("/data/a1/web/secrets")
    );
    assert_eq!(find("/alloc").source.as_deref(), Some("/data/a1/alloc"));
    assert_eq!(
        hc(&s).log_config.as_ref().unwrap().typ.as_deref(),
        Some("json-file")
    );
    assert_eq!(hc(&s).cap_drop.as_ref().unwrap(), &["ALL"]);
    assert!(
        !hc(&s)
            .cap_add
            .as_ref()
            .unwrap()
            .contains(&"NET_RAW".to_string())
    );
    assert_eq!(hc(&s).memory, Some(64 << 20));
}

#[test]
fn args_alone_follow_the_entrypoint() {
    let s = spec(json!({"image": "i:1", "args": ["x"], "entrypoint": ["/e"]})).unwrap();
    assert_eq!(s.body.cmd.as_ref().unwrap(), &["x"]);
    assert_eq!(s.body.entrypoint.as_ref().unwrap(), &["/e"]);
    let s = spec(json!({"image": "i:1"})).unwrap();
    assert!(s.body.cmd.is_none() && s.body.entrypoint.is_none());
}

#[test]
fn reserved_labels_and_extra_labels() {
    let e = spec(json!({"image": "i:1", "labels": {"drover.managed": "false"}})).unwrap_err();
    assert!(e.0.contains("drover."), "{e}");
    assert!(
        spec(json!({"image": "i:1", "labels": {"com.hashicorp.nomad.alloc_id": "x"}})).is_err()
    );
    let settings = Settings {
        extra_labels: vec!["job_name".into(), "task_group*".into()],
        ..Settings::default()
    };
    let s = spec_with(json!({"image": "i:1"}), &settings).unwrap();
    let labels = s.body.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_JOB_NAME], "job");
    assert_eq!(labels[LABEL_GROUP_NAME], "grp");
}

#[test]
fn privileged_and_namespace_sharing_need_allow_privileged() {
    for cfg in [
        json!({"image": "i:1", "privileged": true}),
        json!({"image": "i:1", "pid_mode": "host"}),
        json!({"image": "i:1", "ipc_mode": "host"}),
        json!({"image": "i:1", "pid_mode": "container:other"}),
        json!({"image": "i:1", "security_opt": ["seccomp=unconfined"]}),
        json!({"image": "i:1", "security_opt": ["apparmor:unconfined"]}),
        json!({"image": "i:1", "security_opt": ["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}),
        json!({"image": "i:1", "devices": {"host_path": "/dev/fuse"}}),
        json!({"image": "i:1", "oom_score_adj": -500}),
    ] {
        let e = spec(cfg.clone()).unwrap_err();
        assert!(e.0.contains("allow_privileged"), "{cfg}: {e}");
        spec_with(cfg.clone(), &privileged_settings())
            .unwrap_or_else(|e| panic!("{cfg} with allow_privileged: {e}"));
    }
    let s = spec_with(
        json!({"image": "i:1", "privileged": true}),
        &privileged_settings(),
    )
    .unwrap();
    assert_eq!(hc(&s).privileged, Some(true));
    assert!(
        hc(&s).cap_drop.is_none(),
        "a privileged container keeps every capability"
    );
    let e = spec_with(
        json!({"image": "i:1", "devices": {"host_path": "/etc/passwd"}}),
        &privileged_settings(),
    )
    .unwrap_err();
    assert!(e.0.contains("not under /dev"), "{e}");
}

#[test]
fn caps_and_runtimes_are_checked() {
    let e = spec(json!({"image": "i:1", "cap_add": ["sys_admin"]})).unwrap_err();
    assert!(e.0.contains("SYS_ADMIN"), "{e}");
    let s =
        spec(json!({"image": "i:1", "cap_drop": ["chown"], "security_opt": ["no-new-privileges"]}))
            .unwrap();
    assert_eq!(
        hc(&s).security_opt.as_ref().unwrap(),
        &["no-new-privileges"]
    );
    assert!(
        !hc(&s)
            .cap_add
            .as_ref()
            .unwrap()
            .contains(&"CHOWN".to_string())
    );
    assert!(spec(json!({"image": "i:1", "cap_add": ["bogus"]})).is_err());
    let e = spec(json!({"image": "i:1", "runtime": "kata"})).unwrap_err();
    assert!(e.0.contains("allow_runtimes"), "{e}");
    let s = spec(json!({"image": "i:1", "runtime": "runc"})).unwrap();
    assert_eq!(hc(&s).runtime.as_deref(), Some("runc"));
}

#[test]
fn host_binds_need_volumes_enabled_relative_stay_inside() {
    let e = spec(json!({"image": "i:1", "volumes": ["/etc:/x"]})).unwrap_err();
    assert!(e.0.contains("volumes.enabled"), "{e}");
    let e =
        spec(json!({"image": "i:1", "mount": {"type": "bind", "source": "/etc", "target": "/x"}}))
            .unwrap_err();
    assert!(e.0.contains("volumes.enabled"), "{e}");
    for bad in ["../x:/x", "local/../../x:/x"] {
        let e = spec(json!({"image": "i:1", "volumes": [bad]})).unwrap_err();
        assert!(e.0.contains("inside the task directory"), "{bad}: {e}");
    }
    let s = spec(json!({"image": "i:1", "volumes": ["local/data:/data:ro"]})).unwrap();
    let m = hc(&s).mounts.as_ref().unwrap().last().unwrap().clone();
    assert_eq!(m.source.as_deref(), Some("/data/a1/web/local/data"));
    assert_eq!(m.read_only, Some(true));
    assert_eq!(
        s.relative_sources,
        vec![std::path::PathBuf::from("local/data")]
    );
    let enabled = Settings {
        volumes_enabled: true,
        ..Settings::default()
    };
    spec_with(json!({"image": "i:1", "volumes": ["/etc:/x"]}), &enabled).unwrap();
    for bad in [
        json!(["a:relative"]),
        json!(["a:/x/../y"]),
        json!(["a"]),
        json!(["a:/b:c:d"]),
    ] {
        assert!(
            spec(json!({"image": "i:1", "volumes": bad})).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn propagation_needs_allow_privileged() {
    let m = json!({"image": "i:1", "mount": [{"type": "bind", "source": "local/x", "target": "/x",
        "bind_options": {"propagation": "rshared"}}]});
    let e = spec(m.clone()).unwrap_err();
    assert!(e.0.contains("allow_privileged"), "{e}");
    let s = spec_with(m, &privileged_settings()).unwrap();
    let mount = hc(&s).mounts.as_ref().unwrap().last().unwrap().clone();
    assert_eq!(mount.typ, Some(MountType::BIND));
    assert_eq!(
        mount.bind_options.unwrap().propagation,
        Some(MountBindOptionsPropagationEnum::RSHARED)
    );
    spec(
        json!({"image": "i:1", "mount": {"type": "bind", "source": "local/x", "target": "/x",
        "bind_options": {"propagation": "rprivate"}}}),
    )
    .unwrap();
    assert!(spec(json!({"image": "i:1", "volumes": ["local/x:/x:rshared"]})).is_err());
    assert!(
        spec(
            json!({"image": "i:1", "mount": {"type": "bind", "source": "x", "target": "/x",
        "bind_options": {"propagation": "weird"}}})
        )
        .is_err()
    );
}

#[test]
fn volume_and_tmpfs_mounts() {
    let s = spec(json!({"image": "i:1", "mount": [
        {"target": "/v", "source": "named"},
        {"type": "tmpfs", "target": "/t", "tmpfs_options": {"size": 1048576}},
    ]}))
    .unwrap();
    let ms = hc(&s).mounts.as_ref().unwrap();
    let v = ms
        .iter()
        .find(|m| m.target.as_deref() == Some("/v"))
        .unwrap();
    assert_eq!(v.typ, Some(MountType::VOLUME), "volume is the default type");
    let t = ms
        .iter()
        .find(|m| m.target.as_deref() == Some("/t"))
        .unwrap();
    assert_eq!(t.tmpfs_options.as_ref().unwrap().size_bytes, Some(1048576));
    let e = spec(json!({"image": "i:1", "mount": {"target": "/v", "source": "n",
        "volume_options": {"driver_config": {"name": "local", "options": {"device": "/etc", "o": "bind"}}}}}))
    .unwrap_err();
    assert!(e.0.contains("volumes.enabled"), "{e}");
    assert!(spec(json!({"image": "i:1", "mount": {"target": "/v", "source": "/etc"}})).is_err());
    assert!(spec(json!({"image": "i:1", "mount": {"type": "npipe", "target": "/v"}})).is_err());
    assert!(spec(json!({"image": "i:1", "mount": {"type": "tmpfs", "target": "rel"}})).is_err());
}

#[test]
fn host_volumes_from_the_scheduler() {
    let mut t = task(json!({"image": "i:1"}));
    t.mounts.push(HostVolume {
        host_path: "/srv/vol".into(),
        task_path: "/vol".into(),
        read_only: true,
    });
    let cfg = parse_config(&t).unwrap();
    let s = build(&t, &cfg, "i:1", &Settings::default(), 1000, None).unwrap();
    let m = hc(&s)
        .mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.target.as_deref() == Some("/vol"))
        .unwrap()
        .clone();
    assert_eq!(m.source.as_deref(), Some("/srv/vol"));
    assert_eq!(m.read_only, Some(true));
    t.mounts[0].task_path = "/vol/../etc".into();
    assert!(build(&t, &cfg, "i:1", &Settings::default(), 1000, None).is_err());
}

#[test]
fn ports_published_unless_the_network_is_not_ours() {
    let s = spec(json!({"image": "i:1", "ports": ["http"]})).unwrap();
    let b = hc(&s).port_bindings.as_ref().unwrap();
    assert!(b.contains_key("8080/tcp") && b.contains_key("8080/udp"));
    assert!(!b.contains_key("23001/tcp"), "admin is not listed");
    assert_eq!(s.body.exposed_ports.as_ref().unwrap().len(), 2);
    for mode in ["container:abc", "host", "none"] {
        let s = spec(json!({"image": "i:1", "ports": ["http"], "network_mode": mode})).unwrap();
        assert!(hc(&s).port_bindings.is_none(), "{mode}");
        assert_eq!(hc(&s).network_mode.as_deref(), Some(mode));
    }
    assert!(spec(json!({"image": "i:1", "ports": ["nope"]})).is_err());
}

#[test]
fn limits_and_misc_keys() {
    let s = spec(json!({"image": "i:1", "pids_limit": 50, "shm_size": 1024, "readonly_rootfs": true,
        "sysctl": {"net.core.somaxconn": "512"}, "ulimit": {"nofile": "100:200"}, "init": true,
        "tty": true, "interactive": true, "dns_servers": ["1.1.1.1"], "extra_hosts": ["a:1.2.3.4"],
        "healthchecks": {"disable": true}, "logging": {"type": "local", "config": {"max-size": "1m"}},
        "storage_opt": {"size": "1G"}, "group_add": ["10"], "oom_score_adj": 100,
        "memory_hard_limit": 128}))
    .unwrap();
    let h = hc(&s);
    assert_eq!(h.pids_limit, Some(50));
    assert_eq!(h.shm_size, Some(1024));
    assert_eq!(h.readonly_rootfs, Some(true));
    assert_eq!(h.sysctls.as_ref().unwrap()["net.core.somaxconn"], "512");
    assert_eq!(h.ulimits.as_ref().unwrap()[0].hard, Some(200));
    assert_eq!(h.init, Some(true));
    assert_eq!(h.dns.as_ref().unwrap(), &["1.1.1.1"]);
    assert_eq!(h.log_config.as_ref().unwrap().typ.as_deref(), Some("local"));
    assert_eq!(h.memory, Some(128 << 20));
    assert_eq!(h.memory_reservation, Some(64 << 20));
    assert_eq!(h.oom_score_adj, Some(100));
    assert_eq!(s.body.tty, Some(true));
    assert_eq!(s.body.open_stdin, Some(true));
    assert_eq!(
        s.body.healthcheck.as_ref().unwrap().test.as_ref().unwrap(),
        &["NONE"]
    );
    for bad in [
        json!({"pids_limit": -1}),
        json!({"shm_size": -1}),
        json!({"oom_score_adj": 5000}),
    ] {
        let mut cfg = bad.clone();
        cfg["image"] = json!("i:1");
        assert!(spec(cfg).is_err(), "{bad}");
    }
}

#[test]
fn bad_configs_are_refused() {
    assert!(spec(json!({"image": "i:1", "bogus": 1})).is_err());
    assert!(spec(json!({"command": "x"})).is_err(), "no image");
    assert!(
        spec(json!({"image": "i:1", "env": {"A": "b"}})).is_err(),
        "env is the task's, not config"
    );
    let mut t = task(json!({"image": "i:1"}));
    t.env.insert("A=B".into(), "c".into());
    let cfg = parse_config(&t).unwrap();
    assert!(build(&t, &cfg, "i:1", &Settings::default(), 1000, None).is_err());
    assert_eq!(container_name("/x/y"), "drover--x-y");
}

#[test]
fn a_task_of_a_group_network_joins_the_infra_container_and_publishes_nothing() {
    let mut t = task(json!({"image": "i:1", "ports": ["http"]}));
    t.network_ns_path = "/var/run/docker/netns/abc".into();
    let plain: TaskConfig = serde_json::from_value(json!({"image": "i:1"})).unwrap();
    let s = build(
        &t,
        &plain,
        "i:1",
        &Settings::default(),
        1000,
        Some("infra1"),
    )
    .unwrap();
    let hc = hc(&s);
    assert_eq!(hc.network_mode.as_deref(), Some("container:infra1"));
    assert!(hc.port_bindings.is_none());
    assert!(s.body.exposed_ports.is_none());
    assert!(s.body.hostname.is_none() && hc.dns.is_none());
    for (key, config) in [
        (
            "network_mode",
            json!({"image": "i:1", "network_mode": "bridge"}),
        ),
        ("ports", json!({"image": "i:1", "ports": ["http"]})),
        ("hostname", json!({"image": "i:1", "hostname": "h"})),
        (
            "dns_servers",
            json!({"image": "i:1", "dns_servers": ["1.1.1.1"]}),
        ),
        (
            "dns_search_domains",
            json!({"image": "i:1", "dns_search_domains": ["x"]}),
        ),
        (
            "dns_options",
            json!({"image": "i:1", "dns_options": ["ndots:2"]}),
        ),
        (
            "extra_hosts",
            json!({"image": "i:1", "extra_hosts": ["a:1.2.3.4"]}),
        ),
    ] {
        let cfg: TaskConfig = serde_json::from_value(config).unwrap();
        let e = build(&t, &cfg, "i:1", &Settings::default(), 1000, Some("infra1"))
            .unwrap_err()
            .0;
        assert!(e.starts_with(&format!("{key}:")), "{key}: {e}");
        // Without a group network the same config is fine.
        assert!(
            build(&t, &cfg, "i:1", &Settings::default(), 1000, None).is_ok(),
            "{key}"
        );
    }
}
