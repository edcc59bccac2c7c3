//! Task lifecycle on a dev agent: prestart, prestart sidecar, main, poststop in order;
//! sidecars stop when the main task finishes; assigned ports reach the task's environment.

use std::time::Duration;

use drover_tests::*;

fn sh(name: &str, hook: Option<(&str, bool)>, script: &str) -> String {
    let lifecycle = hook
        .map(|(h, sidecar)| {
            format!("    lifecycle {{\n      hook = \"{h}\"\n      sidecar = {sidecar}\n    }}\n")
        })
        .unwrap_or_default();
    format!(
        "  task \"{name}\" {{\n    driver = \"raw_exec\"\n{lifecycle}    config {{\n      command = \"/bin/sh\"\n      args = [\"-c\", \"{script}\"]\n    }}\n  }}\n"
    )
}

#[test]
fn prestart_sidecar_main_poststop_order_and_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let log = "$NOMAD_ALLOC_DIR/order.log";
    let mut spec = String::from(
        "job \"life\" {\n type = \"batch\"\n group \"g\" {\n  network {\n   port \"http\" {}\n  }\n  restart {\n   attempts = 0\n   mode = \"fail\"\n  }\n",
    );
    spec.push_str(&sh(
        "init",
        Some(("prestart", false)),
        &format!("sleep 0.3; echo init >> {log}"),
    ));
    spec.push_str(&sh(
        "helper",
        Some(("prestart", true)),
        &format!("echo helper >> {log}; while true; do sleep 0.1; done"),
    ));
    spec.push_str(&sh(
        "main",
        None,
        &format!("echo main port=$NOMAD_PORT_http addr=$NOMAD_ADDR_http >> {log}; sleep 0.3"),
    ));
    spec.push_str(&sh(
        "cleanup",
        Some(("poststop", false)),
        &format!("echo cleanup >> {log}"),
    ));
    spec.push_str(" }\n}\n");
    let job = write_job(tmp.path(), "life", &spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("life", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let full = agent.alloc(id).unwrap();
    let states = &full["TaskStates"];
    for t in ["init", "helper", "main", "cleanup"] {
        assert_eq!(states[t]["State"], "dead", "{t}: {full:#}");
        assert_eq!(states[t]["Failed"], false, "{t}: {full:#}");
    }
    assert!(
        !task_events(&full, "helper", "Killed").is_empty(),
        "the sidecar was not stopped: {full:#}"
    );
    let order = std::fs::read_to_string(agent.data_dir_alloc(id).join("alloc/order.log")).unwrap();
    let lines: Vec<&str> = order.lines().collect();
    let pos = |w: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("{w} did not run: {order}"))
    };
    assert!(pos("init") < pos("main"), "{order}");
    assert!(pos("helper") < pos("main"), "{order}");
    assert!(pos("main") < pos("cleanup"), "{order}");
    let main_line = lines[pos("main")];
    let port: u16 = main_line
        .split("port=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20000..=32000).contains(&port), "{main_line}");
    assert!(
        main_line.contains(&format!("addr=127.0.0.1:{port}")),
        "{main_line}"
    );
    assert_eq!(full["SharedResources"]["Ports"][0]["Value"], port);
}

#[test]
fn a_failing_prestart_task_keeps_the_main_task_from_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let mut spec = String::from(
        "job \"gate\" {\n type = \"batch\"\n group \"g\" {\n  restart {\n   attempts = 0\n   mode = \"fail\"\n  }\n  reschedule {\n   attempts = 0\n  }\n",
    );
    spec.push_str(&sh("check", Some(("prestart", false)), "exit 3"));
    spec.push_str(&sh("main", None, "echo should-not-run"));
    spec.push_str(" }\n}\n");
    let job = write_job(tmp.path(), "gate", &spec);
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("gate", "failed", Duration::from_secs(60));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    assert!(task_events(&full, "main", "Started").is_empty(), "{full:#}");
    assert_eq!(full["TaskStates"]["main"]["State"], "dead");
}
