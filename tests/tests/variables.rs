//! Variables on a real server: Nomad's `/v1/var` API with check-and-set, the `drover var`
//! commands, and clear errors for bad input. (Snapshots carrying variables: cluster.rs.)

use drover_tests::*;
use reqwest::blocking::Client;
use serde_json::{Value, json};

fn send(method: reqwest::Method, agent: &Agent, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = Client::new().request(method, format!("{}{path}", agent.address()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().unwrap();
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn put(agent: &Agent, path: &str, body: Value) -> (u16, Value) {
    send(reqwest::Method::PUT, agent, path, Some(body))
}

#[test]
fn variables_api_and_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Agent::start(
        &["-server"],
        &tmp.path().join("server"),
        free_port(),
        free_port(),
    );
    server.wait_ready();

    // Create only if absent (cas=0), then read it back.
    let (code, v) = put(
        &server,
        "/v1/var/app/db?cas=0",
        json!({ "Items": { "user": "app", "password": "s3cret" } }),
    );
    assert_eq!(code, 200, "{v}");
    let created = v["ModifyIndex"].as_u64().unwrap();
    assert_eq!(v["Path"], "app/db");
    assert_eq!(v["Namespace"], "default");
    let got = server.get("/v1/var/app/db").unwrap();
    assert_eq!(got["Items"]["password"], "s3cret");
    assert_eq!(got["CreateIndex"].as_u64(), Some(created));

    // A second create loses: 409 with the current variable; nothing changes.
    let (code, v) = put(
        &server,
        "/v1/var/app/db?cas=0",
        json!({ "Items": { "x": "y" } }),
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["Items"]["password"], "s3cret");
    // The right index wins, a stale one loses.
    let (code, v) = put(
        &server,
        &format!("/v1/var/app/db?cas={created}"),
        json!({ "Items": { "password": "n3w" } }),
    );
    assert_eq!(code, 200, "{v}");
    let (code, _) = put(
        &server,
        &format!("/v1/var/app/db?cas={created}"),
        json!({ "Items": { "password": "stale" } }),
    );
    assert_eq!(code, 409);
    assert_eq!(
        server.get("/v1/var/app/db").unwrap()["Items"]["password"],
        "n3w"
    );

    // Listing by prefix gives metadata without items.
    put(&server, "/v1/var/other", json!({ "Items": { "k": "v" } }));
    let list = server.get("/v1/vars?prefix=app").unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["Path"], "app/db");
    assert!(list[0].get("Items").is_none());

    // Bad input is refused with the reason.
    let (code, v) = put(
        &server,
        "/v1/var/bad%20path",
        json!({ "Items": { "k": "v" } }),
    );
    assert_eq!(code, 400);
    assert!(v.as_str().unwrap().contains("only letters, digits"), "{v}");
    let (code, v) = put(&server, "/v1/var/empty", json!({ "Items": {} }));
    assert_eq!(code, 400);
    assert!(v.as_str().unwrap().contains("no items"), "{v}");
    let (code, v) = put(&server, "/v1/var/typed", json!({ "Items": { "n": 5 } }));
    assert_eq!(code, 400);
    assert!(v.as_str().unwrap().contains("invalid variable"), "{v}");
    let (code, _) = send(reqwest::Method::GET, &server, "/v1/var/missing", None);
    assert_eq!(code, 404);

    // The CLI.
    let ok = |args: &[&str]| {
        let out = server.cli(args);
        assert!(
            out.status.success(),
            "drover {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(&["var", "put", "cli/one", "a=1", "b=two"]);
    assert_eq!(ok(&["var", "get", "-item", "b", "cli/one"]).trim(), "two");
    let text = ok(&["var", "get", "cli/one"]);
    assert!(text.contains("a") && text.contains("1"), "{text}");
    let text = ok(&["var", "list", "cli"]);
    assert!(
        text.contains("cli/one") && !text.contains("app/db"),
        "{text}"
    );
    let out = server.cli(&["var", "put", "-check-index", "0", "cli/one", "a=2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("check-and-set conflict"), "{err}");
    let out = server.cli(&["var", "put", "cli/two", "novalue"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not KEY=VALUE"));
    ok(&["var", "purge", "cli/one"]);
    let (code, _) = send(reqwest::Method::GET, &server, "/v1/var/cli/one", None);
    assert_eq!(code, 404);
}
