//! `drover acl bootstrap|policy|token|role ...`: Nomad's `nomad acl` commands over the ACL
//! API, with its flags and its key = value output.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::{ApiClient, table, urlencoding};
use crate::output::Format;

#[derive(Subcommand)]
pub enum AclCmd {
    /// Creates the first management token (once; see `acl-bootstrap-reset`).
    Bootstrap {
        /// A file holding the secret to use (a UUID); "-" reads standard input.
        secret_file: Option<PathBuf>,
        #[command(flatten)]
        fmt: Format,
    },
    /// ACL policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// ACL tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// ACL roles.
    #[command(subcommand)]
    Role(RoleCmd),
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Creates or replaces policy NAME with the rules in FILE ("-": standard input).
    Apply {
        #[arg(long)]
        description: Option<String>,
        name: String,
        file: PathBuf,
    },
    /// Shows a policy and its rules.
    Info {
        name: String,
        #[command(flatten)]
        fmt: Format,
    },
    /// Lists the policies.
    List {
        #[command(flatten)]
        fmt: Format,
    },
    /// Deletes a policy.
    Delete { name: String },
}

#[derive(clap::Args)]
pub struct TokenFlags {
    #[arg(long)]
    name: Option<String>,
    /// client or management.
    #[arg(long = "type")]
    token_type: Option<String>,
    /// A policy (repeatable).
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// A role by id (repeatable).
    #[arg(long = "role-id")]
    role_ids: Vec<String>,
    /// A role by name (repeatable).
    #[arg(long = "role-name")]
    role_names: Vec<String>,
    #[arg(long)]
    global: bool,
    /// How long the token lives ("1h").
    #[arg(long)]
    ttl: Option<String>,
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Creates a token; its secret is shown this once.
    Create {
        #[command(flatten)]
        flags: TokenFlags,
        #[command(flatten)]
        fmt: Format,
    },
    /// Shows a token by accessor id.
    Info {
        accessor: String,
        #[command(flatten)]
        fmt: Format,
    },
    /// Shows the token the CLI uses (-token, NOMAD_TOKEN).
    #[command(name = "self")]
    Self_ {
        #[command(flatten)]
        fmt: Format,
    },
    /// Lists the tokens.
    List {
        #[command(flatten)]
        fmt: Format,
    },
    /// Changes a token's name, policies or roles.
    Update {
        #[command(flatten)]
        flags: TokenFlags,
        accessor: String,
    },
    /// Deletes a token.
    Delete { accessor: String },
}

#[derive(Subcommand)]
pub enum RoleCmd {
    /// Creates a role linking policies.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "policy")]
        policies: Vec<String>,
        #[command(flatten)]
        fmt: Format,
    },
    /// Shows a role by id (or by name with -by-name).
    Info {
        #[arg(long = "by-name")]
        by_name: bool,
        id: String,
        #[command(flatten)]
        fmt: Format,
    },
    /// Lists the roles.
    List {
        #[command(flatten)]
        fmt: Format,
    },
    /// Changes a role; its policies are added to unless -no-merge.
    Update {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "policy")]
        policies: Vec<String>,
        #[arg(long = "no-merge")]
        no_merge: bool,
        id: String,
    },
    /// Deletes a role.
    Delete { id: String },
}

pub async fn run(c: &ApiClient, cmd: AclCmd) -> anyhow::Result<i32> {
    match cmd {
        AclCmd::Bootstrap { secret_file, fmt } => bootstrap(c, secret_file, &fmt).await,
        AclCmd::Policy(p) => policy(c, p).await,
        AclCmd::Token(t) => token(c, t).await,
        AclCmd::Role(r) => role(c, r).await,
    }
}

/// A file's text, or standard input's for "-".
fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    if path == std::path::Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read standard input")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// Nomad's key = value block.
fn kv(rows: &[(&str, String)]) {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<w$} = {v}");
    }
}

