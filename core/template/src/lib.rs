//! A renderer for the subset of Go's `text/template` language that Nomad `template` blocks
//! use, with the consul-template helper functions.
//!
//! A template is parsed once with [`Template::parse`] and rendered any number of times with
//! [`Template::render`]. Data sources (`env`, `nomadVar`, `secret`, `key`, ...) are not part of
//! this crate: the host supplies them through the [`Functions`] trait, and the engine only
//! adds the pure helpers (Go's built-ins such as `printf`, `index`, `eq`, and consul-template's
//! `toJSON`, `split`, `join`, `add`, ...).
//!
//! ```
//! use drover_template::{Functions, Options, Template, Value};
//!
//! struct Env;
//! impl Functions for Env {
//!     fn call(&mut self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
//!         match (name, args) {
//!             ("env", [Value::String(k)]) if k == "NOMAD_ALLOC_ID" => Some(Ok("a1b2".into())),
//!             ("env", [_]) => Some(Ok("".into())),
//!             ("env", _) => Some(Err("env: want 1 argument".into())),
//!             _ => None,
//!         }
//!     }
//!     fn has(&self, name: &str) -> bool {
//!         name == "env"
//!     }
//! }
//!
//! let tmpl = Template::parse(
//!     "alloc={{ env \"NOMAD_ALLOC_ID\" | toUpper }}\n{{- range $i, $p := .ports }} {{ $i }}:{{ $p }}{{ end }}",
//!     &Options::default(),
//!     &Env,
//! )
//! .unwrap();
//! let data = serde_json::json!({ "ports": [80, 443] });
//! assert_eq!(tmpl.render(&data, &mut Env).unwrap(), "alloc=A1B2 0:80 1:443");
//! ```
//!
//! # Language
//!
//! Everything of Go's `text/template` that works on JSON-shaped data is supported: text and
//! `{{ }}` actions (custom delimiters), trim markers `{{- ` / ` -}}`, comments
//! `{{/* */}}`, pipelines, variables (`:=` and `=`, scoped to the enclosing block),
//! `if`/`else if`/`else`, `with`/`else with`/`else`, `range` (arrays, maps in key order,
//! integers) with `break`/`continue`, `define`/`template`/`block`, parenthesised pipelines
//! and field chains on them. Values are [`serde_json::Value`]s: a field `.a` on a map looks the
//! key up. Method calls on Go structs and the `call` function have no equivalent.
//!
//! # Built-in functions
//!
//! - Go: `and`, `or` (both short-circuit), `not`, `len`, `index`, `slice`, `eq`, `ne`, `lt`,
//!   `le`, `gt`, `ge`, `print`, `println`, `printf`, `html`, `js`, `urlquery`.
//! - consul-template, in its argument order (the subject last, so it can be piped):
//!   `toJSON`, `toJSONPretty`, `toUnescapedJSON`, `toUnescapedJSONPretty`, `toUpper`,
//!   `toLower`, `toTitle`, `trimSpace`, `trim cutset s`, `trimPrefix p s`, `trimSuffix p s`,
//!   `split sep s`, `join sep list`, `replaceAll old new s`, `indent n s`,
//!   `contains needle haystack`, `in haystack needle`, `containsAll`/`containsAny`/
//!   `containsNone`/`containsNotAll needles haystack`, `base64Encode`, `base64Decode`,
//!   `base64URLEncode`, `base64URLDecode`, `parseBool`, `parseInt`, `parseUint`,
//!   `parseFloat`, `parseJSON`, `loop`, and the math helpers `add`, `subtract`, `multiply`,
//!   `divide`, `modulo`, `minimum`, `maximum`, where `op b a` computes `a op b`
//!   (`subtract 2 5` and `5 | subtract 2` are 3).
//! - Sprig's `hasPrefix prefix s` and `hasSuffix suffix s` (consul-template itself only has
//!   them as `sprig_hasPrefix`, ...).
//!
//! Data sources (`env`, `key`, `nomadVar`, `secret`, `timestamp`, ...) belong to the host.
//!
//! Deliberate differences from Go, all in the lenient direction: `eq`/`lt`/... compare an
//! integer with a float numerically (Go refuses to compare `int` with `float64`), `eq` compares
//! arrays and maps structurally, and `join` accepts any list (non-strings print as with
//! `print`). Values that JSON cannot hold (NaN, infinities, byte strings that are not UTF-8)
//! are errors instead.
//!
//! Every error carries the template name, the 1-based line and the 1-based column (in
//! characters) of the offending token.

mod ast;
mod builtins;
mod exec;
mod gofmt;
mod json;
mod lex;
mod parse;
#[cfg(test)]
mod tests;
mod value;

