//! The evaluator: walks the parsed tree with a dot and a stack of variables, writing text.

use serde_json::Value;

use crate::ast::{Branch, Command, FieldName, Node, Operand, Pipeline, Pos};
use crate::gofmt::write_value;
use crate::value::{Num, kind, num, truthy};
use crate::{Error, Functions, Template, builtins};

/// How deeply evaluation may nest: control structures, parenthesised pipelines and
/// `{{template}}` calls together (a guard against runaway template recursion).
const MAX_DEPTH: usize = 200;

pub(crate) fn render(
    tmpl: &Template,
    dot: &Value,
    funcs: &mut dyn Functions,
) -> Result<String, Error> {
    let mut exec = Exec {
        tmpl,
        funcs,
        vars: vec![("$".to_owned(), dot.clone())],
        out: String::new(),
        depth: 0,
    };
    exec.list(dot, &tmpl.root)?;
    Ok(exec.out)
}

/// How a list of nodes finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a> {
    tmpl: &'a Template,
    funcs: &'a mut dyn Functions,
    /// Variables in scope, innermost last; `$` first.
    vars: Vec<(String, Value)>,
    out: String,
    /// Current nesting, bounded by [`MAX_DEPTH`].
    depth: usize,
}

impl Exec<'_> {
    /// Enters a nested construct at `pos`; errors are final, so only success needs a
    /// matching [`Exec::leave`].
    fn enter(&mut self, pos: Pos) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::new(
                pos,
                format!(
                    "exceeded maximum nesting depth ({MAX_DEPTH}); is a template calling itself?"
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn list(&mut self, dot: &Value, nodes: &[Node]) -> Result<Flow, Error> {
        for node in nodes {
            let flow = self.node(dot, node)?;
            if flow != Flow::Normal {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, dot: &Value, node: &Node) -> Result<Flow, Error> {
        match node {
            Node::Text(s) => self.out.push_str(s),
            Node::Action(pipe) => {
                let v = self.pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print(&v);
                }
            }
            Node::If(b) => return self.if_or_with(dot, b, false),
            Node::With(b) => return self.if_or_with(dot, b, true),
            Node::Range(b) => return self.range(dot, b),
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
            Node::Template { pos, name, pipe } => self.template(dot, *pos, name, pipe.as_ref())?,
        }
        Ok(Flow::Normal)
    }

    /// Prints an action's value: `<no value>` for nil, otherwise as `%v`.
    fn print(&mut self, v: &Value) {
        match v {
            Value::Null => self.out.push_str("<no value>"),
            Value::String(s) => self.out.push_str(s),
            other => write_value(&mut self.out, other),
        }
    }

    fn if_or_with(&mut self, dot: &Value, b: &Branch, with: bool) -> Result<Flow, Error> {
        self.enter(b.pos)?;
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe)?;
        let flow = if truthy(&v) {
            self.list(if with { &v } else { dot }, &b.list)?
        } else if let Some(else_list) = &b.else_list {
            self.list(dot, else_list)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        self.leave();
        Ok(flow)
    }

    fn range(&mut self, dot: &Value, b: &Branch) -> Result<Flow, Error> {
        self.enter(b.pos)?;
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe)?;
        // The pipeline's declarations ($e, or $i and $e) are the top of the stack now.
        let inner = self.vars.len();
        let mut ran = false;
        match &v {
            Value::Array(items) => {
                for (i, e) in items.iter().enumerate() {
                    ran = true;
                    if self.iteration(b, inner, Value::from(i), e)? == Flow::Break {
                        break;
                    }
                }
            }
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|x, y| x.0.cmp(y.0));
                for (k, e) in entries {
                    ran = true;
                    if self.iteration(b, inner, Value::String(k.clone()), e)? == Flow::Break {
                        break;
                    }
                }
            }
            Value::Number(n) if matches!(num(n), Num::Int(_)) => {
                if b.pipe.decl.len() > 1 {
                    return Err(Error::new(
                        b.pos,
                        format!("can't use {n} to iterate over more than one variable"),
                    ));
                }
                let count = match num(n) {
                    Num::Int(count) => count,
                    Num::Float(_) => 0,
                };
                let mut i: i128 = 0;
                while i < count {
                    ran = true;
                    let e = crate::value::int_value(i).unwrap_or(Value::Null);
                    if self.iteration(b, inner, Value::Null, &e)? == Flow::Break {
                        break;
                    }
                    i += 1;
                }
            }
            Value::Null => {}
            other => {
                let mut shown = String::new();
                write_value(&mut shown, other);
                return Err(Error::new(
                    b.pos,
                    format!("range can't iterate over {shown} (type {})", kind(other)),
                ));
            }
        }
        if !ran && let Some(else_list) = &b.else_list {
            self.list(dot, else_list)?;
        }
        self.vars.truncate(mark);
        self.leave();
        Ok(Flow::Normal)
    }

    /// One pass of a range body with dot `elem`, after setting the range's variables.
    fn iteration(
        &mut self,
        b: &Branch,
        inner: usize,
        key: Value,
        elem: &Value,
    ) -> Result<Flow, Error> {
        let n = b.pipe.decl.len();
        if n >= 1
            && let Some(slot) = self.vars.get_mut(inner - 1)
        {
            slot.1 = elem.clone();
        }
        if n >= 2
            && let Some(slot) = self.vars.get_mut(inner - 2)
        {
            slot.1 = key;
        }
        let flow = self.list(elem, &b.list)?;
        self.vars.truncate(inner);
        Ok(flow)
    }

    fn template(
        &mut self,
        dot: &Value,
        pos: Pos,
        name: &str,
        pipe: Option<&Pipeline>,
    ) -> Result<(), Error> {
        let tmpl = self.tmpl;
        let Some(body) = tmpl.defines.get(name) else {
            return Err(Error::new(pos, format!("no such template {name:?}")));
        };
        let v = match pipe {
            Some(p) => self.pipeline(dot, p)?,
            None => Value::Null,
        };
        self.enter(pos)?;
        let saved = std::mem::replace(&mut self.vars, vec![("$".to_owned(), v.clone())]);
        self.list(&v, body)?;
        self.vars = saved;
        self.leave();
        Ok(())
    }

    // ---- pipelines ----------------------------------------------------------------------

    fn pipeline(&mut self, dot: &Value, pipe: &Pipeline) -> Result<Value, Error> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Value::Null);
        for (name, pos) in &pipe.decl {
            if pipe.is_assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => return Err(Error::new(*pos, format!("undefined variable {name:?}"))),
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    /// One stage of a pipeline; `piped` is the previous stage's value, passed as the last
    /// argument.
    fn command(
        &mut self,
        dot: &Value,
        cmd: &Command,
        piped: Option<Value>,
    ) -> Result<Value, Error> {
        let Some((first, args)) = cmd.args.split_first() else {
            return Err(Error::new(0, "empty command"));
        };
        let has_args = !args.is_empty() || piped.is_some();
        let not_a_function = || {
            Err(Error::new(
                first.pos(),
                format!("can't give argument to non-function {}", first.describe()),
            ))
        };
        match first {
            Operand::Function { pos, name } => self.call(dot, *pos, name, args, piped),
            Operand::Field(fields) => self.fields(dot, fields, has_args),
            Operand::Variable { pos, name, fields } => {
                if fields.is_empty() && has_args {
                    return not_a_function();
                }
                let v = self.var(*pos, name)?;
                field_chain(v, fields, has_args, self.tmpl.error_on_missing_key)
            }
            Operand::Chain { base, fields } => {
                let v = self.arg(dot, base)?;
                self.fields(&v, fields, has_args)
            }
            Operand::Nil(pos) => Err(Error::new(*pos, "nil is not a command")),
            _ if has_args => not_a_function(),
            other => self.arg(dot, other),
        }
    }

    fn fields(
        &self,
        receiver: &Value,
        fields: &[FieldName],
        has_args: bool,
    ) -> Result<Value, Error> {
        field_chain(receiver, fields, has_args, self.tmpl.error_on_missing_key)
    }

    fn var(&self, pos: Pos, name: &str) -> Result<&Value, Error> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::new(pos, format!("undefined variable {name:?}")))
    }

    /// The value of an operand used as an argument.
    fn arg(&mut self, dot: &Value, op: &Operand) -> Result<Value, Error> {
        match op {
            Operand::Dot(_) => Ok(dot.clone()),
            Operand::Nil(_) => Ok(Value::Null),
            Operand::Literal(_, v) => Ok(v.clone()),
            Operand::Field(fields) => self.fields(dot, fields, false),
            Operand::Variable { pos, name, fields } => {
                let v = self.var(*pos, name)?;
                field_chain(v, fields, false, self.tmpl.error_on_missing_key)
            }
            // A function name as an argument is a call without arguments.
            Operand::Function { pos, name } => self.call(dot, *pos, name, &[], None),
            Operand::Chain { base, fields } => {
                let v = self.arg(dot, base)?;
                self.fields(&v, fields, false)
            }
            Operand::Pipe(pos, pipe) => {
                self.enter(*pos)?;
                let v = self.pipeline(dot, pipe)?;
                self.leave();
                Ok(v)
            }
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        pos: Pos,
        name: &str,
        args: &[Operand],
        piped: Option<Value>,
    ) -> Result<Value, Error> {
        if matches!(name, "and" | "or") && !self.funcs.has(name) {
            return self.and_or(dot, pos, name == "and", args, piped);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(dot, a)?);
        }
        vals.extend(piped);
        let result = match self.funcs.call(name, &vals) {
            Some(r) => r,
            None => builtins::call(name, &vals)
                .unwrap_or_else(|| Err(format!("function {name:?} not defined"))),
        };
        result.map_err(|m| Error::new(pos, m))
    }

    /// `and` / `or`, evaluating arguments only until the result is known.
    fn and_or(
        &mut self,
        dot: &Value,
        pos: Pos,
        is_and: bool,
        args: &[Operand],
        piped: Option<Value>,
    ) -> Result<Value, Error> {
        let count = args.len() + usize::from(piped.is_some());
        if count == 0 {
            let name = if is_and { "and" } else { "or" };
            return Err(Error::new(
                pos,
                format!("wrong number of args for {name}: want at least 1 got 0"),
            ));
        }
        let mut last = Value::Null;
        for a in args {
            let v = self.arg(dot, a)?;
            if truthy(&v) != is_and {
                return Ok(v);
            }
            last = v;
        }
        Ok(piped.unwrap_or(last))
    }
}