/// `GET path`, printed as `fmt` asks or as a table: `headers`, then a row per item (or
/// `empty` instead, when given and there is none).
async fn print_list(
    c: &ApiClient,
    path: &str,
    fmt: &Format,
    empty: Option<&str>,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> anyhow::Result<()> {
    let list: Vec<Value> = c.get(path).await?;
    if fmt.print(&list)? {
        return Ok(());
    }
    if let Some(e) = empty
        && list.is_empty()
    {
        println!("{e}");
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = vec![headers.iter().map(|h| h.to_string()).collect()];
    rows.extend(list.iter().map(row));
    print!("{}", table(rows));
    Ok(())
}

fn names(v: &Value, key: Option<&str>) -> String {
    let list: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| match key {
            Some(k) => x[k].as_str().map(str::to_string),
            None => x.as_str().map(str::to_string),
        })
        .collect();
    if list.is_empty() {
        "n/a".into()
    } else {
        format!("[{}]", list.join(" "))
    }
}

fn print_token(t: &Value) {
    let secret = match s(t, "SecretID") {
        "" => "<not readable: shown only at creation>".to_string(),
        s => s.to_string(),
    };
    kv(&[
        ("Accessor ID", s(t, "AccessorID").into()),
        ("Secret ID", secret),
        ("Name", s(t, "Name").into()),
        ("Type", s(t, "Type").into()),
        ("Global", t["Global"].as_bool().unwrap_or(false).to_string()),
        ("Create Time", s(t, "CreateTime").into()),
        (
            "Expiry Time",
            t["ExpirationTime"].as_str().unwrap_or("<none>").into(),
        ),
        ("Create Index", t["CreateIndex"].to_string()),
        ("Modify Index", t["ModifyIndex"].to_string()),
        ("Policies", names(&t["Policies"], None)),
        ("Roles", names(&t["Roles"], Some("Name"))),
    ]);
}

async fn bootstrap(c: &ApiClient, file: Option<PathBuf>, fmt: &Format) -> anyhow::Result<i32> {
    let body = match file {
        Some(f) => json!({ "BootstrapSecret": read_input(&f)?.trim() }),
        None => json!({}),
    };
    let t: Value = c
        .send(reqwest::Method::POST, "/v1/acl/bootstrap", Some(&body))
        .await?;
    if !fmt.print(&t)? {
        print_token(&t);
    }
    Ok(0)
}

async fn policy(c: &ApiClient, cmd: PolicyCmd) -> anyhow::Result<i32> {
    match cmd {
        PolicyCmd::Apply {
            description,
            name,
            file,
        } => {
            let rules = read_input(&file)?;
            let body = json!({
                "Name": name,
                "Description": description.unwrap_or_default(),
                "Rules": rules,
            });
            let path = format!("/v1/acl/policy/{}", urlencoding(&name));
            let resp = c.request(reqwest::Method::POST, &path, Some(&body)).await?;
            c.check(resp, &format!("POST {path}")).await?;
            println!("Successfully wrote {name:?} ACL policy!");
        }
        PolicyCmd::Info { name, fmt } => {
            let p: Value = c
                .get(&format!("/v1/acl/policy/{}", urlencoding(&name)))
                .await?;
            if !fmt.print(&p)? {
                kv(&[
                    ("Name", s(&p, "Name").into()),
                    ("Description", s(&p, "Description").into()),
                    ("CreateIndex", p["CreateIndex"].to_string()),
                    ("ModifyIndex", p["ModifyIndex"].to_string()),
                ]);
                println!("\nRules\n\n{}", s(&p, "Rules"));
            }
        }
        PolicyCmd::List { fmt } => {
            print_list(
                c,
                "/v1/acl/policies",
                &fmt,
                Some("No policies found"),
                &["Name", "Description"],
                |p| vec![s(p, "Name").into(), s(p, "Description").into()],
            )
            .await?;
        }
        PolicyCmd::Delete { name } => {
            c.call(
                reqwest::Method::DELETE,
                &format!("/v1/acl/policy/{}", urlencoding(&name)),
            )
            .await?;
            println!("Successfully deleted {name:?} ACL policy!");
        }
    }
    Ok(0)
}

fn token_body(f: &TokenFlags) -> Value {
    let roles: Vec<Value> = f
        .role_ids
        .iter()
        .map(|id| json!({ "ID": id }))
        .chain(f.role_names.iter().map(|n| json!({ "Name": n })))
        .collect();
    let mut body = json!({
        "Name": f.name.clone().unwrap_or_default(),
        "Type": f.token_type.clone().unwrap_or_else(|| "client".into()),
        "Policies": f.policies,
        "Roles": roles,
        "Global": f.global,
    });
    if let Some(ttl) = &f.ttl {
        body["ExpirationTTL"] = json!(ttl);
    }
    body
}

async fn token(c: &ApiClient, cmd: TokenCmd) -> anyhow::Result<i32> {
    let show = |t: &Value, fmt: &Format| -> anyhow::Result<()> {
        if !fmt.print(t)? {
            print_token(t);
        }
        Ok(())
    };
    match cmd {
        TokenCmd::Create { flags, fmt } => {
            let t: Value = c
                .send(
                    reqwest::Method::POST,
                    "/v1/acl/token",
                    Some(&token_body(&flags)),
                )
                .await?;
            show(&t, &fmt)?;
        }
        TokenCmd::Info { accessor, fmt } => {
            let t: Value = c
                .get(&format!("/v1/acl/token/{}", urlencoding(&accessor)))
                .await?;
            show(&t, &fmt)?;
        }
        TokenCmd::Self_ { fmt } => {
            let t: Value = c.get("/v1/acl/token/self").await?;
            show(&t, &fmt)?;
        }
        TokenCmd::List { fmt } => {
            let now = drover_model::now_nanos();
            print_list(
                c,
                "/v1/acl/tokens",
                &fmt,
                None,
                &["Name", "Type", "Global", "Accessor ID", "Expired"],
                |t| {
                    let expired = t["ExpirationTime"]
                        .as_str()
                        .and_then(drover_model::serde_fmt::parse)
                        .is_some_and(|e| e <= now);
                    vec![
                        s(t, "Name").into(),
                        s(t, "Type").into(),
                        t["Global"].as_bool().unwrap_or(false).to_string(),
                        s(t, "AccessorID").into(),
                        expired.to_string(),
                    ]
                },
            )
            .await?;
        }
        TokenCmd::Update { flags, accessor } => {
            let path = format!("/v1/acl/token/{}", urlencoding(&accessor));
            let old: Value = c.get(&path).await?;
            let mut body = token_body(&flags);
            body["AccessorID"] = json!(accessor);
            if flags.name.is_none() {
                body["Name"] = old["Name"].clone();
            }
            if flags.token_type.is_none() {
                body["Type"] = old["Type"].clone();
            }
            if flags.policies.is_empty() && flags.role_ids.is_empty() && flags.role_names.is_empty()
            {
                body["Policies"] = old["Policies"].clone();
                body["Roles"] = old["Roles"].clone();
            }
            let t: Value = c.send(reqwest::Method::POST, &path, Some(&body)).await?;
            print_token(&t);
        }
        TokenCmd::Delete { accessor } => {
            c.call(
                reqwest::Method::DELETE,
                &format!("/v1/acl/token/{}", urlencoding(&accessor)),
            )
            .await?;
            println!("Token {accessor} successfully deleted");
        }
    }
    Ok(0)
}

fn print_role(r: &Value) {
    kv(&[
        ("ID", s(r, "ID").into()),
        ("Name", s(r, "Name").into()),
        ("Description", s(r, "Description").into()),
        ("Policies", names(&r["Policies"], Some("Name"))),
        ("Create Index", r["CreateIndex"].to_string()),
        ("Modify Index", r["ModifyIndex"].to_string()),
    ]);
}

async fn role(c: &ApiClient, cmd: RoleCmd) -> anyhow::Result<i32> {
    let links = |p: &[String]| -> Vec<Value> { p.iter().map(|n| json!({ "Name": n })).collect() };
    match cmd {
        RoleCmd::Create {
            name,
            description,
            policies,
            fmt,
        } => {
            if policies.is_empty() {
                bail!("at least one -policy is required");
            }
            let body = json!({
                "Name": name,
                "Description": description.unwrap_or_default(),
                "Policies": links(&policies),
            });
            let r: Value = c
                .send(reqwest::Method::POST, "/v1/acl/role", Some(&body))
                .await?;
            if !fmt.print(&r)? {
                print_role(&r);
            }
        }
        RoleCmd::Info { by_name, id, fmt } => {
            let path = if by_name {
                format!("/v1/acl/role/name/{}", urlencoding(&id))
            } else {
                format!("/v1/acl/role/{}", urlencoding(&id))
            };
            let r: Value = c.get(&path).await?;
            if !fmt.print(&r)? {
                print_role(&r);
            }
        }
        RoleCmd::List { fmt } => {
            print_list(
                c,
                "/v1/acl/roles",
                &fmt,
                Some("No ACL roles found"),
                &["ID", "Name", "Description", "Policies"],
                |r| {
                    vec![
                        s(r, "ID").into(),
                        s(r, "Name").into(),
                        s(r, "Description").into(),
                        names(&r["Policies"], Some("Name")),
                    ]
                },
            )
            .await?;
        }
        RoleCmd::Update {
            name,
            description,
            policies,
            no_merge,
            id,
        } => {
            let path = format!("/v1/acl/role/{}", urlencoding(&id));
            let old: Value = c.get(&path).await?;
            let mut all: Vec<String> = if no_merge {
                Vec::new()
            } else {
                old["Policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["Name"].as_str().map(str::to_string))
                    .collect()
            };
            all.extend(policies);
            let body = json!({
                "ID": id,
                "Name": name.unwrap_or_else(|| s(&old, "Name").into()),
                "Description": description.unwrap_or_else(|| s(&old, "Description").into()),
                "Policies": links(&all),
            });
            let r: Value = c.send(reqwest::Method::POST, &path, Some(&body)).await?;
            print_role(&r);
        }
        RoleCmd::Delete { id } => {
            c.call(
                reqwest::Method::DELETE,
                &format!("/v1/acl/role/{}", urlencoding(&id)),
            )
            .await?;
            println!("ACL role {id} successfully deleted");
        }
    }
    Ok(0)
}
