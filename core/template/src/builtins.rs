//! Built-in functions: Go's `text/template` ones and consul-template's pure helpers.
//!
//! Helpers take their arguments in consul-template's order, which puts the subject last so
//! that it can be piped: `split "," "a,b"` is `"a,b" | split ","`, `subtract 2 5` is
//! `5 | subtract 2` (= 3).

use std::cmp::Ordering;
use std::fmt::Display;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::gofmt::{go_quote, sprint, sprintf, sprintln, to_string};
use crate::json;
use crate::value::{
    Num, as_int, as_num, equal, float_value, int_value, kind, num_cmp, num_value, truthy,
};

type Builtin = fn(&Args) -> Result<Value, String>;

/// Every built-in, by name.
const BUILTINS: &[(&str, Builtin)] = &[
    // Go's text/template.
    ("and", and),
    ("or", or),
    ("not", not),
    ("len", len),
    ("index", index),
    ("slice", slice),
    ("eq", eq),
    ("ne", ne),
    ("lt", |a| compare(a, |o| o == Ordering::Less)),
    ("le", |a| compare(a, |o| o != Ordering::Greater)),
    ("gt", |a| compare(a, |o| o == Ordering::Greater)),
    ("ge", |a| compare(a, |o| o != Ordering::Less)),
    ("print", |a| Ok(sprint(a.vals).into())),
    ("println", |a| Ok(sprintln(a.vals).into())),
    ("printf", printf),
    ("html", |a| Ok(html_escape(&joined(a.vals)).into())),
    ("js", |a| Ok(js_escape(&joined(a.vals)).into())),
    ("urlquery", |a| Ok(query_escape(&joined(a.vals)).into())),
    // consul-template: encoding.
    ("toJSON", |a| {
        one(a).map(|v| json::encode(v, true, false).into())
    }),
    ("toJSONPretty", |a| {
        one(a).map(|v| json::encode(v, true, true).into())
    }),
    ("toUnescapedJSON", |a| {
        one(a).map(|v| json::encode(v, false, false).into())
    }),
    ("toUnescapedJSONPretty", |a| {
        one(a).map(|v| json::encode(v, false, true).into())
    }),
    ("base64Encode", |a| base64_encode(a, &BASE64_STD)),
    ("base64Decode", |a| base64_decode(a, &BASE64_STD)),
    ("base64URLEncode", |a| base64_encode(a, &BASE64_URL)),
    ("base64URLDecode", |a| base64_decode(a, &BASE64_URL)),
    // consul-template: strings.
    ("toUpper", |a| {
        string_map(a, |s| map_chars(s, char::to_uppercase))
    }),
    ("toLower", |a| {
        string_map(a, |s| map_chars(s, char::to_lowercase))
    }),
    ("toTitle", |a| string_map(a, title)),
    ("trimSpace", |a| string_map(a, |s| s.trim().to_owned())),
    ("trim", |a| {
        a.exact(2)?;
        let cutset = a.str(0)?;
        Ok(a.str(1)?.trim_matches(|c| cutset.contains(c)).into())
    }),
    ("trimPrefix", |a| {
        a.exact(2)?;
        let (prefix, s) = (a.str(0)?, a.str(1)?);
        Ok(s.strip_prefix(prefix).unwrap_or(s).into())
    }),
    ("trimSuffix", |a| {
        a.exact(2)?;
        let (suffix, s) = (a.str(0)?, a.str(1)?);
        Ok(s.strip_suffix(suffix).unwrap_or(s).into())
    }),
    ("hasPrefix", |a| {
        a.exact(2)?;
        Ok(a.str(1)?.starts_with(a.str(0)?).into())
    }),
    ("hasSuffix", |a| {
        a.exact(2)?;
        Ok(a.str(1)?.ends_with(a.str(0)?).into())
    }),
    ("replaceAll", |a| {
        a.exact(3)?;
        Ok(a.str(2)?.replace(a.str(0)?, a.str(1)?).into())
    }),
    ("split", split),
    ("join", join),
    ("indent", indent),
    // consul-template: membership.
    ("contains", |a| {
        a.exact(2)?;
        Ok(contained(&a.vals[1], &a.vals[0]).into())
    }),
    ("in", |a| {
        a.exact(2)?;
        Ok(contained(&a.vals[0], &a.vals[1]).into())
    }),
    ("containsAll", |a| contains_some(a, true, true)),
    ("containsAny", |a| contains_some(a, false, false)),
    ("containsNone", |a| contains_some(a, true, false)),
    ("containsNotAll", |a| contains_some(a, false, true)),
    // consul-template: parsing.
    ("parseBool", parse_bool),
    ("parseInt", |a| {
        parse_integer(a, "strconv.ParseInt", |s| s.parse::<i64>().map(Value::from))
    }),
    ("parseUint", |a| {
        parse_integer(a, "strconv.ParseUint", |s| {
            s.parse::<u64>().map(Value::from)
        })
    }),
    ("parseFloat", parse_float),
    ("parseJSON", parse_json),
    // consul-template: math, `op b a` computing `a op b`.
    ("add", |a| arith(a, i128::checked_add, Some(|x, y| x + y))),
    ("subtract", |a| {
        arith(a, i128::checked_sub, Some(|x, y| x - y))
    }),
    ("multiply", |a| {
        arith(a, i128::checked_mul, Some(|x, y| x * y))
    }),
    ("divide", |a| {
        arith(a, i128::checked_div, Some(|x, y| x / y))
    }),
    ("modulo", |a| arith(a, i128::checked_rem, None)),
    ("minimum", |a| extremum(a, Ordering::Less)),
    ("maximum", |a| extremum(a, Ordering::Greater)),
    ("loop", loop_),
];

