//! Agent configuration files with HCL1's semantics, as Nomad reads them, into one model: a
//! JSON object tree, with where every key was written.
//!
//! HCL1 is not HCL2: keys may be quoted (`meta { "zone" = "eu-1" }`) or dotted
//! (`driver.raw_exec.enable = "1"`); a block's labels are nested keys (`client "meta" {}` is
//! `client { meta {} }`, `plugin "raw_exec" { ... }` is `plugin { raw_exec { ... } }`); a block
//! written twice is merged; `key = { ... }` is the same as `key { ... }`; there are no
//! expressions (`"${...}"` stays text). JSON files (HCL1's JSON, as config generators write
//! it) wrap every object in a one-element list: [`unwrap_json_lists`] folds those into the
//! same model.

use std::collections::BTreeMap;

/// Where each key of a file is: dotted path -> (line, column).
pub type Spans = BTreeMap<String, (usize, usize)>;

/// A syntax error at `line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// A config file's text -> its object tree and the position of every key.
pub fn parse(text: &str) -> Result<(serde_json::Value, Spans), SyntaxError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        col: 1,
        spans: Spans::new(),
    };
    let body = p.body("", false)?;
    Ok((serde_json::Value::Object(body), p.spans))
}

/// HCL1's JSON: an object wrapped in a list (`"client": [{ ... }]`), or listed several times
/// (a repeated block), becomes the one merged object. Lists of anything else are kept.
pub fn unwrap_json_lists(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, unwrap_json_lists(v)))
                .collect(),
        ),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let mut merged = Value::Object(Default::default());
            for item in items {
                merge_into(&mut merged, unwrap_json_lists(item));
            }
            merged
        }
        Value::Array(items) => Value::Array(items.into_iter().map(unwrap_json_lists).collect()),
        other => other,
    }
}

/// HCL1's merge of a repeated block: objects key by key, anything else replaced.
fn merge_into(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(x) if x.is_object() && v.is_object() => merge_into(x, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (a, b) => *a = b,
    }
}

/// Deepest nesting of blocks and lists: a hostile file cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    col: usize,
    spans: Spans,
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Ident(String),
    Quoted(String),
}

impl Key {
    fn name(&self) -> &str {
        match self {
            Key::Ident(s) | Key::Quoted(s) => s,
        }
    }
}

impl Parser {
    fn error<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            line: self.line,
            column: self.col,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// Skips spaces, newlines, commas between items, and comments.
    fn skip_blank(&mut self, commas: bool) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some(',') if commas => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some('/') if self.peek_at(1) == Some('/') => self.skip_line(),
                Some('/') if self.peek_at(1) == Some('*') => {
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return self.error("a /* comment is not closed"),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    fn is_ident_char(c: char) -> bool {
        c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
    }

    fn ident(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| Self::is_ident_char(*c)) {
            s.push(c);
            self.bump();
        }
        s
    }

    /// The items of an object, up to its `}` (or the end of the file at the top).
    fn body(
        &mut self,
        path: &str,
        braced: bool,
    ) -> Result<serde_json::Map<String, serde_json::Value>, SyntaxError> {
        if path.matches('.').count() >= MAX_DEPTH {
            return self.error("blocks are nested too deeply");
        }
        let mut out = serde_json::Map::new();
        loop {
            self.skip_blank(true)?;
            match self.peek() {
                None if braced => return self.error("a block is not closed: expected `}`"),
                None => return Ok(out),
                Some('}') if braced => {
                    self.bump();
                    return Ok(out);
                }
                Some('}') => return self.error("unexpected `}`"),
                _ => self.item(path, &mut out)?,
            }
        }
    }

    /// One item: `key = value`, `key { ... }` or `key "label" ... { ... }`.
    fn item(
        &mut self,
        path: &str,
        out: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), SyntaxError> {
        let at = (self.line, self.col);
        let mut keys = Vec::new();
        loop {
            self.skip_blank(false)?;
            match self.peek() {
                Some('"') => keys.push(Key::Quoted(self.string()?)),
                Some(c) if Self::is_ident_char(c) => keys.push(Key::Ident(self.ident())),
                Some('=') | Some('{') if !keys.is_empty() => break,
                Some(c) => {
                    return self.error(format!(
                        "expected a key, `=` or `{{`, found {c:?}{}",
                        keys.last()
                            .map(|k| format!(" after {:?}", k.name()))
                            .unwrap_or_default()
                    ));
                }
                None => return self.error("the file ends in the middle of an item"),
            }
        }
        let value = if self.peek() == Some('=') {
            if keys.len() > 1 {
                return self.error(format!(
                    "{:?} = ...: a value has one key (labels are for blocks)",
                    keys.iter().map(Key::name).collect::<Vec<_>>().join(" ")
                ));
            }
            self.bump();
            self.skip_blank(false)?;
            let full = join(path, keys[0].name());
            self.value(&full)?
        } else {
            self.bump();
            let full = keys
                .iter()
                .fold(path.to_string(), |p, k| join(&p, k.name()));
            serde_json::Value::Object(self.body(&full, true)?)
        };
        // Every level of a labeled block is a key of its own.
        let mut p = path.to_string();
        for k in &keys {
            p = join(&p, k.name());
            self.spans.entry(p.clone()).or_insert(at);
        }
        let nested = keys.iter().skip(1).rev().fold(value, |v, k| {
            let mut m = serde_json::Map::new();
            m.insert(k.name().to_string(), v);
            serde_json::Value::Object(m)
        });
        let name = keys[0].name().to_string();
        match out.get_mut(&name) {
            Some(existing) if existing.is_object() && nested.is_object() => {
                merge_into(existing, nested)
            }
            _ => {
                out.insert(name, nested);
            }
        }
        Ok(())
    }

