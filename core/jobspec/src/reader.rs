//! Reading one block of the syntax tree: typed attribute access with positions, and a check
//! that every key was understood.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use hcl::edit::Span;
use hcl::edit::expr::Expression as EditExpr;
use hcl::edit::structure::{Attribute, Block};
use hcl::eval::{Context, Evaluate};

use serde_json::Value as Json;

use crate::{JobspecError, convert};

/// The document being read: its text (for positions and raw templates), file name, the
/// evaluation context (variables, locals, functions), and what reading it found.
///
/// Reading goes on after an error: a block in error is reported here ([`Source::report`],
/// [`Source::recover`], [`Source::each`]) and left out, its siblings are still read, so one
/// run reports every error of the file (as Nomad does).
pub struct Source<'a> {
    text: &'a str,
    file: &'a str,
    pub ctx: Context<'static>,
    /// Drivers' task config schemas, when task configs are checked.
    pub schemas: Option<crate::SchemaLookup<'a>>,
    errors: RefCell<Vec<JobspecError>>,
    rewrites: RefCell<Vec<String>>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str, file: &'a str) -> Self {
        Source {
            text,
            file,
            ctx: crate::functions::context(),
            schemas: None,
            errors: RefCell::new(Vec::new()),
            rewrites: RefCell::new(Vec::new()),
        }
    }

    /// Records an error; reading goes on.
    pub fn report(&self, e: JobspecError) {
        self.errors.borrow_mut().push(e);
    }

    /// The value, or `None` with its error recorded.
    pub fn recover<T>(&self, r: Result<T, JobspecError>) -> Option<T> {
        r.map_err(|e| self.report(e)).ok()
    }

    /// Reads each item; an item in error is recorded and left out.
    pub fn each<I, T>(
        &self,
        items: impl IntoIterator<Item = I>,
        mut read: impl FnMut(I) -> Result<T, JobspecError>,
    ) -> Vec<T> {
        items
            .into_iter()
            .filter_map(|i| self.recover(read(i)))
            .collect()
    }

    /// Every error recorded, in file order (an error found twice is kept once).
    pub fn take_errors(&self) -> Vec<JobspecError> {
        let mut errors = self.errors.take();
        errors.sort_by_key(|a| (a.line, a.column));
        errors.dedup();
        errors
    }

    /// Records that a line was accepted only for compatibility, and what it was read as.
    pub fn rewrite(&self, node: &impl Span, path: &str, what: &str) {
        let (l, c) = self.line_col(node.span().map(|s| s.start).unwrap_or(0));
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" {path}:")
        };
        self.rewrites
            .borrow_mut()
            .push(format!("{}:{l}:{c}:{at} {what}", self.file));
    }

    /// The compatibility rewrites, in file order.
    pub fn take_rewrites(&self) -> Vec<String> {
        self.rewrites.take()
    }

    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map(|i| before.len() - i)
            .unwrap_or(before.len() + 1);
        (line, col)
    }

    pub fn error_at(&self, offset: usize, path: &str, message: &str) -> JobspecError {
        let (line, column) = self.line_col(offset);
        JobspecError {
            file: self.file.to_string(),
            line,
            column,
            path: path.to_string(),
            message: message.to_string(),
        }
    }

    pub fn error_span(&self, node: &impl Span, path: &str, message: &str) -> JobspecError {
        self.error_at(node.span().map(|s| s.start).unwrap_or(0), path, message)
    }

    pub(crate) fn raw(&self, node: &impl Span) -> Option<&'a str> {
        node.span().and_then(|s| self.text.get(s))
    }
}

pub struct BlockReader<'a> {
    src: &'a Source<'a>,
    block: &'a Block,
    path: String,
    used: BTreeSet<String>,
    warnings: Vec<String>,
}

