//! Namespaces, node pools and the scheduler configuration on real agents: through the CLI,
//! the HTTP API and python-nomad; refusals name what is missing or in use; lists and the
//! event stream filter by namespace; the scheduler configuration changes placement and
//! survives a restart through Raft.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use drover_tests::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "the command failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: Output) -> String {
    assert!(!o.status.success(), "the command succeeded: {}", text(&o));
    text(&o)
}

fn sleeper(dir: &Path, id: &str, extra: &str, count: u32) -> std::path::PathBuf {
    write_job(
        dir,
        id,
        &format!(
            "job \"{id}\" {{\n{extra}  group \"g\" {{\n    count = {count}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sleep\"\n        args = [\"300\"]\n      }}\n      resources {{\n        cpu = 20\n        memory = 16\n      }}\n    }}\n  }}\n}}\n"
        ),
    )
}

fn ids(v: Option<Value>, key: &str) -> Vec<String> {
    v.and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|x| x[key].as_str().unwrap_or("").to_string())
        .collect()
}

/// The events of the stream's backlog (from index 1) with `query`, read until a Job event of
/// `until` arrives.
fn backlog_events(agent: &Agent, query: &str, until: &str) -> Vec<Value> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!(
            "{}/v1/event/stream?index=1&{query}",
            agent.address()
        ))
        .send()
        .unwrap();
    assert!(resp.status().is_success());
    let mut events = Vec::new();
    for line in std::io::BufReader::new(resp).lines() {
        let line = line.unwrap();
        let frame: Value = serde_json::from_str(&line).unwrap();
        for e in frame["Events"].as_array().into_iter().flatten() {
            events.push(e.clone());
            if e["Topic"] == "Job" && e["Key"] == until {
                return events;
            }
        }
    }
    panic!("the stream ended before a Job event of {until}");
}