/// Looks up `fields` in turn, starting at `receiver`. Keys missing from a map (and fields of
/// nil) give nil, or an error with `strict`.
fn field_chain(
    receiver: &Value,
    fields: &[FieldName],
    has_args: bool,
    strict: bool,
) -> Result<Value, Error> {
    let mut cur = receiver;
    for (i, f) in fields.iter().enumerate() {
        let last = i + 1 == fields.len();
        match cur {
            Value::Object(map) => {
                if last && has_args {
                    return Err(Error::new(
                        f.pos,
                        format!("{} is not a method but has arguments", f.name),
                    ));
                }
                match map.get(&f.name) {
                    Some(v) => cur = v,
                    None if strict => {
                        return Err(Error::new(
                            f.pos,
                            format!("map has no entry for key {:?}", f.name),
                        ));
                    }
                    None => return Ok(Value::Null),
                }
            }
            Value::Null if strict => {
                return Err(Error::new(
                    f.pos,
                    format!("nil data; no entry for key {:?}", f.name),
                ));
            }
            Value::Null => return Ok(Value::Null),
            other => {
                return Err(Error::new(
                    f.pos,
                    format!("can't evaluate field {} in type {}", f.name, kind(other)),
                ));
            }
        }
    }
    Ok(cur.clone())
}
