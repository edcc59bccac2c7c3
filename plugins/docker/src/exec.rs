//! `alloc exec` in a container: the engine's exec (create, start attached), with the
//! caller's stdin, stdin's end and terminal resizes forwarded, and the output sent back (one
//! stream with a TTY; stdout and stderr apart without), then the exit code.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::ResizeExecOptions;
use drover_plugin_sdk::proto::driver::{
    ExecTaskSetup, ExitResult, TerminalSize, exec_task_request, exec_task_response,
};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Why a command could not be run (its own failure is its exit code).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec needs a command")]
    NoCommand,
    #[error("container {0} is not known to the engine")]
    NotFound(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("the engine's exec in container {0}: {1}")]
    Engine(String, #[source] bollard::errors::Error),
    #[error("the engine did not report the exit of exec {0}")]
    NoExitCode(String),
}

/// How long to wait, once the output has ended, for the engine to record the exit.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// Runs `setup.command` in the container, forwarding `input` (stdin bytes, stdin's end,
/// resizes) and writing its output to `output`; returns its exit once its output has ended.
pub async fn run(
    docker: &Docker,
    container_id: &str,
    setup: ExecTaskSetup,
    input: mpsc::Receiver<exec_task_request::Msg>,
    output: mpsc::Sender<exec_task_response::Msg>,
) -> Result<ExitResult, ExecError> {
    if setup.command.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let engine = |e| engine_error(container_id, e);
    let create = CreateExecOptions {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(setup.tty),
        cmd: Some(setup.command.clone()),
        ..Default::default()
    };
    let exec_id = docker
        .create_exec(container_id, create)
        .await
        .map_err(engine)?
        .id;
    let start = StartExecOptions {
        detach: false,
        tty: setup.tty,
        output_capacity: None,
    };
    let StartExecResults::Attached {
        output: from_engine,
        input: to_engine,
    } = docker
        .start_exec(&exec_id, Some(start))
        .await
        .map_err(engine)?
    else {
        return Err(ExecError::NoExitCode(exec_id));
    };
    if let (true, Some(size)) = (setup.tty, setup.size.as_ref()) {
        resize(docker, &exec_id, size).await;
    }
    // Output ends when the command exits; stdin is forwarded meanwhile.
    tokio::select! {
        () = forward_output(from_engine, &output) => {}
        () = forward_input(docker, &exec_id, setup.tty, input, to_engine) => {
            // Stdin ended and was closed; the output still runs to its end.
        }
    }
    exit_of(docker, &exec_id).await
}

fn engine_error(container_id: &str, e: bollard::errors::Error) -> ExecError {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => ExecError::NotFound(container_id.to_string()),
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        } => ExecError::NotRunning(container_id.to_string()),
        e => ExecError::Engine(container_id.to_string(), e),
    }
}

/// Sends the engine's output to the caller until it ends (a caller gone stops the sending,
/// not the command).
async fn forward_output<S>(mut from_engine: S, output: &mpsc::Sender<exec_task_response::Msg>)
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    let mut caller_gone = false;
    while let Some(item) = from_engine.next().await {
        let msg = match item {
            Ok(LogOutput::StdErr { message }) => exec_task_response::Msg::Stderr(message.to_vec()),
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                exec_task_response::Msg::Stdout(message.to_vec())
            }
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "exec output ended with an error");
                return;
            }
        };
        if !caller_gone && output.send(msg).await.is_err() {
            caller_gone = true;
        }
    }
}

/// The byte a terminal sends for end of input (Ctrl-D).
const END_OF_TRANSMISSION: u8 = 0x04;

/// Forwards stdin and resizes; on stdin's end (or the caller's), ends the command's stdin
/// and keeps forwarding resizes. Never returns: the output decides when the exec is over.
///
/// Without a terminal, stdin's end half-closes the connection. With one, the engine ends
/// the whole session on a half-close — output the command has yet to write would be lost —
/// so the end is typed into the terminal instead, as a user's Ctrl-D.
async fn forward_input<W>(
    docker: &Docker,
    exec_id: &str,
    tty: bool,
    mut input: mpsc::Receiver<exec_task_request::Msg>,
    mut to_engine: W,
) where
    W: AsyncWrite + Unpin,
{
    loop {
        match input.recv().await {
            Some(exec_task_request::Msg::Stdin(data)) => {
                if to_engine.write_all(&data).await.is_err() {
                    break;
                }
                let _ = to_engine.flush().await;
            }
            Some(exec_task_request::Msg::Resize(size)) => resize(docker, exec_id, &size).await,
            Some(exec_task_request::Msg::Setup(_)) => {}
            Some(exec_task_request::Msg::StdinClose(_)) | None => break,
        }
    }
    if tty {
        let _ = to_engine.write_all(&[END_OF_TRANSMISSION]).await;
        let _ = to_engine.flush().await;
    } else {
        // Half-close: the command reads its stdin's end, its output keeps flowing.
        let _ = to_engine.shutdown().await;
    }
    // Resizes may still come after stdin's end (a TTY session).
    while let Some(msg) = input.recv().await {
        if let exec_task_request::Msg::Resize(size) = msg {
            resize(docker, exec_id, &size).await;
        }
    }
    std::future::pending::<()>().await
}

async fn resize(docker: &Docker, exec_id: &str, size: &TerminalSize) {
    let clamp = |v: u32| i32::try_from(v.clamp(1, 10_000)).unwrap_or(1);
    let options = ResizeExecOptions {
        h: clamp(size.rows),
        w: clamp(size.cols),
    };
    if let Err(e) = docker.resize_exec(exec_id, options).await {
        tracing::debug!(exec = exec_id, error = %e, "resizing the exec's terminal failed");
    }
}

/// The command's exit, once the engine has recorded it.
async fn exit_of(docker: &Docker, exec_id: &str) -> Result<ExitResult, ExecError> {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    loop {
        let info = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| ExecError::Engine(exec_id.to_string(), e))?;
        if info.running != Some(true)
            && let Some(code) = info.exit_code
        {
            return Ok(ExitResult {
                exit_code: i32::try_from(code).unwrap_or(i32::MAX),
                ..Default::default()
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ExecError::NoExitCode(exec_id.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests;
