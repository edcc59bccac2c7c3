//! How HCL reaches the driver as JSON, read leniently where HCL is ambiguous: a block may be
//! an object or (repeated, or written as a list) an array of objects; a `map(string)` may
//! be an object or a list of objects (Nomad's `list(map(string))`), with numbers and bools
//! for values; a duration is a Go duration string (`"5m"`, `"1h30m"`) or a number of seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A `list(block)`: an object (one block) or an array of objects.
pub fn blocks<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
            .collect(),
        one => Ok(vec![serde_json::from_value(one).map_err(D::Error::custom)?]),
    }
}

/// A `block`: an object, or an array holding exactly one object.
pub fn block<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Array(mut items) => match items.len() {
            0 => Ok(None),
            1 => Ok(Some(
                serde_json::from_value(items.remove(0)).map_err(D::Error::custom)?,
            )),
            n => Err(D::Error::custom(format!(
                "this block may appear once, not {n} times"
            ))),
        },
        one => Ok(Some(serde_json::from_value(one).map_err(D::Error::custom)?)),
    }
}

/// A `map(string)`: an object, or an array of objects merged in order; scalar values are
/// taken as their text.
pub fn string_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let mut out = BTreeMap::new();
    let mut add = |obj: serde_json::Map<String, Value>| -> Result<(), D::Error> {
        for (k, v) in obj {
            let s = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(D::Error::custom(format!(
                        "{k:?}: expected a string, found {other}"
                    )));
                }
            };
            out.insert(k, s);
        }
        Ok(())
    };
    match Value::deserialize(d)? {
        Value::Null => {}
        Value::Object(o) => add(o)?,
        Value::Array(items) => {
            for i in items {
                match i {
                    Value::Object(o) => add(o)?,
                    other => {
                        return Err(D::Error::custom(format!(
                            "expected a map of strings, found {other}"
                        )));
                    }
                }
            }
        }
        other => {
            return Err(D::Error::custom(format!(
                "expected a map of strings, found {other}"
            )));
        }
    }
    Ok(out)
}

/// An optional duration: a Go duration string or a number of seconds.
pub fn duration<'de, D>(d: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => parse_duration(&s).map(Some).ok_or_else(|| {
            D::Error::custom(format!("{s:?} is not a duration (e.g. \"30s\", \"5m\")"))
        }),
        Value::Number(n) => n
            .as_u64()
            .map(|s| Some(Duration::from_secs(s)))
            .ok_or_else(|| D::Error::custom(format!("{n} is not a number of seconds"))),
        other => Err(D::Error::custom(format!(
            "expected a duration, found {other}"
        ))),
    }
}

/// Parses a Go duration (`"300ms"`, `"1h30m"`, `"2.5s"`); `None` when it is not one or is
/// negative.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    (total.is_finite() && total < 1e12).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "m", "-1s", "5x", "1e9h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct B {
        x: u32,
    }

    #[derive(Deserialize)]
    struct Outer {
        #[serde(default, deserialize_with = "blocks")]
        many: Vec<B>,
        #[serde(default, deserialize_with = "block")]
        one: Option<B>,
        #[serde(default, deserialize_with = "string_map")]
        map: BTreeMap<String, String>,
    }

    #[test]
    fn blocks_as_object_or_array() {
        let o: Outer = serde_json::from_str(
            r#"{"many":{"x":1},"one":[{"x":2}],"map":[{"a":1},{"b":true,"c":"s"}]}"#,
        )
        .unwrap();
        assert_eq!(o.many.len(), 1);
        assert_eq!(o.one.unwrap().x, 2);
        assert_eq!(o.map["a"], "1");
        assert_eq!(o.map["b"], "true");
        let o: Outer = serde_json::from_str(r#"{"many":[{"x":1},{"x":3}]}"#).unwrap();
        assert_eq!(o.many.len(), 2);
        assert!(serde_json::from_str::<Outer>(r#"{"one":[{"x":1},{"x":2}]}"#).is_err());
        let e = serde_json::from_str::<Outer>(r#"{"many":{"x":1,"y":2}}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown field `y`"), "{e}");
        assert!(serde_json::from_str::<Outer>(r#"{"map":{"a":[1]}}"#).is_err());
    }
}