use std::collections::BTreeMap;

pub use serde_json::Value;

/// A parsed template, ready to be rendered any number of times.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    source: String,
    root: Vec<ast::Node>,
    /// Templates named by `{{define}}` / `{{block}}`.
    defines: BTreeMap<String, Vec<ast::Node>>,
    error_on_missing_key: bool,
}

/// A parse or render error, located at the token that caused it.
///
/// It displays as `name:line:col: message`; `line` and `col` are 1-based, `col` counts
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}:{line}:{col}: {message}")]
pub struct TemplateError {
    /// The template's name ([`Options::name`]).
    pub name: String,
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column, in characters, of the offending token.
    pub col: usize,
    /// What went wrong.
    pub message: String,
}

/// Host-provided functions (data sources): `env`, `nomadVar`, `secret`, ...
///
/// Host functions are looked up before the built-in ones, so a host may also override a
/// built-in helper. `()` implements it with no functions at all.
pub trait Functions {
    /// Calls `name` with evaluated arguments. `None`: no such function here (the engine
    /// then tries its built-ins, then reports `function "x" not defined`).
    /// `Some(Err(msg))`: the function failed; rendering stops with msg at the call's position.
    fn call(&mut self, name: &str, args: &[Value]) -> Option<Result<Value, String>>;
    /// Whether `name` is a host function (checked at parse time so unknown functions are a
    /// parse error, as in Go).
    fn has(&self, name: &str) -> bool;
}

/// No host functions: only the built-ins are available.
impl Functions for () {
    fn call(&mut self, _name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        None
    }

    fn has(&self, _name: &str) -> bool {
        false
    }
}

/// How to parse (and later render) a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options<'a> {
    /// The name used in error messages.
    pub name: &'a str,
    /// The left action delimiter; empty means `{{`.
    pub left: &'a str,
    /// The right action delimiter; empty means `}}`.
    pub right: &'a str,
    /// Go's `missingkey=error`: a field naming a key that a map does not have is an error
    /// (`map has no entry for key "x"`) instead of printing `<no value>`.
    pub error_on_missing_key: bool,
}

impl Default for Options<'_> {
    /// Name `template`, delimiters `{{` and `}}`, missing keys render as `<no value>`.
    fn default() -> Self {
        Options {
            name: "template",
            left: "{{",
            right: "}}",
            error_on_missing_key: false,
        }
    }
}

impl Template {
    /// Parses `text`.
    ///
    /// Function names are resolved now: an identifier that is neither a built-in nor one for
    /// which `funcs.has` is true is an error, as are undefined variables, unbalanced control
    /// structures and malformed actions.
    pub fn parse(
        text: &str,
        opts: &Options,
        funcs: &dyn Functions,
    ) -> Result<Template, TemplateError> {
        let left = if opts.left.is_empty() {
            "{{"
        } else {
            opts.left
        };
        let right = if opts.right.is_empty() {
            "}}"
        } else {
            opts.right
        };
        let located = |e: Error| e.locate(opts.name, text);
        let tokens = lex::lex(text, left, right).map_err(located)?;
        let parsed = parse::parse(text, tokens, funcs, right).map_err(located)?;
        Ok(Template {
            name: opts.name.to_owned(),
            source: text.to_owned(),
            root: parsed.root,
            defines: parsed.defines,
            error_on_missing_key: opts.error_on_missing_key,
        })
    }

    /// Renders the template. `dot` is the initial `.` (and `$`).
    ///
    /// Rendering stops at the first error: a failing host function, a built-in given the
    /// wrong number or type of arguments, a field on a value that is not a map, a missing key
    /// with [`Options::error_on_missing_key`], ...
    pub fn render(&self, dot: &Value, funcs: &mut dyn Functions) -> Result<String, TemplateError> {
        exec::render(self, dot, funcs).map_err(|e| e.locate(&self.name, &self.source))
    }
}

/// An error at a byte offset of the source, before it is turned into line and column.
#[derive(Debug)]
pub(crate) struct Error {
    pub pos: ast::Pos,
    pub message: String,
}

impl Error {
    pub(crate) fn new(pos: ast::Pos, message: impl Into<String>) -> Self {
        Error {
            pos,
            message: message.into(),
        }
    }

    fn locate(self, name: &str, source: &str) -> TemplateError {
        let (line, col) = line_col(source, self.pos);
        TemplateError {
            name: name.to_owned(),
            line,
            col,
            message: self.message,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `pos` in `source`.
pub(crate) fn line_col(source: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(source.len());
    while !source.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &source[..pos];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = 1 + before.matches('\n').count();
    let col = 1 + before[line_start..].chars().count();
    (line, col)
}
