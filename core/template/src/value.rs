//! Helpers over JSON values: truth, numbers, type names.

use serde_json::{Number, Value};

/// Go's notion of truth: false, 0, 0.0, nil, "" and empty arrays and maps are false.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match num(n) {
            Num::Int(i) => i != 0,
            Num::Float(f) => f != 0.0,
        },
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A JSON number as Go would hold it: an integer or a float64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    /// Any integer JSON can hold (`i64` or `u64`).
    Int(i128),
    Float(f64),
}

impl Num {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

pub(crate) fn num(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i.into())
    } else if let Some(u) = n.as_u64() {
        Num::Int(u.into())
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// The number in `v`, if it is one.
pub(crate) fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Number(n) => Some(num(n)),
        _ => None,
    }
}

/// An integer argument: integers, and floats with no fractional part (JSON decoders in Go
/// produce float64 for every number, so templates pass those where integers are meant).
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    match as_num(v)? {
        Num::Int(i) => i64::try_from(i).ok(),
        Num::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
        Num::Float(_) => None,
    }
}

/// A value from an integer that may not fit in `i64`/`u64`.
pub(crate) fn int_value(i: i128) -> Result<Value, String> {
    if let Ok(i) = i64::try_from(i) {
        Ok(i.into())
    } else if let Ok(u) = u64::try_from(i) {
        Ok(u.into())
    } else {
        Err(format!("integer {i} overflows int64"))
    }
}

/// A value from a float; JSON has no NaN or infinities.
pub(crate) fn float_value(f: f64) -> Result<Value, String> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("result {f} is not a finite number"))
}

pub(crate) fn num_value(n: Num) -> Result<Value, String> {
    match n {
        Num::Int(i) => int_value(i),
        Num::Float(f) => float_value(f),
    }
}

/// A short type name for error messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(n) => match num(n) {
            Num::Int(_) => "int",
            Num::Float(_) => "float64",
        },
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

/// Go's type name for the value as Go's JSON decoding would type it, as `fmt` prints it
/// in `%!d(string=x)`.
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        other => kind(other),
    }
}

/// Structural equality, with integers and floats compared by value.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            num_cmp(num(x), num(y)) == Some(std::cmp::Ordering::Equal)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

pub(crate) fn num_cmp(a: Num, b: Num) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        _ => a.as_f64().partial_cmp(&b.as_f64()),
    }
}
