//! The parser: tokens to [`Node`]s, following Go's `text/template/parse`.
//!
//! Besides building the tree it resolves names as Go does at parse time: functions must
//! exist, variables must be in scope (a variable lives until the `end` of the control
//! structure it was declared in), and `break`/`continue` must be inside a `range`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ast::{Branch, Command, FieldName, Node, Operand, Pipeline, Pos};
use crate::lex::{Keyword, Tok, Token};
use crate::value::{float_value, int_value};
use crate::{Error, Functions, builtins, line_col};

/// How deeply control structures and parentheses may nest (keeps the recursive parser and
/// evaluator well within the stack).
pub(crate) const MAX_DEPTH: usize = 100;

pub(crate) struct Parsed {
    pub root: Vec<Node>,
    pub defines: BTreeMap<String, Vec<Node>>,
}

pub(crate) fn parse(
    src: &str,
    tokens: Vec<Token>,
    funcs: &dyn Functions,
    right_delim: &str,
) -> Result<Parsed, Error> {
    let mut p = Parser {
        src,
        toks: tokens,
        i: 0,
        funcs,
        right_delim,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        block_depth: 0,
        depth: 0,
        defines: BTreeMap::new(),
    };
    let (root, end) = p.list()?;
    match end {
        ListEnd::Eof(_) => {}
        ListEnd::End(pos) => return Err(Error::new(pos, "unexpected {{end}}")),
        ListEnd::Else(pos, _) => return Err(Error::new(pos, "unexpected {{else}}")),
    }
    Ok(Parsed {
        root,
        defines: p.defines,
    })
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    funcs: &'a dyn Functions,
    right_delim: &'a str,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    range_depth: usize,
    /// Open control structures (`define` is only allowed outside all of them).
    block_depth: usize,
    /// Nesting of control structures and parentheses, bounded by [`MAX_DEPTH`].
    depth: usize,
    defines: BTreeMap<String, Vec<Node>>,
}

/// What ended a list of nodes.
enum ListEnd {
    End(Pos),
    /// `{{else}}`, or `{{else if` / `{{else with` with the keyword not yet consumed.
    Else(Pos, Option<(Keyword, Pos)>),
    Eof(Pos),
}

/// The result of parsing one action.
enum Action {
    Node(Node),
    /// `{{define}}`: recorded in the parser, nothing in place.
    Nothing,
    End(Pos),
    Else(Pos, Option<(Keyword, Pos)>),
}

/// What terminates a pipeline.
#[derive(Clone, Copy, PartialEq)]
enum PipeEnd {
    RightDelim,
    RightParen,
}

#[derive(Clone, Copy, PartialEq)]
enum Control {
    If,
    With,
    Range,
}

impl Control {
    fn name(self) -> &'static str {
        match self {
            Control::If => "if",
            Control::With => "with",
            Control::Range => "range",
        }
    }
}