impl<'a> BlockReader<'a> {
    /// Starts reading `block` (a `kind` block) under `parent`. Job, group and task blocks take
    /// exactly one label; the others none.
    pub fn new(
        src: &'a Source<'a>,
        block: &'a Block,
        parent: String,
        kind: &str,
    ) -> Result<Self, JobspecError> {
        let labelled = matches!(
            kind,
            "job"
                | "group"
                | "task"
                | "port"
                | "target"
                | "volume"
                | "secret"
                | "device"
                | "action"
        );
        Self::open(src, block, parent, kind, labelled)
    }

    /// Starts reading a block that takes one label where it is (a task's `scaling "cpu"`).
    pub fn labelled(
        src: &'a Source<'a>,
        block: &'a Block,
        parent: String,
        kind: &str,
    ) -> Result<Self, JobspecError> {
        Self::open(src, block, parent, kind, true)
    }

    fn open(
        src: &'a Source<'a>,
        block: &'a Block,
        parent: String,
        kind: &str,
        labelled: bool,
    ) -> Result<Self, JobspecError> {
        let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
        let me = if labelled && labels.len() == 1 {
            format!("{kind} {:?}", labels[0])
        } else {
            kind.to_string()
        };
        let path = if parent.is_empty() {
            me
        } else {
            format!("{parent} > {me}")
        };
        if labelled && labels.len() != 1 {
            return Err(src.error_span(
                block,
                &path,
                &format!("a {kind} block takes exactly one label: {kind} \"NAME\" {{ ... }}"),
            ));
        }
        if !labelled && !labels.is_empty() {
            return Err(src.error_span(block, &path, &format!("a {kind} block takes no label")));
        }
        Ok(BlockReader {
            src,
            block,
            path,
            used: BTreeSet::new(),
            warnings: Vec::new(),
        })
    }

    pub fn label(&self) -> &str {
        self.block.labels.first().map(|l| l.as_str()).unwrap_or("")
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The block being read.
    pub fn block(&self) -> &'a Block {
        self.block
    }

    /// A key accepted only for compatibility: when present, listed as a rewrite. With `read` it is still decoded into the model; without, it is ignored.
    pub fn deprecated(&mut self, key: &str, note: &str, read: bool) {
        if !read {
            self.used.insert(key.to_string());
        }
        if let Some(a) = self.block.body.get_attribute(key) {
            self.src.rewrite(a, &self.path, &format!("{key:?}: {note}"));
        }
    }

    pub fn location(&self, node: &impl Span) -> String {
        let (l, c) = self.src.line_col(node.span().map(|s| s.start).unwrap_or(0));
        format!("{}:{l}:{c}: {}", self.src.file, self.path)
    }

    pub fn warn_at(&mut self, node: &impl Span, message: &str) {
        let loc = self.location(node);
        self.warnings.push(format!("{loc}: {message}"));
    }

    pub fn error_here(&self, message: &str) -> JobspecError {
        self.src.error_span(self.block, &self.path, message)
    }

    pub fn error_key(&self, key: &str, message: &str) -> JobspecError {
        match self.block.body.get_attribute(key) {
            Some(a) => self.src.error_span(a, &self.path, message),
            None => self.error_here(message),
        }
    }

