//! The task's directories on a dev agent: secrets/ is an in-memory tmpfs (unmounted when the
//! agent cleans up), and a volume_mount on a driver without filesystem isolation is refused
//! with a reason.

use std::time::Duration;

use drover_tests::*;

#[test]
fn secrets_dir_is_tmpfs_and_is_unmounted_at_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = Agent::dev(tmp.path());
    let job = write_job(
        tmp.path(),
        "sec",
        "job \"sec\" {\n type = \"batch\"\n group \"g\" {\n  restart {\n   attempts = 0\n   mode = \"fail\"\n  }\n  task \"t\" {\n   driver = \"raw_exec\"\n   config {\n    command = \"/bin/sh\"\n    args = [\"-c\", \"test \\\"$(stat -f -c %T $NOMAD_SECRETS_DIR)\\\" = tmpfs && echo s3cret > $NOMAD_SECRETS_DIR/token\"]\n   }\n  }\n }\n}\n",
    );
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("sec", "complete", Duration::from_secs(60));
    let id = alloc["ID"].as_str().unwrap();
    let mounted = |needle: &str| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.contains(needle))
    };
    assert!(mounted(&format!("{id}/t/secrets")), "no tmpfs for {id}");
    agent.terminate();
    assert!(
        !mounted(&format!("{id}/t/secrets")),
        "the dev agent left its secrets tmpfs mounted"
    );
}

#[test]
fn volume_mounts_need_a_driver_that_can_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = tmp.path().join("client.hcl");
    std::fs::write(
        &cfg,
        format!(
            "client {{\n  host_volume \"data\" {{\n    path = \"{}\"\n  }}\n}}\n",
            data.display()
        ),
    )
    .unwrap();
    let agent = Agent::dev_with_config(tmp.path(), &cfg);
    let job = write_job(
        tmp.path(),
        "vol",
        "job \"vol\" {\n type = \"batch\"\n group \"g\" {\n  volume \"d\" {\n   type = \"host\"\n   source = \"data\"\n  }\n  restart {\n   attempts = 0\n   mode = \"fail\"\n  }\n  task \"t\" {\n   driver = \"raw_exec\"\n   volume_mount {\n    volume = \"d\"\n    destination = \"/data\"\n   }\n   config {\n    command = \"/bin/true\"\n   }\n  }\n }\n}\n",
    );
    agent.run_job(&job);
    let alloc = agent.wait_alloc_status("vol", "failed", Duration::from_secs(60));
    let full = agent.alloc(alloc["ID"].as_str().unwrap()).unwrap();
    let text = full["TaskStates"]["t"]["Events"].to_string();
    assert!(
        text.contains("the raw_exec driver cannot mount volumes"),
        "{full:#}"
    );
}
