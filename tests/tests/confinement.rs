//! A job cannot reach its host (confinement): names that would be paths, logs written through planted
//! links, root exec tasks and devices or kernel settings, `alloc fs` outside the allocation.
//! Black-box: real agents, jobs and HTTP calls. Root only (exec tasks, mounts).

use std::path::Path;
use std::time::{Duration, Instant};

use drover_tests::*;
use serde_json::{Value, json};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "these tests start exec tasks: run them as root");
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A dev agent whose exec plugin lets tasks run as root (denied by default).
fn agent_allowing_root(tmp: &Path) -> Agent {
    let cfg = tmp.join("root.hcl");
    std::fs::write(
        &cfg,
        "plugin \"exec\" {\n  config {\n    denied_host_uids = \"\"\n    denied_host_gids = \"\"\n  }\n}\n",
    )
    .unwrap();
    Agent::dev_with_config(tmp, &cfg)
}

fn exec_job(name: &str, kind: &str, extra: &str, script: &str) -> String {
    format!(
        "job \"{name}\" {{\n type = \"{kind}\"\n group \"g\" {{\n  restart {{\n   attempts = 0\n   mode = \"fail\"\n  }}\n  reschedule {{\n   attempts = 0\n   unlimited = false\n  }}\n  task \"t\" {{\n   driver = \"exec\"\n{extra}   config {{\n    command = \"/bin/sh\"\n    args = [\"-c\", {script:?}]\n   }}\n  }}\n }}\n}}\n"
    )
}

#[test]
fn names_that_would_be_paths_are_refused_by_the_cli_and_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    for (group, task) in [
        ("g", "../../../../etc/cron.d"),
        ("g", "a\\\\b"),
        ("..", "t"),
        ("g/h", "t"),
    ] {
        let job = write_job(
            tmp.path(),
            "evil",
            &format!(
                "job \"evil\" {{\n group \"{group}\" {{\n  task \"{task}\" {{\n   driver = \"raw_exec\"\n   config {{\n    command = \"/bin/true\"\n   }}\n  }}\n }}\n}}\n"
            ),
        );
        let out = agent.cli(&["job", "run", "-detach", job.to_str().unwrap()]);
        assert!(!out.status.success(), "{group}/{task}: {}", text(&out));
        assert!(
            text(&out).contains("name"),
            "the error names the field: {}",
            text(&out)
        );
    }
    // The same names through the JSON API, with NUL and control characters too.
    for (group, task) in [
        ("g", "../../x"),
        ("g", "a/b"),
        ("g", "."),
        ("g", "a\u{0}b"),
        ("g", "line\nbreak"),
        ("x".repeat(300).as_str(), "t"),
    ] {
        let body = json!({"Job": {
            "ID": "evil", "Type": "batch",
            "TaskGroups": [{"Name": group, "Count": 1, "Tasks": [{
                "Name": task, "Driver": "raw_exec", "Config": {"command": "/bin/true"}
            }]}]
        }});
        let r = http()
            .post(format!("{}/v1/jobs", agent.address()))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status();
        let msg = r.text().unwrap();
        assert_eq!(status, 400, "{group:?}/{task:?}: {msg}");
        assert!(msg.contains("Name"), "{msg}");
    }
    assert!(
        agent.get("/v1/job/evil").is_none(),
        "nothing was registered"
    );
}