    fn value(&mut self, path: &str) -> Result<serde_json::Value, SyntaxError> {
        match self.peek() {
            Some('"') => Ok(serde_json::Value::String(self.string()?)),
            Some('<') if self.peek_at(1) == Some('<') => {
                Ok(serde_json::Value::String(self.heredoc()?))
            }
            Some('{') => {
                self.bump();
                Ok(serde_json::Value::Object(self.body(path, true)?))
            }
            Some('[') => {
                self.bump();
                if path.matches('.').count() >= MAX_DEPTH {
                    return self.error("lists are nested too deeply");
                }
                let mut items = Vec::new();
                loop {
                    self.skip_blank(false)?;
                    match self.peek() {
                        Some(']') => {
                            self.bump();
                            return Ok(serde_json::Value::Array(items));
                        }
                        None => return self.error("a list is not closed: expected `]`"),
                        _ => items.push(self.value(path)?),
                    }
                    self.skip_blank(false)?;
                    match self.peek() {
                        Some(',') => {
                            self.bump();
                        }
                        Some(']') => {}
                        _ => return self.error("expected `,` or `]` in a list"),
                    }
                }
            }
            Some(c) if c == '-' || c == '+' || c.is_ascii_digit() => self.number(),
            Some(c) if Self::is_ident_char(c) => match self.ident().as_str() {
                "true" => Ok(serde_json::Value::Bool(true)),
                "false" => Ok(serde_json::Value::Bool(false)),
                other => self.error(format!(
                    "{other:?} is not a value: quote a string (\"{other}\")"
                )),
            },
            Some(c) => self.error(format!("expected a value, found {c:?}")),
            None => self.error("expected a value, found the end of the file"),
        }
    }

    fn number(&mut self) -> Result<serde_json::Value, SyntaxError> {
        let (line, col) = (self.line, self.col);
        let mut s = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        {
            s.push(c);
            self.bump();
        }
        let bad = || SyntaxError {
            line,
            column: col,
            message: format!("{s:?} is not a number"),
        };
        let digits = s.trim_start_matches(['-', '+']);
        let negative = s.starts_with('-');
        if let Some(hex) = digits.strip_prefix("0x") {
            let n = i64::from_str_radix(hex, 16).map_err(|_| bad())?;
            return Ok(serde_json::Value::from(if negative { -n } else { n }));
        }
        if let Ok(n) = s.trim_start_matches('+').parse::<i64>() {
            return Ok(serde_json::Value::from(n));
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(serde_json::Value::from(n));
        }
        let f: f64 = s.trim_start_matches('+').parse().map_err(|_| bad())?;
        serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .ok_or_else(bad)
    }