    fn attr(&mut self, key: &str) -> Result<Option<&'a Attribute>, JobspecError> {
        self.used.insert(key.to_string());
        let mut found = self
            .block
            .body
            .attributes()
            .filter(|a| a.key.as_str() == key);
        let first = found.next();
        if let Some(dup) = found.next() {
            return Err(self
                .src
                .error_span(dup, &self.path, &format!("key {key:?} is set twice")));
        }
        Ok(first)
    }

    /// Evaluates an attribute's value.
    fn value(&self, a: &Attribute) -> Result<hcl::Value, JobspecError> {
        eval(self.src, &a.value, &self.path)
    }

    /// A bool, or a string HCL converts to one (`"true"`).
    pub fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, JobspecError> {
        let Some(a) = self.attr(key)? else {
            return Ok(None);
        };
        match self.value(a)? {
            hcl::Value::Bool(b) => Ok(Some(b)),
            hcl::Value::String(s) => convert::to_bool(&s).map(Some).map_err(|m| {
                self.src
                    .error_span(a, &self.path, &format!("{:?}: {m}", a.key.as_str()))
            }),
            v => Err(self.type_error(a, "a bool", &v)),
        }
    }

    /// Decodes the block's remaining attributes into `T` (whose serde names are Nomad's JSON
    /// names): each HCL key becomes its PascalCase name unless `renames` maps it, `extra`
    /// holds what the caller decoded from nested blocks. Values are converted as HCL2 does
    /// ([`convert`]). Every unknown key and every wrong type is recorded at its attribute's
    /// position and left out; the error returned is one no value could be made without (a
    /// missing required key).
    pub fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        renames: &[(&str, &str)],
        mut extra: serde_json::Map<String, Json>,
    ) -> Result<T, JobspecError> {
        let mut origin: BTreeMap<String, &'a Attribute> = BTreeMap::new();
        for a in self.block.body.attributes() {
            let key = a.key.as_str();
            if self.used.contains(key) {
                continue;
            }
            self.used.insert(key.to_string());
            let name = renames
                .iter()
                .find(|(h, _)| *h == key)
                .map(|(_, n)| n.to_string())
                .unwrap_or_else(|| pascal(key));
            let Some(v) = self.src.recover(self.value(a)) else {
                continue;
            };
            extra.insert(name.clone(), serde_json::to_value(&v).unwrap_or_default());
            origin.insert(name, a);
        }
        let mut value = Json::Object(extra);
        let mut converted: BTreeSet<String> = BTreeSet::new();
        // Keys dropped for a wrong value: a required one's absence is not another error.
        let mut dropped: Vec<(String, JobspecError)> = Vec::new();
        // Each pass converts a value (a whole list at a time) or drops a key.
        for _ in 0..(2 * origin.len() + 64) {
            let mut unknown = Vec::new();
            let mut track = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
            let de = serde_ignored::Deserializer::new(value.clone(), &mut track);
            let e = match serde_path_to_error::deserialize::<_, T>(de) {
                Ok(t) => {
                    for u in unknown {
                        let top = u.split(['.', '[']).next().unwrap_or(&u);
                        self.src.report(match origin.get(top) {
                            Some(a) => self.src.error_span(
                                *a,
                                &self.path,
                                &format!("unknown key {:?}", a.key.as_str()),
                            ),
                            None => self.error_here(&format!("unknown key {u:?}")),
                        });
                    }
                    return Ok(t);
                }
                Err(e) => e,
            };
            let path = e.path().to_string();
            let msg = e.inner().to_string();
            let top = path.split(['.', '[']).next().unwrap_or(&path).to_string();
            let Some(a) = origin.get(&top).copied() else {
                if let Some((_, e)) = dropped
                    .iter()
                    .find(|(k, _)| msg == format!("missing field `{k}`"))
                {
                    return Err(e.clone());
                }
                // A missing required key has the block itself for its path.
                return Err(if path == "." {
                    self.error_here(&msg)
                } else {
                    self.error_here(&format!("{path}: {msg}"))
                });
            };
            let reason = match converted
                .insert(path.clone())
                .then(|| convert_at(&mut value, e.path(), &msg))
                .flatten()
            {
                Some(Ok(())) => continue,
                Some(Err(reason)) => reason,
                None => whole_numbers(&msg),
            };
            let e = self
                .src
                .error_span(a, &self.path, &format!("{:?}: {reason}", a.key.as_str()));
            self.src.report(e.clone());
            dropped.push((top.clone(), e));
            if let Json::Object(m) = &mut value {
                m.remove(&top);
            }
            origin.remove(&top);
        }
        Err(self.error_here("too many values to convert in this block"))
    }

    fn type_error(&self, a: &Attribute, want: &str, got: &hcl::Value) -> JobspecError {
        self.src.error_span(
            a,
            &self.path,
            &format!(
                "{:?} must be {want}, found {}",
                a.key.as_str(),
                type_name(got)
            ),
        )
    }

    /// A string, or a number or bool as HCL converts it (`value = 8080`).
    pub fn opt_string(&mut self, key: &str) -> Result<Option<(String, usize)>, JobspecError> {
        let Some(a) = self.attr(key)? else {
            return Ok(None);
        };
        let at = a.span().map(|s| s.start).unwrap_or(0);
        match self.value(a)? {
            v @ (hcl::Value::String(_) | hcl::Value::Number(_) | hcl::Value::Bool(_)) => {
                Ok(Some((scalar_string(&v).unwrap_or_default(), at)))
            }
            v => Err(self.type_error(a, "a string", &v)),
        }
    }

    /// A string map given as an attribute (`env = { A = "1" }`) or a block (`env { A = "1" }`).
    pub fn string_map(&mut self, key: &str) -> Result<BTreeMap<String, String>, JobspecError> {
        let mut out = BTreeMap::new();
        let attr = self.attr(key)?;
        let block = self.block_once(key)?;
        let value = match (attr, block) {
            (Some(a), None) => Some((self.value(a)?, a)),
            (None, Some(b)) => {
                for a in b.body.attributes() {
                    let v = eval(self.src, &a.value, &self.path)?;
                    out.insert(
                        a.key.as_str().to_string(),
                        scalar_string(&v).ok_or_else(|| {
                            self.src.error_span(
                                a,
                                &self.path,
                                &format!(
                                    "{key} value {:?} must be a string, number or bool",
                                    a.key.as_str()
                                ),
                            )
                        })?,
                    );
                }
                if let Some(b2) = b.body.blocks().next() {
                    return Err(self.src.error_span(
                        b2,
                        &self.path,
                        &format!("{key} holds only key = value pairs"),
                    ));
                }
                None
            }
            (Some(a), Some(_)) => {
                return Err(self.src.error_span(
                    a,
                    &self.path,
                    &format!("{key} is given both as a block and as a key"),
                ));
            }
            (None, None) => None,
        };
        if let Some((v, a)) = value {
            let hcl::Value::Object(map) = v else {
                return Err(self.type_error(a, "a map of strings", &v));
            };
            for (k, v) in map {
                let s =
                    scalar_string(&v).ok_or_else(|| self.type_error(a, "a map of strings", &v))?;
                out.insert(k, s);
            }
        }
        Ok(out)
    }

    pub fn meta(&mut self) -> Result<BTreeMap<String, String>, JobspecError> {
        self.string_map("meta")
    }

    /// Every block named `ident` (marked as understood).
    pub fn blocks(&mut self, ident: &str) -> Vec<&'a Block> {
        self.used.insert(ident.to_string());
        self.block
            .body
            .blocks()
            .filter(|b| b.ident.as_str() == ident)
            .collect()
    }

    /// The block named `ident`, which may appear at most once.
    pub fn block_once(&mut self, ident: &str) -> Result<Option<&'a Block>, JobspecError> {
        let blocks = self.blocks(ident);
        if let Some(dup) = blocks.get(1) {
            return Err(self.src.error_span(
                *dup,
                &self.path,
                &format!("block {ident:?} may appear only once here"),
            ));
        }
        Ok(blocks.first().copied())
    }

    /// Keys Drover knows but does not act on yet: accepted with a warning.
    pub fn unimplemented_attrs(&mut self, keys: &[&str]) {
        for k in keys {
            self.used.insert(k.to_string());
            if let Some(a) = self.block.body.get_attribute(k) {
                let msg = format!("key {k:?} is accepted but not acted on yet");
                self.warn_at(a, &msg);
            }
        }
    }

    /// A free-form block (a driver's `config`): attributes become JSON values, nested blocks
    /// objects (or arrays of objects when repeated).
    pub fn free_form(
        &self,
        block: &Block,
    ) -> Result<serde_json::Map<String, serde_json::Value>, JobspecError> {
        let mut out = serde_json::Map::new();
        for a in block.body.attributes() {
            let v = eval(self.src, &a.value, &self.path)?;
            out.insert(
                a.key.as_str().to_string(),
                serde_json::to_value(&v).unwrap_or_default(),
            );
        }
        for b in block.body.blocks() {
            let inner = serde_json::Value::Object(self.free_form(b)?);
            match out.get_mut(b.ident.as_str()) {
                Some(serde_json::Value::Array(arr)) => arr.push(inner),
                Some(prev) => {
                    let first = prev.take();
                    *prev = serde_json::Value::Array(vec![first, inner]);
                }
                None => {
                    out.insert(b.ident.as_str().to_string(), inner);
                }
            }
        }
        Ok(out)
    }

    /// Records every key and block not understood; returns the warnings collected.
    pub fn finish(self) -> Vec<String> {
        for s in self.block.body.iter() {
            if let Some(a) = s.as_attribute() {
                if !self.used.contains(a.key.as_str()) {
                    self.src.report(self.src.error_span(
                        a,
                        &self.path,
                        &format!("unknown key {:?}", a.key.as_str()),
                    ));
                }
            } else if let Some(b) = s.as_block()
                && !self.used.contains(b.ident.as_str())
            {
                self.src.report(self.src.error_span(
                    b,
                    &self.path,
                    &format!("unknown block {:?}", b.ident.as_str()),
                ));
            }
        }
        self.warnings
    }
}

