//! Tests of the whole engine through the public API.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

/// A host serving `env`, `nomadVar`, `nomadVarList`, plus `fail` (always errors) and `count`
/// (counts its calls, to observe short-circuiting).
struct Host {
    env: BTreeMap<String, String>,
    vars: BTreeMap<String, Value>,
    calls: usize,
}

impl Host {
    fn new() -> Self {
        let env = [("NOMAD_ALLOC_ID", "alloc-123"), ("NOMAD_TASK_NAME", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let vars = [
            (
                "nomad/jobs/web",
                json!({"user": "admin", "password": "s3cret"}),
            ),
            ("nomad/jobs/db", json!({"dsn": "postgres://db"})),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Host {
            env,
            vars,
            calls: 0,
        }
    }
}

impl Functions for Host {
    fn call(&mut self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        Some(match (name, args) {
            ("env", [Value::String(k)]) => Ok(self.env.get(k).cloned().unwrap_or_default().into()),
            ("env", _) => Err("env: expected one string argument".to_owned()),
            ("nomadVar", [Value::String(path)]) => self
                .vars
                .get(path)
                .cloned()
                .ok_or_else(|| format!("nomadVar: no variable at {path:?}")),
            ("nomadVarList", [Value::String(prefix)]) => Ok(self
                .vars
                .keys()
                .filter(|p| p.starts_with(prefix.as_str()))
                .map(|p| json!({ "Path": p }))
                .collect()),
            ("fail", _) => Err("boom".to_owned()),
            ("count", _) => {
                self.calls += 1;
                Ok(self.calls.into())
            }
            _ => return None,
        })
    }

    fn has(&self, name: &str) -> bool {
        matches!(name, "env" | "nomadVar" | "nomadVarList" | "fail" | "count")
    }
}

fn parse_with(src: &str, opts: &Options) -> Result<Template, TemplateError> {
    Template::parse(src, opts, &Host::new())
}

fn try_render_opts(src: &str, data: &Value, opts: &Options) -> Result<String, TemplateError> {
    parse_with(src, opts)?.render(data, &mut Host::new())
}

fn try_render(src: &str, data: &Value) -> Result<String, TemplateError> {
    try_render_opts(src, data, &Options::default())
}

#[track_caller]
fn render(src: &str, data: Value) -> String {
    match try_render(src, &data) {
        Ok(s) => s,
        Err(e) => panic!("{src:?} failed: {e}"),
    }
}

/// Renders with null data.
#[track_caller]
fn r(src: &str) -> String {
    render(src, Value::Null)
}

#[track_caller]
fn parse_err(src: &str) -> TemplateError {
    match parse_with(src, &Options::default()) {
        Ok(_) => panic!("{src:?} parsed"),
        Err(e) => e,
    }
}

#[track_caller]
fn render_err(src: &str, data: Value) -> TemplateError {
    let t = match parse_with(src, &Options::default()) {
        Ok(t) => t,
        Err(e) => panic!("{src:?} did not parse: {e}"),
    };
    match t.render(&data, &mut Host::new()) {
        Ok(out) => panic!("{src:?} rendered {out:?}"),
        Err(e) => e,
    }
}

/// `(line, col, message)` of an error.
fn at(e: &TemplateError) -> (usize, usize, &str) {
    (e.line, e.col, e.message.as_str())
}

// ---- text, fields, printing ----------------------------------------------------------------

#[test]
fn plain_text() {
    assert_eq!(r(""), "");
    assert_eq!(r("hello\nworld"), "hello\nworld");
    assert_eq!(r("a } b { c"), "a } b { c");
}

#[test]
fn fields_and_root() {
    let data = json!({"a": {"b": {"c": "deep"}}, "n": 1, "list": [1, 2]});
    assert_eq!(render("{{ .a.b.c }}", data.clone()), "deep");
    assert_eq!(render("{{.n}}", data.clone()), "1");
    assert_eq!(render("{{ . }}", json!("dot")), "dot");
    assert_eq!(render("{{ .missing }}", data.clone()), "<no value>");
    assert_eq!(render("{{ .missing.more }}", data.clone()), "<no value>");
    assert_eq!(
        render("{{ with .a }}{{ $.n }}{{ .b.c }}{{ end }}", data.clone()),
        "1deep"
    );
    assert_eq!(render("{{ $ := 5 }}{{ $ }}", data.clone()), "5");
    assert_eq!(render("{{ .a.b }}", data), "map[c:deep]");
    assert_eq!(r("{{ .a }}"), "<no value>");
}

#[test]
fn printing_values() {
    let cases = [
        (json!(42), "42"),
        (json!(-7), "-7"),
        (json!(1.5), "1.5"),
        (json!(3.0), "3"),
        (json!(-2.25), "-2.25"),
        (json!(0.0), "0"),
        (json!(123456.0), "123456"),
        (json!(1000000.0), "1e+06"),
        (json!(1234567.0), "1.234567e+06"),
        (json!(0.0001), "0.0001"),
        (json!(0.00001), "1e-05"),
        (json!(0.1), "0.1"),
        (json!(u64::MAX), "18446744073709551615"),
        (json!(true), "true"),
        (json!(false), "false"),
        (Value::Null, "<no value>"),
        (json!("text"), "text"),
        (json!([1, "two", 3.5, null, [4]]), "[1 two 3.5 <nil> [4]]"),
        (
            json!({"b": 2, "a": {"y": [1], "x": null}}),
            "map[a:map[x:<nil> y:[1]] b:2]",
        ),
        (json!([]), "[]"),
        (json!({}), "map[]"),
    ];
    for (v, want) in cases {
        assert_eq!(render("{{ . }}", v.clone()), want, "printing {v}");
    }
}

#[test]
fn literals() {
    assert_eq!(
        r(r#"{{ "a\tb\n\"q\"\\ \u00e9 \x41 \101" }}"#),
        "a\tb\n\"q\"\\ é A A"
    );
    assert_eq!(r("{{ `raw \\n {{ }}` }}"), "raw \\n {{ }}");
    assert_eq!(
        r("{{ -12 }} {{ +3 }} {{ 0x1F }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }}"),
        "-12 3 31 15 15 5 1000"
    );
    assert_eq!(
        r("{{ 1.5 }} {{ 2.0 }} {{ 1e3 }} {{ .5 }} {{ -0.25 }}"),
        "1.5 2 1000 0.5 -0.25"
    );
    assert_eq!(r("{{ 'a' }} {{ '\\n' }}"), "97 10");
    assert_eq!(r("{{ true }} {{ false }}"), "true false");
    assert_eq!(r("{{ print nil }}"), "<nil>");
    assert_eq!(r("{{ \"}}\" }}"), "}}");
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(r("a  \n {{- 1 -}} \n\t b"), "a1b");
    assert_eq!(r("a {{- 1 }} b"), "a1 b");
    assert_eq!(r("a {{ 1 -}} b"), "a 1b");
    assert_eq!(r("{{-3}}"), "-3");
    assert_eq!(r("{{ 3 -}}\n\n{{- 4 }}"), "34");
    assert_eq!(r("a{{/* a comment */}}b"), "ab");
    assert_eq!(r("a\n{{- /* multi\nline */ -}}\nb"), "ab");
    assert_eq!(r("a {{- /* c */}} b"), "a b");
    assert_eq!(r("x\n{{- if true }}\n  y\n{{- end }}\nz"), "x\n  y\nz");
    // A dash without a following space is not a trim marker.
    assert_eq!(r("a {{ 5 }} b"), "a 5 b");
}

#[test]
fn custom_delimiters() {
    let opts = Options {
        left: "[[",
        right: "]]",
        ..Options::default()
    };
    let data = json!({"a": "x"});
    assert_eq!(
        try_render_opts("{{ .a }} [[ .a ]] [[- .a -]] ]]", &data, &opts).unwrap(),
        "{{ .a }} xx]]"
    );
    let empty = Options {
        left: "",
        right: "",
        ..Options::default()
    };
    assert_eq!(try_render_opts("{{ .a }}", &data, &empty).unwrap(), "x");
    let opts = Options {
        left: "<%",
        right: "%>",
        ..Options::default()
    };
    assert_eq!(
        try_render_opts("<%/* c */%><% if .a %>yes<% end %>", &data, &opts).unwrap(),
        "yes"
    );
}

// ---- pipelines, parentheses, variables -------------------------------------------------------

#[test]
fn pipelines() {
    let data = json!({"csv": "a,b,c", "name": "web"});
    assert_eq!(
        render("{{ .csv | split \",\" | join \"-\" }}", data.clone()),
        "a-b-c"
    );
    assert_eq!(
        render("{{ .name | printf \"%s-%s\" \"svc\" }}", data.clone()),
        "svc-web"
    );
    assert_eq!(
        render("{{ .name | toUpper | printf \"<%s>\" }}", data.clone()),
        "<WEB>"
    );
    assert_eq!(render("{{ \"x\" | print }}", data), "x");
}

#[test]
fn parentheses_and_chains() {
    let data = json!({"m": {"k": {"v": 7}}, "list": [1, 2, 3]});
    assert_eq!(render("{{ (index .m \"k\").v }}", data.clone()), "7");
    assert_eq!(
        render("{{ printf \"%d items\" (len .list) }}", data.clone()),
        "3 items"
    );
    assert_eq!(
        render("{{ (parseJSON `{\"a\":{\"b\":1}}`).a.b }}", data.clone()),
        "1"
    );
    assert_eq!(
        render("{{ add (add 1 2) (multiply 2 3) }}", data.clone()),
        "9"
    );
    assert_eq!(render("{{ ( .m ).k.v }}", data), "7");
}

#[test]
fn variables_and_scope() {
    assert_eq!(r("{{ $x := 1 }}{{ $x }}{{ $x = 2 }}{{ $x }}"), "12");
    // Assignment reaches the outer variable; declaration in a block shadows until `end`.
    assert_eq!(
        r("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"),
        "2"
    );
    assert_eq!(
        r("{{ $x := 1 }}{{ if true }}{{ $x := 3 }}{{ $x }}{{ end }}{{ $x }}"),
        "31"
    );
    // A variable declared in an `if` pipeline is visible in both branches.
    assert_eq!(
        r("{{ if $v := 0 }}yes{{ else }}no {{ $v }}{{ end }}"),
        "no 0"
    );
    assert_eq!(
        render(
            "{{ with $a := .a }}{{ $a }}{{ . }}{{ end }}",
            json!({"a": "z"})
        ),
        "zz"
    );
    // Accumulate across a range.
    assert_eq!(
        r("{{ $sum := 0 }}{{ range loop 5 }}{{ $sum = add . $sum }}{{ end }}{{ $sum }}"),
        "10"
    );
    // Declarations print nothing.
    assert_eq!(r("a{{ $x := 1 }}b"), "ab");

    let e = parse_err("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}");
    assert_eq!(at(&e), (1, 39, "undefined variable \"$x\""));
    let e = parse_err("{{ if true }}{{ $x := 1 }}{{ else }}{{ $x }}{{ end }}");
    assert_eq!(e.message, "undefined variable \"$x\"");
    let e = parse_err("{{ range .a }}{{ $x := 1 }}{{ end }}{{ $x = 2 }}");
    assert_eq!(e.message, "undefined variable \"$x\"");
    let e = parse_err("{{ $y = 1 }}");
    assert_eq!(at(&e), (1, 4, "undefined variable \"$y\""));
    let e = parse_err("{{ $a, $b := 1 }}");
    assert_eq!(e.message, "too many declarations in command");
}

// ---- control structures ---------------------------------------------------------------------

#[test]
fn if_else_chains() {
    let src = "{{ if eq .n 1 }}one{{ else if eq .n 2 }}two{{ else if eq .n 3 }}three{{ else }}many{{ end }}";
    for (n, want) in [(1, "one"), (2, "two"), (3, "three"), (9, "many")] {
        assert_eq!(render(src, json!({ "n": n })), want);
    }
    assert_eq!(r("{{ if false }}x{{ end }}"), "");
    assert_eq!(r("{{ if 1 }}{{ if 0 }}a{{ else }}b{{ end }}{{ end }}"), "b");
}

#[test]
fn with_else_with() {
    let src = "{{ with .a }}a={{ . }}{{ else with .b }}b={{ . }}{{ else }}none{{ end }}";
    assert_eq!(render(src, json!({"a": "1", "b": "2"})), "a=1");
    assert_eq!(render(src, json!({"b": "2"})), "b=2");
    assert_eq!(render(src, json!({"a": "", "b": []})), "none");
    assert_eq!(
        render("{{ with .m }}{{ .k }}{{ end }}", json!({"m": {"k": "v"}})),
        "v"
    );
}

#[test]
fn truthiness() {
    let cases = [
        (json!(false), "F"),
        (json!(true), "T"),
        (json!(0), "F"),
        (json!(0.0), "F"),
        (json!(2), "T"),
        (json!(-0.5), "T"),
        (Value::Null, "F"),
        (json!(""), "F"),
        (json!(" "), "T"),
        (json!([]), "F"),
        (json!([0]), "T"),
        (json!({}), "F"),
        (json!({"a": null}), "T"),
    ];
    for (v, want) in cases {
        assert_eq!(
            render("{{ if . }}T{{ else }}F{{ end }}", v.clone()),
            want,
            "truth of {v}"
        );
    }
}

#[test]
fn range_forms() {
    let data =
        json!({"list": ["a", "b", "c"], "map": {"z": 1, "a": 2, "m": 3}, "empty": [], "n": 3});
    assert_eq!(
        render("{{ range .list }}{{ . }};{{ end }}", data.clone()),
        "a;b;c;"
    );
    assert_eq!(
        render(
            "{{ range $i, $e := .list }}{{ $i }}={{ $e }} {{ end }}",
            data.clone()
        ),
        "0=a 1=b 2=c "
    );
    assert_eq!(
        render("{{ range $e := .list }}{{ $e }}{{ end }}", data.clone()),
        "abc"
    );
    assert_eq!(
        render(
            "{{ range $k, $v := .map }}{{ $k }}:{{ $v }},{{ end }}",
            data.clone()
        ),
        "a:2,m:3,z:1,"
    );
    assert_eq!(
        render("{{ range .map }}{{ . }}{{ end }}", data.clone()),
        "231"
    );
    assert_eq!(
        render("{{ range .empty }}x{{ else }}empty{{ end }}", data.clone()),
        "empty"
    );
    assert_eq!(
        render("{{ range .missing }}x{{ else }}none{{ end }}", data.clone()),
        "none"
    );
    assert_eq!(
        render("{{ range .n }}{{ . }}{{ end }}", data.clone()),
        "012"
    );
    assert_eq!(
        render("{{ range $i := 4 }}{{ $i }}{{ end }}", data.clone()),
        "0123"
    );
    assert_eq!(
        render("{{ range 0 }}x{{ else }}zero{{ end }}", data.clone()),
        "zero"
    );
    // `$` stays the root inside range.
    assert_eq!(
        render("{{ range .list }}{{ $.n }}{{ end }}", data.clone()),
        "333"
    );
    // Nested ranges keep their own variables.
    assert_eq!(
        render(
            "{{ range $i, $a := .list }}{{ range $j, $b := $.list }}{{ if eq $i $j }}{{ $a }}{{ end }}{{ end }}{{ end }}",
            data.clone()
        ),
        "abc"
    );

    let e = render_err("{{ range $i, $e := 3 }}{{ end }}", Value::Null);
    assert_eq!(
        at(&e),
        (1, 4, "can't use 3 to iterate over more than one variable")
    );
    let e = render_err("{{ range .s }}{{ end }}", json!({"s": "abc"}));
    assert_eq!(at(&e), (1, 4, "range can't iterate over abc (type string)"));
}

#[test]
fn break_and_continue() {
    let data = json!({"list": [1, 2, 3, 4, 5]});
    assert_eq!(
        render(
            "{{ range .list }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            data.clone()
        ),
        "12"
    );
    assert_eq!(
        render(
            "{{ range .list }}{{ if eq . 3 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            data.clone()
        ),
        "1245"
    );
    // `break` leaves only the innermost range.
    assert_eq!(
        render(
            "{{ range $a := loop 3 }}[{{ range loop 3 }}{{ if eq . $a }}{{ break }}{{ end }}{{ . }}{{ end }}]{{ end }}",
            data.clone()
        ),
        "[][0][01]"
    );
    // Variables declared before `break` are gone at the next iteration.
    assert_eq!(
        render(
            "{{ range .list }}{{ $x := . }}{{ if gt $x 1 }}{{ continue }}{{ end }}{{ $x }}{{ end }}",
            data
        ),
        "1"
    );

    let e = parse_err("{{ break }}");
    assert_eq!(at(&e), (1, 4, "{{break}} outside {{range}}"));
    let e = parse_err("{{ if true }}{{ continue }}{{ end }}");
    assert_eq!(e.message, "{{continue}} outside {{range}}");
    let e = parse_err("{{ range .a }}{{ else }}{{ break }}{{ end }}");
    assert_eq!(e.message, "{{break}} outside {{range}}");
}

#[test]
fn define_template_block() {
    let src = r#"{{ define "item" }}<{{ .name }}>{{ end }}{{ range .items }}{{ template "item" . }}{{ end }}"#;
    assert_eq!(
        render(src, json!({"items": [{"name": "a"}, {"name": "b"}]})),
        "<a><b>"
    );
    assert_eq!(r(r#"{{ block "b" "x" }}[{{ . }}]{{ end }}"#), "[x]");
    assert_eq!(
        r(r#"{{ template "t" }}{{ define "t" }}{{ . }}{{ end }}"#),
        "<no value>"
    );
    let e = render_err(r#"{{ template "nope" }}"#, Value::Null);
    assert_eq!(at(&e), (1, 4, "no such template \"nope\""));
    let e = parse_err(r#"{{ if true }}{{ define "x" }}{{ end }}{{ end }}"#);
    assert_eq!(e.message, "{{define}} is only allowed at the top level");
    let e = render_err(
        r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}"#,
        Value::Null,
    );
    assert!(
        e.message.starts_with("exceeded maximum nesting depth"),
        "{e}"
    );
}

// ---- Go built-ins -------------------------------------------------------------------------------

#[test]
fn and_or_not() {
    assert_eq!(r("{{ and 1 0 2 }}"), "0");
    assert_eq!(r("{{ and 1 2 }}"), "2");
    assert_eq!(r("{{ or 0 \"\" \"x\" 1 }}"), "x");
    assert_eq!(r("{{ or 0 false }}"), "false");
    assert_eq!(r("{{ not 0 }} {{ not \"a\" }}"), "true false");
    // Short-circuit: the failing function is never called.
    assert_eq!(r("{{ or 1 (fail) }}"), "1");
    assert_eq!(r("{{ and 0 fail }}"), "0");
    assert_eq!(r("{{ and 1 (count) (count) }}{{ count }}"), "23");
    assert_eq!(r("{{ 0 | or 5 }}"), "5");
    assert_eq!(render_err("{{ or 0 (fail) }}", Value::Null).message, "boom");
    assert_eq!(
        render_err("{{ and }}", Value::Null).message,
        "wrong number of args for and: want at least 1 got 0"
    );
}

#[test]
fn len_index_slice() {
    let data = json!({"list": [10, [20, 30]], "m": {"k": {"x": "y"}}, "s": "héllo"});
    assert_eq!(
        render(
            "{{ len .list }} {{ len .m }} {{ len .s }} {{ len \"\" }}",
            data.clone()
        ),
        "2 1 6 0"
    );
    assert_eq!(
        render("{{ index .list 0 }} {{ index .list 1 1 }}", data.clone()),
        "10 30"
    );
    assert_eq!(
        render(
            "{{ index .m \"k\" \"x\" }} {{ index .m \"nope\" }}",
            data.clone()
        ),
        "y <no value>"
    );
    assert_eq!(render("{{ index .list }}", data.clone()), "[10 [20 30]]");
    assert_eq!(render("{{ index .s 0 }}", data.clone()), "104");
    assert_eq!(
        render(
            "{{ slice .list 1 }} {{ slice .list 0 1 }} {{ slice .s 0 1 }} {{ slice .s 3 }}",
            data.clone()
        ),
        "[[20 30]] [10] h llo"
    );
    let e = render_err("{{ index .list 5 }}", data.clone());
    assert_eq!(at(&e), (1, 4, "error calling index: index out of range: 5"));
    assert_eq!(
        render_err("{{ index .m 1 }}", data.clone()).message,
        "error calling index: value has type int; should be string"
    );
    assert_eq!(
        render_err("{{ index .nope 1 }}", data.clone()).message,
        "error calling index: index of untyped nil"
    );
    assert_eq!(
        render_err("{{ len 3 }}", data.clone()).message,
        "error calling len: len of type int"
    );
    assert_eq!(
        render_err("{{ slice .list 2 1 }}", data.clone()).message,
        "error calling slice: invalid slice index: 2 > 1"
    );
    assert_eq!(
        render_err("{{ slice .s 2 }}", data).message,
        "error calling slice: slice would split a UTF-8 character"
    );
}

#[test]
fn comparisons() {
    assert_eq!(
        r("{{ eq 1 1 }} {{ eq 1 2 }} {{ eq 1 2 3 1 }} {{ eq \"a\" \"a\" }} {{ eq 1 1.0 }}"),
        "true false true true true"
    );
    assert_eq!(
        r("{{ ne 1 2 }} {{ ne \"a\" \"a\" }} {{ eq true true }}"),
        "true false true"
    );
    assert_eq!(
        render("{{ eq .missing nil }} {{ eq .missing \"x\" }}", json!({})),
        "true false"
    );
    assert_eq!(
        r("{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1.5 2 }} {{ ge 3 2.5 }}"),
        "true true false true"
    );
    assert_eq!(
        r("{{ lt \"abc\" \"abd\" }} {{ gt \"b\" \"a\" }}"),
        "true true"
    );
    assert_eq!(
        render(
            "{{ eq .a .b }}",
            json!({"a": [1, {"x": 2}], "b": [1, {"x": 2.0}]})
        ),
        "true"
    );
    assert_eq!(
        render_err("{{ eq 1 \"1\" }}", Value::Null).message,
        "error calling eq: incompatible types for comparison"
    );
    assert_eq!(
        render_err("{{ lt true false }}", Value::Null).message,
        "error calling lt: invalid type for comparison"
    );
    assert_eq!(
        render_err("{{ lt 1 }}", Value::Null).message,
        "wrong number of args for lt: want 2 got 1"
    );
}

#[test]
fn print_functions() {
    // Go's Sprint: a space only between operands that are both non-strings.
    assert_eq!(r("{{ print 1 2 \"a\" \"b\" 3 }}"), "1 2ab3");
    assert_eq!(r("{{ println 1 \"a\" }}"), "1 a\n");
    assert_eq!(r("{{ print }}"), "");
    assert_eq!(
        r("{{ html \"<a href='x'>&\\\"</a>\" }}"),
        "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;"
    );
    assert_eq!(
        r("{{ js \"it's <b>\\\"\\n=\" }}"),
        "it\\'s \\u003Cb\\u003E\\\"\\u000A\\u003D"
    );
    assert_eq!(r("{{ urlquery \"a b&c=d/é\" }}"), "a+b%26c%3Dd%2F%C3%A9");
    assert_eq!(r("{{ html 1 2 }}"), "1 2");
}

#[test]
fn printf_verbs() {
    let cases = [
        (r#"{{ printf "%s|%v|%d" "a" "b" 42 }}"#, "a|b|42"),
        (r#"{{ printf "%q" "a\"b" }}"#, r#""a\"b""#),
        (
            r#"{{ printf "%f %.2f %.0f %.1f" 3.14159 3.14159 2.5 0.05 }}"#,
            "3.141590 3.14 2 0.1",
        ),
        (r#"{{ printf "%t %t" true false }}"#, "true false"),
        (r#"{{ printf "100%%" }}"#, "100%"),
        (
            r#"{{ printf "[%5d][%-5d][%05d][%+d][% d]" 42 42 -42 42 42 }}"#,
            "[   42][42   ][-0042][+42][ 42]",
        ),
        (
            r#"{{ printf "[%6s][%-6s][%.2s]" "ab" "ab" "abcdef" }}"#,
            "[    ab][ab    ][ab]",
        ),
        (
            r#"{{ printf "%x %X %o %b %#x %c %U" 255 255 8 5 255 65 65 }}"#,
            "ff FF 10 101 0xff A U+0041",
        ),
        (r#"{{ printf "%x" "hi" }}"#, "6869"),
        (
            r#"{{ printf "%e %E %.2e" 1234.5678 0.000123 1234.5678 }}"#,
            "1.234568e+03 1.230000E-04 1.23e+03",
        ),
        (
            r#"{{ printf "%g %g %.3g %g" 1234.5678 0.00001234 1234.5678 100000000.0 }}"#,
            "1234.5678 1.234e-05 1.23e+03 1e+08",
        ),
        (r#"{{ printf "%v %v" 1.0 2.5 }}"#, "1 2.5"),
        (
            r#"{{ printf "%8.3f|%-8.2f|%08.3f" 3.14159 2.5 -3.14159 }}"#,
            "   3.142|2.50    |-003.142",
        ),
        (r#"{{ printf "%v" .list }}"#, "[1 a <nil>]"),
        (r#"{{ printf "%d" .list }}"#, "[1 %!d(string=a) <nil>]"),
        (r#"{{ printf "%q" .strs }}"#, r#"["x" "y"]"#),
        (r#"{{ printf "%v" .map }}"#, "map[a:1 b:2]"),
        (r#"{{ printf "%d" "x" }}"#, "%!d(string=x)"),
        (r#"{{ printf "%s" 5 }}"#, "%!s(int=5)"),
        (r#"{{ printf "%d" 1.5 }}"#, "%!d(float64=1.5)"),
        (r#"{{ printf "%s" nil }}"#, "%!s(<nil>)"),
        (r#"{{ printf "%v" nil }}"#, "<nil>"),
        (r#"{{ printf "%s %s" "a" }}"#, "a %!s(MISSING)"),
        (
            r#"{{ printf "%s" "a" 1 "b" }}"#,
            "a%!(EXTRA int=1, string=b)",
        ),
        (r#"{{ printf "abc%" }}"#, "abc%!(NOVERB)"),
        (r#"{{ printf "%*d" 4 7 }}"#, "   7"),
        (r#"{{ printf "%d-%s" 8080 "tcp" | toUpper }}"#, "8080-TCP"),
    ];
    let data = json!({"list": [1, "a", null], "strs": ["x", "y"], "map": {"b": 2, "a": 1}});
    for (src, want) in cases {
        assert_eq!(render(src, data.clone()), want, "{src}");
    }
    assert_eq!(
        render_err("{{ printf 1 }}", Value::Null).message,
        "wrong type for argument 1 of printf: expected string; got int"
    );
}

// ---- consul-template helpers ---------------------------------------------------------------------

#[test]
fn json_helpers() {
    let data = json!({"b": [1, 2.5, 3.0, true, null], "a": "<tag>&", "c": {}, "d": [], "e": 1e21, "f": 1e-7});
    assert_eq!(
        render("{{ toJSON . }}", data.clone()),
        r#"{"a":"\u003ctag\u003e\u0026","b":[1,2.5,3,true,null],"c":{},"d":[],"e":1e+21,"f":1e-7}"#
    );
    assert_eq!(
        render("{{ toUnescapedJSON .a }}", data.clone()),
        r#""<tag>&""#
    );
    assert_eq!(
        render("{{ .b | toJSONPretty }}", data.clone()),
        "[\n  1,\n  2.5,\n  3,\n  true,\n  null\n]"
    );
    assert_eq!(
        render("{{ toJSONPretty . }}", json!({"x": {"y": [1]}, "e": {}})),
        "{\n  \"e\": {},\n  \"x\": {\n    \"y\": [\n      1\n    ]\n  }\n}"
    );
    assert_eq!(
        r(r#"{{ toJSON "line\nquote\"\\" }}"#),
        r#""line\nquote\"\\""#
    );
    assert_eq!(
        r(r#"{{ with parseJSON `{"a":[1,2],"b":"x"}` }}{{ .b }}{{ index .a 1 }}{{ end }}"#),
        "x2"
    );
    assert_eq!(r(r#"{{ parseJSON "" }}"#), "map[]");
    assert!(
        render_err(r#"{{ parseJSON "{" }}"#, Value::Null)
            .message
            .starts_with("error calling parseJSON: ")
    );
}

#[test]
fn string_helpers() {
    assert_eq!(
        r(
            r#"{{ toUpper "abc ß" }} {{ toLower "ABC" }} {{ toTitle "hello wide-world o'neil x_y" }}"#
        ),
        "ABC ß abc Hello Wide-World O'neil X_y"
    );
    assert_eq!(r(r#"[{{ trimSpace "  a b \n" }}]"#), "[a b]");
    assert_eq!(
        r(r#"{{ "hello world!!" | trim "!" }} {{ trim "xy" "xyaxy" }}"#),
        "hello world a"
    );
    assert_eq!(
        r(r#"{{ "hello world" | trimPrefix "hello " }} {{ "a.txt" | trimSuffix ".txt" }}"#),
        "world a"
    );
    assert_eq!(
        r(
            r#"{{ split "," "a,b,c" }} {{ "a,b" | split "," }} {{ split "," "  " }} {{ len (split "\n" "x\ny\n") }}"#
        ),
        "[a b c] [a b] [] 2"
    );
    assert_eq!(
        r(
            r#"{{ join "," (split ":" "a:b") }} {{ split ":" "a:b" | join "+" }} {{ parseJSON "[1,\"x\"]" | join "-" }}"#
        ),
        "a,b a+b 1-x"
    );
    assert_eq!(
        r(r#"{{ "foo.bar.baz" | replaceAll "." "_" }} {{ replaceAll "a" "b" "aaa" }}"#),
        "foo_bar_baz bbb"
    );
    assert_eq!(
        r(r#"{{ hasPrefix "ab" "abc" }} {{ "abc" | hasPrefix "b" }} {{ hasSuffix "bc" "abc" }}"#),
        "true false true"
    );
    assert_eq!(r("{{ \"a\\nb\\n\\nc\" | indent 2 }}"), "  a\n  b\n\n  c");
    assert_eq!(r("{{ indent 0 \"x\" }}"), "x");
    assert_eq!(
        render_err("{{ indent -1 \"x\" }}", Value::Null).message,
        "error calling indent: indent value must be a positive integer"
    );
    assert_eq!(
        render_err("{{ toUpper 1 }}", Value::Null).message,
        "wrong type for argument 1 of toUpper: expected string; got int"
    );
    assert_eq!(
        render_err("{{ toUpper .x }}", json!({})).message,
        "wrong type for argument 1 of toUpper: expected string; got nil"
    );
    assert_eq!(
        render_err("{{ split \",\" }}", Value::Null).message,
        "wrong number of args for split: want 2 got 1"
    );
}

#[test]
fn membership_helpers() {
    let data = json!({"tags": ["prod", "web", 8080], "want": ["web", "db"], "none": ["x"]});
    assert_eq!(
        render(
            "{{ .tags | contains \"prod\" }} {{ contains \"db\" .tags }} {{ contains 8080 .tags }}",
            data.clone()
        ),
        "true false true"
    );
    assert_eq!(
        render(
            "{{ contains \"ell\" \"hello\" }} {{ in .tags \"web\" }} {{ in \"hello\" \"lo\" }}",
            data.clone()
        ),
        "true true true"
    );
    assert_eq!(
        render(
            "{{ containsAny .want .tags }} {{ containsAll .want .tags }} {{ containsNone .none .tags }} {{ containsNotAll .want .tags }}",
            data.clone()
        ),
        "true false true true"
    );
    assert_eq!(
        render(
            "{{ containsAll (parseJSON \"[]\") .tags }} {{ containsAny (parseJSON \"[]\") .tags }}",
            data
        ),
        "true false"
    );
}

#[test]
fn encoding_and_parsing_helpers() {
    assert_eq!(
        r(r#"{{ base64Encode "hello?>" }} {{ base64URLEncode "hello?>" }}"#),
        "aGVsbG8/Pg== aGVsbG8_Pg=="
    );
    assert_eq!(
        r(
            r#"{{ "aGVsbG8/Pg==" | base64Decode }} {{ base64URLDecode "aGVsbG8_Pg==" }} {{ base64Decode "aGVs\nbG8=" }}"#
        ),
        "hello?> hello?> hello"
    );
    assert!(
        render_err(r#"{{ base64Decode "!!" }}"#, Value::Null)
            .message
            .starts_with("error calling base64Decode: ")
    );
    assert_eq!(
        r(
            r#"{{ parseInt "-42" }} {{ parseInt "" }} {{ parseUint "7" }} {{ "8080" | parseInt | add 1 }}"#
        ),
        "-42 0 7 8081"
    );
    assert_eq!(
        r(
            r#"{{ parseFloat "1.5" }} {{ parseFloat "3" }} {{ parseBool "true" }} {{ parseBool "F" }} {{ parseBool "" }}"#
        ),
        "1.5 3 true false false"
    );
    assert_eq!(
        render_err(r#"{{ parseInt "x1" }}"#, Value::Null).message,
        "error calling parseInt: strconv.ParseInt: parsing \"x1\": invalid syntax"
    );
    assert_eq!(
        render_err(r#"{{ parseBool "yes" }}"#, Value::Null).message,
        "error calling parseBool: strconv.ParseBool: parsing \"yes\": invalid syntax"
    );
}

#[test]
fn math_helpers() {
    // consul-template's documented examples: the piped value is the left operand.
    assert_eq!(r("{{ add 1 2 }} {{ 1 | add 2 }}"), "3 3");
    assert_eq!(r("{{ subtract 2 5 }} {{ 5 | subtract 2 }}"), "3 3");
    assert_eq!(r("{{ multiply 2 2 }} {{ 2 | multiply 2 }}"), "4 4");
    assert_eq!(
        r("{{ divide 2 10 }} {{ 10 | divide 2 }} {{ divide 2 7 }} {{ divide 2 7.0 }}"),
        "5 5 3 3.5"
    );
    assert_eq!(r("{{ modulo 2 5 }} {{ 5 | modulo 2 }}"), "1 1");
    assert_eq!(
        r("{{ add 1.5 1 }} {{ minimum 2 5 }} {{ maximum 2 5 }} {{ 3 | maximum 2.5 }}"),
        "2.5 2 5 3"
    );
    assert_eq!(
        render_err("{{ divide 0 1 }}", Value::Null).message,
        "error calling divide: division by zero"
    );
    assert_eq!(
        render_err("{{ modulo 0 1 }}", Value::Null).message,
        "error calling modulo: division by zero"
    );
    assert_eq!(
        render_err("{{ add \"1\" 1 }}", Value::Null).message,
        "wrong type for argument 1 of add: expected number; got string"
    );
    assert_eq!(
        render_err("{{ modulo 1.5 3 }}", Value::Null).message,
        "error calling modulo: unknown type for 1.5 (float64)"
    );
    assert_eq!(
        r(
            "{{ range loop 2 }}{{ . }}{{ end }}|{{ range loop 3 5 }}{{ . }}{{ end }}|{{ loop \"2\" }}"
        ),
        "01|34|[0 1]"
    );
}

// ---- host functions -----------------------------------------------------------------------------------

#[test]
fn nomad_style_template() {
    let src = r#"{{ with nomadVar "nomad/jobs/web" }}user={{ .user }}
pass={{ .password }}{{ end }}
{{ range $k, $v := nomadVar "nomad/jobs/web" }}{{ $k }}={{ $v }}
{{ end }}
{{ env "NOMAD_ALLOC_ID" }}
{{- /* comment */ -}}
{{ range nomadVarList "nomad/jobs" }}{{ .Path }} {{ end }}
"#;
    let want = "user=admin\npass=s3cret\npassword=s3cret\nuser=admin\n\nalloc-123nomad/jobs/db nomad/jobs/web \n";
    assert_eq!(r(src), want);
}

#[test]
fn host_functions() {
    assert_eq!(
        r(r#"{{ env "NOMAD_TASK_NAME" }}-{{ env "UNSET" }}."#),
        "web-."
    );
    assert_eq!(
        r(r#"{{ (nomadVar "nomad/jobs/db").dsn }}"#),
        "postgres://db"
    );
    assert_eq!(r(r#"{{ "NOMAD_TASK_NAME" | env | toUpper }}"#), "WEB");
    // Host functions are checked at parse time, failures are located at the call.
    let e = parse_err("ok\n {{ nomadVars \"x\" }}");
    assert_eq!(at(&e), (2, 5, "function \"nomadVars\" not defined"));
    let e = render_err("x\n  {{ fail 1 }}", Value::Null);
    assert_eq!(at(&e), (2, 6, "boom"));
    let e = render_err(r#"{{ nomadVar "nope" }}"#, Value::Null);
    assert_eq!(at(&e), (1, 4, "nomadVar: no variable at \"nope\""));
    // The unit host has no functions.
    let e = Template::parse("{{ env \"X\" }}", &Options::default(), &()).unwrap_err();
    assert_eq!(e.message, "function \"env\" not defined");
}

/// A host that claims a function at parse time but does not serve it, and overrides a
/// built-in.
struct Partial;

impl Functions for Partial {
    fn call(&mut self, name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        (name == "toUpper").then(|| Ok("overridden".into()))
    }

    fn has(&self, name: &str) -> bool {
        matches!(name, "ghost" | "toUpper")
    }
}

#[test]
fn host_lookup_order() {
    let t = Template::parse("{{ toUpper \"a\" }}", &Options::default(), &Partial).unwrap();
    assert_eq!(t.render(&Value::Null, &mut Partial).unwrap(), "overridden");
    let t = Template::parse("{{ ghost }}", &Options::default(), &Partial).unwrap();
    assert_eq!(
        t.render(&Value::Null, &mut Partial).unwrap_err().message,
        "function \"ghost\" not defined"
    );
}

// ---- errors -----------------------------------------------------------------------------------------------

#[test]
fn missing_keys() {
    let strict = Options {
        error_on_missing_key: true,
        ..Options::default()
    };
    let data = json!({"a": {"x": 1}});
    assert_eq!(try_render_opts("{{ .a.x }}", &data, &strict).unwrap(), "1");
    let e = try_render_opts("{{ .a.x }}\n  {{ .a.b }}", &data, &strict).unwrap_err();
    assert_eq!(at(&e), (2, 8, "map has no entry for key \"b\""));
    let e = try_render_opts("{{ $x := .a }}{{ $x.nope }}", &data, &strict).unwrap_err();
    assert_eq!(at(&e), (1, 20, "map has no entry for key \"nope\""));
    assert_eq!(try_render("{{ .a.b }}", &data).unwrap(), "<no value>");
}

#[test]
fn field_errors() {
    let data = json!({"s": "str", "n": 1, "b": true, "l": [1], "m": {"k": 1}});
    assert_eq!(
        at(&render_err("{{ .s.x }}", data.clone())),
        (1, 6, "can't evaluate field x in type string")
    );
    assert_eq!(
        render_err("{{ .n.x }}", data.clone()).message,
        "can't evaluate field x in type int"
    );
    assert_eq!(
        render_err("{{ .b.x }}", data.clone()).message,
        "can't evaluate field x in type bool"
    );
    assert_eq!(
        render_err("{{ .l.x }}", data.clone()).message,
        "can't evaluate field x in type array"
    );
    assert_eq!(
        render_err("{{ .m.k 1 }}", data.clone()).message,
        "k is not a method but has arguments"
    );
    assert_eq!(
        render_err("{{ 1 | .m.k }}", data.clone()).message,
        "k is not a method but has arguments"
    );
    assert_eq!(
        render_err("{{ . 1 }}", data.clone()).message,
        "can't give argument to non-function ."
    );
    assert_eq!(
        render_err("{{ $x := 1 }}{{ 2 | $x }}", data).message,
        "can't give argument to non-function $x"
    );
    assert_eq!(
        render_err("{{ nil }}", Value::Null).message,
        "nil is not a command"
    );
}

#[test]
fn parse_errors() {
    let cases: &[(&str, (usize, usize, &str))] = &[
        ("ab{{ .x", (1, 3, "unclosed action: missing \"}}\"")),
        ("a\n{{ .a }}{{ end }}", (2, 12, "unexpected {{end}}")),
        ("{{ else }}", (1, 4, "unexpected {{else}}")),
        (
            "{{ if .a }}\nx",
            (2, 2, "missing {{end}} for {{if}} opened at 1:4"),
        ),
        (
            "{{ if .a }}{{ else if .b }}{{ else }}",
            (1, 38, "missing {{end}} for {{if}} opened at 1:4"),
        ),
        (
            "{{ range .a }}{{ else }}{{ else }}{{ end }}",
            (
                1,
                28,
                "expected {{end}}; found a second {{else}} in {{range}}",
            ),
        ),
        (
            "{{ with .a }}{{ else if .b }}{{ end }}",
            (1, 22, "{{else if}} is not allowed in {{with}}"),
        ),
        ("{{ if }}{{ end }}", (1, 7, "missing value for if")),
        ("{{ }}", (1, 4, "missing value for command")),
        (
            "{{ .a | }}",
            (1, 7, "missing command after \"|\" in command"),
        ),
        (
            "{{ 1 | 2 }}",
            (1, 8, "non executable command in pipeline stage 2"),
        ),
        ("{{ .a ,}}", (1, 7, "unexpected \",\" in operand")),
        ("{{ \"abc }}", (1, 4, "unterminated quoted string")),
        ("{{ `abc }}", (1, 4, "unterminated raw quoted string")),
        ("{{ \"\\q\" }}", (1, 4, "unknown escape sequence \\q")),
        ("{{ (1 }}", (1, 7, "unclosed left paren")),
        ("{{ 1) }}", (1, 5, "unexpected right paren")),
        ("{{ 12ab }}", (1, 4, "bad number syntax: \"12a\"")),
        ("{{ 09 }}", (1, 4, "illegal number syntax: \"09\"")),
        (
            "{{ 99999999999999999999 }}",
            (1, 4, "integer overflow: \"99999999999999999999\""),
        ),
        ("x{{/* open", (1, 2, "unclosed comment")),
        (
            "{{/* c */ 1 }}",
            (1, 10, "comment ends before closing delimiter"),
        ),
        ("{{ \"a\".b }}", (1, 7, "unexpected . after term \"a\"")),
        ("{{ .a: }}", (1, 6, "expected :=")),
        ("{{ # }}", (1, 4, "unexpected \"#\" in command")),
        ("{{ é }}", (1, 4, "function \"é\" not defined")),
        (
            "{{ \u{1} }}",
            (1, 4, "unrecognized character in action: U+0001"),
        ),
        ("{{ end 1 }}", (1, 8, "unexpected 1 in {{end}}")),
        (
            "{{ range $i, 1 }}{{ end }}",
            (1, 14, "range can only initialize variables"),
        ),
        (
            "{{ template 1 }}",
            (
                1,
                13,
                "expected a template name (a string) after template, found 1",
            ),
        ),
    ];
    for (src, want) in cases {
        let e = parse_err(src);
        assert_eq!(at(&e), *want, "{src:?}");
    }
}

#[test]
fn error_display() {
    let opts = Options {
        name: "web/config.tpl",
        ..Options::default()
    };
    let e = parse_with("line1\n  {{ nope }}", &opts).unwrap_err();
    assert_eq!(
        e,
        TemplateError {
            name: "web/config.tpl".to_owned(),
            line: 2,
            col: 6,
            message: "function \"nope\" not defined".to_owned(),
        }
    );
    assert_eq!(
        e.to_string(),
        "web/config.tpl:2:6: function \"nope\" not defined"
    );
    // Columns count characters, not bytes.
    let e = parse_with("ééé {{ nope }}", &opts).unwrap_err();
    assert_eq!((e.line, e.col), (1, 8));
}

// ---- robustness ---------------------------------------------------------------------------------------------

#[test]
fn nesting_limits() {
    let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(150), ")".repeat(150));
    assert!(
        parse_err(&deep_parens)
            .message
            .starts_with("template nesting too deep")
    );
    let deep_ifs = format!("{}x{}", "{{ if 1 }}".repeat(150), "{{ end }}".repeat(150));
    assert!(
        parse_err(&deep_ifs)
            .message
            .starts_with("template nesting too deep")
    );
    // Just under the limit works, on a test thread's stack.
    let ok_ifs = format!("{}x{}", "{{ if 1 }}".repeat(99), "{{ end }}".repeat(99));
    assert_eq!(r(&ok_ifs), "x");
    let ok_parens = format!("{{{{ {}1{} }}}}", "(".repeat(99), ")".repeat(99));
    assert_eq!(r(&ok_parens), "1");
    // Recursion through templates with nesting inside each level stops cleanly.
    let nested = format!(
        "{{{{ define \"r\" }}}}{}{{{{ template \"r\" . }}}}{}{{{{ end }}}}{{{{ template \"r\" . }}}}",
        "{{ if 1 }}".repeat(90),
        "{{ end }}".repeat(90)
    );
    assert!(
        render_err(&nested, Value::Null)
            .message
            .starts_with("exceeded maximum nesting depth")
    );
}

/// Parses and, if that works, renders; must never panic.
fn exercise(src: &str) {
    let data = json!({"a": {"b": [1, "x", null]}, "s": "str", "n": 3, "list": [1, 2]});
    if let Ok(t) = Template::parse(src, &Options::default(), &Host::new()) {
        let _ = t.render(&data, &mut Host::new());
    }
}

#[test]
fn malformed_input_never_panics() {
    let snippets = [
        "{{",
        "}}",
        "{{{{",
        "{{}}",
        "{{-",
        "-}}",
        "{{- -}}",
        "{{-}}",
        "{{ - }}",
        "{{ + }}",
        "{{ . }}",
        "{{ .. }}",
        "{{ .a. }}",
        "{{ $ }}",
        "{{ $$ }}",
        "{{ $x. }}",
        "{{ ( }}",
        "{{ ) }}",
        "{{ () }}",
        "{{ (.a }}",
        "{{ .a) }}",
        "{{ | }}",
        "{{ || }}",
        "{{ .a || .b }}",
        "{{ := }}",
        "{{ $x := }}",
        "{{ $x = }}",
        "{{ $x := := 1 }}",
        "{{ \"",
        "{{ `",
        "{{ '",
        "{{ '' }}",
        "{{ 'ab' }}",
        "{{ '\\",
        "{{ \"\\",
        "{{ \"\\u12\" }}",
        "{{ \"\\xZZ\" }}",
        "{{ \"\\777\" }}",
        "{{ \"\\ud800\" }}",
        "{{ 1e }}",
        "{{ 1e+ }}",
        "{{ 0x }}",
        "{{ 0b2 }}",
        "{{ 1.2.3 }}",
        "{{ 1i }}",
        "{{ -0 }}",
        "{{ -9223372036854775808 }}",
        "{{ 18446744073709551615 }}",
        "{{ 1e400 }}",
        "{{ if }}",
        "{{ if 1 }}",
        "{{ if 1 }}{{ else }}",
        "{{ if 1 }}{{ else if }}{{ end }}",
        "{{ else if 1 }}",
        "{{ range }}",
        "{{ range $i, $e, $f := . }}{{ end }}",
        "{{ range $i, $e = . }}{{ end }}",
        "{{ range $i, }}{{ end }}",
        "{{ with }}{{ end }}",
        "{{ end }}",
        "{{ break }}",
        "{{ continue 1 }}",
        "{{ define }}",
        "{{ define \"x\" }}",
        "{{ template }}",
        "{{ block \"x\" }}{{ end }}",
        "{{/*",
        "{{/* */",
        "{{/* */ }}",
        "{{ /* */ }}",
        "{{ index }}",
        "{{ index . -1 }}",
        "{{ index .list 99999999999999 }}",
        "{{ slice .s 0 99 }}",
        "{{ slice .list 1 2 3 4 5 }}",
        "{{ slice .s 1 2 3 }}",
        "{{ printf }}",
        "{{ printf \"%\" }}",
        "{{ printf \"%*.*d\" 1 }}",
        "{{ printf \"%99999999999999999999d\" 1 }}",
        "{{ printf \"%.*f\" -1 1.0 }}",
        "{{ printf \"%c %q %U\" -1 99999999 -5 }}",
        "{{ printf \"%!\" }}",
        "{{ printf \"%[1]d\" 1 }}",
        "{{ len }}",
        "{{ len nil }}",
        "{{ eq }}",
        "{{ lt nil nil }}",
        "{{ add }}",
        "{{ divide 0 0 }}",
        "{{ multiply 9223372036854775807 9223372036854775807 }}",
        "{{ subtract 1 -9223372036854775808 }}",
        "{{ divide -1 -9223372036854775808 }}",
        "{{ modulo -1 -9223372036854775808 }}",
        "{{ multiply 1e300 1e300 }}",
        "{{ indent 99999999999 \"x\" }}",
        "{{ loop 99999999999 }}",
        "{{ loop \"a\" }}",
        "{{ base64Decode \"=\" }}",
        "{{ base64Decode \"/w==\" }}",
        "{{ parseFloat \"inf\" }}",
        "{{ parseFloat \"NaN\" }}",
        "{{ parseJSON \"[[[[\" }}",
        "{{ split \"\" \"abc\" }}",
        "{{ toJSON }}",
        "{{ .a.b.c.d }}",
        "{{ .s.x }}",
        "{{ .n.x.y }}",
        "{{ (.a).b.c }}",
        "{{ (1).x }}",
        "{{ nil.x }}",
        "{{ .a nil }}",
        "{{ $.a.b 1 }}",
        "{{ env.x }}",
        "{{ range .n }}{{ break }}{{ end }}",
        "{{ range -5 }}x{{ end }}",
        "{{ range 1.5 }}{{ end }}",
        "é{{ é",
        "{{ \u{feff} }}",
        "{{ .a\u{0} }}",
        "\u{0}{{ \"\u{0}\" }}",
        "{{- /* x */ -}}",
        "{{- /* x */-}}",
        "{{ 1 -}}",
        "{{ 1 - }}",
        "{{ 1 -}",
        "{{ -}}",
    ];
    for s in snippets {
        exercise(s);
    }
    // Every prefix of a realistic template.
    let full = r#"{{ $x := 1 }}{{ range $i, $e := .a.b }}{{ if eq $i 1 }}{{ break }}{{ else if gt $i 5 }}{{ continue }}{{ end }}{{ printf "%d:%v" $i $e | toUpper }}{{ end }}{{- /* c */ -}}{{ with .s }}{{ . }}{{ else }}none{{ end }}"#;
    for (i, _) in full.char_indices() {
        exercise(&full[..i]);
        exercise(&full[i..]);
    }
}

#[test]
fn random_input_never_panics() {
    // A small xorshift generator keeps the test deterministic without extra crates.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces = [
        "{{", "}}", "{{- ", " -}}", "/*", "*/", " ", "\n", ".", ".a", ".b", "$", "$x", ":=", "=",
        "|", "(", ")", ",", "\"s\"", "`r`", "'c'", "1", "-2", "3.5", "if", "else", "end", "range",
        "with", "break", "continue", "define", "template", "block", "nil", "true", "printf",
        "\"%d\"", "index", "len", "eq", "and", "or", "not", "split", "join", "add", "env", "fail",
        "x", "é", "\\", "\"",
    ];
    for _ in 0..3000 {
        let len = (next() % 24) as usize;
        let mut src = String::new();
        for _ in 0..len {
            src.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        exercise(&src);
    }
    for _ in 0..2000 {
        let len = (next() % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let b = (next() % 256) as u8;
                // Bias towards the characters that matter to the lexer.
                if b.is_multiple_of(3) {
                    b"{}-. $|()\"'`/*\n"[(b as usize / 3) % 15]
                } else {
                    b
                }
            })
            .collect();
        exercise(&String::from_utf8_lossy(&bytes));
    }
}
