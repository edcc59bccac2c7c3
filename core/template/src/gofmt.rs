//! Go's `fmt` formatting of JSON values: `%v` printing, `Sprint`, `Sprintln`, `Sprintf`.

use serde_json::Value;

use crate::value::{Num, go_type, num};

/// Formatting flags, width and precision of one `%` directive.
#[derive(Debug, Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Appends `v` as Go's `%v` prints it (`<nil>` for null, `[a b]`, `map[k:v]`).
pub(crate) fn write_value(out: &mut String, v: &Value) {
    fmt_arg(out, v, 'v', &Spec::default(), 0);
}

pub(crate) fn to_string(v: &Value) -> String {
    let mut s = String::new();
    write_value(&mut s, v);
    s
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = a.is_string();
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        write_value(&mut out, a);
        prev_string = is_string;
    }
    out
}

/// Go's `fmt.Sprintln`: spaces between all operands, and a newline.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(&mut out, a);
    }
    out.push('\n');
    out
}

/// Go's `fmt.Sprintf`, including its in-band error notes (`%!d(string=x)`,
/// `%!s(MISSING)`, `%!(EXTRA int=1)`).
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    let cs: Vec<char> = format.chars().collect();
    let mut out = String::with_capacity(format.len());
    let mut argi = 0;
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut sp = Spec::default();
        while let Some(&f) = cs.get(i) {
            match f {
                '-' => {
                    sp.minus = true;
                    sp.zero = false;
                }
                '+' => sp.plus = true,
                '#' => sp.sharp = true,
                ' ' => sp.space = true,
                '0' => sp.zero = !sp.minus,
                _ => break,
            }
            i += 1;
        }
        // Width: digits or `*` (taken from the arguments).
        if cs.get(i) == Some(&'*') {
            i += 1;
            match args.get(argi).and_then(crate::value::as_int) {
                Some(w) => {
                    if w < 0 {
                        sp.minus = true;
                        sp.zero = false;
                    }
                    sp.width = Some(w.unsigned_abs().min(1 << 20) as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            argi += 1;
        } else {
            sp.width = digits(&cs, &mut i);
        }
        if cs.get(i) == Some(&'.') {
            i += 1;
            if cs.get(i) == Some(&'*') {
                i += 1;
                match args.get(argi).and_then(crate::value::as_int) {
                    Some(p) if p >= 0 => sp.prec = Some(p.min(1 << 20) as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                argi += 1;
            } else {
                sp.prec = Some(digits(&cs, &mut i).unwrap_or(0));
            }
        }
        let Some(&verb) = cs.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(argi) {
            Some(arg) => fmt_arg(&mut out, arg, verb, &sp, 0),
            None => {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(MISSING)");
            }
        }
        argi += 1;
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[argi..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            if !a.is_null() {
                out.push_str(go_type(a));
                out.push('=');
            }
            write_value(&mut out, a);
        }
        out.push(')');
    }
    out
}

/// A run of decimal digits (capped, so a silly width cannot exhaust memory).
fn digits(cs: &[char], i: &mut usize) -> Option<usize> {
    let start = *i;
    let mut n: usize = 0;
    while let Some(d) = cs.get(*i).and_then(|c| c.to_digit(10)) {
        n = (n * 10 + d as usize).min(1 << 20);
        *i += 1;
    }
    (*i > start).then_some(n)
}

fn fmt_arg(out: &mut String, v: &Value, verb: char, sp: &Spec, depth: usize) {
    match v {
        Value::Null => {
            if depth > 0 || verb == 'v' {
                pad(out, "<nil>", sp);
            } else {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(<nil>)");
            }
        }
        Value::Bool(b) => match verb {
            't' | 'v' => pad(out, if *b { "true" } else { "false" }, sp),
            _ => bad_verb(out, verb, v),
        },
        Value::Number(n) => match num(n) {
            Num::Int(i) => fmt_int(out, v, i, verb, sp),
            Num::Float(f) => fmt_float(out, v, f, verb, sp),
        },
        Value::String(s) => match verb {
            'v' | 's' => match sp.prec {
                Some(p) => pad(out, &s.chars().take(p).collect::<String>(), sp),
                None => pad(out, s, sp),
            },
            'q' => pad(out, &go_quote(s), sp),
            'x' | 'X' => {
                let hex: String = s
                    .bytes()
                    .map(|b| {
                        if verb == 'x' {
                            format!("{b:02x}")
                        } else {
                            format!("{b:02X}")
                        }
                    })
                    .collect();
                pad(out, &hex, sp);
            }
            _ => bad_verb(out, verb, v),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_arg(out, e, verb, sp, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (i, (k, e)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_arg(out, &Value::String(k.clone()), verb, sp, depth + 1);
                out.push(':');
                fmt_arg(out, e, verb, sp, depth + 1);
            }
            out.push(']');
        }
    }
}

fn bad_verb(out: &mut String, verb: char, v: &Value) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    out.push_str(go_type(v));
    out.push('=');
    write_value(out, v);
    out.push(')');
}

/// Pads `s` to the width with spaces (on the right with `-`).
fn pad(out: &mut String, s: &str, sp: &Spec) {
    let fill = sp.width.unwrap_or(0).saturating_sub(s.chars().count());
    if sp.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(s);
    }
}

/// Pads a number: `sign` and `body`, with zeros between them under the `0` flag.
fn pad_number(out: &mut String, sign: &str, body: &str, sp: &Spec, zero_ok: bool) {
    if sp.zero && zero_ok && !sp.minus {
        let fill = sp
            .width
            .unwrap_or(0)
            .saturating_sub(sign.len() + body.chars().count());
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(body);
    } else {
        pad(out, &format!("{sign}{body}"), sp);
    }
}

fn sign_of(negative: bool, sp: &Spec) -> &'static str {
    if negative {
        "-"
    } else if sp.plus {
        "+"
    } else if sp.space {
        " "
    } else {
        ""
    }
}

fn fmt_int(out: &mut String, v: &Value, i: i128, verb: char, sp: &Spec) {
    let abs = i.unsigned_abs();
    let (mut body, prefix) = match verb {
        'd' | 'v' => (abs.to_string(), ""),
        'b' => (format!("{abs:b}"), if sp.sharp { "0b" } else { "" }),
        'o' => (format!("{abs:o}"), if sp.sharp { "0" } else { "" }),
        'O' => (format!("{abs:o}"), "0o"),
        'x' => (format!("{abs:x}"), if sp.sharp { "0x" } else { "" }),
        'X' => (format!("{abs:X}"), if sp.sharp { "0X" } else { "" }),
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            return pad(out, &c.to_string(), sp);
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            return pad(out, &quote_rune(c), sp);
        }
        'U' => return pad(out, &format!("U+{abs:04X}"), sp),
        _ => return bad_verb(out, verb, v),
    };
    // A precision is a minimum number of digits, and turns off zero padding.
    if let Some(p) = sp.prec {
        if p == 0 && i == 0 {
            body.clear();
        }
        if body.len() < p {
            body = format!("{}{body}", "0".repeat(p - body.len()));
        }
    }
    let sign = format!("{}{prefix}", sign_of(i < 0, sp));
    pad_number(out, &sign, &body, sp, sp.prec.is_none());
}

