//! HCL2's type conversions, as Nomad's parser (cty) makes them: a string is accepted where a
//! number or a bool is wanted (`cpu = "100"`, `distinct_hosts = "true"`), and a number or a
//! bool where a string is (`value = 8080`). A string that is not a number or a bool is an
//! error naming what was required.

use serde_json::Value as Json;

/// What a value converts to when decoding it failed with serde's `message`
/// ("invalid type: string \"100\", expected u32"): `None` when the failure is not a type
/// mismatch HCL converts; `Some(Err(reason))` when it is but the value does not convert.
pub fn for_mismatch(value: &Json, message: &str) -> Option<Result<Json, String>> {
    let expected = message.split(", expected ").nth(1)?;
    match value {
        Json::String(s) if wants_bool(expected) => Some(to_bool(s).map(Json::Bool)),
        Json::String(s) if wants_number(expected) => Some(to_number(s)),
        Json::Number(_) | Json::Bool(_) if expected.contains("string") => {
            Some(Ok(Json::String(scalar_text(value))))
        }
        _ => None,
    }
}

/// cty's string to bool: "true"/"1" and "false"/"0".
pub fn to_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => Err(format!(
            "a bool is required, found {s:?} (write it in lowercase)"
        )),
        _ => Err(format!("a bool is required, found {s:?}")),
    }
}

/// cty's string to number: the whole string is a decimal number.
pub fn to_number(s: &str) -> Result<Json, String> {
    let bad = || format!("a number is required, found {s:?}");
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Json::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Ok(Json::from(u));
    }
    // Rust's float syntax also takes "inf" and "NaN", which are not numbers in HCL.
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
    {
        return Err(bad());
    }
    s.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Json::Number)
        .ok_or_else(bad)
}

/// A number or bool as the string HCL converts it to.
pub fn scalar_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn wants_bool(expected: &str) -> bool {
    expected.contains("bool")
}

fn wants_number(expected: &str) -> bool {
    [
        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64", "integer", "number",
    ]
    .iter()
    .any(|w| {
        expected
            .split(|c: char| !c.is_alphanumeric())
            .any(|x| x == *w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_convert_to_numbers_and_bools_as_cty_does() {
        let m = |want: &str| format!("invalid type: string \"x\", expected {want}");
        let s = |v: &str| Json::String(v.into());
        assert_eq!(
            for_mismatch(&s("100"), &m("u32")),
            Some(Ok(Json::from(100)))
        );
        assert_eq!(for_mismatch(&s("-3"), &m("i64")), Some(Ok(Json::from(-3))));
        assert_eq!(
            for_mismatch(&s("1.5"), &m("f64")),
            Some(Ok(Json::from(1.5)))
        );
        assert_eq!(
            for_mismatch(&s("true"), &m("a boolean")),
            Some(Ok(Json::Bool(true)))
        );
        assert_eq!(
            for_mismatch(&s("0"), &m("a boolean")),
            Some(Ok(Json::Bool(false)))
        );
        assert_eq!(
            for_mismatch(&s("abc"), &m("u32")),
            Some(Err("a number is required, found \"abc\"".into()))
        );
        assert!(for_mismatch(&s("inf"), &m("f64")).unwrap().is_err());
        assert!(
            for_mismatch(&s("True"), &m("a boolean"))
                .unwrap()
                .unwrap_err()
                .contains("lowercase")
        );
        let to_string = "invalid type: integer `8080`, expected a string";
        assert_eq!(
            for_mismatch(&Json::from(8080), to_string),
            Some(Ok(s("8080")))
        );
        // Not a type mismatch: left to the caller.
        assert_eq!(
            for_mismatch(&s("x"), "unknown variant `x`, expected one of `a`"),
            None
        );
        assert_eq!(for_mismatch(&s("x"), "missing field `Hook`"), None);
    }
}