/// Whether `name` is a built-in function.
pub(crate) fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _)| *n == name)
}

/// Calls built-in `name`; `None` if there is no such built-in. Errors are complete messages.
pub(crate) fn call(name: &str, vals: &[Value]) -> Option<Result<Value, String>> {
    let (_, f) = BUILTINS.iter().find(|(n, _)| *n == name)?;
    Some(f(&Args { name, vals }))
}

/// The arguments of a built-in call, with checks that produce messages naming the function.
pub(crate) struct Args<'a> {
    name: &'a str,
    vals: &'a [Value],
}

impl<'a> Args<'a> {
    fn exact(&self, n: usize) -> Result<(), String> {
        if self.vals.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {}: want {n} got {}",
                self.name,
                self.vals.len()
            ))
        }
    }

    fn at_least(&self, n: usize) -> Result<(), String> {
        if self.vals.len() >= n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {}: want at least {n} got {}",
                self.name,
                self.vals.len()
            ))
        }
    }

    fn between(&self, lo: usize, hi: usize) -> Result<(), String> {
        if (lo..=hi).contains(&self.vals.len()) {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {}: want {lo} to {hi} got {}",
                self.name,
                self.vals.len()
            ))
        }
    }

    fn get(&self, i: usize) -> Result<&'a Value, String> {
        self.vals
            .get(i)
            .ok_or_else(|| format!("missing argument {} for {}", i + 1, self.name))
    }

    fn wrong_type(&self, i: usize, expected: &str) -> String {
        let got = self.vals.get(i).map_or("nothing", kind);
        format!(
            "wrong type for argument {} of {}: expected {expected}; got {got}",
            i + 1,
            self.name
        )
    }

    fn str(&self, i: usize) -> Result<&'a str, String> {
        match self.get(i)? {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong_type(i, "string")),
        }
    }

    fn int(&self, i: usize) -> Result<i64, String> {
        as_int(self.get(i)?).ok_or_else(|| self.wrong_type(i, "integer"))
    }

    fn num(&self, i: usize) -> Result<Num, String> {
        as_num(self.get(i)?).ok_or_else(|| self.wrong_type(i, "number"))
    }

    fn list(&self, i: usize) -> Result<&'a [Value], String> {
        match self.get(i)? {
            Value::Array(items) => Ok(items),
            _ => Err(self.wrong_type(i, "array")),
        }
    }

    /// A failure of the call itself, as Go reports it.
    fn fail(&self, msg: impl Display) -> String {
        format!("error calling {}: {msg}", self.name)
    }
}

fn one<'a>(a: &Args<'a>) -> Result<&'a Value, String> {
    a.exact(1)?;
    a.get(0)
}

// ---- Go's built-ins ------------------------------------------------------------------------

/// `and`: the first false argument, or the last. (The evaluator short-circuits; this is
/// the eager form used when a call arrives with evaluated arguments.)
fn and(a: &Args) -> Result<Value, String> {
    a.at_least(1)?;
    let decisive = a.vals.iter().find(|v| !truthy(v));
    Ok(decisive.or(a.vals.last()).cloned().unwrap_or(Value::Null))
}

