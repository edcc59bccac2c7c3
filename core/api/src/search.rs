//! Nomad's search API: `POST /v1/search` (ids and paths by prefix) and `POST
//! /v1/search/fuzzy` (names containing a text), with Nomad's request and response shapes
//! (`Matches` and `Truncations` by context). What the CLI resolves short ids with.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use drover_acl::{NsCap, VarCap};
use drover_state::{StateSnapshot, Table};
use serde::{Deserialize, Serialize};

use crate::acl::Caller;
use crate::query::{Params, query, with_index};
use crate::{ApiError, ApiState};

/// Matches one context returns at most (Nomad's truncation limit).
pub const MAX_MATCHES: usize = 20;

/// Shortest fuzzy text (Nomad's default `min_term_length`).
pub const MIN_FUZZY_TEXT: usize = 2;

/// The longest prefix or text accepted.
const MAX_TEXT: usize = 1024;

/// The contexts Nomad searches, as it names them; `all` is every one. Drover has no
/// deployments, CSI plugins or CSI volumes: those contexts answer with no matches.
const CONTEXTS: &[&str] = &[
    "allocs",
    "deployment",
    "evals",
    "jobs",
    "namespaces",
    "nodes",
    "node_pools",
    "plugins",
    "volumes",
    "variables",
];

/// The contexts of the fuzzy search: names of jobs and of what they hold, nodes, variables.
const FUZZY_CONTEXTS: &[&str] = &[
    "jobs",
    "groups",
    "tasks",
    "images",
    "commands",
    "nodes",
    "plugins",
    "variables",
];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SearchRequest {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    context: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FuzzyRequest {
    #[serde(default)]
    text: String,
    #[serde(default)]
    context: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SearchResponse<T> {
    matches: BTreeMap<String, Vec<T>>,
    truncations: BTreeMap<String, bool>,
}

impl<T> Default for SearchResponse<T> {
    fn default() -> Self {
        SearchResponse {
            matches: BTreeMap::new(),
            truncations: BTreeMap::new(),
        }
    }
}

impl<T> SearchResponse<T> {
    /// Adds a context's matches, sorted, cut to [`MAX_MATCHES`].
    fn add(&mut self, context: &str, mut found: Vec<T>)
    where
        T: Ord,
    {
        found.sort();
        found.dedup();
        let truncated = found.len() > MAX_MATCHES;
        found.truncate(MAX_MATCHES);
        self.matches.insert(context.to_string(), found);
        self.truncations.insert(context.to_string(), truncated);
    }
}

/// A fuzzy match: the name found and what it belongs to (Nomad's `FuzzyMatch`).
#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "PascalCase")]
struct FuzzyMatch {
    #[serde(rename = "ID")]
    id: String,
    scope: Vec<String>,
}

fn decode<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid search request: {e}")))
}

/// The contexts a request names: one of `known`, or all of them.
fn contexts<'a>(context: &str, known: &'a [&'a str]) -> Result<Vec<&'a str>, ApiError> {
    match context {
        "" | "all" => Ok(known.to_vec()),
        c => known
            .iter()
            .find(|k| **k == c)
            .map(|k| vec![*k])
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "context {c:?} is not one of all, {}",
                    known.join(", ")
                ))
            }),
    }
}

/// The namespace a search looks in: the body's, else `?namespace=`, else `default`; `*` is
/// every namespace.
fn namespace_of(body: &str, q: &BTreeMap<String, String>) -> String {
    if !body.is_empty() {
        return body.to_string();
    }
    crate::query::namespace(q)
}

fn in_ns(want: &str, ns: &str) -> bool {
    want == "*" || want == ns
}

/// The index of what a search read: the highest of the tables searched.
fn index_of(snap: &StateSnapshot) -> u64 {
    [
        Table::Jobs,
        Table::Allocs,
        Table::Evals,
        Table::Nodes,
        Table::Variables,
        Table::Namespaces,
        Table::NodePools,
    ]
    .into_iter()
    .map(|t| snap.table_index(t))
    .max()
    .unwrap_or(0)
}

fn bounded(what: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_TEXT {
        return Err(ApiError::bad_request(format!(
            "the {what} is longer than {MAX_TEXT} bytes"
        )));
    }
    Ok(())
}

