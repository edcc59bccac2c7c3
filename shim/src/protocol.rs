//! The shim's control protocol on `shim.sock`: one request line, one JSON reply line.
//!
//! Requests are words (`hello`, `wait`, `signal SIG`, `stop SIG MILLIS`, `inspect`, `stats`)
//! or `exec <json>` (with the caller's stdin, stdout and stderr passed as SCM_RIGHTS).
//! Replies are JSON objects with their keys in sorted order: `{"ok":true,...}` or
//! `{"error":"...","ok":false}`. The bytes are fixed: an agent reattaches to shims that
//! an older build started (and an older agent to newer shims), so both sides keep speaking
//! exactly what `tests/fixtures/control-protocol.transcript` recorded.

use serde_json::json;

use crate::isolate::enter::ExecRequest;
use crate::procfs::TaskStats;
use crate::{ShimError, TaskExit, parse_signal};

/// The protocol version `hello` announces.
pub const PROTOCOL_VERSION: u32 = 1;

/// A signal as the client named it (`SIGTERM`, `TERM`, `15`) and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalArg {
    pub name: String,
    pub number: i32,
}

impl SignalArg {
    /// Refuses a name that is not one signal.
    pub fn parse(name: &str) -> Result<Self, RequestError> {
        match parse_signal(name) {
            Some(number) if name.split_whitespace().count() == 1 => Ok(Self {
                name: name.to_string(),
                number,
            }),
            _ => Err(RequestError::UnknownSignal(name.to_string())),
        }
    }
}

/// A request line.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Names the shim and its task: every connection starts with it.
    Hello,
    /// Answered once the task has exited.
    Wait,
    Signal(SignalArg),
    /// The signal, then SIGKILL after the timeout.
    Stop {
        signal: SignalArg,
        timeout_ms: u64,
    },
    Inspect,
    Stats,
    /// Runs a command inside an isolated task.
    Exec(ExecRequest),
}

/// Why a request line was refused before anything was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    #[error("bad timeout {0:?}")]
    BadTimeout(String),
    /// An `exec` line whose command cannot be read. The shim names this only after it has
    /// checked that the task can take an exec at all.
    #[error("{0}")]
    BadExec(String),
    #[error("unknown request {0:?}")]
    Unknown(String),
}

impl Request {
    /// Parses one request line (without its newline; surrounding blanks are ignored).
    pub fn parse(line: &str) -> Result<Self, RequestError> {
        let line = line.trim();
        if let Some(json) = line.strip_prefix("exec ") {
            let req: ExecRequest = serde_json::from_str(json)
                .map_err(|e| RequestError::BadExec(format!("bad exec request: {e}")))?;
            if req.argv.is_empty() {
                return Err(RequestError::BadExec("exec needs a command".into()));
            }
            return Ok(Self::Exec(req));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["hello"] => Ok(Self::Hello),
            ["wait"] => Ok(Self::Wait),
            ["inspect"] => Ok(Self::Inspect),
            ["stats"] => Ok(Self::Stats),
            ["signal", sig] => Ok(Self::Signal(SignalArg::parse(sig)?)),
            ["stop", sig, timeout] => {
                let signal = SignalArg::parse(sig)?;
                let timeout_ms = timeout
                    .parse()
                    .map_err(|_| RequestError::BadTimeout(timeout.to_string()))?;
                Ok(Self::Stop { signal, timeout_ms })
            }
            _ => Err(RequestError::Unknown(line.to_string())),
        }
    }

    /// The request line, without its newline.
    pub fn line(&self) -> Result<String, ShimError> {
        Ok(match self {
            Self::Hello => "hello".into(),
            Self::Wait => "wait".into(),
            Self::Inspect => "inspect".into(),
            Self::Stats => "stats".into(),
            Self::Signal(s) => format!("signal {}", s.name),
            Self::Stop { signal, timeout_ms } => format!("stop {} {timeout_ms}", signal.name),
            Self::Exec(req) => format!(
                "exec {}",
                serde_json::to_string(req).map_err(|e| ShimError::Protocol(e.to_string()))?
            ),
        })
    }
}

/// What `hello` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub shim_id: String,
    pub task_pid: i32,
    pub task_start_time: u64,
}

/// What `inspect` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimInspect {
    /// `running` or `exited`.
    pub state: String,
    pub task_pid: i32,
    pub task_start_time: u64,
    pub started_at_unix_nanos: i64,
    pub exit: Option<TaskExit>,
}

