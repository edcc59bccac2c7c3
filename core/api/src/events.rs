//! `GET /v1/event/stream`: the state's events as newline-delimited JSON, Nomad's shape:
//! `{"Index": N, "Events": [{"Topic", "Type", "Key", "Namespace", "Index", "Payload"}]}`,
//! with `{}` heartbeats every 10 s. `?topic=Job:*` (repeatable; `*` or a key), `?index=`
//! to resume from, `?namespace=` (`*` for all).

use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use drover_acl::NsCap;
use drover_api_types as api;
use drover_state::{Event, Payload, StateSnapshot, Topic};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use crate::acl::Caller;
use crate::{ApiError, ApiState};

struct Filter {
    /// (topic, key or "*"); empty means every topic.
    topics: Vec<(Topic, String)>,
    namespace: String,
    /// Who reads: an event it may not read is never sent.
    caller: Caller,
}

impl Filter {
    /// Whether the caller may read `e`: a node event needs `node:read`; the others
    /// `read-job` in the event's namespace.
    fn readable(&self, e: &Event) -> bool {
        match e.topic {
            Topic::Node => self.caller.acl.allow_node_read(),
            _ => self.caller.can(&e.namespace, NsCap::ReadJob),
        }
    }

    fn matches(&self, e: &Event) -> bool {
        if !self.readable(e) {
            return false;
        }
        let ns_ok =
            self.namespace == "*" || e.namespace.is_empty() || e.namespace == self.namespace;
        let topic_ok = self.topics.is_empty()
            || self
                .topics
                .iter()
                .any(|(t, k)| *t == e.topic && (k == "*" || *k == e.key));
        ns_ok && topic_ok
    }
}

fn parse_query(raw: Option<&str>, caller: Caller) -> Result<(Filter, u64), ApiError> {
    let mut f = Filter {
        topics: Vec::new(),
        namespace: "default".into(),
        caller,
    };
    let mut index = 0;
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v
            .replace("%3A", ":")
            .replace("%3a", ":")
            .replace("%2A", "*")
            .replace("%2a", "*");
        match k {
            "topic" => {
                let (t, key) = v.split_once(':').unwrap_or((v.as_str(), "*"));
                if t == "*" {
                    continue;
                }
                let topic = Topic::parse(t).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown topic {t:?}: use Job, Allocation, Evaluation, Node, Service or *"
                    ))
                })?;
                f.topics.push((topic, key.to_string()));
            }
            "index" => {
                index = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("index {v:?} is not a number")))?
            }
            "namespace" => f.namespace = v,
            _ => {}
        }
    }
    Ok((f, index))
}

fn event_json(e: &Event, snap: &StateSnapshot) -> serde_json::Value {
    let payload = match &e.payload {
        Payload::Job(j) => serde_json::json!({ "Job": j }),
        Payload::Allocation(a) => {
            let node = snap
                .node(&a.node_id)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            serde_json::json!({ "Allocation": api::Allocation::from_model(a, &node, None) })
        }
        Payload::Evaluation(ev) => {
            serde_json::json!({ "Evaluation": ev })
        }
        Payload::Node(n) => serde_json::json!({ "Node": crate::nodes::public_node(n) }),
        Payload::Service(r) => serde_json::json!({ "Service": r }),
    };
    serde_json::json!({
        "Topic": e.topic.as_str(),
        "Type": e.kind,
        "Key": e.key,
        "Namespace": e.namespace,
        "Index": e.index,
        "Payload": payload,
    })
}

fn frame(index: u64, events: Vec<serde_json::Value>) -> Bytes {
    let mut v = serde_json::to_vec(&serde_json::json!({ "Index": index, "Events": events }))
        .expect("frame serializes");
    v.push(b'\n');
    Bytes::from(v)
}

pub(crate) async fn stream(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (filter, index) = parse_query(raw.as_deref(), caller)?;
    let slot = crate::limits::event_stream()?;
    let store = st.server.store().clone();
    let (backlog, rx) = store.subscribe_events(if index == 0 { store.index() } else { index });
    // Buffered events first, one frame per index.
    let mut frames: Vec<Bytes> = Vec::new();
    let snap = store.snapshot();
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut batch_index = 0;
    for e in backlog.iter().filter(|e| filter.matches(e)) {
        if e.index != batch_index && !batch.is_empty() {
            frames.push(frame(batch_index, std::mem::take(&mut batch)));
        }
        batch_index = e.index;
        batch.push(event_json(e, &snap));
    }
    if !batch.is_empty() {
        frames.push(frame(batch_index, batch));
    }
    let heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let live = futures::stream::unfold(
        (rx, heartbeat, store, filter, false),
        |(mut rx, mut hb, store, filter, done)| async move {
            if done {
                return None;
            }
            loop {
                tokio::select! {
                    _ = hb.tick() => return Some((Bytes::from_static(b"{}\n"), (rx, hb, store, filter, false))),
                    r = rx.recv() => match r {
                        Ok(e) if filter.matches(&e) => {
                            let json = event_json(&e, &store.snapshot());
                            return Some((frame(e.index, vec![json]), (rx, hb, store, filter, false)));
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(n)) => {
                            let msg = format!("{{\"Error\":\"the reader fell {n} events behind; reconnect with ?index=\"}}\n");
                            return Some((Bytes::from(msg), (rx, hb, store, filter, true)));
                        }
                        Err(RecvError::Closed) => return None,
                    },
                }
            }
        },
    );
    let body = futures::stream::iter(frames).chain(live).map(move |b| {
        // The stream's slot is given back when the stream ends.
        let _held = &slot;
        Ok::<_, std::io::Error>(b)
    });
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        "Content-Type",
        "application/x-ndjson".parse().expect("header"),
    );
    Ok(resp)
}
