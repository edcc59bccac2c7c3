//! `alloc exec` and `alloc status -stats` through the API, in Nomad's shapes:
//! - `GET /v1/client/allocation/:id/exec?task=&command=["sh"]&tty=true` upgrades to a
//!   WebSocket. The caller sends `{"stdin":{"data":"<base64>"}}`, `{"stdin":{"close":true}}`
//!   and `{"tty_size":{"height":H,"width":W}}`; the server sends `{"stdout":{"data":...}}`,
//!   `{"stderr":{"data":...}}` and finally `{"exited":true,"result":{"exit_code":N}}`.
//! - `GET /v1/client/allocation/:id/stats?task=`: Nomad's AllocResourceUsage.
//!
//! With ACLs, exec needs `alloc-exec` in the allocation's namespace, and into a task whose
//! driver does not isolate it (raw_exec) `alloc-node-exec` too (Nomad's rule). A caller
//! without a token in its headers sends it as the first frame, as Nomad's clients do:
//! `{"version":1,"auth_token":"<secret>"}`; nothing runs before it is checked.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use drover_acl::NsCap;
use drover_proto::node::{ExecInput, ExecRequest, StatsRequest, TtySize, exec_input, exec_output};
use serde_json::{Value, json};

use crate::acl::{Caller, denied};
use crate::allocations::{find_alloc, find_alloc_to_act};
use crate::{ApiError, ApiState};