impl Parser<'_> {
    // ---- token access -------------------------------------------------------------------

    fn peek(&self) -> &Token {
        // The lexer always ends the stream with Eof.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    /// The next token; past the end it keeps returning `Eof`, and `self.i -= 1` always backs
    /// up exactly one `next`.
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn skip_spaces(&mut self) {
        while self.peek().tok == Tok::Space {
            self.i += 1;
        }
    }

    fn peek_non_space(&mut self) -> &Token {
        self.skip_spaces();
        self.peek()
    }

    fn next_non_space(&mut self) -> Token {
        self.skip_spaces();
        self.next()
    }

    fn describe(&self, tok: &Tok) -> String {
        match tok {
            Tok::Text(_) => "text".to_owned(),
            Tok::LeftDelim => "left delimiter".to_owned(),
            Tok::RightDelim => format!("{:?}", self.right_delim),
            Tok::Space => "space".to_owned(),
            Tok::Ident(name) => format!("{name:?}"),
            Tok::Keyword(k) => format!("<{}>", k.as_str()),
            Tok::Field(name) => format!("\".{name}\""),
            Tok::Variable(name) => format!("{name:?}"),
            Tok::Dot => "\".\"".to_owned(),
            Tok::Str(s) => crate::gofmt::go_quote(s),
            Tok::Number(n) => n.clone(),
            Tok::CharConst(c) => format!("{c:?}"),
            Tok::Bool(b) => b.to_string(),
            Tok::Nil => "nil".to_owned(),
            Tok::Pipe => "\"|\"".to_owned(),
            Tok::LeftParen => "\"(\"".to_owned(),
            Tok::RightParen => "\")\"".to_owned(),
            Tok::Declare => "\":=\"".to_owned(),
            Tok::Assign => "\"=\"".to_owned(),
            Tok::Punct(c) => format!("\"{c}\""),
            Tok::Eof => "end of input".to_owned(),
        }
    }

    fn unexpected(&self, t: &Token, context: &str) -> Error {
        Error::new(
            t.pos,
            format!("unexpected {} in {context}", self.describe(&t.tok)),
        )
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<(), Error> {
        let t = self.next_non_space();
        if t.tok == Tok::RightDelim {
            Ok(())
        } else {
            Err(self.unexpected(&t, context))
        }
    }

    fn enter(&mut self, pos: Pos) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::new(
                pos,
                format!("template nesting too deep (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn at(&self, pos: Pos) -> String {
        let (line, col) = line_col(self.src, pos);
        format!("{line}:{col}")
    }

    // ---- structure ------------------------------------------------------------------------

    /// Nodes up to `{{end}}`, `{{else}}` or the end of input.
    fn list(&mut self) -> Result<(Vec<Node>, ListEnd), Error> {
        let mut nodes = Vec::new();
        loop {
            let t = self.next();
            match t.tok {
                Tok::Text(s) => nodes.push(Node::Text(s)),
                Tok::LeftDelim => match self.action()? {
                    Action::Node(n) => nodes.push(n),
                    Action::Nothing => {}
                    Action::End(pos) => return Ok((nodes, ListEnd::End(pos))),
                    Action::Else(pos, chained) => return Ok((nodes, ListEnd::Else(pos, chained))),
                },
                Tok::Eof => return Ok((nodes, ListEnd::Eof(t.pos))),
                _ => return Err(self.unexpected(&t, "template text")),
            }
        }
    }

    /// The inside of `{{ ... }}` (the left delimiter is consumed).
    fn action(&mut self) -> Result<Action, Error> {
        let t = self.next_non_space();
        let Tok::Keyword(kw) = t.tok else {
            self.i -= 1;
            let pipe = self.pipeline("command", PipeEnd::RightDelim)?;
            return Ok(Action::Node(Node::Action(pipe)));
        };
        let pos = t.pos;
        Ok(match kw {
            Keyword::End => {
                self.expect_right_delim("{{end}}")?;
                Action::End(pos)
            }
            Keyword::Else => {
                let next = self.peek_non_space();
                match next.tok {
                    Tok::Keyword(k @ (Keyword::If | Keyword::With)) => {
                        Action::Else(pos, Some((k, next.pos)))
                    }
                    _ => {
                        self.expect_right_delim("{{else}}")?;
                        Action::Else(pos, None)
                    }
                }
            }
            Keyword::If => Action::Node(self.control(Control::If, pos, pos)?),
            Keyword::With => Action::Node(self.control(Control::With, pos, pos)?),
            Keyword::Range => Action::Node(self.control(Control::Range, pos, pos)?),
            Keyword::Break | Keyword::Continue => {
                if self.range_depth == 0 {
                    return Err(Error::new(
                        pos,
                        format!("{{{{{}}}}} outside {{{{range}}}}", kw.as_str()),
                    ));
                }
                self.expect_right_delim(&format!("{{{{{}}}}}", kw.as_str()))?;
                Action::Node(if kw == Keyword::Break {
                    Node::Break
                } else {
                    Node::Continue
                })
            }
            Keyword::Define => {
                if self.block_depth > 0 {
                    return Err(Error::new(
                        pos,
                        "{{define}} is only allowed at the top level",
                    ));
                }
                let name = self.template_name("define")?;
                self.expect_right_delim("{{define}}")?;
                let body = self.template_body("define", pos)?;
                self.defines.insert(name, body);
                Action::Nothing
            }
            Keyword::Template => {
                let name = self.template_name("template")?;
                let pipe = if self.peek_non_space().tok == Tok::RightDelim {
                    self.next();
                    None
                } else {
                    Some(self.pipeline("{{template}}", PipeEnd::RightDelim)?)
                };
                Action::Node(Node::Template { pos, name, pipe })
            }
            Keyword::Block => {
                let name = self.template_name("block")?;
                let pipe = self.pipeline("{{block}}", PipeEnd::RightDelim)?;
                let body = self.template_body("block", pos)?;
                self.defines.insert(name.clone(), body);
                Action::Node(Node::Template {
                    pos,
                    name,
                    pipe: Some(pipe),
                })
            }
        })
    }

    fn template_name(&mut self, keyword: &str) -> Result<String, Error> {
        let t = self.next_non_space();
        match t.tok {
            Tok::Str(name) => Ok(name),
            _ => Err(Error::new(
                t.pos,
                format!(
                    "expected a template name (a string) after {keyword}, found {}",
                    self.describe(&t.tok)
                ),
            )),
        }
    }

    /// The body of `define` or `block`, up to its `end`: a template of its own, so it starts
    /// with only `$` in scope and outside any `range`.
    fn template_body(&mut self, keyword: &str, pos: Pos) -> Result<Vec<Node>, Error> {
        self.enter(pos)?;
        let vars = std::mem::replace(&mut self.vars, vec!["$".to_owned()]);
        let range_depth = std::mem::replace(&mut self.range_depth, 0);
        self.block_depth += 1;
        let (body, end) = self.list()?;
        match end {
            ListEnd::End(_) => {}
            ListEnd::Else(p, _) => {
                return Err(Error::new(
                    p,
                    format!("unexpected {{{{else}}}} in {{{{{keyword}}}}}"),
                ));
            }
            ListEnd::Eof(p) => return Err(self.missing_end(p, keyword, pos)),
        }
        self.block_depth -= 1;
        self.range_depth = range_depth;
        self.vars = vars;
        self.leave();
        Ok(body)
    }

    fn missing_end(&self, eof: Pos, keyword: &str, opened: Pos) -> Error {
        Error::new(
            eof,
            format!(
                "missing {{{{end}}}} for {{{{{keyword}}}}} opened at {}",
                self.at(opened)
            ),
        )
    }

    /// `if`, `with` or `range` after its keyword, through the matching `end`. `opened` is
    /// where the whole `if ... else if ...` chain started, for the missing-`end` message.
    fn control(&mut self, kind: Control, pos: Pos, opened: Pos) -> Result<Node, Error> {
        self.enter(pos)?;
        let mark = self.vars.len();
        let pipe = self.pipeline(kind.name(), PipeEnd::RightDelim)?;
        // Variables of the pipeline stay visible in the else branch; those of the body don't.
        let after_pipe = self.vars.len();
        self.block_depth += 1;
        if kind == Control::Range {
            self.range_depth += 1;
        }
        let (list, end) = self.list()?;
        if kind == Control::Range {
            self.range_depth -= 1;
        }
        self.vars.truncate(after_pipe);
        let else_list = match end {
            ListEnd::End(_) => None,
            ListEnd::Eof(p) => return Err(self.missing_end(p, kind.name(), opened)),
            ListEnd::Else(_, Some((k, kpos))) => {
                let nested = match (kind, k) {
                    (Control::If, Keyword::If) => Control::If,
                    (Control::With, Keyword::With) => Control::With,
                    _ => {
                        return Err(Error::new(
                            kpos,
                            format!(
                                "{{{{else {}}}}} is not allowed in {{{{{}}}}}",
                                k.as_str(),
                                kind.name()
                            ),
                        ));
                    }
                };
                self.next_non_space(); // the `if` / `with`
                Some(vec![self.control(nested, kpos, opened)?])
            }
            ListEnd::Else(_, None) => {
                let (list, end) = self.list()?;
                match end {
                    ListEnd::End(_) => {}
                    ListEnd::Eof(p) => return Err(self.missing_end(p, kind.name(), opened)),
                    ListEnd::Else(p, _) => {
                        return Err(Error::new(
                            p,
                            format!(
                                "expected {{{{end}}}}; found a second {{{{else}}}} in {{{{{}}}}}",
                                kind.name()
                            ),
                        ));
                    }
                }
                Some(list)
            }
        };
        self.block_depth -= 1;
        self.vars.truncate(mark);
        self.leave();
        let branch = Branch {
            pos,
            pipe,
            list,
            else_list,
        };
        Ok(match kind {
            Control::If => Node::If(branch),
            Control::With => Node::With(branch),
            Control::Range => Node::Range(branch),
        })
    }

    // ---- pipelines ------------------------------------------------------------------------

    fn pipeline(&mut self, context: &str, end: PipeEnd) -> Result<Pipeline, Error> {
        let start = self.peek_non_space().pos;
        let (decl, is_assign) = self.declarations(context)?;
        let mut cmds = Vec::new();
        let mut after_pipe: Option<Pos> = None;
        loop {
            let t = self.peek_non_space().clone();
            let at_end = match t.tok {
                Tok::RightDelim => end == PipeEnd::RightDelim,
                Tok::RightParen => end == PipeEnd::RightParen,
                _ => false,
            };
            if at_end {
                self.next();
                if let Some(p) = after_pipe {
                    return Err(Error::new(
                        p,
                        format!("missing command after \"|\" in {context}"),
                    ));
                }
                break;
            }
            match t.tok {
                Tok::Bool(_)
                | Tok::CharConst(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::Str(_)
                | Tok::Variable(_)
                | Tok::LeftParen => {
                    let (cmd, piped) = self.command()?;
                    if !cmds.is_empty() {
                        check_stage(&cmd, cmds.len() + 1)?;
                    }
                    cmds.push(cmd);
                    after_pipe = piped;
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
        if cmds.is_empty() {
            return Err(Error::new(start, format!("missing value for {context}")));
        }
        if !is_assign {
            self.vars.extend(decl.iter().map(|(name, _)| name.clone()));
        }
        Ok(Pipeline {
            decl,
            is_assign,
            cmds,
        })
    }

    /// `$x :=`, `$x =` or (in `range`) `$i, $e :=` at the start of a pipeline.
    fn declarations(&mut self, context: &str) -> Result<(Vec<(String, Pos)>, bool), Error> {
        let save = self.i;
        let t = self.next_non_space();
        let Tok::Variable(name) = t.tok else {
            self.i = save;
            return Ok((Vec::new(), false));
        };
        let next = self.next_non_space();
        match next.tok {
            Tok::Declare => Ok((vec![(name, t.pos)], false)),
            Tok::Assign => {
                if !self.vars.contains(&name) {
                    return Err(Error::new(t.pos, format!("undefined variable {name:?}")));
                }
                Ok((vec![(name, t.pos)], true))
            }
            Tok::Punct(',') => {
                if context != "range" {
                    return Err(Error::new(
                        next.pos,
                        format!("too many declarations in {context}"),
                    ));
                }
                let second = self.next_non_space();
                let Tok::Variable(name2) = second.tok else {
                    return Err(Error::new(
                        second.pos,
                        "range can only initialize variables",
                    ));
                };
                let op = self.next_non_space();
                if op.tok != Tok::Declare {
                    return Err(Error::new(
                        op.pos,
                        format!(
                            "expected := after {name}, {name2} in range, found {}",
                            self.describe(&op.tok)
                        ),
                    ));
                }
                Ok((vec![(name, t.pos), (name2, second.pos)], false))
            }
            _ => {
                self.i = save;
                Ok((Vec::new(), false))
            }
        }
    }

    /// One command; also returns the position of the `|` that ended it, if one did.
    fn command(&mut self) -> Result<(Command, Option<Pos>), Error> {
        let mut args = Vec::new();
        loop {
            self.skip_spaces();
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let t = self.next();
            match t.tok {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => {
                    self.i -= 1;
                    return Ok((Command { args }, None));
                }
                Tok::Pipe => return Ok((Command { args }, Some(t.pos))),
                _ => return Err(self.unexpected(&t, "operand")),
            }
        }
    }

    /// A term and the fields that follow it without spaces (`.a.b`, `$x.a`, `(p).a`).
    fn operand(&mut self) -> Result<Option<Operand>, Error> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        let mut fields = Vec::new();
        while let Tok::Field(name) = &self.peek().tok {
            fields.push(FieldName {
                name: name.clone(),
                pos: self.peek().pos,
            });
            self.i += 1;
        }
        if fields.is_empty() {
            return Ok(Some(term));
        }
        Ok(Some(match term {
            Operand::Field(mut f) => {
                f.extend(fields);
                Operand::Field(f)
            }
            Operand::Variable {
                pos,
                name,
                fields: mut f,
            } => {
                f.extend(fields);
                Operand::Variable {
                    pos,
                    name,
                    fields: f,
                }
            }
            Operand::Dot(_) | Operand::Nil(_) | Operand::Literal(..) => {
                return Err(Error::new(
                    fields[0].pos,
                    format!("unexpected . after term {}", term.describe()),
                ));
            }
            base => Operand::Chain {
                base: Box::new(base),
                fields,
            },
        }))
    }

    fn term(&mut self) -> Result<Option<Operand>, Error> {
        let t = self.next_non_space();
        let pos = t.pos;
        Ok(Some(match t.tok {
            Tok::Ident(name) => {
                if !self.funcs.has(&name) && !builtins::is_builtin(&name) {
                    return Err(Error::new(pos, format!("function {name:?} not defined")));
                }
                Operand::Function { pos, name }
            }
            Tok::Dot => Operand::Dot(pos),
            Tok::Nil => Operand::Nil(pos),
            Tok::Variable(name) => {
                if !self.vars.contains(&name) {
                    return Err(Error::new(pos, format!("undefined variable {name:?}")));
                }
                Operand::Variable {
                    pos,
                    name,
                    fields: Vec::new(),
                }
            }
            Tok::Field(name) => Operand::Field(vec![FieldName { name, pos }]),
            Tok::Bool(b) => Operand::Literal(pos, Value::Bool(b)),
            Tok::CharConst(c) => Operand::Literal(pos, Value::from(c as u32)),
            Tok::Number(text) => {
                Operand::Literal(pos, number(&text).map_err(|m| Error::new(pos, m))?)
            }
            Tok::Str(s) => Operand::Literal(pos, Value::String(s)),
            Tok::LeftParen => {
                self.enter(pos)?;
                let pipe = self.pipeline("parenthesized pipeline", PipeEnd::RightParen)?;
                self.leave();
                Operand::Pipe(pos, Box::new(pipe))
            }
            _ => {
                self.i -= 1;
                return Ok(None);
            }
        }))
    }
}

/// Go rejects constants as later stages of a pipeline: they cannot take the piped value.
fn check_stage(cmd: &Command, stage: usize) -> Result<(), Error> {
    match cmd.args.first() {
        Some(op @ (Operand::Literal(..) | Operand::Dot(_) | Operand::Nil(_))) => Err(Error::new(
            op.pos(),
            format!("non executable command in pipeline stage {stage}"),
        )),
        _ => Ok(()),
    }
}

/// A number constant as Go reads it: integers in decimal, `0x`, `0o`, `0b` or leading-zero
/// octal; floats with a fraction or exponent.
fn number(text: &str) -> Result<Value, String> {
    let bad = || format!("illegal number syntax: {text:?}");
    if text.ends_with('i') {
        return Err(format!("complex number {text:?} is not supported"));
    }
    let clean = text.replace('_', "");
    let (negative, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, &clean[..]),
    };
    if body.is_empty() {
        return Err(bad());
    }
    let radix = |prefix_len: usize, radix: u32| -> Result<Value, String> {
        let digits = &body[prefix_len..];
        let v = u128::from_str_radix(digits, radix).map_err(|_| bad())?;
        let v = i128::try_from(v).map_err(|_| format!("integer overflow: {text:?}"))?;
        int_value(if negative { -v } else { v }).map_err(|_| format!("integer overflow: {text:?}"))
    };
    let lower = body.to_ascii_lowercase();
    if lower.starts_with("0x") {
        return radix(2, 16);
    }
    if lower.starts_with("0o") {
        return radix(2, 8);
    }
    if lower.starts_with("0b") {
        return radix(2, 2);
    }
    if body.contains(['.', 'e', 'E']) {
        let f: f64 = body.parse().map_err(|_| bad())?;
        return float_value(if negative { -f } else { f })
            .map_err(|_| format!("number out of range: {text:?}"));
    }
    if body.len() > 1 && body.starts_with('0') {
        return radix(1, 8);
    }
    radix(0, 10)
}