/// A reply line.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Hello(Hello),
    /// `signal` and `stop`: done.
    Done,
    /// `wait` and `exec`: how the task (or the command) ended.
    Exit(TaskExit),
    Inspect(ShimInspect),
    Stats(TaskStats),
    Refused(String),
}

/// Every field a reply line may carry; which ones depends on the request.
#[derive(Debug, Default, serde::Deserialize)]
struct Fields {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    shim_id: Option<String>,
    #[serde(default)]
    task_pid: Option<i32>,
    #[serde(default)]
    task_start_time: Option<u64>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    started_at_unix_nanos: Option<i64>,
    #[serde(default)]
    exit: Option<TaskExit>,
    #[serde(default)]
    stats: Option<TaskStats>,
}

/// As JSON, with sorted keys (serde_json's `Value` sorts them): the protocol's byte form.
fn exit_value(exit: &TaskExit) -> serde_json::Value {
    serde_json::to_value(exit).unwrap_or_default()
}

impl Reply {
    /// The reply line, without its newline.
    pub fn line(&self) -> String {
        let value = match self {
            Self::Hello(h) => json!({
                "ok": true,
                "protocol": PROTOCOL_VERSION,
                "shim_id": h.shim_id,
                "task_pid": h.task_pid,
                "task_start_time": h.task_start_time,
            }),
            Self::Done => json!({ "ok": true }),
            Self::Exit(exit) => json!({ "ok": true, "exit": exit_value(exit) }),
            Self::Inspect(i) => json!({
                "ok": true,
                "state": i.state,
                "task_pid": i.task_pid,
                "task_start_time": i.task_start_time,
                "started_at_unix_nanos": i.started_at_unix_nanos,
                "exit": i.exit.as_ref().map(exit_value),
            }),
            Self::Stats(s) => json!({ "ok": true, "stats": s }),
            Self::Refused(msg) => json!({ "ok": false, "error": msg }),
        };
        value.to_string()
    }

    /// Reads the reply to `request`. Missing fields take their defaults, as they always have;
    /// a `wait`, `exec` or `stats` reply without its payload is a protocol error.
    pub fn parse(request: &Request, line: &str) -> Result<Self, ShimError> {
        let f: Fields = serde_json::from_str(line.trim())
            .map_err(|e| ShimError::Protocol(format!("{line:?}: {e}")))?;
        if !f.ok {
            return Ok(Self::Refused(
                f.error.unwrap_or_else(|| "the task shim refused".into()),
            ));
        }
        Ok(match request {
            Request::Hello => Self::Hello(Hello {
                shim_id: f.shim_id.unwrap_or_default(),
                task_pid: f.task_pid.unwrap_or_default(),
                task_start_time: f.task_start_time.unwrap_or_default(),
            }),
            Request::Signal(_) | Request::Stop { .. } => Self::Done,
            Request::Wait | Request::Exec(_) => Self::Exit(f.exit.ok_or_else(|| {
                ShimError::Protocol("the task shim answered without an exit".into())
            })?),
            Request::Inspect => Self::Inspect(ShimInspect {
                state: f.state.unwrap_or_default(),
                task_pid: f.task_pid.unwrap_or_default(),
                task_start_time: f.task_start_time.unwrap_or_default(),
                started_at_unix_nanos: f.started_at_unix_nanos.unwrap_or_default(),
                exit: f.exit,
            }),
            Request::Stats => {
                Self::Stats(f.stats.ok_or_else(|| {
                    ShimError::Protocol("stats answered without statistics".into())
                })?)
            }
        })
    }
}

/// `exit.json`: how the task ended, written durably before any `wait` is answered, and read
/// by whoever finds the shim gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    pub shim_id: String,
    pub exit: TaskExit,
    pub exited_at_unix_nanos: i64,
}

impl ExitRecord {
    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        json!({
            "version": 1,
            "shim_id": self.shim_id,
            "exit": exit_value(&self.exit),
            "exited_at_unix_nanos": self.exited_at_unix_nanos,
        })
        .to_string()
        .into_bytes()
    }

    /// Reads the file's bytes (only `exit` is required).
    pub fn parse(data: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Record {
            exit: TaskExit,
            #[serde(default)]
            shim_id: String,
            #[serde(default)]
            exited_at_unix_nanos: i64,
        }
        let r: Record = serde_json::from_slice(data)?;
        Ok(Self {
            shim_id: r.shim_id,
            exit: r.exit,
            exited_at_unix_nanos: r.exited_at_unix_nanos,
        })
    }
}
