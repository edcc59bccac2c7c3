//! drover-template against gtmpl, the existing Rust implementation of Go's text/template:
//! which of Go's features each renders as Go does (25 cases, Go's output written beside
//! each), what a parse error says, and render and parse time of a Nomad-style template both
//! render identically. docs/ARCHITECTURE.md cites these figures for why the engine is our own.
use serde_json::{Value as J, json};
use std::time::Instant;

struct NoFuncs;
impl drover_template::Functions for NoFuncs {
    fn call(&mut self, _: &str, _: &[J]) -> Option<Result<J, String>> {
        None
    }
    fn has(&self, _: &str) -> bool {
        false
    }
}

// gtmpl's maps are std HashMaps (its order is part of what is measured).
#[allow(clippy::disallowed_types)]
fn g(v: &J) -> gtmpl::Value {
    match v {
        J::Null => gtmpl::Value::Nil,
        J::Bool(b) => gtmpl::Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                gtmpl::Value::from(i)
            } else {
                gtmpl::Value::from(n.as_f64().unwrap())
            }
        }
        J::String(s) => gtmpl::Value::String(s.clone()),
        J::Array(a) => gtmpl::Value::Array(a.iter().map(g).collect()),
        J::Object(o) => gtmpl::Value::Map(o.iter().map(|(k, v)| (k.clone(), g(v))).collect()),
    }
}

fn ours(src: &str, data: &J) -> Result<String, String> {
    let t = drover_template::Template::parse(src, &drover_template::Options::default(), &NoFuncs)
        .map_err(|e| e.to_string())?;
    t.render(data, &mut NoFuncs).map_err(|e| e.to_string())
}
fn theirs(src: &str, data: &J) -> Result<String, String> {
    let mut t = gtmpl::Template::default();
    t.parse(src).map_err(|e| e.to_string())?;
    t.render(&gtmpl::Context::from(g(data)))
        .map_err(|e| e.to_string())
}

