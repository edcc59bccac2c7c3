//! Checking a plugin block's `config` against the schema the plugin reports.

use drover_proto::base::ConfigField;
use serde_json::Value;

/// What is wrong with a config block: the key at fault (None: the block itself) and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks `config` (a JSON object, or null for none) against `fields`. A problem inside a
/// nested block names its top-level key (for locating it) and its whole path in the message.
pub(crate) fn check(config: &Value, fields: &[ConfigField]) -> Result<(), Problem> {
    let empty = serde_json::Map::new();
    let obj = match config {
        Value::Null => &empty,
        Value::Object(o) => o,
        _ => {
            return Err(Problem {
                key: None,
                message: "the config block must be an object".into(),
            });
        }
    };
    check_object(obj, fields, "").map_err(|(path, message)| Problem {
        key: path.map(|p| p.split(['.', '[']).next().unwrap_or_default().to_string()),
        message,
    })
}

/// A problem at a dotted key path (None: the object itself) and why.
type PathProblem = (Option<String>, String);

/// Checks one object (the config, or a nested block whose keys are `prefix`ed).
fn check_object(
    obj: &serde_json::Map<String, Value>,
    fields: &[ConfigField],
    prefix: &str,
) -> Result<(), PathProblem> {
    for (key, value) in obj {
        let path = format!("{prefix}{key}");
        let Some(field) = fields.iter().find(|f| &f.name == key) else {
            let known = fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err((
                Some(path.clone()),
                format!("unknown key {path:?} in config (it accepts: {known})"),
            ));
        };
        check_value(value, field, &path)?;
    }
    for f in fields.iter().filter(|f| f.required) {
        if !obj.contains_key(&f.name) {
            let path = format!("{prefix}{}", f.name);
            return Err((
                (!prefix.is_empty()).then(|| prefix.trim_end_matches('.').to_string()),
                format!("config key {path:?} is required ({})", f.description),
            ));
        }
    }
    Ok(())
}

/// Checks one key's value against its field's type (nested blocks recursively).
fn check_value(value: &Value, field: &ConfigField, path: &str) -> Result<(), PathProblem> {
    let all = |v: &Value, f: fn(&Value) -> bool| v.as_array().is_some_and(|a| a.iter().all(f));
    let ok = match field.r#type.as_str() {
        "string" => value.is_string(),
        "bool" => value.is_boolean(),
        "number" => value.is_number(),
        "list(string)" => all(value, Value::is_string),
        "list(number)" => all(value, Value::is_number),
        "map(string)" => value
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        "map(map(string))" => value.as_object().is_some_and(|m| {
            m.values().all(|inner| {
                inner
                    .as_object()
                    .is_some_and(|i| i.values().all(Value::is_string))
            })
        }),
        "duration" => value.is_string() || value.is_number(),
        "block" | "list(block)" => {
            let blocks: Vec<&serde_json::Map<String, Value>> = match value {
                Value::Object(o) => vec![o],
                Value::Array(a) => a.iter().filter_map(Value::as_object).collect(),
                _ => Vec::new(),
            };
            let count = value.as_array().map_or(1, Vec::len);
            let shaped = blocks.len() == count
                && (field.r#type == "list(block)" || count == 1)
                && !blocks.is_empty();
            if shaped {
                for (i, b) in blocks.iter().enumerate() {
                    let prefix = if field.r#type == "list(block)" && count > 1 {
                        format!("{path}[{i}].")
                    } else {
                        format!("{path}.")
                    };
                    check_object(b, &field.fields, &prefix)?;
                }
            }
            shaped
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let what = match field.r#type.as_str() {
            "block" => "a block".to_string(),
            "list(block)" => "one or more blocks".to_string(),
            t => format!("a {t}"),
        };
        Err((
            Some(path.to_string()),
            format!("config key {path:?} must be {what}, not {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str, ty: &str, required: bool) -> ConfigField {
        ConfigField {
            name: name.into(),
            r#type: ty.into(),
            required,
            description: String::new(),
            default_json: String::new(),
            fields: Vec::new(),
        }
    }

    fn block(name: &str, ty: &str, fields: Vec<ConfigField>) -> ConfigField {
        ConfigField {
            fields,
            ..field(name, ty, false)
        }
    }

    #[test]
    fn nested_blocks_and_lists_of_numbers() {
        let fields = [
            block(
                "gc",
                "block",
                vec![
                    field("image", "bool", false),
                    block(
                        "dangling_containers",
                        "block",
                        vec![field("enabled", "bool", false)],
                    ),
                ],
            ),
            block(
                "mount",
                "list(block)",
                vec![
                    field("source", "string", true),
                    field("target", "string", false),
                ],
            ),
            field("ids", "list(number)", false),
        ];
        let good = json!({
            "gc": {"image": true, "dangling_containers": {"enabled": false}},
            "mount": [{"source": "a"}, {"source": "b", "target": "/b"}],
            "ids": [1, 2],
        });
        assert!(check(&good, &fields).is_ok());
        assert!(
            check(
                &json!({"gc": [{"image": true}], "mount": {"source": "a"}}),
                &fields
            )
            .is_ok()
        );

        let e = check(
            &json!({"gc": {"dangling_containers": {"enabeld": true}}}),
            &fields,
        )
        .unwrap_err();
        assert!(
            e.message
                .contains("unknown key \"gc.dangling_containers.enabeld\"")
                && e.message.contains("it accepts: enabled"),
            "{e}"
        );
        assert_eq!(e.key.as_deref(), Some("gc"), "located by its top-level key");

        let e = check(
            &json!({"mount": [{"source": "a"}, {"target": "/b"}]}),
            &fields,
        )
        .unwrap_err();
        assert!(e.message.contains("\"mount[1].source\" is required"), "{e}");
        assert_eq!(e.key.as_deref(), Some("mount"));

        let e = check(&json!({"gc": [{}, {}]}), &fields).unwrap_err();
        assert!(e.message.contains("must be a block"), "{e}");
        let e = check(&json!({"gc": "yes"}), &fields).unwrap_err();
        assert!(e.message.contains("must be a block"), "{e}");
        let e = check(&json!({"mount": ["a"]}), &fields).unwrap_err();
        assert!(e.message.contains("one or more blocks"), "{e}");
        let e = check(&json!({"ids": [1, "2"]}), &fields).unwrap_err();
        assert!(e.message.contains("must be a list(number)"), "{e}");
    }

    #[test]
    fn checks_keys_types_and_required() {
        let fields = [
            field("enabled", "bool", false),
            field("dirs", "list(string)", false),
            field("name", "string", true),
        ];
        assert!(
            check(
                &json!({"name": "x", "enabled": true, "dirs": ["a"]}),
                &fields
            )
            .is_ok()
        );
        assert!(
            check(&json!({"name": "x", "enabled": "yes"}), &fields)
                .unwrap_err()
                .message
                .contains("must be a bool")
        );
        let e = check(&json!({"name": "x", "nope": 1}), &fields).unwrap_err();
        assert!(e.message.contains("unknown key \"nope\""));
        assert_eq!(e.key.as_deref(), Some("nope"));
        assert!(
            check(&json!({}), &fields)
                .unwrap_err()
                .message
                .contains("required")
        );
        assert!(check(&Value::Null, &fields[..1]).is_ok());
        assert!(check(&json!([1]), &fields).is_err());
    }
}