/// `or`: the first true argument, or the last.
fn or(a: &Args) -> Result<Value, String> {
    a.at_least(1)?;
    let decisive = a.vals.iter().find(|v| truthy(v));
    Ok(decisive.or(a.vals.last()).cloned().unwrap_or(Value::Null))
}

fn not(a: &Args) -> Result<Value, String> {
    Ok(Value::Bool(!truthy(one(a)?)))
}

fn len(a: &Args) -> Result<Value, String> {
    match one(a)? {
        Value::String(s) => Ok(s.len().into()),
        Value::Array(items) => Ok(items.len().into()),
        Value::Object(map) => Ok(map.len().into()),
        Value::Null => Err(a.fail("len of nil value")),
        other => Err(a.fail(format!("len of type {}", kind(other)))),
    }
}

/// An index into something of length `len`: `index out of range` unless `0 <= i < len`
/// (`<= len` with `inclusive`, for slice bounds).
fn position(a: &Args, idx: &Value, len: usize, inclusive: bool) -> Result<usize, String> {
    let i = match idx {
        Value::Null => return Err(a.fail("cannot index with nil")),
        v => as_int(v).ok_or_else(|| a.fail(format!("cannot index with type {}", kind(v))))?,
    };
    match usize::try_from(i) {
        Ok(u) if u < len || (inclusive && u == len) => Ok(u),
        _ => Err(a.fail(format!("index out of range: {i}"))),
    }
}

/// `index x 1 "k" ...`: arrays by integer, maps by string key (missing: nil), strings by
/// byte.
fn index(a: &Args) -> Result<Value, String> {
    a.at_least(1)?;
    let mut item = a.vals[0].clone();
    for idx in &a.vals[1..] {
        item = match &item {
            Value::Array(items) => items[position(a, idx, items.len(), false)?].clone(),
            Value::String(s) => s.as_bytes()[position(a, idx, s.len(), false)?].into(),
            Value::Object(map) => match idx {
                Value::String(k) => map.get(k).cloned().unwrap_or(Value::Null),
                other => {
                    return Err(a.fail(format!("value has type {}; should be string", kind(other))));
                }
            },
            Value::Null => return Err(a.fail("index of untyped nil")),
            other => return Err(a.fail(format!("can't index item of type {}", kind(other)))),
        };
    }
    Ok(item)
}

/// `slice x i j (k)`: `x[i:j]` of a string (by byte) or array.
fn slice(a: &Args) -> Result<Value, String> {
    a.between(1, 4)?;
    let item = &a.vals[0];
    let idx = &a.vals[1..];
    let len = match item {
        Value::String(s) => {
            if idx.len() > 2 {
                return Err(a.fail("cannot 3-index slice a string"));
            }
            s.len()
        }
        Value::Array(items) => items.len(),
        Value::Null => return Err(a.fail("slice of untyped nil")),
        other => return Err(a.fail(format!("can't slice item of type {}", kind(other)))),
    };
    let mut bounds = [0, len, len];
    for (k, v) in idx.iter().enumerate() {
        bounds[k] = position(a, v, len, true)?;
    }
    if bounds[0] > bounds[1] {
        return Err(a.fail(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        )));
    }
    if bounds[1] > bounds[2] {
        return Err(a.fail(format!(
            "invalid slice index: {} > {}",
            bounds[1], bounds[2]
        )));
    }
    let (from, to) = (bounds[0], bounds[1]);
    match item {
        Value::String(s) => s
            .get(from..to)
            .map(Value::from)
            .ok_or_else(|| a.fail("slice would split a UTF-8 character")),
        Value::Array(items) => Ok(Value::Array(items[from..to].to_vec())),
        _ => Err(a.fail("unsliceable value")),
    }
}

/// Go's `eq` on two values (numbers compare across int and float; arrays and maps
/// structurally; nil equals only nil).
fn eq_values(x: &Value, y: &Value) -> Result<bool, &'static str> {
    match (x, y) {
        (Value::Null, _) | (_, Value::Null) => Ok(x.is_null() && y.is_null()),
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Array(_), Value::Array(_))
        | (Value::Object(_), Value::Object(_)) => Ok(equal(x, y)),
        _ => Err("incompatible types for comparison"),
    }
}