/// `POST /v1/search`: ids (paths for variables) starting with `Prefix`, by context.
pub(crate) async fn prefix(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SearchRequest = decode(&body)?;
    bounded("prefix", &req.prefix)?;
    let wanted = contexts(&req.context, CONTEXTS)?;
    let snap = query(&st, &q, Table::Jobs).await?;
    let ns = namespace_of(&req.namespace, &q);
    let p = req.prefix.as_str();
    let mut resp = SearchResponse::<String>::default();
    for c in wanted {
        let found: Vec<String> = match c {
            "jobs" => snap
                .jobs()
                .filter(|j| in_ns(&ns, &j.namespace) && j.id.starts_with(p))
                .filter(|j| caller.can(&j.namespace, NsCap::ListJobs))
                .map(|j| j.id.clone())
                .collect(),
            "allocs" => snap
                .allocs()
                .filter(|a| in_ns(&ns, &a.namespace) && a.id.starts_with(p))
                .filter(|a| caller.can(&a.namespace, NsCap::ReadJob))
                .map(|a| a.id.clone())
                .collect(),
            "evals" => snap
                .evals()
                .filter(|e| in_ns(&ns, &e.namespace) && e.id.starts_with(p))
                .filter(|e| caller.can(&e.namespace, NsCap::ReadJob))
                .map(|e| e.id.clone())
                .collect(),
            "nodes" => snap
                .nodes()
                .filter(|n| n.id.starts_with(p) && caller.acl.allow_node_read())
                .map(|n| n.id.clone())
                .collect(),
            "variables" => snap
                .variables()
                .filter(|v| in_ns(&ns, &v.namespace) && v.path.starts_with(p))
                .filter(|v| caller.can_variable(&v.namespace, &v.path, VarCap::List))
                .map(|v| v.path.clone())
                .collect(),
            "namespaces" => snap
                .namespaces()
                .filter(|n| n.name.starts_with(p))
                .map(|n| n.name.clone())
                .collect(),
            "node_pools" => snap
                .node_pools()
                .filter(|n| n.name.starts_with(p))
                .map(|n| n.name.clone())
                .collect(),
            _ => Vec::new(),
        };
        resp.add(c, found);
    }
    Ok(with_index(index_of(&snap), &resp))
}

/// `POST /v1/search/fuzzy`: names containing `Text` (case-insensitively), with the scope
/// each belongs to: a job's `[namespace, job]`, a group's `[namespace, job]`, a task's
/// `[namespace, job, group]`, a node's `[node id]`, a variable's `[namespace]`.
pub(crate) async fn fuzzy(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: FuzzyRequest = decode(&body)?;
    bounded("text", &req.text)?;
    if req.text.chars().count() < MIN_FUZZY_TEXT {
        return Err(ApiError::bad_request(format!(
            "fuzzy search query must be at least {MIN_FUZZY_TEXT} characters"
        )));
    }
    let wanted = contexts(&req.context, FUZZY_CONTEXTS)?;
    let snap = query(&st, &q, Table::Jobs).await?;
    let ns = namespace_of(&req.namespace, &q);
    let text = req.text.to_lowercase();
    let hit = |name: &str| name.to_lowercase().contains(&text);
    let m = |id: &str, scope: &[&str]| FuzzyMatch {
        id: id.to_string(),
        scope: scope.iter().map(|s| s.to_string()).collect(),
    };
    let mut resp = SearchResponse::<FuzzyMatch>::default();
    for c in wanted {
        let mut found = Vec::new();
        match c {
            "nodes" => found.extend(
                snap.nodes()
                    .filter(|n| hit(&n.name) && caller.acl.allow_node_read())
                    .map(|n| m(&n.name, &[&n.id])),
            ),
            "variables" => found.extend(
                snap.variables()
                    .filter(|v| in_ns(&ns, &v.namespace) && hit(&v.path))
                    .filter(|v| caller.can_variable(&v.namespace, &v.path, VarCap::List))
                    .map(|v| m(&v.path, &[&v.namespace])),
            ),
            "plugins" => {}
            _ => {
                for j in snap.jobs().filter(|j| {
                    in_ns(&ns, &j.namespace) && caller.can(&j.namespace, NsCap::ReadJob)
                }) {
                    let job_scope = [j.namespace.as_str(), j.id.as_str()];
                    if c == "jobs" && (hit(&j.id) || hit(&j.name)) {
                        found.push(m(&j.id, &[&j.namespace]));
                    }
                    for g in &j.groups {
                        if c == "groups" && hit(&g.name) {
                            found.push(m(&g.name, &job_scope));
                        }
                        for t in &g.tasks {
                            let task_scope = [j.namespace.as_str(), &j.id, &g.name];
                            let field = match c {
                                "tasks" => Some(t.name.as_str()),
                                "images" => t.config.get("image").and_then(|v| v.as_str()),
                                "commands" => t.config.get("command").and_then(|v| v.as_str()),
                                _ => None,
                            };
                            if let Some(f) = field.filter(|f| hit(f)) {
                                found.push(m(f, &task_scope));
                            }
                        }
                    }
                }
            }
        }
        resp.add(c, found);
    }
    Ok(with_index(index_of(&snap), &resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_nomads_names_or_all() {
        assert_eq!(contexts("all", CONTEXTS).ok().unwrap(), CONTEXTS);
        assert_eq!(contexts("", CONTEXTS).ok().unwrap(), CONTEXTS);
        assert_eq!(contexts("allocs", CONTEXTS).ok().unwrap(), ["allocs"]);
        let Err(e) = contexts("alloc", CONTEXTS) else {
            panic!("an unknown context is accepted")
        };
        assert!(
            e.1.contains("context \"alloc\" is not one of all, allocs"),
            "{}",
            e.1
        );
    }

    #[test]
    fn matches_are_sorted_and_truncated_with_a_flag() {
        let mut r = SearchResponse::<String>::default();
        r.add("allocs", (0..25).rev().map(|i| format!("{i:02}")).collect());
        r.add("nodes", vec!["b".into(), "a".into()]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["Matches"]["allocs"].as_array().unwrap().len(),
            MAX_MATCHES
        );
        assert_eq!(v["Matches"]["allocs"][0], "00");
        assert_eq!(v["Truncations"]["allocs"], true);
        assert_eq!(v["Matches"]["nodes"], serde_json::json!(["a", "b"]));
        assert_eq!(v["Truncations"]["nodes"], false);
    }
}
