//! The keyring on real agents (issue 22): variables encrypted at rest under root keys
//! wrapped by a key-encryption key kept outside the Raft directory; rotation; backups that
//! carry the keyring, restored with the KEK or with a passphrase; a cluster from before the
//! keyring rekeyed and its plaintext purged from the Raft log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_tests::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn send(agent: &Agent, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
    let mut req = http().request(method, format!("{}{path}", agent.address()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn put_var(agent: &Agent, path: &str, value: &str) {
    let body = json!({ "Items": { "secret": value } });
    let (code, text) = send(
        agent,
        reqwest::Method::PUT,
        &format!("/v1/var/{path}"),
        Some(body),
    );
    assert_eq!(code, 200, "PUT {path}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Items"]["secret"], value, "{text}");
    assert!(v.get("Encrypted").is_none(), "{text}");
}

fn read_var(agent: &Agent, path: &str) -> (u16, String) {
    send(
        agent,
        reqwest::Method::GET,
        &format!("/v1/var/{path}"),
        None,
    )
}

fn assert_var(agent: &Agent, path: &str, value: &str) {
    let (code, text) = read_var(agent, path);
    assert_eq!(code, 200, "GET {path}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["Items"]["secret"], value, "{text}");
}

fn keys(agent: &Agent) -> Vec<Value> {
    agent
        .get("/v1/operator/keyring/keys")
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn wait_active_key(agent: &Agent) -> String {
    wait_for("an active root key", LONG, || {
        keys(agent)
            .iter()
            .find(|k| k["State"] == "active")
            .map(|k| k["KeyID"].as_str().unwrap().to_string())
    })
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file()
                && let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(p);
            }
        }
    }
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn server(data: &Path, config: Option<&Path>) -> Agent {
    let mut args = vec!["-server"];
    if let Some(c) = config {
        args.extend(["-config", c.to_str().unwrap()]);
    }
    let a = Agent::start(&args, data, free_port(), free_port());
    a.wait_ready();
    a
}

fn cli_ok(agent: &Agent, args: &[&str]) -> String {
    let out = agent.cli(args);
    assert!(
        out.status.success(),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_err(agent: &Agent, args: &[&str]) -> String {
    let out = agent.cli(args);
    assert!(!out.status.success(), "drover {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn variables_are_ciphertext_on_disk_and_a_raft_copy_without_the_kek_decrypts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("snap.hcl");
    // Snapshots every few entries, so the snapshot file is checked as well as the log.
    std::fs::write(
        &cfg,
        "server {\n  enabled = true\n  raft_snapshot_threshold = 4\n  raft_trailing_logs = 100\n}\n",
    )
    .unwrap();
    let data = tmp.path().join("a");
    let mut a = server(&data, Some(&cfg));
    let key_id = wait_active_key(&a);
    let canary = "canary-7f3a9c-plaintext";
    for i in 0..8 {
        put_var(&a, &format!("app/s{i}"), &format!("{canary}-{i}"));
    }
    assert_var(&a, "app/s3", &format!("{canary}-3"));
    let raft = data.join("server/raft");
    wait_for("a Raft snapshot", LONG, || {
        raft.join("snapshot").exists().then_some(())
    });
    assert!(
        files_containing(&data, canary).is_empty(),
        "plaintext under data_dir: {:?}",
        files_containing(&data, canary)
    );
    // The snapshot and the log do hold the variables (as ciphertext) and the wrapped key.
    let log = std::fs::read_to_string(raft.join("log")).unwrap_or_default();
    let snap = String::from_utf8_lossy(&std::fs::read(raft.join("snapshot")).unwrap()).into_owned();
    assert!(log.contains("Encrypted") || snap.contains("Encrypted"));
    assert!(snap.contains(&key_id) || log.contains(&key_id));
    // The KEK: outside the Raft directory, private.
    let kek = data.join("server/keyring.kek");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let list = cli_ok(&a, &["operator", "root", "keyring", "list"]);
    assert!(list.contains(&key_id) && list.contains("active"), "{list}");
    a.terminate();

    // A copy of the server's data without the KEK (as a stolen disk image of the Raft
    // directory would be): the server starts, the keyring lists, nothing decrypts.
    let copy = tmp.path().join("copy");
    copy_dir(&data, &copy);
    std::fs::remove_file(copy.join("server/keyring.kek")).unwrap();
    let b = server(&copy, None);
    assert_eq!(wait_active_key(&b), key_id);
    let (code, text) = read_var(&b, "app/s3");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("key-encryption key"), "{text}");
    assert!(!text.contains(canary), "{text}");
    let body = json!({ "Items": { "secret": "x" } });
    let (code, text) = send(&b, reqwest::Method::PUT, "/v1/var/new", Some(body));
    assert_eq!(code, 503, "{text}");
    // It did not make a KEK of its own (the keys are wrapped by an existing one).
    assert!(!copy.join("server/keyring.kek").exists());
    assert!(files_containing(&copy, canary).is_empty());
    // The KEK copied in (as an operator would) is picked up without a restart.
    std::fs::copy(&kek, copy.join("server/keyring.kek")).unwrap();
    assert_var(&b, "app/s3", &format!("{canary}-3"));
}

#[test]
fn rotation_and_full_rotation_keep_every_variable_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let a = server(&tmp.path().join("a"), None);
    let first = wait_active_key(&a);
    for i in 0..40 {
        put_var(&a, &format!("r/v{i}"), &format!("value-{i}"));
    }
    let out = cli_ok(&a, &["operator", "root", "keyring", "rotate"]);
    let ks = keys(&a);
    assert_eq!(ks.len(), 2, "{ks:?}");
    let second = ks.iter().find(|k| k["State"] == "active").unwrap()["KeyID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, first);
    assert!(out.contains(&second), "{out}");
    assert!(
        ks.iter()
            .any(|k| k["KeyID"] == first.as_str() && k["State"] == "inactive")
    );
    put_var(&a, "r/after", "after-rotation");
    for i in 0..40 {
        assert_var(&a, &format!("r/v{i}"), &format!("value-{i}"));
    }
    // The old key still encrypts the first forty: it cannot go.
    let err = cli_err(&a, &["operator", "root", "keyring", "remove", &first]);
    assert!(err.contains("still encrypts 40 variable"), "{err}");
    let err = cli_err(&a, &["operator", "root", "keyring", "remove", &second]);
    assert!(err.contains("active key"), "{err}");

    // A full rotation re-encrypts everything in the background (in batches), then
    // deprecates the old keys.
    cli_ok(&a, &["operator", "root", "keyring", "rotate", "-full"]);
    let third = wait_active_key(&a);
    assert!(third != first && third != second);
    wait_for("old keys deprecated", LONG, || {
        let ks = keys(&a);
        ks.iter()
            .filter(|k| k["KeyID"] != third.as_str())
            .all(|k| k["State"] == "deprecated")
            .then_some(())
    });
    for i in 0..40 {
        assert_var(&a, &format!("r/v{i}"), &format!("value-{i}"));
    }
    assert_var(&a, "r/after", "after-rotation");
    cli_ok(&a, &["operator", "root", "keyring", "remove", &first]);
    cli_ok(&a, &["operator", "root", "keyring", "remove", &second]);
    assert_eq!(keys(&a).len(), 1);
    for i in 0..40 {
        assert_var(&a, &format!("r/v{i}"), &format!("value-{i}"));
    }
}

#[test]
fn snapshots_restore_keys_and_variables_with_the_kek_or_a_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let kek = tmp.path().join("kek/one.kek");
    let cfg = tmp.path().join("one.hcl");
    std::fs::write(
        &cfg,
        format!("keyring \"file\" {{\n  path = \"{}\"\n}}\n", kek.display()),
    )
    .unwrap();
    let data = tmp.path().join("a");
    let mut a = server(&data, Some(&cfg));
    let key_id = wait_active_key(&a);
    put_var(&a, "backup/db", "restored-secret");
    let plain = tmp.path().join("plain.snap");
    let sealed = tmp.path().join("sealed.snap");
    cli_ok(
        &a,
        &["operator", "snapshot", "save", plain.to_str().unwrap()],
    );
    let err = cli_err(
        &a,
        &[
            "operator",
            "snapshot",
            "save",
            "-passphrase",
            "short",
            sealed.to_str().unwrap(),
        ],
    );
    assert!(err.contains("at least 8"), "{err}");
    cli_ok(
        &a,
        &[
            "operator",
            "snapshot",
            "save",
            "-passphrase",
            "correct horse battery",
            sealed.to_str().unwrap(),
        ],
    );
    for f in [&plain, &sealed] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.contains("restored-secret"),
            "plaintext in {}",
            f.display()
        );
        assert!(text.contains(&key_id));
    }
    assert!(
        std::fs::read_to_string(&sealed)
            .unwrap()
            .contains("argon2id")
    );

    // The same KEK, the data wiped: the plain backup restores.
    a.terminate();
    std::fs::remove_dir_all(&data).unwrap();
    a.start_again();
    a.wait_ready();
    wait_active_key(&a);
    cli_ok(
        &a,
        &["operator", "snapshot", "restore", plain.to_str().unwrap()],
    );
    assert_var(&a, "backup/db", "restored-secret");
    assert!(
        keys(&a)
            .iter()
            .any(|k| k["KeyID"] == key_id.as_str() && k["State"] == "active")
    );
    a.terminate();

    // Another cluster, another KEK: the plain backup is refused, the sealed one needs the
    // right passphrase.
    let b = server(&tmp.path().join("b"), None);
    wait_active_key(&b);
    let err = cli_err(
        &b,
        &["operator", "snapshot", "restore", plain.to_str().unwrap()],
    );
    assert!(err.contains("-passphrase"), "{err}");
    let err = cli_err(
        &b,
        &["operator", "snapshot", "restore", sealed.to_str().unwrap()],
    );
    assert!(err.contains("sealed with a passphrase"), "{err}");
    let err = cli_err(
        &b,
        &[
            "operator",
            "snapshot",
            "restore",
            "-passphrase",
            "wrong horse battery",
            sealed.to_str().unwrap(),
        ],
    );
    assert!(err.contains("not the passphrase"), "{err}");
    cli_ok(
        &b,
        &[
            "operator",
            "snapshot",
            "restore",
            "-passphrase",
            "correct horse battery",
            sealed.to_str().unwrap(),
        ],
    );
    assert_var(&b, "backup/db", "restored-secret");
    assert!(keys(&b).iter().any(|k| k["KeyID"] == key_id.as_str()));
    // Restored under b's own KEK: readable after a restart too.
    put_var(&b, "backup/new", "written-after");
    assert!(files_containing(&tmp.path().join("b"), "restored-secret").is_empty());
}

