//! The HCL2 functions Nomad's jobspec offers (string, collection, encoding, numeric and
//! filesystem functions), for expressions evaluated at submit time.

use hcl::Value;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType as P};

fn s(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, got {v}"))
}

fn n(v: &Value) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("expected a number, got {v}"))
}

fn arr(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("expected a list, got {v}"))
}

fn obj(v: &Value) -> Result<&hcl::Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("expected a map, got {v}"))
}

fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces the functions that read the local machine (`file`, `fileexists`) with ones that
/// fail naming the function: on a server they would read the server's files.
pub fn refuse_host_functions(ctx: &mut Context<'static>) {
    fn refused(name: &str) -> String {
        format!(
            "{name}() reads files of the machine that parses the job, and this job is parsed on a server: \
             it is not available here (`drover job run` parses on the submitting machine)"
        )
    }
    ctx.declare_func(
        "file",
        FuncDef::builder()
            .param(P::String)
            .build(|_: FuncArgs| Err(refused("file"))),
    );
    ctx.declare_func(
        "fileexists",
        FuncDef::builder()
            .param(P::String)
            .build(|_: FuncArgs| Err(refused("fileexists"))),
    );
}

/// A context with every function registered.
pub fn context() -> Context<'static> {
    let mut ctx = Context::new();
    strings(&mut ctx);
    splitting(&mut ctx);
    collections(&mut ctx);
    maps(&mut ctx);
    sequences(&mut ctx);
    numbers(&mut ctx);
    encoding(&mut ctx);
    files(&mut ctx);
    ctx
}

/// Functions that change case and trim strings.
fn strings(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    let one = |p: P| FuncDef::builder().param(p);
    f(
        "upper",
        one(P::String).build(|a: FuncArgs| Ok(s(&a[0])?.to_uppercase().into())),
    );
    f(
        "lower",
        one(P::String).build(|a: FuncArgs| Ok(s(&a[0])?.to_lowercase().into())),
    );
    f(
        "title",
        one(P::String).build(|a: FuncArgs| {
            Ok(s(&a[0])?
                .split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|x| x.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" ")
                .into())
        }),
    );
    f(
        "trimspace",
        one(P::String).build(|a: FuncArgs| Ok(s(&a[0])?.trim().into())),
    );
    f(
        "chomp",
        one(P::String).build(|a: FuncArgs| Ok(s(&a[0])?.trim_end_matches(['\n', '\r']).into())),
    );
    f(
        "trimprefix",
        FuncDef::builder()
            .params([P::String, P::String])
            .build(|a: FuncArgs| {
                let (x, p) = (s(&a[0])?, s(&a[1])?);
                Ok(x.strip_prefix(p).unwrap_or(x).into())
            }),
    );
    f(
        "trimsuffix",
        FuncDef::builder()
            .params([P::String, P::String])
            .build(|a: FuncArgs| {
                let (x, p) = (s(&a[0])?, s(&a[1])?);
                Ok(x.strip_suffix(p).unwrap_or(x).into())
            }),
    );
    f(
        "trim",
        FuncDef::builder()
            .params([P::String, P::String])
            .build(|a: FuncArgs| {
                let cut: Vec<char> = s(&a[1])?.chars().collect();
                Ok(s(&a[0])?.trim_matches(cut.as_slice()).into())
            }),
    );
}