/// `eq a b c ...`: whether `a` equals any of the others.
fn eq(a: &Args) -> Result<Value, String> {
    a.at_least(2)?;
    for other in &a.vals[1..] {
        if eq_values(&a.vals[0], other).map_err(|m| a.fail(m))? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn ne(a: &Args) -> Result<Value, String> {
    a.exact(2)?;
    let equal = eq_values(&a.vals[0], &a.vals[1]).map_err(|m| a.fail(m))?;
    Ok(Value::Bool(!equal))
}

/// `lt`, `le`, `gt`, `ge`: numbers or strings.
fn compare(a: &Args, pred: fn(Ordering) -> bool) -> Result<Value, String> {
    a.exact(2)?;
    let ord = match (&a.vals[0], &a.vals[1]) {
        (Value::Number(x), Value::Number(y)) => num_cmp(crate::value::num(x), crate::value::num(y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            return Err(a.fail("incompatible types for comparison"));
        }
        _ => None,
    };
    let ord = ord.ok_or_else(|| a.fail("invalid type for comparison"))?;
    Ok(Value::Bool(pred(ord)))
}

fn printf(a: &Args) -> Result<Value, String> {
    a.at_least(1)?;
    Ok(sprintf(a.str(0)?, &a.vals[1..]).into())
}

/// The single string argument of `html`, `js`, `urlquery`, or all arguments printed.
fn joined(vals: &[Value]) -> String {
    match vals {
        [Value::String(s)] => s.clone(),
        _ => sprint(vals),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if !c.is_ascii() && (c.is_control() || c.is_whitespace()) => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---- consul-template helpers ----------------------------------------------------------------

/// Go's base64 encodings: padded, tolerant of non-zero trailing bits as Go is.
const BASE64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::RequireCanonical);
const BASE64_STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, BASE64_CONFIG);
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, BASE64_CONFIG);

fn base64_encode(a: &Args, engine: &GeneralPurpose) -> Result<Value, String> {
    a.exact(1)?;
    Ok(engine.encode(a.str(0)?).into())
}

fn base64_decode(a: &Args, engine: &GeneralPurpose) -> Result<Value, String> {
    a.exact(1)?;
    // Go's decoder skips newlines.
    let input: String = a
        .str(0)?
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    let bytes = engine.decode(input).map_err(|e| a.fail(e))?;
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| a.fail("decoded data is not valid UTF-8 text"))
}

fn string_map(a: &Args, f: impl Fn(&str) -> String) -> Result<Value, String> {
    a.exact(1)?;
    Ok(f(a.str(0)?).into())
}

/// Maps each character by a case mapping, keeping characters whose mapping is not a single
/// character (Go's `strings.ToUpper` maps rune by rune: `ß` stays `ß`).
fn map_chars<I: ExactSizeIterator<Item = char>>(s: &str, f: fn(char) -> I) -> String {
    s.chars()
        .map(|c| {
            let mut m = f(c);
            match (m.len(), m.next()) {
                (1, Some(u)) => u,
                _ => c,
            }
        })
        .collect()
}

/// consul-template's `toTitle`: the first letter of every word in upper case, the rest
/// unchanged.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' {
            if in_word {
                out.push(c);
            } else {
                out.extend(c.to_uppercase());
                in_word = true;
            }
        } else {
            in_word = in_word && c == '\'';
            out.push(c);
        }
    }
    out
}

/// `split sep s`: `s` (space-trimmed; empty gives an empty list) split on `sep`.
fn split(a: &Args) -> Result<Value, String> {
    a.exact(2)?;
    let sep = a.str(0)?;
    let s = a.str(1)?.trim();
    if s.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::from(c.to_string())).collect()
    } else {
        s.split(sep).map(Value::from).collect()
    };
    Ok(Value::Array(parts))
}

/// `join sep list`: elements that are not strings are printed as `print` would.
fn join(a: &Args) -> Result<Value, String> {
    a.exact(2)?;
    let sep = a.str(0)?;
    let parts: Vec<String> = a
        .list(1)?
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => to_string(other),
        })
        .collect();
    Ok(parts.join(sep).into())
}

/// `indent n s`: prefixes every non-empty line with `n` spaces.
fn indent(a: &Args) -> Result<Value, String> {
    a.exact(2)?;
    let n = a.int(0)?;
    let s = a.str(1)?;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= 1 << 16)
        .ok_or_else(|| a.fail("indent value must be a positive integer"))?;
    let prefix = " ".repeat(n);
    let mut out = String::with_capacity(s.len());
    let mut at_line_start = true;
    for c in s.chars() {
        if at_line_start && c != '\n' {
            out.push_str(&prefix);
        }
        out.push(c);
        at_line_start = c == '\n';
    }
    Ok(out.into())
}