#[test]
fn plaintext_from_before_the_keyring_is_rekeyed_and_purged_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a");
    let a = server(&data, None);
    wait_active_key(&a);
    put_var(&a, "old/one", "placeholder");
    // A backup as a cluster from before the keyring wrote it: no root keys, items in
    // plaintext.
    let file = tmp.path().join("old.snap");
    cli_ok(
        &a,
        &["operator", "snapshot", "save", file.to_str().unwrap()],
    );
    let mut backup: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let canary = "legacy-plaintext-4d2e";
    backup["State"]["root_keys"] = json!([]);
    let vars = backup["State"]["variables"].as_array_mut().unwrap();
    for v in vars.iter_mut() {
        v.as_object_mut().unwrap().remove("Encrypted");
        v["Items"] = json!({ "secret": canary });
    }
    std::fs::write(&file, serde_json::to_vec(&backup).unwrap()).unwrap();
    cli_ok(
        &a,
        &["operator", "snapshot", "restore", file.to_str().unwrap()],
    );
    // The leader gives the keyring a key again, re-encrypts the variable, and every server
    // snapshots and purges the log entries that held it in plaintext.
    wait_active_key(&a);
    assert_var(&a, "old/one", canary);
    wait_for("no plaintext left under data_dir", LONG, || {
        files_containing(&data, canary).is_empty().then_some(())
    });
    let snap = a.get("/v1/var/old/one").unwrap();
    assert_eq!(snap["Items"]["secret"], canary);
}
