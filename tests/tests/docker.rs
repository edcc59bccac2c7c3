//! Nomad's docker jobs, unchanged, on a real agent against the real engine (root; the images
//! are built offline from Debian's busybox-static).
//!
//! - a service publishes the ports its config lists, on the node's address, and no other;
//!   `/local` and `/alloc` are mounted and `NOMAD_*_DIR` name the container's paths; `alloc
//!   exec` and `alloc status -stats` reach inside;
//! - a batch container's exit code is its Terminated event's;
//! - a counter printed every 10 ms reaches the task's log exactly once across kill -9 of the
//!   plugin and of the agent, and the container is recovered, not replaced; an exit while the
//!   agent is down is recorded when it returns;
//! - a bad image name fails the task with a clear event, not a hang.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_driver_testkit::docker::{busybox_image, docker};
use drover_tests::*;
use serde_json::Value;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The ids of the containers Drover made for allocation `alloc_id`.
fn containers_of(alloc_id: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=com.hashicorp.nomad.alloc_id={alloc_id}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Removes the allocation's containers whatever the test's outcome.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for alloc in &self.0 {
            for c in containers_of(alloc) {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", &c])
                    .output();
            }
        }
    }
}

/// The allocation's ports, as the API reports them.
fn alloc_ports(alloc: &Value) -> Vec<Value> {
    alloc["AllocatedResources"]["Shared"]["Ports"]
        .as_array()
        .or_else(|| alloc["SharedResources"]["Ports"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn web_job(name: &str) -> String {
    format!(
        r#"
job "{name}" {{
  group "g" {{
    network {{
      port "http" {{
        to = 8080
      }}
      port "other" {{}}
    }}
    task "web" {{
      driver = "docker"
      env {{
        GREETING = "hello-from-env"
      }}
      template {{
        data        = "served from local"
        destination = "local/index.html"
      }}
      config {{
        image   = "{image}"
        command = "httpd"
        args    = ["-f", "-p", "8080", "-h", "/local"]
        ports   = ["http"]
      }}
      resources {{
        cpu    = 100
        memory = 64
      }}
    }}
  }}
}}
"#,
        image = busybox_image()
    )
}

#[test]
fn a_docker_service_publishes_its_listed_ports_and_is_reachable_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    agent.run_job(&write_job(tmp.path(), "dweb", &web_job("dweb")));
    let alloc = agent.wait_alloc_status("dweb", "running", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let _cleanup = Cleanup(vec![id.clone()]);
    let full = agent.alloc(&id).unwrap();

    // The published port answers on the node's address.
    let ports = alloc_ports(&full);
    let http = ports
        .iter()
        .find(|p| p["Label"] == "http")
        .unwrap_or_else(|| panic!("no http port: {full:#}"));
    let host_ip = http["HostIP"].as_str().unwrap().to_string();
    assert!(
        !host_ip.is_empty() && host_ip != "0.0.0.0",
        "HostIP must be the node's address: {http}"
    );
    let addr = format!("{host_ip}:{}", http["Value"]);
    let body = wait_for(
        "the published port to answer",
        Duration::from_secs(20),
        || {
            let r = http_client()
                .get(format!("http://{addr}/index.html"))
                .send()
                .ok()?;
            r.status().is_success().then(|| r.text().ok()).flatten()
        },
    );
    assert_eq!(body, "served from local");

    // Only the listed label is published, on that address.
    let containers = containers_of(&id);
    assert_eq!(containers.len(), 1, "{containers:?}");
    let inspect: Value = serde_json::from_str(&docker(&["inspect", &containers[0]])).unwrap();
    let bindings = &inspect[0]["HostConfig"]["PortBindings"];
    let keys: Vec<&String> = bindings.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| k.starts_with("8080/")),
        "only the http port may be published: {bindings}"
    );
    assert_eq!(bindings["8080/tcp"][0]["HostIp"], host_ip.as_str());
    assert_eq!(
        bindings["8080/tcp"][0]["HostPort"],
        http["Value"].to_string()
    );

    // Inside: the env, the container's paths, the mounted directories.
    let out = agent.cli(&[
        "alloc",
        "exec",
        "-i=false",
        &id,
        "sh",
        "-c",
        "echo $GREETING $NOMAD_TASK_DIR $NOMAD_ALLOC_DIR $NOMAD_SECRETS_DIR; cat /local/index.html; echo; test -d /alloc/logs && echo alloc-mounted; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello-from-env /local /alloc /secrets"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("served from local"), "{}", text(&out));
    assert!(stdout.contains("alloc-mounted"), "{}", text(&out));

    // -t gives the command a terminal.
    let out = agent.cli(&[
        "alloc",
        "exec",
        "-i=false",
        "-t",
        &id,
        "sh",
        "-c",
        "test -t 1 && echo on-a-tty",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on-a-tty"),
        "{}",
        text(&out)
    );

    // Stats from the engine.
    let out = agent.cli(&["alloc", "status", "-stats", "-json", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let usage = &v["ResourceUsage"]["Tasks"]["web"]["ResourceUsage"];
    assert!(
        usage["MemoryStats"]["Usage"].as_u64().unwrap_or(0) > 0
            || usage["MemoryStats"]["RSS"].as_u64().unwrap_or(0) > 0,
        "{v:#}"
    );

    // Stopping the job removes the container.
    let out = agent.cli(&["job", "stop", "-detach", "dweb"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(
        "the container to be removed",
        Duration::from_secs(60),
        || containers_of(&id).is_empty().then_some(()),
    );
}

/// A batch job `name` whose one docker task runs `sh -c script`, never restarted.
fn batch_job(name: &str, script: &str) -> String {
    format!(
        r#"
job "{name}" {{
  type = "batch"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    task "t" {{
      driver = "docker"
      config {{
        image   = "{image}"
        command = "sh"
        args    = ["-c", {script:?}]
      }}
    }}
  }}
}}
"#,
        image = busybox_image()
    )
}

#[test]
fn a_batch_container_exit_code_is_recorded_and_a_bad_image_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let job = batch_job("d42", "exit 42");
    agent.run_job(&write_job(tmp.path(), "d42", &job));
    let alloc = agent.wait_alloc_status("d42", "failed", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let _cleanup = Cleanup(vec![id.clone()]);
    let full = agent.alloc(&id).unwrap();
    let terminated = task_events(&full, "t", "Terminated");
    assert_eq!(terminated.len(), 1, "{full:#}");
    assert_eq!(terminated[0]["ExitCode"], 42, "{full:#}");

    let bad = r#"
job "dbad" {
  type = "batch"
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = "docker"
      config {
        image = "drover-test/no-such-image:1.0"
      }
    }
  }
}
"#;
    agent.run_job(&write_job(tmp.path(), "dbad", bad));
    let alloc = agent.wait_alloc_status("dbad", "failed", Duration::from_secs(90));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    let events = full["TaskStates"]["t"]["Events"].to_string();
    assert!(
        events.contains("drover-test/no-such-image:1.0"),
        "the failure must name the image: {full:#}"
    );
}

/// An agent that is server and client with a data directory of its own, so that it can be
/// killed and started again on the same state.
fn persistent_agent(dir: &Path) -> Agent {
    let cfg = dir.join("agent.hcl");
    std::fs::write(
        &cfg,
        "server {\n  enabled = true\n}\nclient {\n  enabled = true\n}\n",
    )
    .unwrap();
    let agent = Agent::start(
        &["-config", cfg.to_str().unwrap()],
        &dir.join("data"),
        free_port(),
        free_port(),
    );
    agent.wait_ready();
    agent.wait_node_ready();
    agent
}

/// The pid of this agent's docker plugin.
fn docker_plugin(agent: &Agent) -> i32 {
    wait_for("the docker plugin", Duration::from_secs(30), || {
        let v = agent.get("/v1/agent/plugins")?;
        let p = v.as_array()?.iter().find(|p| p["Name"] == "docker")?;
        (p["State"] == "running").then(|| p["Pid"].as_i64())?
    }) as i32
}

/// kill -9 of the agent; its docker plugin is gone too before this returns.
fn kill9_with_plugin(agent: &mut Agent) {
    let plugin = docker_plugin(agent);
    agent.kill9();
    wait_for(
        "the plugin to follow the agent",
        Duration::from_secs(10),
        || proc_stat(plugin).is_none().then_some(()),
    );
}

/// The integers in the task's stdout files, in file order.
fn logged_integers(alloc_dir: &Path, task: &str) -> Vec<u64> {
    let logs = alloc_dir.join("alloc/logs");
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&logs)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name
                        .strip_prefix(&format!("{task}.stdout."))?
                        .parse()
                        .ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|(_, p)| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(|l| l.trim().parse::<u64>().unwrap_or(u64::MAX))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn docker_tasks_survive_plugin_and_agent_kill9_with_exactly_once_logs() {
    const N: u64 = 1500;
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = persistent_agent(tmp.path());
    let script = format!(
        "i=0; while [ $i -lt {N} ]; do echo $i; i=$((i+1)); sleep 0.01; done; while [ ! -f /alloc/exit-now ]; do sleep 0.1; done; exit 7"
    );
    let job = batch_job("dcount", &script);
    agent.run_job(&write_job(tmp.path(), "dcount", &job));
    let alloc = agent.wait_alloc_status("dcount", "running", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap().to_string();
    let _cleanup = Cleanup(vec![id.clone()]);
    let alloc_dir = agent.data_dir_alloc(&id);
    let container = wait_for("the container", Duration::from_secs(20), || {
        containers_of(&id).first().cloned()
    });
    wait_for("the first lines", Duration::from_secs(20), || {
        (logged_integers(&alloc_dir, "t").len() > 100).then_some(())
    });

    // kill -9 of the plugin: the host relaunches it and it recovers the container.
    let plugin = docker_plugin(&agent);
    // SAFETY: kill(2).
    assert_eq!(unsafe { libc::kill(plugin, libc::SIGKILL) }, 0);
    wait_for(
        "the plugin to be relaunched",
        Duration::from_secs(30),
        || {
            let v = agent.get("/v1/agent/plugins")?;
            let p = v
                .as_array()?
                .iter()
                .find(|p| p["Name"] == "docker")?
                .clone();
            (p["State"] == "running" && p["Pid"].as_i64()? as i32 != plugin).then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(1500));

    // kill -9 of the agent (its plugins follow it: their stdin lifeline closes), then the
    // agent again on its state.
    kill9_with_plugin(&mut agent);
    agent.start_again();
    agent.wait_ready();

    // Every integer exactly once, in order, and the same container.
    let got = wait_for("all the lines", Duration::from_secs(90), || {
        let got = logged_integers(&alloc_dir, "t");
        (got.len() as u64 >= N).then_some(got)
    });
    std::thread::sleep(Duration::from_secs(1));
    let got_again = logged_integers(&alloc_dir, "t");
    assert_eq!(got, got_again, "lines arrived after the count was complete");
    let expected: Vec<u64> = (0..N).collect();
    if got != expected {
        let dups = got.windows(2).filter(|w| w[0] >= w[1]).count();
        panic!(
            "the log must hold 0..{N} exactly once in order: {} lines, {dups} out of order; first difference at {:?}",
            got.len(),
            got.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
    assert_eq!(
        containers_of(&id),
        vec![container.clone()],
        "the container was replaced"
    );

    // An exit while the agent is down is collected from the engine when it returns.
    kill9_with_plugin(&mut agent);
    std::fs::write(alloc_dir.join("alloc/exit-now"), b"").unwrap();
    wait_for("the container to exit", Duration::from_secs(20), || {
        let state = docker(&["inspect", "-f", "{{.State.Status}}", &container]);
        (state.trim() == "exited").then_some(())
    });
    agent.start_again();
    agent.wait_ready();
    let alloc = agent.wait_alloc_status("dcount", "failed", Duration::from_secs(60));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    let terminated = task_events(&full, "t", "Terminated");
    assert_eq!(terminated.len(), 1, "{full:#}");
    assert_eq!(terminated[0]["ExitCode"], 7, "{full:#}");
    assert!(
        task_events(&full, "t", "Started").len() == 1,
        "the task must not have been started again: {full:#}"
    );
}

fn http_client() -> reqwest::blocking::Client {
    http()
}

#[test]
fn job_validate_refuses_unknown_docker_keys_with_their_position() {
    let tmp = tempfile::tempdir().unwrap();
    let job = |config: &str| {
        format!(
            "job \"v\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"docker\"\n      config {{\n{config}\n      }}\n    }}\n  }}\n}}\n"
        )
    };
    let cases = [
        ("        imagee = \"busybox:1\"", 6, "imagee"),
        (
            "        image = \"busybox:1\"\n        mount {\n          type = \"tmpfs\"\n          targett = \"/x\"\n        }",
            9,
            "targett",
        ),
    ];
    for (i, (config, line, key)) in cases.iter().enumerate() {
        let path = write_job(tmp.path(), &format!("v{i}"), &job(config));
        let out = std::process::Command::new(drover_bin())
            .args(["job", "validate", path.to_str().unwrap()])
            .output()
            .unwrap();
        let text = text(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains(&format!("v{i}.hcl:{line}:")) && text.contains(key),
            "the error names the file, line and key: {text}"
        );
    }
    let ok = write_job(
        tmp.path(),
        "ok",
        &job(
            "        image = \"busybox:1\"\n        ports = [\"http\"]\n        mount {\n          type   = \"tmpfs\"\n          target = \"/x\"\n        }",
        ),
    );
    let out = std::process::Command::new(drover_bin())
        .args(["job", "validate", ok.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
