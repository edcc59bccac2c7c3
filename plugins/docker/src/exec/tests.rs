//! Against the real engine, in a running busybox container.

use super::*;
use crate::test_engine::{self, ContainerGuard, Spec};

async fn sleeper(docker: &Docker) -> ContainerGuard {
    let name = test_engine::unique("exec");
    test_engine::run(docker, &name, &Spec::busybox(&["sleep", "300"])).await
}

/// Runs `command` with `inputs` sent first; returns stdout, stderr and the exit.
async fn exec(
    docker: &Docker,
    id: &str,
    command: &[&str],
    tty: bool,
    inputs: Vec<exec_task_request::Msg>,
) -> (String, String, ExitResult) {
    let setup = ExecTaskSetup {
        task_id: "t".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        tty,
        size: None,
    };
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    let collect = tokio::spawn(async move {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(m) = out_rx.recv().await {
            match m {
                exec_task_response::Msg::Stdout(b) => out.extend(b),
                exec_task_response::Msg::Stderr(b) => err.extend(b),
                exec_task_response::Msg::Exited(_) => {}
            }
        }
        (out, err)
    });
    for m in inputs {
        in_tx.send(m).await.unwrap();
    }
    let exit = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run(docker, id, setup, in_rx, out_tx),
    )
    .await
    .expect("exec did not end")
    .expect("exec failed");
    drop(in_tx);
    let (out, err) = collect.await.unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        exit,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_apart_and_the_exit_code() {
    let docker = test_engine::docker().await;
    let c = sleeper(&docker).await;
    let script = "echo out; echo err >&2; exit 3";
    let close = vec![exec_task_request::Msg::StdinClose(true)];
    let (out, err, exit) = exec(&docker, &c.id, &["sh", "-c", script], false, close).await;
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(exit.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_reaches_the_command_and_its_end_ends_it() {
    let docker = test_engine::docker().await;
    let c = sleeper(&docker).await;
    let inputs = vec![
        exec_task_request::Msg::Stdin(b"hello ".to_vec()),
        exec_task_request::Msg::Stdin(b"through cat\n".to_vec()),
        exec_task_request::Msg::StdinClose(true),
    ];
    let (out, err, exit) = exec(&docker, &c.id, &["cat"], false, inputs).await;
    assert_eq!(out, "hello through cat\n");
    assert_eq!(err, "");
    assert_eq!(exit.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_is_resized() {
    let docker = test_engine::docker().await;
    let c = sleeper(&docker).await;
    let inputs = vec![
        exec_task_request::Msg::Resize(TerminalSize {
            rows: 33,
            cols: 101,
        }),
        exec_task_request::Msg::Stdin(b"stty size; exit 7\n".to_vec()),
    ];
    let (out, err, exit) = exec(&docker, &c.id, &["sh"], true, inputs).await;
    assert!(out.contains("33 101"), "stty printed {out:?}");
    assert_eq!(err, "", "a TTY has one stream");
    assert_eq!(exit.exit_code, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_command_keeps_its_output_when_stdin_ends_first() {
    // `alloc exec -i=false -t`: stdin ends at once, the command writes afterwards.
    let docker = test_engine::docker().await;
    let c = sleeper(&docker).await;
    let close = vec![exec_task_request::Msg::StdinClose(true)];
    let script = "sleep 0.3; test -t 1 && echo on-a-tty; exit 4";
    let (out, _, exit) = exec(&docker, &c.id, &["sh", "-c", script], true, close).await;
    assert!(out.contains("on-a-tty"), "output lost: {out:?}");
    assert_eq!(exit.exit_code, 4);
    // And a command reading the terminal sees its end.
    let inputs = vec![
        exec_task_request::Msg::Stdin(b"typed\n".to_vec()),
        exec_task_request::Msg::StdinClose(true),
    ];
    let (out, _, exit) = exec(&docker, &c.id, &["cat"], true, inputs).await;
    assert!(out.contains("typed"), "{out:?}");
    assert_eq!(exit.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_container_or_command_is_an_error() {
    let docker = test_engine::docker().await;
    let (_in_tx, in_rx) = mpsc::channel(1);
    let (out_tx, _out_rx) = mpsc::channel(1);
    let setup = ExecTaskSetup {
        command: vec!["true".into()],
        ..Default::default()
    };
    let missing = test_engine::unique("exec-missing");
    let r = run(&docker, &missing, setup, in_rx, out_tx).await;
    assert!(matches!(r, Err(ExecError::NotFound(_))), "{r:?}");
    let (_in_tx, in_rx) = mpsc::channel(1);
    let (out_tx, _out_rx) = mpsc::channel(1);
    let r = run(&docker, &missing, ExecTaskSetup::default(), in_rx, out_tx).await;
    assert!(matches!(r, Err(ExecError::NoCommand)), "{r:?}");
}
