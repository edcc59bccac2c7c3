//! JSON output as Go's `encoding/json` writes it (what consul-template's `toJSON` family
//! prints): map keys sorted, floats in Go's notation, HTML-sensitive characters escaped
//! unless asked otherwise.

use serde_json::Value;

use crate::gofmt::format_json_float;
use crate::value::{Num, num};

/// Encodes `v`. `indent`: Go's `MarshalIndent(v, "", "  ")` layout.
pub(crate) fn encode(v: &Value, escape_html: bool, indent: bool) -> String {
    let mut out = String::new();
    let mut enc = Encoder {
        out: &mut out,
        escape_html,
        indent,
    };
    enc.value(v, 0);
    out
}

struct Encoder<'a> {
    out: &'a mut String,
    escape_html: bool,
    indent: bool,
}

impl Encoder<'_> {
    fn newline(&mut self, depth: usize) {
        if self.indent {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }

    fn value(&mut self, v: &Value, depth: usize) {
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match num(n) {
                Num::Int(i) => self.out.push_str(&i.to_string()),
                Num::Float(f) => self.out.push_str(&format_json_float(f)),
            },
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                if items.is_empty() {
                    self.out.push_str("[]");
                    return;
                }
                self.out.push('[');
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(depth + 1);
                    self.value(e, depth + 1);
                }
                self.newline(depth);
                self.out.push(']');
            }
            Value::Object(map) => {
                if map.is_empty() {
                    self.out.push_str("{}");
                    return;
                }
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                self.out.push('{');
                for (i, (k, e)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(depth + 1);
                    self.string(k);
                    self.out.push(':');
                    if self.indent {
                        self.out.push(' ');
                    }
                    self.value(e, depth + 1);
                }
                self.newline(depth);
                self.out.push('}');
            }
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\x08' => self.out.push_str("\\b"),
                '\x0c' => self.out.push_str("\\f"),
                '<' | '>' | '&' if self.escape_html => {
                    self.out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                    self.out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}
