//! `GET /v1/client/fs/logs/:alloc?task=&type=&follow=&origin=&offset=&plain=`: the server asks
//! the allocation's client for the logs over its stream and relays the bytes. With
//! `plain=true` the body is the raw log; otherwise Nomad's framing, one JSON object per chunk
//! (`{"Data": base64, "File": ..., "Offset": ...}`).

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use drover_proto::node::LogsRequest;

use crate::allocations::find_alloc;
use crate::{ApiError, ApiState};

pub(crate) async fn stream(
    State(st): State<ApiState>,
    Path(alloc_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let snap = st.server.store().snapshot();
    let alloc = find_alloc(&snap, &alloc_id)?.clone();
    let task = q
        .get("task")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("missing ?task="))?;
    drover_model::check_name(&task)
        .map_err(|e| ApiError::bad_request(format!("task {task:?}: {e}")))?;
    let kind = q.get("type").cloned().unwrap_or_else(|| "stdout".into());
    if kind != "stdout" && kind != "stderr" {
        return Err(ApiError::bad_request(format!(
            "type {kind:?} must be stdout or stderr"
        )));
    }
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let offset: i64 = match q.get("offset") {
        None => 0,
        Some(o) => o
            .parse()
            .map_err(|_| ApiError::bad_request(format!("offset {o:?} is not a number")))?,
    };
    let origin = q.get("origin").cloned().unwrap_or_else(|| "start".into());
    if origin != "start" && origin != "end" {
        return Err(ApiError::bad_request(format!(
            "origin {origin:?} must be start or end"
        )));
    }
    let req = LogsRequest {
        alloc_id: alloc.id.clone(),
        task: task.clone(),
        stream: kind.clone(),
        follow: flag("follow"),
        origin,
        offset,
    };
    let mut rx = st.server.open_logs(&alloc.node_id, req).await?;
    // The first answer tells whether the session works at all: report its error as such.
    let first = rx.recv().await;
    if let Some(Err(e)) = &first {
        return Err(ApiError::not_found(e.clone()));
    }
    let plain = flag("plain");
    let file = format!("alloc/logs/{task}.{kind}");
    Ok(relay(first, rx, (!plain).then_some(file)))
}

use futures::StreamExt;

/// Relays a client session's chunks as they arrive (the first one already received): raw,
/// or as Nomad's frames (`{"Data": base64, "File": file, "Offset": ...}`, one per line) when
/// `framed_as` names the file. An error from the client ends the body with it.
fn relay(
    first: Option<Result<Vec<u8>, String>>,
    rx: drover_server::LogsSession,
    framed_as: Option<String>,
) -> Response {
    let chunks = futures::stream::unfold((first, rx, false), |(first, mut rx, done)| async move {
        if done {
            return None;
        }
        let next = match first {
            Some(x) => Some(x),
            None => rx.recv().await,
        };
        match next {
            None => None,
            Some(Ok(data)) => Some((Ok(data), (None, rx, false))),
            Some(Err(e)) => Some((Err(std::io::Error::other(e)), (None, rx, true))),
        }
    });
    let mut offset: u64 = 0;
    let body = chunks.map(move |r: Result<Vec<u8>, std::io::Error>| {
        r.map(|data| {
            let Some(file) = &framed_as else {
                return Bytes::from(data);
            };
            offset += data.len() as u64;
            let frame =
                serde_json::json!({ "Data": base64(&data), "File": file, "Offset": offset });
            let mut v = serde_json::to_vec(&frame).expect("frame serializes");
            v.push(b'\n');
            Bytes::from(v)
        })
    });
    Body::from_stream(body).into_response()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// `GET /v1/client/fs/{ls,stat,cat,readat,stream}/:alloc?path=`: `readat` takes `offset`
/// and `limit`, `stream` takes `offset`, `origin` (start|end), `follow` and `plain` and
/// answers Nomad's frames (`{"Data": base64, "File": ..., "Offset": ...}`) unless plain.
/// File contents are relayed as they arrive, never held whole.
pub(crate) async fn fs(
    State(st): State<ApiState>,
    Path((op, alloc_id)): Path<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    if !matches!(op.as_str(), "ls" | "stat" | "cat" | "readat" | "stream") {
        return Err(ApiError::not_found(format!(
            "no fs operation {op:?}: use ls, stat, cat, readat or stream"
        )));
    }
    let snap = st.server.store().snapshot();
    let alloc = find_alloc(&snap, &alloc_id)?.clone();
    let path = q.get("path").cloned().unwrap_or_else(|| "/".into());
    let number = |k: &str| -> Result<i64, ApiError> {
        match q.get(k) {
            None => Ok(0),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad_request(format!("{k} {v:?} is not a byte count"))),
        }
    };
    let origin = q.get("origin").cloned().unwrap_or_else(|| "start".into());
    if origin != "start" && origin != "end" {
        return Err(ApiError::bad_request(format!(
            "origin {origin:?} must be start or end"
        )));
    }
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    if op == "readat" && !q.contains_key("offset") {
        return Err(ApiError::bad_request("readat needs ?offset= (and ?limit=)"));
    }
    let req = drover_proto::node::FsRequest {
        alloc_id: alloc.id.clone(),
        op: op.clone(),
        path: path.clone(),
        offset: number("offset")?,
        limit: number("limit")?,
        origin,
        follow: flag("follow"),
    };
    let mut rx = st.server.alloc_fs(&alloc.node_id, req).await?;
    // The first answer tells whether the session works at all: report its error as such.
    let first = rx.recv().await;
    if let Some(Err(e)) = first {
        return Err(ApiError::not_found(e));
    }
    if op == "ls" || op == "stat" {
        let mut body = first.and_then(Result::ok).unwrap_or_default();
        while let Some(chunk) = rx.recv().await {
            body.extend_from_slice(&chunk.map_err(ApiError::not_found)?);
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                axum::http::StatusCode::BAD_GATEWAY,
                format!("the client answered badly: {e}"),
            )
        })?;
        return Ok(axum::Json(v).into_response());
    }
    let framed = op == "stream" && !flag("plain");
    Ok(relay(first, rx, framed.then_some(path)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(super::base64(b"f"), "Zg==");
    }
}