#[test]
fn namespaces_through_the_cli_with_refusals_and_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let agent = Agent::dev(dir);

    let out = ok(agent.cli(&["namespace", "apply", "-description", "Production", "prod"]));
    assert!(
        out.contains("Successfully applied namespace \"prod\"!"),
        "{out}"
    );
    let spec = dir.join("dev.hcl");
    std::fs::write(
        &spec,
        "name = \"dev\"\ndescription = \"Developers\"\nmeta {\n  owner = \"team-a\"\n}\ncapabilities {\n  disabled_task_drivers = [\"exec\"]\n}\n",
    )
    .unwrap();
    ok(agent.cli(&["namespace", "apply", spec.to_str().unwrap()]));
    let list = ok(agent.cli(&["namespace", "list"]));
    for want in [
        "default",
        "Default shared namespace",
        "prod",
        "Production",
        "dev",
    ] {
        assert!(list.contains(want), "{want} missing from:\n{list}");
    }
    let status = ok(agent.cli(&["namespace", "status", "dev"]));
    assert!(
        status.contains("Description") && status.contains("Developers"),
        "{status}"
    );
    assert!(
        status.contains("owner") && status.contains("team-a"),
        "{status}"
    );
    assert!(
        status.contains("DisabledDrivers") && status.contains("exec"),
        "{status}"
    );
    let json = ok(agent.cli(&["namespace", "status", "-json", "prod"]));
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["Description"], "Production");
    // An update through apply NAME keeps what the flags do not change.
    ok(agent.cli(&["namespace", "apply", "-quota", "q1", "prod"]));
    let v = agent.get("/v1/namespace/prod").unwrap();
    assert_eq!(
        (v["Description"].as_str(), v["Quota"].as_str()),
        (Some("Production"), Some("q1"))
    );
    let e = refused(agent.cli(&["namespace", "apply", "bad name"]));
    assert!(e.contains("\"bad name\""), "{e}");

    // A job or a variable in a namespace that does not exist is refused, naming it.
    let ghost = sleeper(dir, "ghostly", "  namespace = \"ghost\"\n", 1);
    let e = refused(agent.cli(&["job", "run", "-detach", ghost.to_str().unwrap()]));
    assert!(e.contains("nonexistent namespace \"ghost\""), "{e}");
    let e = refused(agent.cli(&["var", "put", "-namespace", "ghost", "app/x", "k=v"]));
    assert!(e.contains("\"ghost\""), "{e}");
    // A driver the namespace disables is refused.
    let exec_job = sleeper(dir, "isolated", "  namespace = \"dev\"\n", 1);
    let hcl = std::fs::read_to_string(&exec_job)
        .unwrap()
        .replace("raw_exec", "exec");
    std::fs::write(&exec_job, hcl).unwrap();
    let e = refused(agent.cli(&["job", "run", "-detach", exec_job.to_str().unwrap()]));
    assert!(
        e.contains("driver \"exec\"") && e.contains("\"dev\""),
        "{e}"
    );

    // Jobs in two namespaces; lists filter by namespace, `*` for all.
    agent.run_job(&sleeper(dir, "web", "  namespace = \"prod\"\n", 1));
    agent.run_job(&sleeper(dir, "home", "", 1));
    ok(agent.cli(&["var", "put", "-namespace", "dev", "app/config", "k=v"]));
    wait_for("both jobs placed", LONG, || {
        (ids(agent.get("/v1/allocations?namespace=*"), "JobID").len() == 2).then_some(())
    });
    assert_eq!(ids(agent.get("/v1/jobs?namespace=prod"), "ID"), ["web"]);
    assert_eq!(ids(agent.get("/v1/jobs"), "ID"), ["home"]);
    let mut all = ids(agent.get("/v1/jobs?namespace=*"), "ID");
    all.sort();
    assert_eq!(all, ["home", "web"]);
    assert_eq!(
        ids(agent.get("/v1/allocations?namespace=prod"), "JobID"),
        ["web"]
    );
    let evals = ids(agent.get("/v1/evaluations?namespace=prod"), "JobID");
    assert!(
        !evals.is_empty() && evals.iter().all(|j| j == "web"),
        "{evals:?}"
    );
    assert_eq!(
        ids(agent.get("/v1/vars?namespace=dev"), "Path"),
        ["app/config"]
    );
    assert!(ids(agent.get("/v1/vars"), "Path").is_empty());
    let status = ok(agent.cli(&["-namespace", "prod", "job", "status"]));
    assert!(
        status.contains("web") && !status.contains("home"),
        "{status}"
    );

    // The event stream in namespace prod carries none of default's jobs.
    let events = backlog_events(&agent, "namespace=prod", "web");
    assert!(
        events
            .iter()
            .all(|e| e["Namespace"] == "prod" || e["Namespace"] == ""),
        "{events:#?}"
    );
    let events = backlog_events(&agent, "namespace=*&topic=Job", "home");
    assert!(events.iter().any(|e| e["Key"] == "web"), "{events:#?}");
    assert!(events.iter().all(|e| e["Topic"] == "Job"), "{events:#?}");

    // Search knows namespaces.
    let found: Value = http()
        .post(format!("{}/v1/search", agent.address()))
        .json(&serde_json::json!({"Prefix": "pr", "Context": "namespaces"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found["Matches"]["namespaces"], serde_json::json!(["prod"]));

    // A namespace holding a job or a variable is not deleted; default never.
    let e = refused(agent.cli(&["namespace", "delete", "prod"]));
    assert!(e.contains("\"prod\"") && e.contains("\"web\""), "{e}");
    let e = refused(agent.cli(&["namespace", "delete", "dev"]));
    assert!(e.contains("\"app/config\""), "{e}");
    let e = refused(agent.cli(&["namespace", "delete", "default"]));
    assert!(e.contains("default namespace cannot be deleted"), "{e}");
    ok(agent.cli(&[
        "-namespace",
        "prod",
        "job",
        "stop",
        "-purge",
        "-detach",
        "web",
    ]));
    let out = ok(agent.cli(&["namespace", "delete", "prod"]));
    assert!(
        out.contains("Successfully deleted namespace \"prod\"!"),
        "{out}"
    );
    assert!(agent.get("/v1/namespace/prod").is_none());
}

#[test]
fn python_nomad_manages_namespaces() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let script = repo_root().join("tests/python/nomad_namespaces.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(agent.http_port.to_string())
        .output()
        .expect("python3 must be installed (tests/run.sh installs python-nomad)");
    assert!(
        out.status.success(),
        "python-nomad namespaces failed:\n{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python-nomad namespaces: ok"));
}

