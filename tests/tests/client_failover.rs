//! Two clients and one server: a client that stops heartbeating is marked down, its
//! allocations are lost and placed on the other client; when it comes back it stops the
//! tasks of its lost allocations, so no duplicate is left running.

use std::time::Duration;

use drover_tests::*;

#[test]
fn lost_allocations_move_and_the_returning_client_stops_its_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("server.hcl"),
        "server {\n  enabled = true\n  heartbeat_grace = \"2s\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.hcl"), "client {\n  enabled = true\n}\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n").unwrap();
    let server_cfg = dir.join("server.hcl");
    let server = Agent::start(
        &["-config", server_cfg.to_str().unwrap()],
        &dir.join("server"),
        free_port(),
        free_port(),
    );
    server.wait_ready();
    let client_cfg = dir.join("client.hcl");
    let servers = server.rpc_addr();
    let start_client = |name: &str| {
        Agent::start(
            &[
                "-config",
                client_cfg.to_str().unwrap(),
                "-servers",
                &servers,
                "-node",
                name,
            ],
            &dir.join(name),
            free_port(),
            free_port(),
        )
    };
    let mut one = start_client("one");
    wait_for("client one ready", Duration::from_secs(30), || {
        server
            .get("/v1/nodes")?
            .as_array()?
            .iter()
            .find(|n| n["Name"] == "one" && n["Status"] == "ready")
            .cloned()
    });
    let marker = format!("failover-{}", std::process::id());
    let job = write_job(
        dir,
        "mover",
        &format!(
            "job \"mover\" {{\n group \"g\" {{\n  task \"t\" {{\n   driver = \"raw_exec\"\n   config {{\n    command = \"/bin/sh\"\n    args = [\"-c\", \"while true; do sleep 0.2; done # {marker}\"]\n   }}\n  }}\n }}\n}}\n"
        ),
    );
    server.run_job(&job);
    let first = server.wait_alloc_status("mover", "running", Duration::from_secs(30));
    let first_id = first["ID"].as_str().unwrap().to_string();
    let old_pid = wait_for("the task", Duration::from_secs(20), || {
        find_process(&marker)
    });

    let two = start_client("two");
    wait_for("client two ready", Duration::from_secs(30), || {
        server
            .get("/v1/nodes")?
            .as_array()?
            .iter()
            .find(|n| n["Name"] == "two" && n["Status"] == "ready")
            .cloned()
    });
    // Client one disappears (its task keeps running under its shim).
    one.kill9();
    wait_for("client one marked down", Duration::from_secs(30), || {
        server
            .get("/v1/nodes")?
            .as_array()?
            .iter()
            .find(|n| n["Name"] == "one" && n["Status"] == "down")
            .cloned()
    });
    let lost = wait_for(
        "the allocation marked lost",
        Duration::from_secs(30),
        || {
            let a = server.alloc(&first_id)?;
            (a["ClientStatus"] == "lost").then_some(a)
        },
    );
    assert_eq!(lost["DesiredStatus"], "stop");
    let replacement = wait_for(
        "a replacement running on client two",
        Duration::from_secs(30),
        || {
            server
                .allocs("mover")
                .into_iter()
                .find(|a| a["ID"] != first_id.as_str() && a["ClientStatus"] == "running")
        },
    );
    assert_eq!(replacement["PreviousAllocation"], first_id.as_str());
    assert_ne!(replacement["NodeID"], first["NodeID"]);

    // Client one returns: it stops its copy of the lost allocation.
    one.restart();
    wait_for(
        "the lost allocation's task to be stopped",
        Duration::from_secs(30),
        || proc_stat(old_pid).is_none().then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let running: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| proc_cmdline(*p).starts_with("/bin/sh") && proc_cmdline(*p).contains(&marker))
        .collect();
    assert_eq!(
        running.len(),
        1,
        "exactly one copy of the task must run: {running:?}"
    );
    let a = server.alloc(&first_id).unwrap();
    assert_eq!(
        a["ClientStatus"], "lost",
        "the returning client must not resurrect a lost allocation"
    );
    let out = server.cli(&["job", "stop", "-detach", "mover"]);
    assert!(out.status.success());
    wait_for("the replacement to stop", Duration::from_secs(30), || {
        find_process(&marker).is_none().then_some(())
    });
    drop(two);
}

#[test]
fn a_node_id_cannot_be_taken_over_without_its_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Agent::start(&["-server"], &dir.join("server"), free_port(), free_port());
    server.wait_ready();
    let servers = server.rpc_addr();
    let _one = Agent::start(
        &["-client", "-servers", &servers],
        &dir.join("one"),
        free_port(),
        free_port(),
    );
    let node = wait_for("the node", Duration::from_secs(30), || {
        server.get("/v1/nodes")?.as_array()?.first().cloned()
    });
    assert_eq!(node["SecretID"], "", "the API must not show node secrets");
    let secret = wait_for("the secret persisted", Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("one/client/node-secret")).ok()
    });
    assert!(!secret.trim().is_empty());
    // A copy of the node id without the secret is refused.
    std::fs::create_dir_all(dir.join("copy/client")).unwrap();
    std::fs::copy(
        dir.join("one/client/node-id"),
        dir.join("copy/client/node-id"),
    )
    .unwrap();
    let copy = Agent::start(
        &["-client", "-servers", &servers],
        &dir.join("copy"),
        free_port(),
        free_port(),
    );
    wait_for("the copy to be refused", Duration::from_secs(30), || {
        copy.log_text()
            .contains("registered with another secret")
            .then_some(())
    });
    assert_eq!(
        server.get("/v1/nodes").unwrap().as_array().unwrap().len(),
        1
    );
}