/// Functions that cut strings apart, join and format them.
fn splitting(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    f(
        "replace",
        FuncDef::builder()
            .params([P::String, P::String, P::String])
            .build(|a: FuncArgs| Ok(s(&a[0])?.replace(s(&a[1])?, s(&a[2])?).into())),
    );
    f(
        "split",
        FuncDef::builder()
            .params([P::String, P::String])
            .build(|a: FuncArgs| {
                Ok(Value::Array(
                    s(&a[1])?.split(s(&a[0])?).map(Value::from).collect(),
                ))
            }),
    );
    f(
        "join",
        FuncDef::builder()
            .params([P::String, P::Array(Box::new(P::Any))])
            .build(|a: FuncArgs| {
                Ok(arr(&a[1])?
                    .iter()
                    .map(display)
                    .collect::<Vec<_>>()
                    .join(s(&a[0])?)
                    .into())
            }),
    );
    f(
        "substr",
        FuncDef::builder()
            .params([P::String, P::Number, P::Number])
            .build(|a: FuncArgs| {
                let chars: Vec<char> = s(&a[0])?.chars().collect();
                let off = n(&a[1])? as i64;
                let len = n(&a[2])? as i64;
                let start = if off < 0 {
                    (chars.len() as i64 + off).max(0)
                } else {
                    off.min(chars.len() as i64)
                } as usize;
                let end = if len < 0 {
                    chars.len()
                } else {
                    (start + len as usize).min(chars.len())
                };
                Ok(chars[start..end].iter().collect::<String>().into())
            }),
    );
    f(
        "format",
        FuncDef::builder()
            .param(P::String)
            .variadic_param(P::Any)
            .build(|a: FuncArgs| {
                let fmt = s(&a[0])?;
                let mut args = a[1..].iter();
                let mut out = String::new();
                let mut chars = fmt.chars().peekable();
                while let Some(c) = chars.next() {
                    if c != '%' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('%') => out.push('%'),
                        Some('s') | Some('v') | Some('d') | Some('q') | Some('f') => {
                            let v = args.next().ok_or("format: not enough arguments")?;
                            out.push_str(&display(v));
                        }
                        Some(o) => return Err(format!("format: unsupported verb %{o}")),
                        None => return Err("format: trailing %".into()),
                    }
                }
                Ok(out.into())
            }),
    );
}