#[test]
fn node_pools_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("edge.hcl");
    std::fs::write(&config, "client {\n  node_pool = \"edge\"\n}\n").unwrap();
    let agent = Agent::dev_with_config(dir, &config);

    // The node's pool was created when it registered, beside the built-ins.
    let list = ok(agent.cli(&["node", "pool", "list"]));
    for want in ["all", "default", "Default node pool.", "edge"] {
        assert!(list.contains(want), "{want} missing from:\n{list}");
    }
    let nodes = ok(agent.cli(&["node", "pool", "nodes", "edge"]));
    assert!(nodes.contains("edge") && nodes.contains("ready"), "{nodes}");
    assert_eq!(
        ids(agent.get("/v1/node/pool/all/nodes"), "NodePool"),
        ["edge"]
    );
    assert!(ids(agent.get("/v1/node/pool/default/nodes"), "ID").is_empty());

    let spec = dir.join("batch.hcl");
    std::fs::write(
        &spec,
        "node_pool \"batch\" {\n  description = \"Batch workloads\"\n  meta {\n    env = \"prod\"\n  }\n  scheduler_config {\n    scheduler_algorithm = \"spread\"\n  }\n}\n",
    )
    .unwrap();
    let out = ok(agent.cli(&["node", "pool", "apply", spec.to_str().unwrap()]));
    assert!(
        out.contains("Successfully applied node pool \"batch\"!"),
        "{out}"
    );
    let info = ok(agent.cli(&["node", "pool", "info", "batch"]));
    for want in [
        "Batch workloads",
        "env",
        "prod",
        "Scheduler Algorithm",
        "spread",
    ] {
        assert!(info.contains(want), "{want} missing from:\n{info}");
    }
    let v = agent.get("/v1/node/pool/batch").unwrap();
    assert_eq!(v["SchedulerConfiguration"]["SchedulerAlgorithm"], "spread");
    let builtin = dir.join("all.hcl");
    std::fs::write(
        &builtin,
        "node_pool \"all\" {\n  description = \"mine\"\n}\n",
    )
    .unwrap();
    let e = refused(agent.cli(&["node", "pool", "apply", builtin.to_str().unwrap()]));
    assert!(e.contains("\"all\" is built in"), "{e}");

    // A job's pool must exist; a job in the node's pool runs there.
    let ghost = sleeper(dir, "ghostly", "  node_pool = \"ghost\"\n", 1);
    let e = refused(agent.cli(&["job", "run", "-detach", ghost.to_str().unwrap()]));
    assert!(e.contains("nonexistent node pool \"ghost\""), "{e}");
    agent.run_job(&sleeper(dir, "edgy", "  node_pool = \"edge\"\n", 1));
    agent.wait_alloc_status("edgy", "running", LONG);
    let jobs = ok(agent.cli(&["node", "pool", "jobs", "edge"]));
    assert!(jobs.contains("edgy"), "{jobs}");
    // A job in pool default finds no node: this node is in edge.
    agent.run_job(&sleeper(dir, "homeless", "", 1));
    wait_for("a blocked evaluation for homeless", LONG, || {
        agent
            .get("/v1/job/homeless/evaluations")?
            .as_array()?
            .iter()
            .find(|e| e["Status"] == "blocked")
            .cloned()
    });
    assert!(agent.allocs("homeless").is_empty());

    // Pools in use or built in stay.
    let e = refused(agent.cli(&["node", "pool", "delete", "edge"]));
    assert!(e.contains("\"edge\" has 1 node(s)"), "{e}");
    let e = refused(agent.cli(&["node", "pool", "delete", "all"]));
    assert!(e.contains("built in"), "{e}");
    let out = ok(agent.cli(&["node", "pool", "delete", "batch"]));
    assert!(
        out.contains("Successfully deleted node pool \"batch\"!"),
        "{out}"
    );
    assert!(agent.get("/v1/node/pool/batch").is_none());
}

