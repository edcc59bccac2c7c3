//! A policy's text as one tree, whichever syntax it is written in: HCL
//! (`namespace "default" { policy = "read" }`) or JSON, in the shape HCL1 gives JSON
//! (`{"namespace": {"default": {"policy": "read"}}}`, objects possibly wrapped in lists).
//! Which blocks take a label is the policy language's (see [`takes_label`]).

use std::collections::BTreeMap;

use crate::PolicyError;

/// An attribute's value: a string or a list of strings (all a policy uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    List(Vec<String>),
}

/// A block: its kind (`namespace`), its label (`"default"`), its attributes and blocks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    pub kind: String,
    pub label: Option<String>,
    pub attrs: BTreeMap<String, Value>,
    pub blocks: Vec<Block>,
}

/// The blocks that carry a label in the policy language.
pub fn takes_label(kind: &str) -> bool {
    matches!(kind, "namespace" | "host_volume" | "node_pool" | "path")
}

/// The deepest nesting a policy has (namespace > variables > path).
const MAX_DEPTH: usize = 4;

/// Parses a policy's text (JSON when it starts with `{`, HCL otherwise) into its top-level
/// body.
pub fn parse(text: &str) -> Result<Block, PolicyError> {
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let mut root = Block::default();
        json_body(&mut root, &v, "", 0)?;
        Ok(root)
    } else {
        let body = hcl::parse(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        hcl_body(&body, "", 0)
    }
}

fn hcl_body(body: &hcl::Body, at: &str, depth: usize) -> Result<Block, PolicyError> {
    if depth > MAX_DEPTH {
        return Err(PolicyError::Shape(format!("{at}: nested too deep")));
    }
    let mut out = Block::default();
    for a in body.attributes() {
        let key = a.key().to_string();
        let where_ = join(at, &key);
        let v = match a.expr() {
            hcl::Expression::String(s) => Value::Text(s.clone()),
            hcl::Expression::Array(items) => Value::List(
                items
                    .iter()
                    .map(|i| match i {
                        hcl::Expression::String(s) => Ok(s.clone()),
                        _ => Err(PolicyError::Shape(format!(
                            "{where_}: a list of strings is expected"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(PolicyError::Shape(format!(
                    "{where_}: a string or a list of strings is expected"
                )));
            }
        };
        if out.attrs.insert(key, v).is_some() {
            return Err(PolicyError::Shape(format!("{where_} is set twice")));
        }
    }
    for b in body.blocks() {
        let kind = b.identifier().to_string();
        let label = match b.labels() {
            [] => None,
            [l] => Some(l.as_str().to_string()),
            _ => {
                return Err(PolicyError::Shape(format!(
                    "{}: a {kind} block takes at most one label",
                    join(at, &kind)
                )));
            }
        };
        let where_ = match &label {
            Some(l) => format!("{} {l:?}", join(at, &kind)),
            None => join(at, &kind),
        };
        let mut inner = hcl_body(b.body(), &where_, depth + 1)?;
        inner.kind = kind;
        inner.label = label;
        out.blocks.push(inner);
    }
    Ok(out)
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// Fills `out` from a JSON object (or a list of them, HCL1's JSON form of a repeated block).
fn json_body(
    out: &mut Block,
    v: &serde_json::Value,
    at: &str,
    depth: usize,
) -> Result<(), PolicyError> {
    use serde_json::Value as J;
    if depth > MAX_DEPTH {
        return Err(PolicyError::Shape(format!("{at}: nested too deep")));
    }
    match v {
        J::Array(items) => {
            for i in items {
                json_body(out, i, at, depth)?;
            }
            Ok(())
        }
        J::Object(m) => {
            for (k, v) in m {
                let where_ = join(at, k);
                let as_list = |items: &Vec<J>| {
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<Vec<String>>>()
                };
                match v {
                    J::String(s) => {
                        out.attrs.insert(k.clone(), Value::Text(s.clone()));
                    }
                    J::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                        let list = as_list(items).ok_or_else(|| {
                            PolicyError::Shape(format!("{where_}: a list of strings is expected"))
                        })?;
                        out.attrs.insert(k.clone(), Value::List(list));
                    }
                    J::Object(_) | J::Array(_) if takes_label(k) => {
                        for (label, body) in labelled(v, &where_)? {
                            let mut b = Block {
                                kind: k.clone(),
                                label: Some(label.clone()),
                                ..Default::default()
                            };
                            json_body(&mut b, body, &format!("{where_} {label:?}"), depth + 1)?;
                            out.blocks.push(b);
                        }
                    }
                    J::Object(_) | J::Array(_) => {
                        let mut b = Block {
                            kind: k.clone(),
                            ..Default::default()
                        };
                        json_body(&mut b, v, &where_, depth + 1)?;
                        out.blocks.push(b);
                    }
                    _ => {
                        return Err(PolicyError::Shape(format!(
                            "{where_}: a string, a list of strings or a block is expected"
                        )));
                    }
                }
            }
            Ok(())
        }
        _ => Err(PolicyError::Shape(format!("{at}: an object is expected"))),
    }
}

/// The (label, body) pairs of a labelled block in JSON: `{"label": {...}}`, or a list of
/// such objects.
fn labelled<'a>(
    v: &'a serde_json::Value,
    at: &str,
) -> Result<Vec<(&'a String, &'a serde_json::Value)>, PolicyError> {
    use serde_json::Value as J;
    let mut out = Vec::new();
    match v {
        J::Object(m) => out.extend(m.iter()),
        J::Array(items) => {
            for i in items {
                out.extend(labelled(i, at)?);
            }
        }
        _ => {
            return Err(PolicyError::Shape(format!(
                "{at}: an object of labelled blocks is expected"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_and_json_give_the_same_tree() {
        let hcl = r#"
namespace "default" {
  policy = "read"
  capabilities = ["submit-job"]
  variables {
    path "app/*" { capabilities = ["read"] }
  }
}
node { policy = "read" }
"#;
        let json = r#"{
  "namespace": {"default": {"policy": "read", "capabilities": ["submit-job"],
    "variables": {"path": {"app/*": {"capabilities": ["read"]}}}}},
  "node": [{"policy": "read"}]
}"#;
        let a = parse(hcl).unwrap();
        let b = parse(json).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.blocks[0].label.as_deref(), Some("default"));
    }

    #[test]
    fn bad_shapes_are_named() {
        let e = parse("namespace \"a\" { policy = 3 }").unwrap_err();
        assert!(e.to_string().contains("namespace \"a\".policy"), "{e}");
        assert!(parse("namespace \"a\" {").is_err());
        assert!(parse("{\"node\": 3}").is_err());
    }
}