/// consul-template's `in`: whether `needle` is an element of the list `haystack`, or a
/// substring of the string `haystack`.
fn contained(haystack: &Value, needle: &Value) -> bool {
    match (haystack, needle) {
        (Value::Array(items), _) => items.iter().any(|item| equal(item, needle)),
        (Value::String(h), Value::String(n)) => h.contains(n.as_str()),
        _ => false,
    }
}

/// `containsAll`/`Any`/`None`/`NotAll needles haystack`, as consul-template's
/// `containsSomeFunc(retTrue, invert)`.
fn contains_some(a: &Args, ret_true: bool, invert: bool) -> Result<Value, String> {
    a.exact(2)?;
    let needles = a.list(0)?;
    let haystack = &a.vals[1];
    let hit = needles.iter().any(|n| contained(haystack, n) != invert);
    Ok(Value::Bool(if hit { !ret_true } else { ret_true }))
}

fn parse_bool(a: &Args) -> Result<Value, String> {
    a.exact(1)?;
    match a.str(0)? {
        "" => Ok(false.into()),
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true.into()),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false.into()),
        s => Err(a.fail(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        ))),
    }
}

fn parse_integer(
    a: &Args,
    what: &str,
    parse: fn(&str) -> Result<Value, std::num::ParseIntError>,
) -> Result<Value, String> {
    a.exact(1)?;
    let s = a.str(0)?;
    if s.is_empty() {
        return Ok(0.into());
    }
    parse(s).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        a.fail(format!("{what}: parsing {}: {why}", go_quote(s)))
    })
}

fn parse_float(a: &Args) -> Result<Value, String> {
    a.exact(1)?;
    let s = a.str(0)?;
    if s.is_empty() {
        return float_value(0.0);
    }
    let f: f64 = s.parse().map_err(|_| {
        a.fail(format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(s)
        ))
    })?;
    float_value(f).map_err(|e| a.fail(e))
}

fn parse_json(a: &Args) -> Result<Value, String> {
    a.exact(1)?;
    let s = a.str(0)?;
    if s.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(s).map_err(|e| a.fail(e))
}

/// `op b a` = `a op b`, on integers when both are, otherwise on floats (`None`: integers
/// only).
fn arith(
    a: &Args,
    int_op: fn(i128, i128) -> Option<i128>,
    float_op: Option<fn(f64, f64) -> f64>,
) -> Result<Value, String> {
    a.exact(2)?;
    let (b, x) = (a.num(0)?, a.num(1)?);
    if matches!(a.name, "divide" | "modulo") && b.as_f64() == 0.0 {
        return Err(a.fail("division by zero"));
    }
    match (x, b, float_op) {
        (Num::Int(x), Num::Int(y), _) => int_op(x, y)
            .ok_or_else(|| a.fail("integer overflow"))
            .and_then(|v| int_value(v).map_err(|e| a.fail(e))),
        (x, b, Some(op)) => float_value(op(x.as_f64(), b.as_f64())).map_err(|e| a.fail(e)),
        (x, _, None) => {
            let bad = if matches!(x, Num::Float(_)) {
                &a.vals[1]
            } else {
                &a.vals[0]
            };
            Err(a.fail(format!(
                "unknown type for {} ({})",
                to_string(bad),
                kind(bad)
            )))
        }
    }
}

/// `minimum b a` / `maximum b a`: the smaller / larger, as given.
fn extremum(a: &Args, want: Ordering) -> Result<Value, String> {
    a.exact(2)?;
    let (b, x) = (a.num(0)?, a.num(1)?);
    let pick = if num_cmp(x, b) == Some(want) { x } else { b };
    num_value(pick).map_err(|e| a.fail(e))
}

/// `loop n` (0..n) or `loop start stop`: a list of integers; the bounds may also be strings.
fn loop_(a: &Args) -> Result<Value, String> {
    const MAX: i64 = 1_000_000;
    a.between(1, 2)?;
    let bound = |i: usize| -> Result<i64, String> {
        match a.get(i)? {
            Value::String(s) => s
                .parse::<i64>()
                .map_err(|_| a.fail(format!("bad argument {}", go_quote(s)))),
            v => as_int(v).ok_or_else(|| a.fail(format!("bad argument type: {}", kind(v)))),
        }
    };
    let (start, stop) = if a.vals.len() == 1 {
        (0, bound(0)?)
    } else {
        (bound(0)?, bound(1)?)
    };
    if stop.saturating_sub(start) > MAX {
        return Err(a.fail(format!("more than {MAX} iterations")));
    }
    Ok(Value::Array((start..stop).map(Value::from).collect()))
}