    /// A quoted string; `${...}` is kept as written (quotes inside it included).
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.bump();
        let mut s = String::new();
        let mut interpolation = 0usize;
        loop {
            match self.bump() {
                None | Some('\n') if interpolation == 0 => {
                    return self.error("a string is not closed: expected `\"`");
                }
                None => return self.error("a ${...} in a string is not closed"),
                Some('"') if interpolation == 0 => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                            Some(c) => s.push(c),
                            None => return self.error(format!("\\u{hex} is not a character")),
                        }
                    }
                    Some(c) if interpolation > 0 => {
                        s.push('\\');
                        s.push(c);
                    }
                    Some(c) => return self.error(format!("unknown escape \\{c} in a string")),
                    None => return self.error("a string is not closed: expected `\"`"),
                },
                Some('$') if self.peek() == Some('{') => {
                    self.bump();
                    interpolation += 1;
                    s.push_str("${");
                }
                Some('{') if interpolation > 0 => {
                    interpolation += 1;
                    s.push('{');
                }
                Some('}') if interpolation > 0 => {
                    interpolation -= 1;
                    s.push('}');
                }
                Some(c) => s.push(c),
            }
        }
    }

    /// `<<EOF ... EOF`, or `<<-EOF` with the closing marker's indentation removed from
    /// every line.
    fn heredoc(&mut self) -> Result<String, SyntaxError> {
        self.bump();
        self.bump();
        let indented = self.peek() == Some('-');
        if indented {
            self.bump();
        }
        let marker = self.ident();
        if marker.is_empty() || self.bump() != Some('\n') {
            return self.error("a heredoc starts with <<MARKER at the end of a line");
        }
        let mut lines = Vec::new();
        loop {
            if self.peek().is_none() {
                return self.error(format!("the heredoc is not closed by {marker}"));
            }
            let mut line = String::new();
            while let Some(c) = self.peek().filter(|c| *c != '\n') {
                line.push(c);
                self.bump();
            }
            if line.trim() == marker {
                let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
                let body: Vec<String> = lines
                    .into_iter()
                    .map(|l: String| {
                        if indented {
                            let strip = l.len() - l.trim_start_matches([' ', '\t']).len();
                            l[strip.min(indent)..].to_string()
                        } else {
                            l
                        }
                    })
                    .collect();
                let mut out = body.join("\n");
                out.push('\n');
                return Ok(out);
            }
            lines.push(line);
            self.bump();
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quoted_and_dotted_keys_labels_and_repeated_blocks() {
        let (v, spans) = parse(
            r#"
# a comment
client {
  enabled = true
  meta { "zone" = "eu-1" }
  options {
    "driver.raw_exec.enable" = "1"
    driver.allowlist = "exec,docker"
  }
  chroot_env {
    "/bin" = "/bin"
  }
}
client "meta" { rack = "r1" }   // a label is a nested key
client {
  servers = ["10.0.0.1:4647", "10.0.0.2",]
}
plugin "raw_exec" "config" { enabled = true }
limits = { http_max_conns_per_client = 50 }
/* a block
   comment */
ratio = 0.5
"#,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "client": {
                    "enabled": true,
                    "meta": {"zone": "eu-1", "rack": "r1"},
                    "options": {"driver.raw_exec.enable": "1", "driver.allowlist": "exec,docker"},
                    "chroot_env": {"/bin": "/bin"},
                    "servers": ["10.0.0.1:4647", "10.0.0.2"],
                },
                "plugin": {"raw_exec": {"config": {"enabled": true}}},
                "limits": {"http_max_conns_per_client": 50},
                "ratio": 0.5,
            })
        );
        assert_eq!(spans["client"], (3, 1));
        assert_eq!(spans["client.meta.zone"], (5, 10));
        assert_eq!(spans["client.options.driver.raw_exec.enable"], (7, 5));
        assert_eq!(spans["client.meta.rack"], (14, 17));
        assert_eq!(spans["plugin.raw_exec.config"], (18, 1));
    }

    #[test]
    fn strings_keep_interpolations_and_heredocs_strip_their_indent() {
        let (v, _) = parse(
            "a = \"${meta.x} \\\"q\\\" ${f(\"y\")}\"\nb = <<-EOT\n    one\n      two\n    EOT\nc = <<EOT\nx\nEOT\nd = -3\ne = 0x1f\n",
        )
        .unwrap();
        assert_eq!(v["a"], "${meta.x} \"q\" ${f(\"y\")}");
        assert_eq!(v["b"], "one\n  two\n");
        assert_eq!(v["c"], "x\n");
        assert_eq!(v["d"], -3);
        assert_eq!(v["e"], 31);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = parse("client {\n  enabled = yes\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 16), "{e}");
        assert!(e.message.contains("\"yes\" is not a value"), "{e}");
        let e = parse("client {\n  enabled = true\n").unwrap_err();
        assert!(e.message.contains("not closed"), "{e}");
        let e = parse("a = \"open\n").unwrap_err();
        assert!(e.message.contains("string is not closed"), "{e}");
        let e = parse("a \"b\" = 1\n").unwrap_err();
        assert!(e.message.contains("a value has one key"), "{e}");
        let deep = "a {".repeat(100) + &"}".repeat(100);
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn json_lists_of_objects_fold_into_one_object() {
        let v = unwrap_json_lists(json!({
            "client": [{"enabled": true, "meta": [{"zone": "eu-1"}]}, {"meta": [{"rack": "r1"}]}],
            "server": [{"server_join": [{"retry_join": ["a", "b"]}]}],
            "plugin": [{"raw_exec": [{"config": [{"enabled": true}]}]}],
            "empty": [],
        }));
        assert_eq!(
            v,
            json!({
                "client": {"enabled": true, "meta": {"zone": "eu-1", "rack": "r1"}},
                "server": {"server_join": {"retry_join": ["a", "b"]}},
                "plugin": {"raw_exec": {"config": {"enabled": true}}},
                "empty": [],
            })
        );
    }
}
