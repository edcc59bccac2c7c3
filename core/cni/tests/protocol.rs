//! The exec protocol with small script plugins written by the tests (real processes):
//! environment, stdin, timeouts, bounded output, failures without a JSON error; and
//! VERSION of Debian's real bridge plugin.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use drover_cni::{
    Attachment, CniRuntime, Command, Error, NetworkConfigList, PluginPath, PluginRunner,
    ResultCache,
};

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn attachment() -> Attachment {
    let mut a = Attachment::new("alloc-1", "/var/run/netns/none", "eth0");
    a.args = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("NOMAD_JOB_ID".into(), "web".into()),
    ];
    a.capability_args
        .insert("portMappings".into(), serde_json::json!([{"hostPort": 1}]));
    a
}

#[tokio::test]
async fn plugins_get_the_spec_environment_and_their_config_on_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Each call records its environment and stdin, then prints a result naming itself.
    let body = format!(
        r#"n=$(ls {out} | wc -l)
env | sort > {out}/$n-$CNI_COMMAND-env
cat > {out}/$n-$CNI_COMMAND-stdin
printf '{{"cniVersion":"1.0.0","ips":[{{"address":"10.9.0.%s/24"}}]}}' $((n + 1))"#,
        out = out.display()
    );
    script(&bin, "recorder", &body);
    let net = NetworkConfigList::from_value(serde_json::json!({
        "cniVersion": "1.0.0", "name": "rec",
        "plugins": [
            {"type": "recorder", "first": true},
            {"type": "recorder", "capabilities": {"portMappings": true}}
        ]
    }))
    .unwrap();
    let rt = CniRuntime::new(
        PluginRunner::new(PluginPath::parse(&bin.display().to_string())),
        ResultCache::new(tmp.path().join("cache")),
    );
    let result = rt.add(&net, &attachment()).await.unwrap();
    // Each call writes 2 files, so the calls number 0, 2, 4 ...: the last ADD answers .3.
    assert_eq!(
        result.ips[0].address, "10.9.0.3/24",
        "the last plugin's result"
    );
    rt.del(&net, &attachment()).await.unwrap();

    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let env = read("0-ADD-env");
    for line in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=alloc-1",
        "CNI_NETNS=/var/run/netns/none",
        "CNI_IFNAME=eth0",
        "CNI_ARGS=IgnoreUnknown=1;NOMAD_JOB_ID=web",
        &format!("CNI_PATH={}", bin.display()),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in\n{env}");
    }
    assert!(
        !env.contains("CARGO"),
        "the agent's environment is not passed on"
    );
    let first: serde_json::Value = serde_json::from_str(&read("0-ADD-stdin")).unwrap();
    assert_eq!(first["name"], "rec");
    assert_eq!(first["cniVersion"], "1.0.0");
    assert_eq!(first["first"], true);
    assert!(first.get("prevResult").is_none());
    assert!(first.get("runtimeConfig").is_none());
    let second: serde_json::Value = serde_json::from_str(&read("2-ADD-stdin")).unwrap();
    assert_eq!(second["prevResult"]["ips"][0]["address"], "10.9.0.1/24");
    assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
    // DEL runs in reverse, each with the cached (final) result.
    let del_first: serde_json::Value = serde_json::from_str(&read("4-DEL-stdin")).unwrap();
    assert_eq!(del_first["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
    assert_eq!(del_first["prevResult"]["ips"][0]["address"], "10.9.0.3/24");
    let del_last: serde_json::Value = serde_json::from_str(&read("6-DEL-stdin")).unwrap();
    assert_eq!(del_last["first"], true);
    assert!(read("4-DEL-env").contains("CNI_COMMAND=DEL"));
}

fn runner(bin: &Path) -> PluginRunner {
    PluginRunner::new(PluginPath::parse(&bin.display().to_string()))
}

#[tokio::test]
async fn a_plugin_that_hangs_is_killed_at_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("pid");
    let childfile = tmp.path().join("child");
    // The plugin starts a child of its own (as bridge starts iptables), then hangs.
    script(
        tmp.path(),
        "sleepy",
        &format!(
            "sleep 600 &\necho $! > {}\necho $$ > {}\nwait",
            childfile.display(),
            pidfile.display()
        ),
    );
    let mut r = runner(tmp.path());
    r.timeout = Duration::from_millis(500);
    let e = r
        .run(Command::Add, "sleepy", &attachment(), b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Timeout { plugin, .. } if plugin == "sleepy"),
        "{e}"
    );
    for file in [&pidfile, &childfile] {
        let pid = std::fs::read_to_string(file).unwrap();
        // Killed: gone (or a zombie until its reaper runs).
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        });
        assert!(gone, "{} {pid} still runs", file.display());
    }
}