/// Functions on lists: length, membership, elements, flattening.
fn collections(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    let one = |p: P| FuncDef::builder().param(p);
    f(
        "length",
        one(P::Any).build(|a: FuncArgs| {
            Ok(num(match &a[0] {
                Value::String(x) => x.chars().count(),
                Value::Array(x) => x.len(),
                Value::Object(x) => x.len(),
                other => return Err(format!("length: cannot take the length of {other}")),
            } as f64))
        }),
    );
    f(
        "concat",
        FuncDef::builder()
            .variadic_param(P::Array(Box::new(P::Any)))
            .build(|a: FuncArgs| {
                let mut out = Vec::new();
                for l in a.iter() {
                    out.extend(arr(l)?.iter().cloned());
                }
                Ok(Value::Array(out))
            }),
    );
    f(
        "contains",
        FuncDef::builder()
            .params([P::Array(Box::new(P::Any)), P::Any])
            .build(|a: FuncArgs| Ok(arr(&a[0])?.contains(&a[1]).into())),
    );
    f(
        "distinct",
        one(P::Array(Box::new(P::Any))).build(|a: FuncArgs| {
            let mut out: Vec<Value> = Vec::new();
            for v in arr(&a[0])? {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }),
    );
    f(
        "element",
        FuncDef::builder()
            .params([P::Array(Box::new(P::Any)), P::Number])
            .build(|a: FuncArgs| {
                let l = arr(&a[0])?;
                if l.is_empty() {
                    return Err("element: the list is empty".into());
                }
                Ok(l[(n(&a[1])? as usize) % l.len()].clone())
            }),
    );
    f(
        "flatten",
        one(P::Array(Box::new(P::Any))).build(|a: FuncArgs| {
            fn flat(v: &Value, out: &mut Vec<Value>) {
                match v {
                    Value::Array(items) => items.iter().for_each(|i| flat(i, out)),
                    other => out.push(other.clone()),
                }
            }
            let mut out = Vec::new();
            flat(&a[0], &mut out);
            Ok(Value::Array(out))
        }),
    );
}

/// Functions on maps: keys, values, lookup, merge.
fn maps(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    let one = |p: P| FuncDef::builder().param(p);
    f(
        "keys",
        one(P::Any).build(|a: FuncArgs| {
            Ok(Value::Array(
                obj(&a[0])?.keys().map(|k| Value::from(k.clone())).collect(),
            ))
        }),
    );
    f(
        "values",
        one(P::Any).build(|a: FuncArgs| Ok(Value::Array(obj(&a[0])?.values().cloned().collect()))),
    );
    f(
        "lookup",
        FuncDef::builder()
            .params([P::Any, P::String])
            .variadic_param(P::Any)
            .build(|a: FuncArgs| match obj(&a[0])?.get(s(&a[1])?) {
                Some(v) => Ok(v.clone()),
                None => a.get(2).cloned().ok_or_else(|| {
                    format!("lookup: no key {:?} and no default", s(&a[1]).unwrap_or(""))
                }),
            }),
    );
    f(
        "merge",
        FuncDef::builder()
            .variadic_param(P::Any)
            .build(|a: FuncArgs| {
                let mut out = hcl::Map::new();
                for m in a.iter() {
                    for (k, v) in obj(m)? {
                        out.insert(k.clone(), v.clone());
                    }
                }
                Ok(Value::Object(out))
            }),
    );
}

/// Functions that build, order and cut lists, and coalesce.
fn sequences(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    let one = |p: P| FuncDef::builder().param(p);
    f(
        "range",
        FuncDef::builder()
            .variadic_param(P::Number)
            .build(|a: FuncArgs| {
                let (start, end, step) = match a.len() {
                    1 => (0.0, n(&a[0])?, 1.0),
                    2 => (n(&a[0])?, n(&a[1])?, 1.0),
                    3 => (n(&a[0])?, n(&a[1])?, n(&a[2])?),
                    _ => return Err("range takes 1 to 3 arguments".into()),
                };
                if step == 0.0 {
                    return Err("range: step must not be 0".into());
                }
                let mut out = Vec::new();
                let mut x = start;
                while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
                    out.push(num(x));
                    x += step;
                    if out.len() > 1_000_000 {
                        return Err("range: too many elements".into());
                    }
                }
                Ok(Value::Array(out))
            }),
    );
    f(
        "reverse",
        one(P::Array(Box::new(P::Any)))
            .build(|a: FuncArgs| Ok(Value::Array(arr(&a[0])?.iter().rev().cloned().collect()))),
    );
    f(
        "sort",
        one(P::Array(Box::new(P::String))).build(|a: FuncArgs| {
            let mut v: Vec<String> = arr(&a[0])?.iter().map(display).collect();
            v.sort();
            Ok(Value::Array(v.into_iter().map(Value::from).collect()))
        }),
    );
    f(
        "slice",
        FuncDef::builder()
            .params([P::Array(Box::new(P::Any)), P::Number, P::Number])
            .build(|a: FuncArgs| {
                let l = arr(&a[0])?;
                let (i, j) = (n(&a[1])? as usize, n(&a[2])? as usize);
                l.get(i..j)
                    .map(|x| Value::Array(x.to_vec()))
                    .ok_or_else(|| {
                        format!("slice: {i}..{j} is out of range for {} elements", l.len())
                    })
            }),
    );
    f(
        "zipmap",
        FuncDef::builder()
            .params([P::Array(Box::new(P::String)), P::Array(Box::new(P::Any))])
            .build(|a: FuncArgs| {
                Ok(Value::Object(
                    arr(&a[0])?
                        .iter()
                        .map(display)
                        .zip(arr(&a[1])?.iter().cloned())
                        .collect(),
                ))
            }),
    );
    f(
        "coalesce",
        FuncDef::builder()
            .variadic_param(P::Any)
            .build(|a: FuncArgs| {
                a.iter()
                    .find(|v| !matches!(v, Value::Null) && v.as_str() != Some(""))
                    .cloned()
                    .ok_or_else(|| "coalesce: no non-empty argument".to_string())
            }),
    );
}

