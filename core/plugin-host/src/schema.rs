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

fn at(key: &str, message: String) -> Problem {
    Problem {
        key: Some(key.to_string()),
        message,
    }
}

/// Checks `config` (a JSON object, or null for none) against `fields`.
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
    for (key, value) in obj {
        let Some(field) = fields.iter().find(|f| &f.name == key) else {
            let known = fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(at(
                key,
                format!("unknown key {key:?} in config (it accepts: {known})"),
            ));
        };
        let ok = match field.r#type.as_str() {
            "string" => value.is_string(),
            "bool" => value.is_boolean(),
            "number" => value.is_number(),
            "list(string)" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
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
            _ => true,
        };
        if !ok {
            return Err(at(
                key,
                format!("config key {key:?} must be a {}, not {value}", field.r#type),
            ));
        }
    }
    for f in fields.iter().filter(|f| f.required) {
        if !obj.contains_key(&f.name) {
            return Err(Problem {
                key: None,
                message: format!("config key {:?} is required ({})", f.name, f.description),
            });
        }
    }
    Ok(())
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