#[tokio::test]
async fn output_beyond_the_bound_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    script(tmp.path(), "chatty", "exec yes");
    script(
        tmp.path(),
        "noisy",
        "head -c 20000000 /dev/zero >&2; echo '{}'",
    );
    let mut r = runner(tmp.path());
    r.max_output = 4096;
    let e = r
        .run(Command::Add, "chatty", &attachment(), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::OutputTooLarge {
                stream: "stdout",
                limit: 4096,
                ..
            }
        ),
        "{e}"
    );
    // A lot of stderr is drained, not kept, and does not fail the call.
    let out = r
        .run(Command::Add, "noisy", &attachment(), Vec::new())
        .await
        .unwrap();
    assert_eq!(out, b"{}\n");
}

#[tokio::test]
async fn a_failure_without_a_json_error_quotes_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    script(tmp.path(), "broken", "echo 'cannot frobnicate' >&2; exit 3");
    script(tmp.path(), "garbage", "echo '{\"cniVersion\":' ; exit 0");
    script(
        tmp.path(),
        "erring",
        r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"try again later","details":"busy"}'; exit 1"#,
    );
    let r = runner(tmp.path());
    let e = r
        .run(Command::Del, "broken", &attachment(), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Failed { plugin, stderr, command: Command::Del, .. }
            if plugin == "broken" && stderr == "cannot frobnicate"),
        "{e}"
    );
    let e = r
        .run(Command::Add, "erring", &attachment(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "CNI plugin erring ADD failed: try again later: busy (code 11)"
    );
    let net = NetworkConfigList::from_value(serde_json::json!({
        "cniVersion": "1.0.0", "name": "g", "plugins": [{"type": "garbage"}]
    }))
    .unwrap();
    let rt = CniRuntime::new(r, ResultCache::new(tmp.path().join("cache")));
    let e = rt.add(&net, &attachment()).await.unwrap_err();
    let Error::Add { source, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        matches!(&**source, Error::BadResult { plugin, .. } if plugin == "garbage"),
        "{e}"
    );
    assert!(!tmp.path().join("cache").join("g~alloc-1.json").exists());
}

#[tokio::test]
async fn bad_runtime_parameters_never_reach_a_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran");
    script(
        tmp.path(),
        "p",
        &format!("touch {}; echo '{{}}'", marker.display()),
    );
    let net = NetworkConfigList::from_value(serde_json::json!({
        "cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "p"}]
    }))
    .unwrap();
    let rt = CniRuntime::new(runner(tmp.path()), ResultCache::new(tmp.path().join("c")));
    let mut a = attachment();
    a.args.push(("K".into(), "v;IP=10.0.0.9".into()));
    assert!(matches!(
        rt.add(&net, &a).await,
        Err(Error::Parameter { .. })
    ));
    let mut a = attachment();
    a.container_id = "../../etc".into();
    assert!(matches!(
        rt.del(&net, &a).await,
        Err(Error::Parameter { .. })
    ));
    assert!(!marker.exists());
}

#[tokio::test]
async fn debian_bridge_answers_version() {
    common::require_plugins();
    let r = PluginRunner::new(PluginPath::parse(common::DEBIAN_CNI_PATH));
    let info = r.version("bridge").await.unwrap();
    for v in drover_cni::SUPPORTED_VERSIONS {
        assert!(info.supported_versions.iter().any(|s| s == v), "{info:?}");
    }
}