fn fmt_float(out: &mut String, v: &Value, f: f64, verb: char, sp: &Spec) {
    let abs = f.abs();
    let body = match verb {
        'v' | 'g' => format_g(abs, sp.prec, false),
        'G' => format_g(abs, sp.prec, true),
        'e' | 'E' => format_e_prec(abs, sp.prec.unwrap_or(6), verb == 'E'),
        'f' | 'F' => format!("{:.*}", sp.prec.unwrap_or(6), abs),
        _ => return bad_verb(out, verb, v),
    };
    pad_number(out, sign_of(f.is_sign_negative(), sp), &body, sp, true);
}

/// The decimal digits of finite `f >= 0` (no trailing zeros, `"0"` for zero) and the
/// position of the decimal point: `f = 0.d1d2... × 10^dp`. `sig` rounds to that many
/// significant digits; `None` gives the shortest digits that read back as `f`.
fn decimal(f: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let s = match sig {
        None => format!("{f:e}"),
        Some(p) => format!("{:.*e}", p.max(1) - 1, f),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits == b"0" {
        return (digits, 1);
    }
    (digits, exp + 1)
}

/// `%e` from decimal digits: `d.ddd` with `prec` decimals, `e`, a sign and at least two
/// exponent digits.
fn fmt_e(digits: &[u8], dp: i32, prec: usize, upper: bool) -> String {
    let mut s = String::new();
    s.push(*digits.first().unwrap_or(&b'0') as char);
    if prec > 0 {
        s.push('.');
        for k in 1..=prec {
            s.push(*digits.get(k).unwrap_or(&b'0') as char);
        }
    }
    s.push(if upper { 'E' } else { 'e' });
    let exp = if digits == b"0" { 0 } else { dp - 1 };
    s.push(if exp < 0 { '-' } else { '+' });
    s.push_str(&format!("{:02}", exp.unsigned_abs()));
    s
}

/// `%f` from decimal digits, with `prec` decimals.
fn fmt_f(digits: &[u8], dp: i32, prec: usize) -> String {
    let digit = |k: i64| -> char {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k))
            .map_or('0', |&d| d as char)
    };
    let mut s = String::new();
    if dp > 0 {
        for k in 0..dp {
            s.push(digit(k.into()));
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for k in 0..prec {
            s.push(digit(i64::from(dp) + k as i64));
        }
    }
    s
}