/// Two clients; binpack puts a job's two allocations on one node, spread (set through the
/// CLI) on two; the setting survives the server's restart.
#[test]
fn the_scheduler_configuration_changes_placement_and_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut server = Agent::start(&["-server"], &dir.join("server"), free_port(), free_port());
    server.wait_ready();
    std::fs::write(
        dir.join("client.hcl"),
        "client {\n  enabled = true\n}\nplugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n",
    )
    .unwrap();
    let client_cfg = dir.join("client.hcl");
    let rpc = server.rpc_addr();
    let _clients: Vec<Agent> = ["c1", "c2"]
        .iter()
        .map(|name| {
            let args = [
                "-config",
                client_cfg.to_str().unwrap(),
                "-servers",
                &rpc,
                "-node",
                name,
            ];
            Agent::start(&args, &dir.join(name), free_port(), free_port())
        })
        .collect();
    wait_for("two ready nodes", LONG, || {
        let n = server.get("/v1/nodes")?;
        (n.as_array()?
            .iter()
            .filter(|n| n["Status"] == "ready")
            .count()
            == 2)
            .then_some(())
    });
    let nodes_of = |job: &str| {
        let allocs: Vec<Value> = wait_for(&format!("2 running allocations of {job}"), LONG, || {
            let a = server.allocs(job);
            (a.iter().filter(|a| a["ClientStatus"] == "running").count() == 2).then_some(a)
        });
        let mut nodes: Vec<String> = allocs
            .iter()
            .map(|a| a["NodeID"].as_str().unwrap().to_string())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes.len()
    };

    let get = ok(server.cli(&["operator", "scheduler", "get-config"]));
    assert!(
        get.contains("Scheduler Algorithm           = binpack"),
        "{get}"
    );
    server.run_job(&sleeper(dir, "packed", "", 2));
    assert_eq!(nodes_of("packed"), 1, "binpack fills one node first");

    // The packed allocations go first, so the nodes are equal again.
    ok(server.cli(&["job", "stop", "-purge", "-detach", "packed"]));
    wait_for("packed's allocations to stop", LONG, || {
        let a = server.allocs("packed");
        a.iter()
            .all(|a| a["ClientStatus"] != "running")
            .then_some(())
    });
    let out = ok(server.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-scheduler-algorithm=spread",
    ]));
    assert!(out.contains("Scheduler configuration updated!"), "{out}");
    server.run_job(&sleeper(dir, "spread", "", 2));
    assert_eq!(nodes_of("spread"), 2, "spread uses both nodes");

    // The API's shape, and check-and-set with a stale index.
    let v = server.get("/v1/operator/scheduler/configuration").unwrap();
    let index = v["SchedulerConfig"]["ModifyIndex"].as_u64().unwrap();
    assert!(index > 0 && v["Index"].as_u64() == Some(index), "{v}");
    assert_eq!(
        v["SchedulerConfig"]["PreemptionConfig"]["SystemSchedulerEnabled"],
        true
    );
    let stale = format!("-check-index={}", index - 1);
    let e = refused(server.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-pause-eval-broker=true",
        &stale,
    ]));
    assert!(e.contains("not updated"), "{e}");
    let r: Value = http()
        .put(format!(
            "{}/v1/operator/scheduler/configuration?cas=1",
            server.address()
        ))
        .json(&serde_json::json!({"SchedulerAlgorithm": "binpack"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["Updated"], false, "{r}");

    // RejectJobRegistration refuses jobs, and is undone.
    ok(server.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-reject-job-registration=true",
    ]));
    let e = refused(server.cli(&[
        "job",
        "run",
        "-detach",
        sleeper(dir, "late", "", 1).to_str().unwrap(),
    ]));
    assert!(e.contains("RejectJobRegistration"), "{e}");
    ok(server.cli(&[
        "operator",
        "scheduler",
        "set-config",
        "-reject-job-registration=false",
    ]));

    // After a restart the configuration is read back from Raft.
    server.kill9();
    server.start_again();
    server.wait_ready();
    let started = Instant::now();
    let get = wait_for("the configuration after a restart", LONG, || {
        let o = server.cli(&["operator", "scheduler", "get-config", "-json"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    let v: Value = serde_json::from_str(&get).unwrap();
    assert_eq!(
        v["SchedulerAlgorithm"],
        "spread",
        "{v} ({:?})",
        started.elapsed()
    );
    assert_eq!(v["RejectJobRegistration"], false);
}