pub(crate) async fn stats(
    State(st): State<ApiState>,
    Path(alloc_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let alloc = find_alloc(&st.server.store().snapshot(), &alloc_id)?.clone();
    let req = StatsRequest {
        alloc_id: alloc.id.clone(),
        task: q.get("task").cloned().unwrap_or_default(),
    };
    let body = st.server.alloc_stats(&alloc.node_id, req).await?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the client's statistics are not JSON: {e}")))?;
    Ok(axum::Json(value).into_response())
}

/// Drivers whose tasks run unisolated on the node: exec into them is `alloc-node-exec`.
const NODE_EXEC_DRIVERS: &[&str] = &["raw_exec"];

/// The capabilities exec into `task` of `alloc` needs: `alloc-exec`, plus `alloc-node-exec`
/// when the task (any task of the group, if the name matches none) runs unisolated.
fn exec_capabilities(
    snap: &drover_state::StateSnapshot,
    alloc: &drover_model::Allocation,
    task: &str,
) -> Vec<NsCap> {
    let mut caps = vec![NsCap::AllocExec];
    let group = snap
        .job_version(&alloc.namespace, &alloc.job_id, alloc.job_version)
        .and_then(|j| j.groups.iter().find(|g| g.name == alloc.task_group));
    let unisolated = group.is_none_or(|g| {
        let named: Vec<_> = g.tasks.iter().filter(|t| t.name == task).collect();
        let tasks = if named.is_empty() {
            g.tasks.iter().collect()
        } else {
            named
        };
        tasks
            .iter()
            .any(|t| NODE_EXEC_DRIVERS.contains(&t.driver.as_str()))
    });
    if unisolated {
        caps.push(NsCap::AllocNodeExec);
    }
    caps
}

fn may_exec(caller: &Caller, ns: &str, caps: &[NsCap]) -> bool {
    caps.iter().all(|c| caller.can(ns, *c))
}

/// How long a caller has to send its token frame.
const AUTH_FRAME_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the first frame of a WebSocket whose caller had no token in its headers: Nomad's
/// `{"version":1,"auth_token":"..."}` names the caller; any other frame is the first input
/// of an anonymous caller (returned, to be sent on).
async fn first_frame_caller(
    socket: &mut WebSocket,
    st: &ApiState,
) -> Result<(Caller, Option<String>), String> {
    let first = match tokio::time::timeout(AUTH_FRAME_WAIT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => Some(t.to_string()),
        Ok(Some(Ok(Message::Binary(b)))) => Some(String::from_utf8_lossy(&b).into_owned()),
        Ok(_) => None,
        Err(_) => return Err("no frame arrived to authenticate with".into()),
    };
    let token = first
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .filter(|v| v.get("version").and_then(Value::as_u64) == Some(1))
        .and_then(|v| {
            v.get("auth_token")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let leftover = if token.is_some() { None } else { first };
    let caller = st
        .acl
        .resolve(
            st.server.store(),
            token.as_deref().filter(|t| !t.is_empty()),
        )
        .map_err(|e| e.1)?;
    Ok((caller, leftover))
}

pub(crate) async fn exec(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(alloc_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let snap = st.server.store().snapshot();
    let alloc = find_alloc_to_act(&snap, &alloc_id)?.clone();
    let caps = exec_capabilities(&snap, &alloc, q.get("task").map_or("", String::as_str));
    drop(snap);
    if !caller.first_frame && !may_exec(&caller, &alloc.namespace, &caps) {
        return Err(denied());
    }
    let command: Vec<String> = match q.get("command") {
        None => return Err(ApiError::bad_request("missing ?command= (a JSON list)")),
        Some(c) => serde_json::from_str(c).map_err(|e| {
            ApiError::bad_request(format!("command {c:?} is not a JSON list of strings: {e}"))
        })?,
    };
    if command.is_empty() {
        return Err(ApiError::bad_request("command must not be empty"));
    }
    let tty = q.get("tty").is_some_and(|v| v == "true" || v == "1");
    let req = ExecRequest {
        alloc_id: alloc.id.clone(),
        task: q.get("task").cloned().unwrap_or_default(),
        command,
        tty,
        rows: 0,
        cols: 0,
    };
    let server = st.server.clone();
    let node_id = alloc.node_id.clone();
    Ok(ws.on_upgrade(move |mut socket| async move {
        let mut leftover = None;
        if caller.first_frame {
            let allowed = match first_frame_caller(&mut socket, &st).await {
                Ok((c, rest)) => {
                    leftover = rest;
                    may_exec(&c, &alloc.namespace, &caps)
                        .then_some(())
                        .ok_or_else(|| "Permission denied".to_string())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = allowed {
                let _ = socket.send(frame(exited(-1, Some(e)))).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
        bridge(socket, server.alloc_exec(&node_id, req).await, leftover).await
    }))
}

fn frame(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

fn exited(code: i32, error: Option<String>) -> Value {
    let mut v = json!({ "exited": true, "result": { "exit_code": code } });
    if let Some(e) = error {
        v["result"]["error"] = json!(e);
    }
    v
}

/// Decodes one caller frame into the input it carries.
fn input_of(text: &str) -> Result<Vec<ExecInput>, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("a frame that is not JSON: {e}"))?;
    let mut out = Vec::new();
    if let Some(stdin) = v.get("stdin") {
        if let Some(data) = stdin.get("data").and_then(Value::as_str) {
            let bytes = B64
                .decode(data)
                .map_err(|e| format!("stdin data is not base64: {e}"))?;
            out.push(ExecInput {
                msg: Some(exec_input::Msg::Stdin(bytes)),
            });
        }
        if stdin.get("close").and_then(Value::as_bool) == Some(true) {
            out.push(ExecInput {
                msg: Some(exec_input::Msg::StdinClose(true)),
            });
        }
    }
    if let Some(size) = v.get("tty_size") {
        let dim = |k: &str| size.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        out.push(ExecInput {
            msg: Some(exec_input::Msg::Resize(TtySize {
                rows: dim("height"),
                cols: dim("width"),
            })),
        });
    }
    Ok(out)
}

async fn bridge(
    mut socket: WebSocket,
    session: Result<drover_server::ExecSession, drover_server::ServerError>,
    first_input: Option<String>,
) {
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            let _ = socket.send(frame(exited(-1, Some(e.to_string())))).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    if let Some(text) = first_input {
        match input_of(&text) {
            Ok(inputs) => {
                for i in inputs {
                    let _ = session.input.send(i).await;
                }
            }
            Err(e) => {
                let _ = socket.send(frame(exited(-1, Some(e)))).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
    }
    loop {
        tokio::select! {
            out = session.output.recv() => {
                let (v, last) = match out {
                    Some(exec_output::Msg::Stdout(b)) => (json!({"stdout": {"data": B64.encode(b)}}), false),
                    Some(exec_output::Msg::Stderr(b)) => (json!({"stderr": {"data": B64.encode(b)}}), false),
                    Some(exec_output::Msg::ExitCode(c)) => (exited(c, None), true),
                    Some(exec_output::Msg::Error(e)) => (exited(-1, Some(e)), true),
                    None => (exited(-1, Some("the client ended the session".into())), true),
                };
                if socket.send(frame(v)).await.is_err() || last {
                    break;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        // The caller left: closing its stdin lets the command end.
                        let _ = session.input.send(ExecInput { msg: Some(exec_input::Msg::StdinClose(true)) }).await;
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                match input_of(&text) {
                    Ok(inputs) => {
                        for i in inputs {
                            let _ = session.input.send(i).await;
                        }
                    }
                    Err(e) => {
                        let _ = socket.send(frame(exited(-1, Some(e)))).await;
                        break;
                    }
                }
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_frames_decode_and_bad_ones_are_named() {
        let i = input_of(r#"{"stdin":{"data":"aGk="}}"#).unwrap();
        assert_eq!(i[0].msg, Some(exec_input::Msg::Stdin(b"hi".to_vec())));
        let i = input_of(r#"{"tty_size":{"height":24,"width":80}}"#).unwrap();
        assert_eq!(
            i[0].msg,
            Some(exec_input::Msg::Resize(TtySize { rows: 24, cols: 80 }))
        );
        let i = input_of(r#"{"stdin":{"close":true}}"#).unwrap();
        assert_eq!(i[0].msg, Some(exec_input::Msg::StdinClose(true)));
        assert!(input_of("nope").unwrap_err().contains("not JSON"));
        assert!(
            input_of(r#"{"stdin":{"data":"!!"}}"#)
                .unwrap_err()
                .contains("base64")
        );
    }
}
