//! Ids as users type them: a prefix (`drover alloc status 3f2a`) is resolved through Nomad's
//! `/v1/search`; an exact id wins, one match is it, several are listed and refused.

use anyhow::bail;

use crate::api_client::ApiClient;

/// What an id names: the search context and the word for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Job,
    Alloc,
    Eval,
    Node,
}

impl Kind {
    fn context(self) -> &'static str {
        match self {
            Kind::Job => "jobs",
            Kind::Alloc => "allocs",
            Kind::Eval => "evals",
            Kind::Node => "nodes",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Job => "jobs",
            Kind::Alloc => "allocations",
            Kind::Eval => "evaluations",
            Kind::Node => "nodes",
        }
    }
}

/// The full id `prefix` names, by `/v1/search`. Jobs are searched in the CLI's namespace
/// (default `default`); allocations and evaluations, whose ids are unique, in every
/// namespace unless `-namespace` says otherwise.
pub async fn resolve(c: &ApiClient, kind: Kind, prefix: &str) -> anyhow::Result<String> {
    if prefix.chars().count() < 2 && kind != Kind::Job {
        bail!("Identifier must contain at least two characters.");
    }
    let namespace = match (&c.settings.namespace, kind) {
        (Some(ns), _) => ns.clone(),
        (None, Kind::Job) => "default".into(),
        (None, _) => "*".into(),
    };
    let body = serde_json::json!({
        "Prefix": prefix,
        "Context": kind.context(),
        "Namespace": namespace,
    });
    let resp: serde_json::Value = c
        .send(reqwest::Method::POST, "/v1/search", Some(&body))
        .await?;
    let found: Vec<String> = resp["Matches"][kind.context()]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let truncated = resp["Truncations"][kind.context()] == true;
    pick(kind, prefix, found, truncated)
}

/// The one id of a search's matches, or why not.
fn pick(kind: Kind, prefix: &str, found: Vec<String>, truncated: bool) -> anyhow::Result<String> {
    if let Some(exact) = found.iter().find(|id| *id == prefix) {
        return Ok(exact.clone());
    }
    match found.as_slice() {
        [] => bail!("No {} with prefix or id {prefix:?} found", kind.plural()),
        [one] => Ok(one.clone()),
        many => bail!(
            "Prefix {prefix:?} matched multiple {}{}:\n{}",
            kind.plural(),
            if truncated {
                " (the first 20 shown)"
            } else {
                ""
            },
            many.iter()
                .map(|id| format!("  {id}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_id_wins_one_match_is_it_several_are_listed() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick(Kind::Job, "web", ids(&["web", "web-2"]), false).unwrap(),
            "web"
        );
        assert_eq!(
            pick(Kind::Alloc, "3f", ids(&["3f2a-1"]), false).unwrap(),
            "3f2a-1"
        );
        let e = pick(Kind::Alloc, "3f", ids(&["3f2a-1", "3f9c-2"]), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Prefix \"3f\" matched multiple allocations:\n  3f2a-1\n  3f9c-2"
        );
        let e = pick(Kind::Node, "zz", vec![], false).unwrap_err();
        assert_eq!(e.to_string(), "No nodes with prefix or id \"zz\" found");
    }
}