/// Functions on numbers.
fn numbers(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    let one = |p: P| FuncDef::builder().param(p);
    f(
        "abs",
        one(P::Number).build(|a: FuncArgs| Ok(num(n(&a[0])?.abs()))),
    );
    f(
        "ceil",
        one(P::Number).build(|a: FuncArgs| Ok(num(n(&a[0])?.ceil()))),
    );
    f(
        "floor",
        one(P::Number).build(|a: FuncArgs| Ok(num(n(&a[0])?.floor()))),
    );
    f(
        "max",
        FuncDef::builder()
            .variadic_param(P::Number)
            .build(|a: FuncArgs| {
                a.iter()
                    .map(n)
                    .try_fold(f64::MIN, |m, x| x.map(|x| m.max(x)))
                    .map(num)
            }),
    );
    f(
        "min",
        FuncDef::builder()
            .variadic_param(P::Number)
            .build(|a: FuncArgs| {
                a.iter()
                    .map(n)
                    .try_fold(f64::MAX, |m, x| x.map(|x| m.min(x)))
                    .map(num)
            }),
    );
    f(
        "parseint",
        FuncDef::builder()
            .params([P::String, P::Number])
            .build(|a: FuncArgs| {
                i64::from_str_radix(s(&a[0])?, n(&a[1])? as u32)
                    .map(Value::from)
                    .map_err(|e| format!("parseint: {e}"))
            }),
    );
}

/// Encoding and decoding: JSON, base64, URLs.
fn encoding(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    let one = |p: P| FuncDef::builder().param(p);
    f(
        "jsonencode",
        one(P::Any).build(|a: FuncArgs| {
            serde_json::to_string(&a[0])
                .map(Value::from)
                .map_err(|e| e.to_string())
        }),
    );
    f(
        "jsondecode",
        one(P::String).build(|a: FuncArgs| {
            let v: serde_json::Value =
                serde_json::from_str(s(&a[0])?).map_err(|e| format!("jsondecode: {e}"))?;
            hcl::to_value(v).map_err(|e| e.to_string())
        }),
    );
    f(
        "base64encode",
        one(P::String).build(|a: FuncArgs| Ok(base64_encode(s(&a[0])?.as_bytes()).into())),
    );
    f(
        "base64decode",
        one(P::String).build(|a: FuncArgs| {
            let bytes = base64_decode(s(&a[0])?).ok_or("base64decode: not valid base64")?;
            String::from_utf8(bytes)
                .map(Value::from)
                .map_err(|_| "base64decode: the result is not UTF-8".to_string())
        }),
    );
    f(
        "urlencode",
        one(P::String).build(|a: FuncArgs| {
            Ok(s(&a[0])?
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
                .into())
        }),
    );
}

/// Functions reading files on the submitting machine (the CLI's, never the servers').
fn files(ctx: &mut Context<'static>) {
    let mut f = |name: &str, def: FuncDef| ctx.declare_func(name, def);
    let one = |p: P| FuncDef::builder().param(p);
    f(
        "file",
        one(P::String).build(|a: FuncArgs| {
            let p = s(&a[0])?;
            std::fs::read_to_string(p)
                .map(Value::from)
                .map_err(|e| format!("file({p:?}): {e}"))
        }),
    );
    f(
        "fileexists",
        one(P::String).build(|a: FuncArgs| Ok(std::path::Path::new(s(&a[0])?).is_file().into())),
    );
    f(
        "basename",
        one(P::String).build(|a: FuncArgs| {
            Ok(std::path::Path::new(s(&a[0])?)
                .file_name()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default()
                .into())
        }),
    );
    f(
        "dirname",
        one(P::String).build(|a: FuncArgs| {
            Ok(std::path::Path::new(s(&a[0])?)
                .parent()
                .map(|x| x.display().to_string())
                .unwrap_or_else(|| ".".into())
                .into())
        }),
    );
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(B64[(v >> 18) as usize & 63] as char);
        out.push(B64[(v >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(v >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[v as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        buf = buf << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}
