//! `alloc exec` on the client: a command run in a task through its driver's ExecTask,
//! bridged to the server's ExecSession RPC.

use std::time::Duration;

use drover_proto::driver::{
    ExecTaskRequest, ExecTaskSetup, TerminalSize, exec_task_request, exec_task_response,
};
use drover_proto::node::node_service_client::NodeServiceClient;
use drover_proto::node::{ExecOutput, ExecRequest, exec_input, exec_output};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::Client;

/// Serves one exec session: opens the ExecSession RPC, runs the command through the task's
/// driver, and relays input down and output up until the command exits.
pub async fn serve_exec(
    client: Client,
    mut rpc: NodeServiceClient<Channel>,
    session_id: String,
    req: ExecRequest,
) {
    let (up, up_rx) = mpsc::channel::<ExecOutput>(16);
    let first = ExecOutput {
        session_id: session_id.clone(),
        msg: None,
    };
    if up.send(first).await.is_err() {
        return;
    }
    let mut inbound = match rpc.exec_session(ReceiverStream::new(up_rx)).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the exec session with the server");
            return;
        }
    };
    let send = |m: exec_output::Msg| ExecOutput {
        session_id: session_id.clone(),
        msg: Some(m),
    };
    // The caller's input, relayed as it comes; the relay also keeps the call open until the
    // server ends it (dropping the call would cancel it before the last message leaves).
    let (input_tx, input_rx) = mpsc::channel(64);
    let relay = tokio::spawn(async move {
        while let Ok(Some(input)) = inbound.message().await {
            let m = match input.msg {
                Some(exec_input::Msg::Stdin(b)) => exec_task_request::Msg::Stdin(b),
                Some(exec_input::Msg::StdinClose(_)) => exec_task_request::Msg::StdinClose(true),
                Some(exec_input::Msg::Resize(s)) => exec_task_request::Msg::Resize(TerminalSize {
                    rows: s.rows,
                    cols: s.cols,
                }),
                None => continue,
            };
            // The command may have exited: keep draining until the server ends the call.
            let _ = input_tx.send(ExecTaskRequest { msg: Some(m) }).await;
        }
    });
    let last = match run(&client, &req, input_rx, &up, &send).await {
        Ok(code) => exec_output::Msg::ExitCode(code),
        Err(e) => exec_output::Msg::Error(e),
    };
    let _ = up.send(send(last)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), relay).await;
}

async fn run(
    client: &Client,
    req: &ExecRequest,
    input: mpsc::Receiver<ExecTaskRequest>,
    up: &mpsc::Sender<ExecOutput>,
    send: &impl Fn(exec_output::Msg) -> ExecOutput,
) -> Result<i32, String> {
    if client.inner.config.disable_remote_exec {
        return Err(
            "exec is disabled on this client (client { disable_remote_exec = true })".into(),
        );
    }
    if req.command.is_empty() {
        return Err("alloc exec needs a command".into());
    }
    let tasks = client.runner(&req.alloc_id)?.running_tasks(&req.task)?;
    let [(_, driver_name, task_id)] = tasks.as_slice() else {
        let names: Vec<&str> = tasks.iter().map(|t| t.0.as_str()).collect();
        return Err(format!(
            "allocation {} runs several tasks ({}): name one with -task",
            req.alloc_id,
            names.join(", ")
        ));
    };
    let mut driver = client
        .host()
        .driver(driver_name)
        .await
        .map_err(|e| e.to_string())?;
    let size = (req.rows > 0 && req.cols > 0).then_some(TerminalSize {
        rows: req.rows,
        cols: req.cols,
    });
    let setup = ExecTaskRequest {
        msg: Some(exec_task_request::Msg::Setup(ExecTaskSetup {
            task_id: task_id.clone(),
            command: req.command.clone(),
            tty: req.tty,
            size,
        })),
    };
    let requests = tokio_stream::once(setup).chain(ReceiverStream::new(input));
    let mut out = driver
        .exec_task(requests)
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    while let Some(m) = out.message().await.map_err(|e| e.message().to_string())? {
        let up_msg = match m.msg {
            Some(exec_task_response::Msg::Stdout(b)) => exec_output::Msg::Stdout(b),
            Some(exec_task_response::Msg::Stderr(b)) => exec_output::Msg::Stderr(b),
            Some(exec_task_response::Msg::Exited(e)) => {
                return Ok(if e.signal > 0 {
                    128 + e.signal
                } else {
                    e.exit_code
                });
            }
            None => continue,
        };
        if up.send(send(up_msg)).await.is_err() {
            return Err("the caller went away".to_string());
        }
    }
    Err("the driver ended the exec stream without an exit".to_string())
}