fn main() {
    let d =
        json!({"a": "x", "l": [1, 2, 3], "m": {"b": 2, "a": 1}, "ports": [80, 443], "empty": []});
    // (feature, template, Go's output)
    let cases: &[(&str, &str, &str)] = &[
        ("field", "{{ .a }}", "x"),
        ("trim markers", "a  {{- .a -}}  b", "axb"),
        ("comment", "{{/* c */}}ok", "ok"),
        (
            "range with index",
            "{{ range $i, $p := .ports }}{{ $i }}:{{ $p }} {{ end }}",
            "0:80 1:443 ",
        ),
        (
            "range map in key order",
            "{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}",
            "a=1;b=2;",
        ),
        (
            "range else",
            "{{ range .empty }}x{{ else }}none{{ end }}",
            "none",
        ),
        (
            "range over an integer (Go 1.22)",
            "{{ range 3 }}{{ . }}{{ end }}",
            "012",
        ),
        (
            "break",
            "{{ range .l }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            "1",
        ),
        (
            "continue",
            "{{ range .l }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            "13",
        ),
        (
            "if / else if",
            "{{ if eq .a \"y\" }}y{{ else if eq .a \"x\" }}yes{{ else }}no{{ end }}",
            "yes",
        ),
        (
            "else with (Go 1.23)",
            "{{ with .missing }}a{{ else with .a }}b{{ end }}",
            "b",
        ),
        (
            "variable assignment in scope",
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
            "2",
        ),
        (
            "define / template",
            "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" .a }}",
            "[x]",
        ),
        ("block", "{{ block \"b\" .a }}<{{ . }}>{{ end }}", "<x>"),
        (
            "printf verbs",
            "{{ printf \"%05.1f|%-4s|%x\" 3.14159 \"ab\" 255 }}",
            "003.1|ab  |ff",
        ),
        ("printf %q via pipe", "{{ .a | printf \"%q\" }}", "\"x\""),
        (
            "len / index",
            "{{ len .l }} {{ index .l 1 }} {{ index .m \"a\" }}",
            "3 2 1",
        ),
        ("slice", "{{ slice .l 1 2 }}", "[2]"),
        (
            "and / or / not",
            "{{ and 1 0 }} {{ or 0 \"\" \"z\" }} {{ not true }}",
            "0 z false",
        ),
        (
            "comparisons",
            "{{ lt 1 2 }} {{ ge 2.5 2.5 }} {{ ne \"a\" \"b\" }}",
            "true true true",
        ),
        (
            "eq with several operands",
            "{{ eq .a \"q\" \"x\" }}",
            "true",
        ),
        ("missing map key", "{{ .m.zz }}", "<no value>"),
        (
            "html / urlquery / js",
            "{{ html \"<a>\" }} {{ urlquery \"a b\" }} {{ js \"it's\" }}",
            "&lt;a&gt; a+b it\\'s",
        ),
        ("print spacing", "{{ print 1 2 \"a\" \"b\" 3 }}", "1 2ab3"),
        ("parenthesised pipeline field", "{{ (index .l 0) }}", "1"),
    ];
    let (mut o_ok, mut t_ok) = (0, 0);
    for (what, src, want) in cases {
        let o = ours(src, &d);
        let t = theirs(src, &d);
        let om = o.as_deref() == Ok(*want);
        let tm = t.as_deref() == Ok(*want);
        o_ok += om as u32;
        t_ok += tm as u32;
        println!(
            "{:<34} ours={:<5} gtmpl={:<5} gtmpl gave {:?}",
            what, om, tm, t
        );
    }
    println!("BENCH template_go_cases_drover {o_ok} of_{}", cases.len());
    println!("BENCH template_go_cases_gtmpl {t_ok} of_{}", cases.len());

    // Error positions.
    let bad = "line1\n{{ if .a }}\nunclosed";
    println!("ERR ours: {:?}", ours(bad, &d).err());
    println!("ERR gtmpl: {:?}", theirs(bad, &d).err());

    // Speed: a representative template both engines render identically.
    let services: Vec<J> = (0..50).map(|i| json!({"name": format!("web-{i}"), "addr": format!("10.0.0.{i}"), "port": 20000 + i, "backup": i % 5 == 0})).collect();
    let data = json!({"services": services, "job": "web"});
    let src = "# {{ .job }}\n{{ range $i, $s := .services }}server {{ $s.name }} {{ $s.addr }}:{{ $s.port }}{{ if $s.backup }} backup{{ end }}\n{{ end }}";
    assert_eq!(ours(src, &data).unwrap(), theirs(src, &data).unwrap());
    let n = 2000;
    let pt = drover_template::Template::parse(src, &drover_template::Options::default(), &NoFuncs)
        .unwrap();
    let mut gt = gtmpl::Template::default();
    gt.parse(src).unwrap();
    let gctx = gtmpl::Context::from(g(&data));
    for round in 0..3 {
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(pt.render(&data, &mut NoFuncs).unwrap());
        }
        let ours_ns = t0.elapsed().as_nanos() / n as u128;
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(gt.render(&gctx).unwrap());
        }
        let g_ns = t0.elapsed().as_nanos() / n as u128;
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(
                drover_template::Template::parse(
                    src,
                    &drover_template::Options::default(),
                    &NoFuncs,
                )
                .unwrap(),
            );
        }
        let op = t0.elapsed().as_nanos() / n as u128;
        let t0 = Instant::now();
        for _ in 0..n {
            let mut t = gtmpl::Template::default();
            t.parse(src).unwrap();
            std::hint::black_box(t);
        }
        let gp = t0.elapsed().as_nanos() / n as u128;
        if round == 2 {
            println!("BENCH template_render_50_services_drover {ours_ns} ns");
            println!("BENCH template_render_50_services_gtmpl {g_ns} ns");
            println!("BENCH template_parse_drover {op} ns");
            println!("BENCH template_parse_gtmpl {gp} ns");
        }
    }
}
