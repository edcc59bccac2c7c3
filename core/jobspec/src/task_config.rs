//! A task's `config { ... }` checked against its driver's schema (the keys the driver
//! accepts, with their types), on the syntax tree so that an unknown key or a wrong type —
//! also inside a nested block such as docker's `mount { }` — is reported at its
//! `file:line:column`.

use drover_proto::base::ConfigField;
use hcl::edit::structure::Block;
use serde_json::Value;

use crate::JobspecError;
use crate::reader::{Source, eval};

/// How a driver's task config schema is found: None = a driver Drover does not know, whose
/// task config is not checked (an empty schema is not checked either).
pub type SchemaLookup<'a> = &'a dyn Fn(&str) -> Option<Vec<ConfigField>>;

/// The keys a schema accepts, for messages.
fn accepted(fields: &[ConfigField]) -> String {
    fields
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_block_type(ty: &str) -> bool {
    matches!(ty, "block" | "list(block)")
}

/// Checks the config block `block` (at `path`, e.g. `... > task "t" > config`) against
/// `fields`.
pub fn check(src: &Source<'_>, block: &Block, path: &str, fields: &[ConfigField]) {
    for a in block.body.attributes() {
        src.recover(check_key(src, a, path, fields));
    }
    let mut seen: Vec<&str> = Vec::new();
    for b in block.body.blocks() {
        src.recover(check_block(src, b, path, fields, &seen));
        seen.push(b.ident.as_str());
    }
    for f in fields.iter().filter(|f| f.required) {
        let present = block.body.get_attribute(&f.name).is_some()
            || block.body.blocks().any(|b| b.ident.as_str() == f.name);
        if !present {
            src.report(src.error_span(block, path, &format!("missing required key {:?}", f.name)));
        }
    }
}

fn check_key(
    src: &Source<'_>,
    a: &hcl::edit::structure::Attribute,
    path: &str,
    fields: &[ConfigField],
) -> Result<(), JobspecError> {
    let key = a.key.as_str();
    let Some(field) = fields.iter().find(|f| f.name == key) else {
        return Err(src.error_span(
            a,
            path,
            &format!("unknown key {key:?} (it accepts: {})", accepted(fields)),
        ));
    };
    let value = serde_json::to_value(eval(src, &a.value, path)?).unwrap_or_default();
    match type_error(&value, field, key) {
        Some(why) => Err(src.error_span(a, path, &why)),
        None => Ok(()),
    }
}

fn check_block(
    src: &Source<'_>,
    b: &Block,
    path: &str,
    fields: &[ConfigField],
    seen: &[&str],
) -> Result<(), JobspecError> {
    let key = b.ident.as_str();
    let Some(field) = fields.iter().find(|f| f.name == key) else {
        return Err(src.error_span(
            b,
            path,
            &format!("unknown block {key:?} (it accepts: {})", accepted(fields)),
        ));
    };
    let inner = format!("{path} > {key}");
    match field.r#type.as_str() {
        "block" if seen.contains(&key) => {
            Err(src.error_span(b, path, &format!("block {key:?} may appear only once here")))
        }
        "block" | "list(block)" => {
            check(src, b, &inner, &field.fields);
            Ok(())
        }
        // `labels { a = "b" }`: a map written as a block.
        "map(string)" | "map(map(string))" => {
            let value = serde_json::to_value(eval_block(src, b, &inner)?).unwrap_or_default();
            match type_error(&value, field, key) {
                Some(why) => Err(src.error_span(b, path, &why)),
                None => Ok(()),
            }
        }
        ty => Err(src.error_span(
            b,
            path,
            &format!("{key:?} is a key ({ty}), not a block: write {key} = ..."),
        )),
    }
}

/// A block's attributes and nested blocks as one value (nested blocks as objects).
fn eval_block(src: &Source<'_>, b: &Block, path: &str) -> Result<hcl::Value, JobspecError> {
    let mut map = hcl::Map::new();
    for a in b.body.attributes() {
        map.insert(a.key.as_str().to_string(), eval(src, &a.value, path)?);
    }
    for inner in b.body.blocks() {
        map.insert(
            inner.ident.as_str().to_string(),
            eval_block(src, inner, path)?,
        );
    }
    Ok(hcl::Value::Object(map))
}

/// A string the client fills in when the task starts (`"${NOMAD_PORT_http}"`): any type.
fn runtime(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.contains("${"))
}

/// Why `value` (of key `path`) does not fit `field`, if it does not.
fn type_error(value: &Value, field: &ConfigField, path: &str) -> Option<String> {
    let strings = |v: &Value| v.is_string();
    let numbers = |v: &Value| v.is_number() || runtime(v);
    let ok = match field.r#type.as_str() {
        "string" => value.is_string(),
        "bool" => value.is_boolean() || runtime(value),
        "number" => numbers(value),
        "duration" => value.is_string() || value.is_number(),
        "list(string)" => value.as_array().is_some_and(|a| a.iter().all(strings)),
        "list(number)" => value.as_array().is_some_and(|a| a.iter().all(numbers)),
        "map(string)" => value.as_object().is_some_and(|m| m.values().all(strings)),
        "map(map(string))" => value.as_object().is_some_and(|m| {
            m.values()
                .all(|i| i.as_object().is_some_and(|i| i.values().all(strings)))
        }),
        ty if is_block_type(ty) => {
            // Written as an attribute (`mount = [{ ... }]`): check the objects' keys.
            let items: Vec<&Value> = match value {
                Value::Array(a) if ty == "list(block)" => a.iter().collect(),
                other => vec![other],
            };
            for item in items {
                let Some(obj) = item.as_object() else {
                    return Some(format!("{path:?} must be a block, not {item}"));
                };
                for (k, v) in obj {
                    let inner = format!("{path}.{k}");
                    let Some(f) = field.fields.iter().find(|f| &f.name == k) else {
                        return Some(format!(
                            "unknown key {inner:?} (it accepts: {})",
                            accepted(&field.fields)
                        ));
                    };
                    if let Some(why) = type_error(v, f, &inner) {
                        return Some(why);
                    }
                }
            }
            true
        }
        _ => true,
    };
    (!ok).then(|| format!("{path:?} must be a {}, not {value}", field.r#type))
}