/// Converts the value at a deserializer's error path as HCL does ([`convert`]); in a list,
/// every element of the same type at once (as cty converts a list's element type). `None`
/// when the error is not a mismatch HCL converts.
fn convert_at(
    value: &mut Json,
    path: &serde_path_to_error::Path,
    message: &str,
) -> Option<Result<(), String>> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let (last, parents) = segments.split_last()?;
    let mut v = value;
    for seg in parents {
        v = match (seg, v) {
            (Segment::Seq { index }, Json::Array(items)) => items.get_mut(*index)?,
            (Segment::Map { key }, Json::Object(m)) => m.get_mut(key)?,
            _ => return None,
        };
    }
    let slots: Vec<&mut Json> = match (last, v) {
        (Segment::Seq { index }, Json::Array(items)) => {
            let kind = std::mem::discriminant(items.get(*index)?);
            items
                .iter_mut()
                .filter(|i| std::mem::discriminant(&**i) == kind)
                .collect()
        }
        (Segment::Map { key }, Json::Object(m)) => vec![m.get_mut(key)?],
        _ => return None,
    };
    for slot in slots {
        match convert::for_mismatch(slot, message)? {
            Ok(new) => *slot = new,
            Err(reason) => return Some(Err(reason)),
        }
    }
    Some(Ok(()))
}

