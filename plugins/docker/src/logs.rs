//! Following a container's output into the task's `alloc/logs/<task>.stdout.<n>` and
//! `.stderr.<n>` files, rotated as the other drivers rotate them, with no gap and no
//! duplicate across restarts of the plugin and the agent.
//!
//! The engine's json-file log keeps everything the container wrote while no follower ran.
//! A follower reads it with timestamps, strips them, and after each batch records a cursor
//! (in the plugin's data dir): where it is in the engine's log and how long each file was
//! after the write. A new follower cuts the files back to those lengths and asks the engine
//! again from the cursor, skipping what was written: exactly once whatever instant the
//! previous one was killed at (see `cursor`).
//!
//! Known limit: a TTY container's output reaches the logs endpoint as one raw stream, which
//! bollard splits at newlines; such a line is held in memory whole until its newline.

mod cursor;
mod entry;
mod sink;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, LogsOptions};
use futures::StreamExt;
use tokio::task::JoinHandle;

use entry::Entry;
pub use entry::MAX_LINE;
use sink::{CURSOR_INTERVAL, Sink};

/// Where a follower writes.
#[derive(Debug, Clone)]
pub struct LogTarget {
    /// `<alloc dir>/alloc/logs/<task>.stdout` (files are `<that>.<n>`).
    pub stdout_path: PathBuf,
    /// `<alloc dir>/alloc/logs/<task>.stderr`.
    pub stderr_path: PathBuf,
    /// The alloc dir: the log files are opened beneath it without following links.
    pub logs_dir_root: PathBuf,
    /// Files kept per stream (the task's `logs { max_files }`; 0: Nomad's 10).
    pub max_files: u32,
    /// Size of one file in MiB (`logs { max_file_size }`; 0: Nomad's 10).
    pub max_file_size_mb: u64,
    /// The cursor file, in the plugin's data dir (one per task; `<that>.lock` beside it).
    pub cursor_path: PathBuf,
}