fn nonfinite(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".to_owned())
    } else if f.is_infinite() {
        Some("+Inf".to_owned())
    } else {
        None
    }
}

/// Go's `%g` of `f >= 0`. With `prec` `None` this is `%v`: the shortest digits, in exponent
/// form when the decimal exponent is below -4 or at least 6 (`1e+06`), as `strconv` does.
pub(crate) fn format_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = nonfinite(f) {
        return s;
    }
    let (digits, dp) = decimal(f, prec.map(|p| p.max(1)));
    let nd = digits.len() as i32;
    let shortest = prec.is_none();
    let mut p = match prec {
        None => nd,
        Some(p) => p.clamp(1, 1 << 20) as i32,
    };
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        fmt_e(&digits, dp, (p - 1).max(0) as usize, upper)
    } else {
        if p > dp {
            p = nd;
        }
        fmt_f(&digits, dp, (p - dp).max(0) as usize)
    }
}

/// Go's `%.{prec}e` of `f >= 0`.
fn format_e_prec(f: f64, prec: usize, upper: bool) -> String {
    if let Some(s) = nonfinite(f) {
        return s;
    }
    let (digits, dp) = decimal(f, Some(prec + 1));
    fmt_e(&digits, dp, prec, upper)
}

/// A float as Go's `encoding/json` writes it: plain decimal between 1e-6 and 1e21, otherwise
/// exponent form with the shortest digits (`1e+21`, `1e-7`).
pub(crate) fn format_json_float(f: f64) -> String {
    let abs = f.abs();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let (digits, dp) = decimal(abs, None);
    let nd = digits.len() as i32;
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let mut s = fmt_e(&digits, dp, (nd - 1).max(0) as usize, false);
        // Go cleans up e-07 to e-7.
        if let Some(i) = s.find("e-0") {
            s.remove(i + 2);
        }
        format!("{sign}{s}")
    } else {
        format!("{sign}{}", fmt_f(&digits, dp, (nd - dp).max(0) as usize))
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() || (c.is_whitespace() && c != ' ') => {
            if (c as u32) < 0x10000 {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push_str(&format!("\\U{:08x}", c as u32));
            }
        }
        c => out.push(c),
    }
}