/// serde's integer type names in words.
fn whole_numbers(msg: &str) -> String {
    let mut msg = msg.to_string();
    for int in ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"] {
        msg = msg.replace(&format!("expected {int}"), "expected a whole number");
    }
    msg
}

/// The source text of an expression (`type = string` is read, not evaluated).
pub fn raw_text<'a>(src: &'a Source<'a>, e: &EditExpr) -> Option<&'a str> {
    src.raw(e)
}

/// `max_file_size` -> `MaxFileSize`, with Nomad's acronyms (`ttl` -> `TTL`).
pub fn pascal(key: &str) -> String {
    key.split('_')
        .map(|part| match part {
            "id" | "ttl" | "dns" | "cpu" | "mb" | "csi" | "http" | "url" | "ip" | "tg" => {
                part.to_uppercase()
            }
            _ => {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
        })
        .collect()
}

fn scalar_string(v: &hcl::Value) -> Option<String> {
    match v {
        hcl::Value::String(s) => Some(s.clone()),
        hcl::Value::Number(n) => Some(n.to_string()),
        hcl::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn type_name(v: &hcl::Value) -> &'static str {
    match v {
        hcl::Value::Null => "null",
        hcl::Value::Bool(_) => "a bool",
        hcl::Value::Number(_) => "a number",
        hcl::Value::String(_) => "a string",
        hcl::Value::Array(_) => "a list",
        hcl::Value::Object(_) => "an object",
    }
}

/// Evaluates an expression. A template that refers to runtime values (`${NOMAD_ALLOC_DIR}`,
/// `${attr.kernel.name}`, ...) cannot be evaluated now: its submit-time parts (`var.`,
/// `local.`, function calls) are, and the rest is kept as written, for the client.
pub fn eval(src: &Source<'_>, expr: &EditExpr, path: &str) -> Result<hcl::Value, JobspecError> {
    let e: hcl::Expression = expr.clone().into();
    match e.evaluate(&src.ctx) {
        Ok(v) => Ok(v),
        Err(err) => match expr {
            EditExpr::StringTemplate(_) => {
                let raw = src.raw(expr).unwrap_or("\"\"");
                let inner = raw
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .unwrap_or(raw);
                Ok(hcl::Value::String(partial_template(
                    src,
                    &unescape(inner),
                    expr,
                    path,
                )?))
            }
            EditExpr::HeredocTemplate(h) => {
                let raw = src.raw(&h.template).map(str::to_string).unwrap_or_default();
                Ok(hcl::Value::String(partial_template(src, &raw, expr, path)?))
            }
            EditExpr::Array(items) => Ok(hcl::Value::Array(
                items
                    .iter()
                    .map(|i| eval(src, i, path))
                    .collect::<Result<_, _>>()?,
            )),
            EditExpr::Object(obj) => {
                let mut map = hcl::Map::new();
                for (k, v) in obj.iter() {
                    let key = match k {
                        hcl::edit::expr::ObjectKey::Ident(i) => i.as_str().to_string(),
                        hcl::edit::expr::ObjectKey::Expression(e) => match eval(src, e, path)? {
                            hcl::Value::String(s) => s,
                            other => other.to_string(),
                        },
                    };
                    map.insert(key, eval(src, v.expr(), path)?);
                }
                Ok(hcl::Value::Object(map))
            }
            _ => Err(src.error_span(expr, path, &format!("cannot evaluate expression: {err}"))),
        },
    }
}

/// Evaluates the `${...}` parts of a template that are known at submit time and keeps the
/// runtime ones (`${NOMAD_*}`, `${attr.*}`, `${node.*}`, `${meta.*}`, `${env.*}`) as written.
fn partial_template(
    src: &Source<'_>,
    text: &str,
    at: &EditExpr,
    path: &str,
) -> Result<String, JobspecError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 && rest.as_bytes()[start - 1] == b'$' {
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = after[..end].trim();
        let runtime = [
            "NOMAD_", "DROVER_", "attr.", "node.", "meta.", "env.", "device.", "secret.",
        ]
        .iter()
        .any(|p| inner.starts_with(p))
            || inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if runtime {
            out.push_str(&rest[start..start + 2 + end + 1]);
        } else {
            let e: hcl::Expression = inner.parse().map_err(|e| {
                src.error_span(
                    at,
                    path,
                    &format!("invalid interpolation ${{{inner}}}: {e}"),
                )
            })?;
            let v = e.evaluate(&src.ctx).map_err(|e| {
                src.error_span(at, path, &format!("cannot evaluate ${{{inner}}}: {e}"))
            })?;
            match v {
                hcl::Value::String(s) => out.push_str(&s),
                other => out.push_str(&other.to_string()),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}