/// The lock file beside a cursor (`<cursor>.lock`): one follower per task at a time.
pub(crate) fn lock_path(cursor_path: &std::path::Path) -> PathBuf {
    let mut name = cursor_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Removes a finished task's cursor and its lock file (blocking: call it off the runtime).
pub fn forget(cursor_path: &std::path::Path) {
    let _ = std::fs::remove_file(cursor_path);
    let _ = std::fs::remove_file(lock_path(cursor_path));
}

/// Why a follower stopped.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("log file {0}: {1}")]
    File(PathBuf, #[source] std::io::Error),
    #[error("log cursor {0}: {1}")]
    Cursor(PathBuf, #[source] std::io::Error),
    #[error("container {0} is gone from the engine: its remaining output is lost")]
    ContainerGone(String),
    #[error("the engine cannot give container {0}'s output: {1}")]
    Unreadable(String, String),
    #[error("the log follower failed: {0}")]
    Task(String),
}

/// A running follower. Dropping it stops it (a batch being written is finished first, and
/// the next follower of the same cursor waits for that).
pub struct LogFollower {
    task: Option<JoinHandle<Result<(), LogsError>>>,
}

impl LogFollower {
    /// Resolves when the container has exited and all of its output is written (or the
    /// follower failed). Later calls return `Ok(())` at once.
    pub async fn finished(&mut self) -> Result<(), LogsError> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let result = task.await;
        self.task = None;
        result.map_err(|e| LogsError::Task(e.to_string()))?
    }
}

impl Drop for LogFollower {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts following `container_id`'s output into `target`, continuing from the cursor when
/// there is one.
pub fn follow(docker: Docker, container_id: String, target: LogTarget) -> LogFollower {
    let mb = if target.max_file_size_mb == 0 {
        drover_plugin_sdk::shim::rotate::DEFAULT_MAX_FILE_SIZE_MB
    } else {
        target.max_file_size_mb
    };
    follow_with_file_size(docker, container_id, target, mb.saturating_mul(1024 * 1024))
}

/// [`follow`] with the file size in bytes (tests rotate tiny files).
fn follow_with_file_size(
    docker: Docker,
    container_id: String,
    target: LogTarget,
    max_file_size: u64,
) -> LogFollower {
    let task = tokio::spawn(run(docker, container_id, target, max_file_size));
    LogFollower { task: Some(task) }
}

/// How one query of the engine's log ended.
enum QueryEnd {
    /// The engine ended the stream (a followed container stopped, or all was read).
    Done,
    /// The engine failed or went away.
    Failed(bollard::errors::Error),
}

/// Pause after a failed query, before asking again.
const RETRY: Duration = Duration::from_millis(500);

async fn run(
    docker: Docker,
    id: String,
    target: LogTarget,
    max_file_size: u64,
) -> Result<(), LogsError> {
    let container = id.clone();
    let sink = blocking(move || Sink::open(&target, &container, max_file_size)).await?;
    let sink = Arc::new(Mutex::new(sink));
    // Follow while the container runs; once it has stopped, one last read to the end.
    let mut follow = true;
    loop {
        let since = lock(&sink).tracker.restart();
        match query(&docker, &id, &sink, since, follow).await? {
            QueryEnd::Done if !follow => {
                return blocking(move || lock(&sink).store_cursor()).await;
            }
            QueryEnd::Done => match running(&docker, &id).await {
                Ok(true) => tokio::time::sleep(RETRY).await,
                Ok(false) => follow = false,
                Err(e) => retry_or_gone(&id, e).await?,
            },
            QueryEnd::Failed(e) => retry_or_gone(&id, e).await?,
        }
    }
}

/// One query of the engine's log from `since`, written as it comes.
async fn query(
    docker: &Docker,
    id: &str,
    sink: &Arc<Mutex<Sink>>,
    since: i64,
    follow: bool,
) -> Result<QueryEnd, LogsError> {
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        timestamps: true,
        since: i32::try_from(since).unwrap_or(i32::MAX),
        ..Default::default()
    };
    let frames = docker.logs(id, Some(options)).ready_chunks(256);
    let mut frames = std::pin::pin!(frames);
    // Whether entries were written since the output last paused: a pause records the
    // cursor (an idle follower does not wake up).
    let mut unrecorded = false;
    loop {
        let next = if unrecorded {
            tokio::time::timeout(CURSOR_INTERVAL, frames.next()).await
        } else {
            Ok(frames.next().await)
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(_paused) => {
                let sink = sink.clone();
                blocking(move || lock(&sink).store_cursor()).await?;
                unrecorded = false;
                continue;
            }
        };
        let mut entries = Vec::with_capacity(batch.len());
        let mut failure = None;
        for frame in batch {
            match frame {
                Ok(out) => entries.extend(Entry::from_output(out)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let sink = sink.clone();
        blocking(move || lock(&sink).write(&entries)).await?;
        unrecorded = true;
        if let Some(e) = failure {
            return Ok(QueryEnd::Failed(e));
        }
    }
    Ok(QueryEnd::Done)
}

/// Whether the container may still write: running, paused, restarting, or created and not
/// yet started.
async fn running(docker: &Docker, id: &str) -> Result<bool, bollard::errors::Error> {
    use bollard::models::ContainerStateStatusEnum as S;
    let info = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await?;
    let Some(state) = info.state else {
        return Ok(false);
    };
    Ok(state.running == Some(true)
        || matches!(
            state.status,
            Some(S::CREATED | S::RUNNING | S::PAUSED | S::RESTARTING)
        ))
}

/// A container the engine no longer has, or whose logging driver keeps nothing to read
/// (`none`, `syslog` ...: 501), ends the follower; any other failure (the engine
/// restarting) is waited out.
async fn retry_or_gone(id: &str, e: bollard::errors::Error) -> Result<(), LogsError> {
    use bollard::errors::Error::DockerResponseServerError;
    match e {
        DockerResponseServerError {
            status_code: 404, ..
        } => return Err(LogsError::ContainerGone(id.to_string())),
        DockerResponseServerError {
            status_code: 400 | 501,
            message,
        } => return Err(LogsError::Unreadable(id.to_string(), message)),
        _ => {}
    }
    tracing::debug!(container = id, error = %e, "reading the container's log failed; retrying");
    tokio::time::sleep(RETRY).await;
    Ok(())
}

fn lock(sink: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs file work off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogsError> + Send + 'static,
) -> Result<T, LogsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogsError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests;