#[test]
fn the_shim_never_writes_a_log_through_a_link_the_task_planted() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let agent = agent_allowing_root(tmp.path());
    let victim = tmp.path().join("authorized_keys");
    std::fs::write(&victim, "root's keys\n").unwrap();
    // The task (root, inside its own root) plants the next log file as a link to a host
    // path, then prints enough to rotate past it (1 MiB files).
    let script = format!(
        "ln -s {} /alloc/logs/t.stdout.1 && head -c 2500000 /dev/zero | tr '\\0' A",
        victim.display()
    );
    let spec = exec_job(
        "logs",
        "batch",
        "   user = \"root\"\n   logs {\n    max_files = 5\n    max_file_size = 1\n   }\n",
        &script,
    );
    agent.run_job(&write_job(tmp.path(), "logs", &spec));
    let alloc = agent.wait_alloc_status("logs", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let logs = agent.data_dir_alloc(id).join("alloc/logs");
    assert!(
        std::fs::symlink_metadata(logs.join("t.stdout.1"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the task planted its link"
    );
    wait_for("the output to rotate", Duration::from_secs(20), || {
        logs.join("t.stdout.2").exists().then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's keys\n",
        "the shim wrote the task's output through its link"
    );
}

/// The major and minor numbers of the disk the host's root lives on (8:0 when it is not a
/// plain block device).
fn host_disk() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 { (8, 0) } else { (major, minor) }
}

fn device_script(dirs: &[&str]) -> String {
    let (major, minor) = host_disk();
    let mut s = String::new();
    for d in dirs {
        for (n, (ma, mi)) in [(major, minor), (8, 0)].into_iter().enumerate() {
            s.push_str(&format!(
                "mknod {d}/disk{n} b {ma} {mi} 2>/dev/null; echo mknod:{d}:$?; head -c 512 {d}/disk{n} >/dev/null 2>&1; echo read:{d}:$?; "
            ));
        }
    }
    s
}

/// Every `<what>:<dir>:<status>` line of `out` (`what` is mknod or read), with whether it
/// failed.
fn failures(out: &str, what: &str) -> Vec<(String, bool)> {
    out.lines()
        .filter_map(|l| l.strip_prefix(what)?.strip_prefix(':'))
        .map(|l| {
            let (dir, code) = l.rsplit_once(':').unwrap();
            (dir.to_string(), code != "0")
        })
        .collect()
}

#[test]
fn a_root_exec_task_reaches_no_device_and_no_kernel_setting() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let agent = agent_allowing_root(tmp.path());
    let dirs = ["/dev", "/local", "/tmp", "/alloc", "/dev/shm"];
    let script = format!(
        "{} (: >> /proc/sys/kernel/core_pattern) 2>/dev/null; echo core_pattern:$?; (: >> /proc/sysrq-trigger) 2>/dev/null; echo sysrq:$?; echo done; sleep 1000",
        device_script(&dirs)
    );
    let spec = exec_job("dev", "service", "   user = \"root\"\n", &script).replace(
        "    command = \"/bin/sh\"\n",
        "    command = \"/bin/sh\"\n    cap_add = [\"mknod\"]\n",
    );
    agent.run_job(&write_job(tmp.path(), "dev", &spec));
    let alloc = agent.wait_alloc_status("dev", "running", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let log = |out: &str| -> String {
        let r = http()
            .get(format!(
                "{}/v1/client/fs/logs/{id}?task=t&type={out}&plain=true",
                agent.address()
            ))
            .send()
            .unwrap();
        r.text().unwrap()
    };
    let out = wait_for("the task's checks", Duration::from_secs(30), || {
        let o = log("stdout");
        o.contains("done").then_some(o)
    });
    // The device cgroup refuses the node itself; nodev mounts would refuse opening it.
    // (Some machines refuse opening a disk even to the host's root: the mknod is what
    // tells there.)
    for what in ["mknod", "read"] {
        let r = failures(&out, what);
        assert_eq!(r.len(), dirs.len() * 2, "{out}");
        for (dir, failed) in &r {
            assert!(failed, "a root task could {what} a disk in {dir}:\n{out}");
        }
    }
    // Opening for writing fails (the shell reports the failed redirection).
    for key in ["core_pattern:", "sysrq:"] {
        let code = out
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {out}"));
        assert_ne!(code, "0", "a root task opened {key} for writing:\n{out}");
    }

    // The same through `alloc exec`, which joins the task's namespaces and cgroups.
    let script =
        device_script(&["/dev", "/local", "/tmp", "/alloc", "/dev/shm"]).replace("disk", "xdisk");
    let o = agent.cli(&["alloc", "exec", "-i=false", &id, "sh", "-c", &script]);
    for what in ["mknod", "read"] {
        let r = failures(&String::from_utf8_lossy(&o.stdout), what);
        assert_eq!(r.len(), dirs.len() * 2, "{}", text(&o));
        for (dir, failed) in &r {
            assert!(
                failed,
                "alloc exec could {what} a disk in {dir}: {}",
                text(&o)
            );
        }
    }
}

#[test]
fn root_is_refused_unless_the_operator_allows_it() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let spec = exec_job("rooted", "batch", "   user = \"root\"\n", "id -u");
    agent.run_job(&write_job(tmp.path(), "rooted", &spec));
    let alloc = agent.wait_alloc_status("rooted", "failed", Duration::from_secs(60));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    let events = full["TaskStates"]["t"]["Events"].to_string();
    assert!(events.contains("denied_host_uids"), "{events}");
}

fn get_text(agent: &Agent, path: &str) -> (u16, String) {
    let r = http()
        .get(format!("{}{path}", agent.address()))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn alloc_fs_and_logs_stay_inside_the_allocation() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let host_secret = tmp.path().join("host-secret");
    std::fs::write(&host_secret, "HOST-SECRET-BYTES\n").unwrap();
    // The task (as nobody) plants a link to a host file, a FIFO, a secret, a plain file, and
    // keeps swapping /local/swap between a file of its own and a link to the host file.
    let script = format!(
        "ln -s {h} /local/link; mkfifo /local/fifo; echo s3cret > /secrets/token; printf 0123456789 > /local/f; echo ready; while :; do rm -f /local/swap; echo mine > /local/swap; rm -f /local/swap; ln -s {h} /local/swap; done",
        h = host_secret.display()
    );
    let spec = exec_job("fs", "service", "", &script);
    agent.run_job(&write_job(tmp.path(), "fs", &spec));
    let alloc = agent.wait_alloc_status("fs", "running", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap().to_string();
    wait_for("the task to be ready", Duration::from_secs(30), || {
        let (_, o) = get_text(
            &agent,
            &format!("/v1/client/fs/logs/{id}?task=t&type=stdout&plain=true"),
        );
        o.contains("ready").then_some(())
    });

    let (code, body) = get_text(
        &agent,
        &format!("/v1/client/fs/cat/{id}?path=/t/local/link"),
    );
    assert!(!body.contains("HOST-SECRET"), "{code} {body}");
    assert_ne!(code, 200, "{body}");

    let started = Instant::now();
    let (code, body) = get_text(
        &agent,
        &format!("/v1/client/fs/cat/{id}?path=/t/local/fifo"),
    );
    assert_ne!(code, 200, "{body}");
    assert!(body.contains("regular file"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "a FIFO blocked");

    let (code, body) = get_text(
        &agent,
        &format!("/v1/client/fs/cat/{id}?path=/t/secrets/token"),
    );
    assert_ne!(code, 200, "{body}");
    assert!(!body.contains("s3cret"), "{body}");
    assert!(body.contains("secrets"), "{body}");

    let (code, body) = get_text(
        &agent,
        &format!("/v1/client/fs/readat/{id}?path=/t/local/f&offset=2&limit=3"),
    );
    assert_eq!((code, body.as_str()), (200, "234"));
    let (code, body) = get_text(&agent, &format!("/v1/client/fs/cat/{id}?path=/t/local/f"));
    assert_eq!((code, body.as_str()), (200, "0123456789"));
    let (code, body) = get_text(
        &agent,
        &format!("/v1/client/fs/stream/{id}?path=/t/local/f&offset=4&origin=end"),
    );
    assert_eq!(code, 200, "{body}");
    let frame: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(frame["Data"], "Njc4OQ==", "{body}"); // "6789"

    let (code, body) = get_text(
        &agent,
        &format!("/v1/client/fs/logs/{id}?task=../../t&type=stdout&plain=true"),
    );
    assert_eq!(code, 400, "{body}");

    // Thousands of reads while the task swaps a link in and out: never a host byte.
    let mut served = 0;
    for _ in 0..3000 {
        let (code, body) = get_text(
            &agent,
            &format!("/v1/client/fs/cat/{id}?path=/t/local/swap"),
        );
        assert!(!body.contains("HOST-SECRET"), "a host byte came back");
        if code == 200 {
            served += 1;
        }
    }
    assert!(served > 0, "the task's own file was never served");
}

#[test]
fn local_artifacts_copy_only_what_the_operator_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::write(allowed.join("app.conf"), "allowed-bytes\n").unwrap();
    std::fs::write(tmp.path().join("host-secret"), "HOST-SECRET\n").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("host-secret"), allowed.join("out")).unwrap();
    let cfg = tmp.path().join("artifacts.hcl");
    std::fs::write(
        &cfg,
        format!(
            "client {{\n  artifact {{\n    allowed_host_paths = [\"{}\"]\n  }}\n}}\nplugin \"raw_exec\" {{\n  config {{\n    enabled = true\n  }}\n}}\n",
            allowed.display()
        ),
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let job = |name: &str, source: &str| {
        format!(
            "job \"{name}\" {{\n type = \"batch\"\n group \"g\" {{\n  restart {{\n   attempts = 0\n   mode = \"fail\"\n  }}\n  reschedule {{\n   attempts = 0\n   unlimited = false\n  }}\n  task \"t\" {{\n   driver = \"raw_exec\"\n   artifact {{\n    source = \"{source}\"\n    destination = \"local/got\"\n    mode = \"file\"\n   }}\n   config {{\n    command = \"/bin/cat\"\n    args = [\"local/got\"]\n   }}\n  }}\n }}\n}}\n"
        )
    };
    let refused = [
        "/etc/shadow".to_string(),
        "file:///etc/hostname".to_string(),
        format!("file://localhost{}/../host-secret", allowed.display()),
        format!("{}/../host-secret", allowed.display()),
        format!("{}/out", allowed.display()),
        "${NOMAD_ALLOC_DIR}/../../other/alloc/data/x".to_string(),
    ];
    for (i, source) in refused.iter().enumerate() {
        let name = format!("refused{i}");
        agent.run_job(&write_job(tmp.path(), &name, &job(&name, source)));
        let alloc = agent.wait_alloc_status(&name, "failed", Duration::from_secs(60));
        let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
        let events = full["TaskStates"]["t"]["Events"].to_string();
        assert!(
            events.contains("Failed Artifact Download"),
            "{source}: {events}"
        );
        assert!(!events.contains("HOST-SECRET"), "{events}");
    }
    let ok = format!("file://{}/app.conf", allowed.display());
    agent.run_job(&write_job(tmp.path(), "allowed", &job("allowed", &ok)));
    let alloc = agent.wait_alloc_status("allowed", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let (_, out) = get_text(
        &agent,
        &format!("/v1/client/fs/logs/{id}?task=t&type=stdout&plain=true"),
    );
    assert_eq!(out, "allowed-bytes\n");
}
