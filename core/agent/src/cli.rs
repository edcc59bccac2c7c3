//! The CLI: Nomad's verbs against the HTTP API.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use drover_api_types as api;
use futures::StreamExt;

use crate::ids::{Kind, resolve};
use crate::output::Format;

pub use crate::api_client::ApiClient;

/// Exit code for "the request was fine but the thing failed" (as Nomad uses 2 for job run
/// placement failures).
pub const EXIT_PLACEMENT_FAILED: i32 = 2;

/// Reads a jobspec: HCL, or API JSON with `json`. Every error of an HCL file is in the
/// error, one per line.
pub fn load_job(
    path: &Path,
    json: bool,
    vars: &drover_jobspec::Variables,
) -> anyhow::Result<drover_jobspec::Parsed> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if json || path.extension().is_some_and(|e| e == "json") {
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: invalid JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        let bare = v.get("Job").is_none();
        let job = api::decode_job(text.as_bytes(), bare)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(drover_jobspec::Parsed {
            job,
            warnings: vec![],
            compatibility: vec![],
        });
    }
    Ok(drover_jobspec::parse_checked(
        &text,
        &path.display().to_string(),
        vars,
        &crate::driver_schemas::task_config_schema,
    )?)
}

/// Prints what a jobspec's parse warned about, with its compatibility rewrites.
fn print_warnings(parsed: &drover_jobspec::Parsed) {
    for w in parsed.warnings.iter().chain(&parsed.compatibility) {
        eprintln!("Warning: {w}");
    }
}

/// Why placements failed, in plain words: the filters, the exhausted dimensions and the
/// node that came nearest.
fn explain(m: &api::PlacementFailure, indent: &str) {
    for (reason, n) in &m.constraint_filtered {
        println!("{indent}* {n} node(s) filtered: {reason}");
    }
    for (dim, n) in &m.dimension_exhausted {
        println!("{indent}* {n} node(s) out of {dim}");
    }
    if !m.nearest_miss.is_empty() {
        println!("{indent}* nearest miss: {}", m.nearest_miss);
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

pub(crate) fn table(rows: Vec<Vec<String>>) -> String {
    let mut widths = vec![0; rows.first().map(|r| r.len()).unwrap_or(0)];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub async fn job_run(
    c: &ApiClient,
    file: &Path,
    detach: bool,
    json: bool,
    vars: &drover_jobspec::Variables,
) -> anyhow::Result<i32> {
    let parsed = load_job(file, json, vars)?;
    print_warnings(&parsed);
    let job = parsed.job;
    let body = serde_json::json!({ "Job": job });
    let resp: api::JobRegisterResponse = c
        .send(reqwest::Method::POST, "/v1/jobs", Some(&body))
        .await?;
    if resp.eval_id.is_empty() {
        // A periodic or parameterized parent: nothing is placed for it (Nomad's behaviour).
        println!("Job registration successful");
        println!(
            "Job {:?} is a periodic or parameterized parent: it is not placed itself and waits to launch children",
            job.id
        );
        return Ok(0);
    }
    if detach {
        println!("Job registration successful");
        println!("Evaluation ID: {}", resp.eval_id);
        return Ok(0);
    }
    println!("==> Monitoring evaluation \"{}\"", short(&resp.eval_id));
    monitor_eval(c, &resp.eval_id).await
}

/// Follows an evaluation until it completes and prints what it placed (Nomad's monitor).
pub async fn monitor_eval(c: &ApiClient, eval_id: &str) -> anyhow::Result<i32> {
    let mut index = 0u64;
    let eval = loop {
        let e: api::Evaluation = c
            .get(&format!("/v1/evaluation/{eval_id}?index={index}&wait=5s"))
            .await?;
        index = e.modify_index;
        if e.status != drover_model::EvalStatus::Pending {
            break e;
        }
    };
    println!("    Evaluation triggered by job \"{}\"", eval.job_id);
    let allocs: Vec<api::Allocation> = c
        .get(&format!(
            "/v1/job/{}/allocations?namespace={}",
            eval.job_id, eval.namespace
        ))
        .await?;
    for a in allocs.iter().filter(|a| a.eval_id == eval.id) {
        println!(
            "    Allocation \"{}\" created: node \"{}\", group \"{}\"",
            short(&a.id),
            short(&a.node_id),
            a.task_group
        );
    }
    println!(
        "==> Evaluation \"{}\" finished with status \"{}\"",
        short(&eval.id),
        eval.status.as_str()
    );
    if eval.failed_tg_allocs.is_empty() {
        return Ok(0);
    }
    println!("==> Failed to place all allocations:");
    for (g, m) in &eval.failed_tg_allocs {
        println!(
            "    Task Group \"{g}\" (failed to place {} allocation(s)):",
            m.coalesced_failures + 1
        );
        explain(m, "      ");
    }
    Ok(EXIT_PLACEMENT_FAILED)
}

pub async fn job_status(c: &ApiClient, id: Option<&str>, fmt: &Format) -> anyhow::Result<i32> {
    let Some(id) = id else {
        let jobs: Vec<api::JobListStub> = c.get("/v1/jobs").await?;
        if fmt.print(&jobs)? {
            return Ok(0);
        }
        if jobs.is_empty() {
            println!("No running jobs");
            return Ok(0);
        }
        let mut rows = vec![vec![
            "ID".into(),
            "Type".into(),
            "Priority".into(),
            "Status".into(),
            "Submit Date".into(),
        ]];
        for j in jobs {
            rows.push(vec![
                j.id,
                j.job_type,
                j.priority.to_string(),
                j.status,
                j.submit_time.to_string(),
            ]);
        }
        print!("{}", table(rows));
        return Ok(0);
    };
    let id = resolve(c, Kind::Job, id).await?;
    let job: api::Job = c.get(&format!("/v1/job/{id}")).await?;
    let allocs: Vec<api::Allocation> = c.get(&format!("/v1/job/{id}/allocations")).await?;
    if fmt.print(&serde_json::json!({"Job": job, "Allocations": allocs}))? {
        return Ok(0);
    }
    println!("ID            = {}", job.id);
    println!("Name          = {}", job.name);
    println!("Type          = {}", job.job_type.as_str());
    println!("Priority      = {}", job.priority);
    println!("Datacenters   = {}", job.datacenters.join(","));
    println!("Namespace     = {}", job.namespace);
    println!("Status        = {}", job.status.as_str());
    println!("Version       = {}", job.version);
    println!("Periodic      = {}", job.periodic.is_some());
    println!("Parameterized = {}", job.parameterized.is_some());
    if job.is_parent() {
        println!(
            "\nThis job is a {} parent: it is never placed itself; it waits to launch children",
            if job.periodic.is_some() {
                "periodic"
            } else {
                "parameterized"
            }
        );
    }
    let evals: Vec<api::Evaluation> = c.get(&format!("/v1/job/{id}/evaluations")).await?;
    if let Some(e) = evals
        .iter()
        .filter(|e| !e.failed_tg_allocs.is_empty())
        .max_by_key(|e| e.create_index)
    {
        println!("\nPlacement Failure");
        for (g, m) in &e.failed_tg_allocs {
            println!(
                "Task Group \"{g}\": {}",
                if m.nearest_miss.is_empty() {
                    "no node fits".into()
                } else {
                    m.nearest_miss.clone()
                }
            );
        }
    }
    println!("\nAllocations");
    print!("{}", alloc_table(&allocs, false));
    Ok(0)
}

pub async fn job_stop(c: &ApiClient, id: &str, purge: bool, detach: bool) -> anyhow::Result<i32> {
    let id = resolve(c, Kind::Job, id).await?;
    let resp: api::JobDeregisterResponse = c
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/job/{id}?purge={purge}"),
            None,
        )
        .await?;
    if detach {
        println!("{}", resp.eval_id);
        return Ok(0);
    }
    println!("==> Monitoring evaluation \"{}\"", short(&resp.eval_id));
    monitor_eval(c, &resp.eval_id).await
}

pub async fn alloc_status(
    c: &ApiClient,
    id: &str,
    fmt: &Format,
    stats: bool,
) -> anyhow::Result<i32> {
    let id = resolve(c, Kind::Alloc, id).await?;
    let a: api::Allocation = c.get(&format!("/v1/allocation/{id}")).await?;
    let usage: Option<serde_json::Value> =
        if stats && a.client_status == drover_model::ClientStatus::Running {
            Some(
                c.get(&format!("/v1/client/allocation/{}/stats", a.id))
                    .await?,
            )
        } else {
            None
        };
    let mut v = serde_json::to_value(&a)?;
    if let Some(u) = &usage {
        v["ResourceUsage"] = u.clone();
    }
    if fmt.print(&v)? {
        return Ok(0);
    }
    println!("ID                  = {}", a.id);
    println!("Eval ID             = {}", short(&a.eval_id));
    println!("Name                = {}", a.name);
    println!("Node ID             = {}", short(&a.node_id));
    println!("Node Name           = {}", a.node_name);
    println!("Job ID              = {}", a.job_id);
    println!("Job Version         = {}", a.job_version);
    println!("Client Status       = {}", a.client_status);
    println!("Client Description  = {}", a.client_description);
    println!("Desired Status      = {}", a.desired_status);
    println!("Desired Description = {}", a.desired_description);
    let task_limits = |name: &str| {
        a.job
            .as_ref()
            .and_then(|j| j.group(&a.task_group))
            .and_then(|g| g.tasks.iter().find(|t| t.name == name))
            .map(|t| (t.resources.cpu, t.resources.memory_mb))
    };
    for (name, t) in &a.task_states {
        println!("\nTask \"{name}\" is \"{}\"", t.state);
        if let Some(u) = usage.as_ref().and_then(|u| u["Tasks"].get(name)) {
            let r = &u["ResourceUsage"];
            let (cpu, mem) = task_limits(name).unwrap_or_default();
            let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
            println!("Task Resources:");
            print!(
                "{}",
                table(vec![
                    vec![
                        "CPU".into(),
                        "Memory".into(),
                        "CPU Percent".into(),
                        "User Mode".into(),
                        "System Mode".into(),
                    ],
                    vec![
                        format!("{:.0}/{cpu} MHz", f(&r["CpuStats"]["TotalTicks"])),
                        format!(
                            "{:.1} MiB/{mem} MiB",
                            f(&r["MemoryStats"]["RSS"]) / (1024.0 * 1024.0)
                        ),
                        format!("{:.2}%", f(&r["CpuStats"]["Percent"])),
                        format!("{:.2}%", f(&r["CpuStats"]["UserMode"])),
                        format!("{:.2}%", f(&r["CpuStats"]["SystemMode"])),
                    ],
                ])
            );
        }
        let mut rows = vec![vec!["Time".into(), "Type".into(), "Description".into()]];
        for e in t.events.iter().rev() {
            let mut desc = e.display_message.clone();
            if e.kind == "Terminated" && e.oom_killed {
                desc.push_str(", OOM Killed");
            }
            rows.push(vec![e.time.to_string(), e.kind.clone(), desc]);
        }
        print!("{}", table(rows));
    }
    Ok(0)
}

pub struct LogsArgs<'a> {
    pub alloc: &'a str,
    pub task: Option<&'a str>,
    pub stderr: bool,
    pub follow: bool,
    pub tail: bool,
    pub lines: Option<usize>,
}

pub async fn alloc_logs(c: &ApiClient, args: LogsArgs<'_>) -> anyhow::Result<i32> {
    let id = resolve(c, Kind::Alloc, args.alloc).await?;
    let a: api::Allocation = c.get(&format!("/v1/allocation/{id}")).await?;
    let task = match args.task {
        Some(t) => t.to_string(),
        None => {
            let names: Vec<&String> = a.task_states.keys().collect();
            let group_tasks: Vec<String> = a
                .job
                .as_ref()
                .and_then(|j| j.group(&a.task_group))
                .map(|g| g.tasks.iter().map(|t| t.name.clone()).collect())
                .unwrap_or_default();
            match group_tasks.as_slice() {
                [one] => one.clone(),
                _ if names.len() == 1 => names[0].clone(),
                _ => bail!(
                    "allocation {} has several tasks ({}): name one",
                    short(&a.id),
                    group_tasks.join(", ")
                ),
            }
        }
    };
    let kind = if args.stderr { "stderr" } else { "stdout" };
    // -tail without -n shows the last 10 lines' worth of bytes generously; -n counts lines.
    let (origin, offset) = if args.tail || args.lines.is_some() {
        ("end", 64 * 1024)
    } else {
        ("start", 0)
    };
    let path = format!(
        "/v1/client/fs/logs/{}?task={task}&type={kind}&follow={}&origin={origin}&offset={offset}&plain=true",
        a.id, args.follow
    );
    let resp = c.stream(&path).await?;
    let mut out = std::io::stdout();
    if let Some(n) = args.lines.filter(|_| !args.follow) {
        let body = resp.bytes().await?;
        let text = String::from_utf8_lossy(&body);
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(n)..] {
            writeln!(out, "{l}")?;
        }
        return Ok(0);
    }
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk.context("log stream broke")?)?;
        out.flush()?;
    }
    Ok(0)
}

/// `node status`: every node, or one (by id or prefix) with its drivers and allocations.
pub async fn node_status(c: &ApiClient, node: Option<&str>, fmt: &Format) -> anyhow::Result<i32> {
    if let Some(prefix) = node {
        return node_detail(c, prefix, fmt).await;
    }
    let nodes: Vec<api::Node> = c.get("/v1/nodes").await?;
    if fmt.print(&nodes)? {
        return Ok(0);
    }
    let mut rows = vec![vec![
        "ID".into(),
        "DC".into(),
        "Name".into(),
        "Class".into(),
        "Drivers".into(),
        "Status".into(),
    ]];
    for n in nodes {
        let drivers: Vec<String> = n
            .drivers
            .iter()
            .filter(|(_, d)| d.healthy)
            .map(|(k, _)| k.clone())
            .collect();
        rows.push(vec![
            short(&n.id).into(),
            n.datacenter,
            n.name,
            if n.node_class.is_empty() {
                "<none>".into()
            } else {
                n.node_class
            },
            drivers.join(","),
            n.status.to_string(),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}

async fn node_detail(c: &ApiClient, prefix: &str, fmt: &Format) -> anyhow::Result<i32> {
    let id = resolve(c, Kind::Node, prefix).await?;
    let n: api::Node = c.get(&format!("/v1/node/{id}")).await?;
    let allocs: Vec<api::Allocation> = c.get(&format!("/v1/node/{id}/allocations")).await?;
    if fmt.print(&n)? {
        return Ok(0);
    }
    let list = |pick: &dyn Fn(&drover_model::DriverInfo) -> bool| {
        let names: Vec<&str> = n
            .drivers
            .iter()
            .filter(|(_, d)| pick(d))
            .map(|(k, _)| k.as_str())
            .collect();
        if names.is_empty() {
            "<none>".to_string()
        } else {
            names.join(",")
        }
    };
    let class = if n.node_class.is_empty() {
        "<none>"
    } else {
        &n.node_class
    };
    let rows: [(&str, String); 11] = [
        ("ID", n.id.clone()),
        ("Name", n.name.clone()),
        ("Node Pool", n.node_pool.clone()),
        ("Class", class.into()),
        ("DC", n.datacenter.clone()),
        ("Drain", n.drain.to_string()),
        ("Eligibility", n.scheduling_eligibility.to_string()),
        ("Status", n.status.to_string()),
        ("Address", n.http_addr.clone()),
        ("Drivers", list(&|d| d.detected && d.healthy)),
        ("Unhealthy Drivers", list(&|d| d.detected && !d.healthy)),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<w$} = {v}");
    }
    let unhealthy: Vec<String> = n
        .drivers
        .iter()
        .filter(|(_, d)| d.detected && !d.healthy && !d.health_description.is_empty())
        .map(|(k, d)| format!("  {k}: {}", d.health_description))
        .collect();
    if !unhealthy.is_empty() {
        println!("\nDriver Status\n{}", unhealthy.join("\n"));
    }
    println!(
        "\nNode Resources\nCPU {} MHz, Memory {} MiB, Disk {} MiB (reserved: CPU {} MHz, Memory {} MiB, Disk {} MiB)",
        n.resources.cpu,
        n.resources.memory_mb,
        n.resources.disk_mb,
        n.reserved.cpu,
        n.reserved.memory_mb,
        n.reserved.disk_mb
    );
    println!("\nAllocations");
    if allocs.is_empty() {
        println!("No allocations placed");
        return Ok(0);
    }
    print!("{}", alloc_table(&allocs, true));
    Ok(0)
}

/// The allocations table of `job status` and `node status` (the latter with each one's job).
fn alloc_table(allocs: &[api::Allocation], with_job: bool) -> String {
    let mut header: Vec<String> = [
        "ID",
        "Node ID",
        "Task Group",
        "Version",
        "Desired",
        "Status",
    ]
    .map(String::from)
    .into();
    if with_job {
        header.push("Job ID".into());
    }
    let mut rows = vec![header];
    for a in allocs {
        let mut row = vec![
            short(&a.id).into(),
            short(&a.node_id).into(),
            a.task_group.clone(),
            a.job_version.to_string(),
            a.desired_status.to_string(),
            a.client_status.to_string(),
        ];
        if with_job {
            row.push(a.job_id.clone());
        }
        rows.push(row);
    }
    table(rows)
}

pub async fn server_members(c: &ApiClient) -> anyhow::Result<i32> {
    let v: serde_json::Value = c.get("/v1/agent/members").await?;
    let mut rows = vec![vec![
        "Name".into(),
        "Address".into(),
        "Port".into(),
        "Status".into(),
        "Leader".into(),
        "Raft State".into(),
        "Voter".into(),
        "Region".into(),
        "Datacenter".into(),
        "ID".into(),
    ]];
    for m in v["Members"].as_array().cloned().unwrap_or_default() {
        let t = &m["Tags"];
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        rows.push(vec![
            s(&m["Name"]),
            s(&m["Addr"]),
            m["Port"].to_string(),
            s(&m["Status"]),
            s(&t["leader"]),
            s(&t["raft_state"]),
            s(&t["raft_voter"]),
            s(&t["region"]),
            s(&t["dc"]),
            s(&t["id"]),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub async fn raft_peers(c: &ApiClient) -> anyhow::Result<i32> {
    let v: serde_json::Value = c.get("/v1/operator/raft/configuration").await?;
    let mut rows = vec![vec![
        "Node".into(),
        "ID".into(),
        "Address".into(),
        "State".into(),
        "Voter".into(),
        "RaftProtocol".into(),
    ]];
    for p in v["Servers"].as_array().cloned().unwrap_or_default() {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let state = if p["Leader"] == true {
            "leader".to_string()
        } else {
            s(&p["State"])
        };
        rows.push(vec![
            s(&p["Node"]),
            s(&p["ID"]),
            s(&p["Address"]),
            state,
            p["Voter"].to_string(),
            s(&p["RaftProtocol"]),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub async fn remove_peer(
    c: &ApiClient,
    id: Option<String>,
    address: Option<String>,
) -> anyhow::Result<i32> {
    let q = match (id, address) {
        (Some(id), None) => format!("id={id}"),
        (None, Some(a)) => format!("address={a}"),
        _ => bail!("give exactly one of -peer-id or -peer-address"),
    };
    let _: serde_json::Value = c
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/operator/raft/peer?{q}"),
            None,
        )
        .await?;
    println!("Removed peer with {q}");
    Ok(0)
}

pub async fn force_leave(c: &ApiClient, node: &str) -> anyhow::Result<i32> {
    let _: serde_json::Value = c
        .send(
            reqwest::Method::POST,
            &format!("/v1/agent/force-leave?node={node}"),
            None,
        )
        .await?;
    println!("Server {node} removed from the cluster");
    Ok(0)
}

/// `drover system gc`: collects every finished evaluation, dead job and down node now,
/// whatever their age. Prints nothing on success, as Nomad's does.
pub async fn system_gc(c: &ApiClient) -> anyhow::Result<i32> {
    c.call(reqwest::Method::PUT, "/v1/system/gc").await?;
    Ok(0)
}

/// The passphrase header, when one is given.
fn passphrase_header(passphrase: Option<&str>) -> Vec<(&str, &str)> {
    passphrase
        .map(|p| (drover_api::backup::PASSPHRASE_HEADER, p))
        .into_iter()
        .collect()
}

pub async fn snapshot_save(
    c: &ApiClient,
    file: &Path,
    stale: bool,
    passphrase: Option<&str>,
) -> anyhow::Result<i32> {
    let path = if stale {
        "/v1/operator/snapshot?stale"
    } else {
        "/v1/operator/snapshot"
    };
    let bytes = c
        .stream_with(path, &passphrase_header(passphrase))
        .await?
        .bytes()
        .await?;
    let meta = drover_api::backup::decode_backup(&bytes)
        .map_err(|e| anyhow::anyhow!("the server sent an invalid snapshot: {e}"))?
        .meta;
    let tmp = file.with_extension("partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "State file written to {} (index {}, {} bytes)",
        file.display(),
        meta.index,
        bytes.len()
    );
    Ok(0)
}

pub async fn snapshot_restore(
    c: &ApiClient,
    file: &Path,
    passphrase: Option<&str>,
) -> anyhow::Result<i32> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    drover_api::backup::decode_backup(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let v: serde_json::Value = c
        .put_bytes(
            "/v1/operator/snapshot",
            bytes,
            &passphrase_header(passphrase),
        )
        .await?;
    println!("Snapshot restored (Raft index {})", v["Index"]);
    Ok(0)
}

/// `?cas=...` for the variable commands (the namespace is the CLI's, on every request).
fn var_query(cas: Option<u64>) -> String {
    cas.map(|c| format!("?cas={c}")).unwrap_or_default()
}

pub(crate) fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The answer to a check-and-set write that lost: 409 with the current variable.
async fn var_write(
    c: &ApiClient,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Option<serde_json::Value>> {
    let resp = c.request(method.clone(), path, body).await?;
    if resp.status() == reqwest::StatusCode::CONFLICT {
        let current: serde_json::Value = resp.json().await.unwrap_or_default();
        match current["ModifyIndex"].as_u64() {
            Some(i) if i > 0 => bail!(
                "check-and-set conflict: the variable is at modify index {i}; nothing was written"
            ),
            _ => bail!("check-and-set conflict: the variable does not exist; nothing was written"),
        }
    }
    let resp = c.check(resp, &format!("{method} {path}")).await?;
    let text = resp.text().await.unwrap_or_default();
    Ok(serde_json::from_str(&text).ok())
}

pub async fn var_put(
    c: &ApiClient,
    path: &str,
    items: &[String],
    cas: Option<u64>,
) -> anyhow::Result<i32> {
    let mut map = serde_json::Map::new();
    for i in items {
        let (k, v) = i
            .split_once('=')
            .with_context(|| format!("item {i:?} is not KEY=VALUE"))?;
        map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    if map.is_empty() {
        bail!("give at least one item as KEY=VALUE");
    }
    let body = serde_json::json!({ "Path": path, "Items": map });
    let url = format!("/v1/var/{}{}", urlencoding(path), var_query(cas));
    let v = var_write(c, reqwest::Method::PUT, &url, Some(&body))
        .await?
        .unwrap_or_default();
    println!(
        "Wrote variable \"{path}\" (modify index {})",
        v["ModifyIndex"]
    );
    Ok(0)
}

pub async fn var_get(c: &ApiClient, path: &str, item: Option<&str>) -> anyhow::Result<i32> {
    let url = format!("/v1/var/{}", urlencoding(path));
    let v: serde_json::Value = c.get(&url).await?;
    let items = v["Items"].as_object().cloned().unwrap_or_default();
    match item {
        Some(k) => match items.get(k).and_then(|v| v.as_str()) {
            Some(value) => println!("{value}"),
            None => bail!("variable {path:?} has no item {k:?}"),
        },
        None => {
            let mut rows = vec![
                vec![
                    "Namespace".into(),
                    v["Namespace"].as_str().unwrap_or("").into(),
                ],
                vec!["Path".into(), path.into()],
                vec!["Modify Index".into(), v["ModifyIndex"].to_string()],
            ];
            for (k, val) in items {
                rows.push(vec![k, val.as_str().unwrap_or("").into()]);
            }
            print!("{}", table(rows));
        }
    }
    Ok(0)
}

pub async fn var_list(c: &ApiClient, prefix: &str) -> anyhow::Result<i32> {
    let url = format!("/v1/vars?prefix={}", urlencoding(prefix));
    let vars: Vec<serde_json::Value> = c.get(&url).await?;
    if vars.is_empty() {
        println!("No matching variables found");
        return Ok(0);
    }
    let mut rows = vec![vec![
        "Namespace".to_string(),
        "Path".into(),
        "Modify Index".into(),
    ]];
    for v in vars {
        rows.push(vec![
            v["Namespace"].as_str().unwrap_or("").into(),
            v["Path"].as_str().unwrap_or("").into(),
            v["ModifyIndex"].to_string(),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub async fn var_purge(c: &ApiClient, path: &str, cas: Option<u64>) -> anyhow::Result<i32> {
    let url = format!("/v1/var/{}{}", urlencoding(path), var_query(cas));
    var_write(c, reqwest::Method::DELETE, &url, None).await?;
    println!("Deleted variable \"{path}\"");
    Ok(0)
}

pub fn snapshot_inspect(file: &Path) -> anyhow::Result<i32> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let f = drover_api::backup::decode_backup(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let m = f.meta;
    let mut rows = vec![
        vec!["Format".into(), format!("{} v{}", m.format, m.version)],
        vec!["Index".into(), m.index.to_string()],
        vec!["Term".into(), m.term.to_string()],
        vec!["Created".into(), m.time.to_string()],
        vec!["Drover".into(), m.drover_version],
        vec!["Size".into(), bytes.len().to_string()],
    ];
    for (t, n) in m.tables {
        rows.push(vec![t, n.to_string()]);
    }
    print!("{}", table(rows));
    Ok(0)
}

pub fn job_validate(
    file: &Path,
    json: bool,
    vars: &drover_jobspec::Variables,
) -> anyhow::Result<i32> {
    let parsed = load_job(file, json, vars)?;
    for w in &parsed.warnings {
        eprintln!("Warning: {w}");
    }
    println!("Job validation successful");
    // Lines Nomad still accepts in a deprecated shape, and what Drover read them as.
    if !parsed.compatibility.is_empty() {
        println!("\nCompatibility: these lines are accepted only for compatibility");
        for c in &parsed.compatibility {
            println!("  {c}");
        }
    }
    Ok(0)
}

/// `job inspect`: the job as JSON (`{"Job": ...}`), or through `-t` (the job is `.`).
pub async fn job_inspect(c: &ApiClient, id: &str, fmt: &Format) -> anyhow::Result<i32> {
    let id = resolve(c, Kind::Job, id).await?;
    let job: serde_json::Value = c.get(&format!("/v1/job/{id}")).await?;
    if fmt.template.is_some() && fmt.print(&job)? {
        return Ok(0);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "Job": job }))?
    );
    Ok(0)
}

/// Exit code of `job plan` when the job would change allocations (as Nomad's).
pub const EXIT_PLAN_CHANGES: i32 = 1;

/// Exit code of `job plan` when it fails (as Nomad's: 1 already means "changes").
pub const EXIT_PLAN_ERROR: i32 = 255;

pub async fn job_plan(
    c: &ApiClient,
    file: &Path,
    json: bool,
    vars: &drover_jobspec::Variables,
) -> anyhow::Result<i32> {
    let parsed = load_job(file, json, vars)?;
    print_warnings(&parsed);
    let job = parsed.job;
    let body = serde_json::json!({ "Job": job, "Diff": true });
    let resp: api::JobPlanResponse = c
        .send(
            reqwest::Method::POST,
            &format!("/v1/job/{}/plan", job.id),
            Some(&body),
        )
        .await?;
    if let Some(d) = &resp.diff {
        let sign = match d.kind.as_str() {
            "Added" => "+",
            "Deleted" => "-",
            "Edited" => "+/-",
            _ => " ",
        };
        println!("{sign} Job: {:?}", d.id);
        for f in &d.fields {
            match f.kind.as_str() {
                "Added" => println!("+   {}: {:?}", f.name, f.new),
                "Deleted" => println!("-   {}: {:?}", f.name, f.old),
                _ => println!("+/- {}: {:?} => {:?}", f.name, f.old, f.new),
            }
        }
    }
    println!("\nScheduler dry-run:");
    let mut changes = false;
    for (g, u) in &resp.annotations.desired_tg_updates {
        let mut parts = Vec::new();
        for (n, what) in [
            (u.place, "create"),
            (u.destructive_update, "create/destroy update"),
            (u.in_place_update, "in-place update"),
            (u.stop, "destroy"),
            (u.ignore, "ignore"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        changes |= u.place + u.destructive_update + u.in_place_update + u.stop > 0;
        println!(
            "- Task Group {g:?}: {}",
            if parts.is_empty() {
                "no changes".into()
            } else {
                parts.join(", ")
            }
        );
    }
    if resp.failed_tg_allocs.is_empty() {
        println!("- All tasks successfully allocated.");
    } else {
        for (g, m) in &resp.failed_tg_allocs {
            println!(
                "- WARNING: Failed to place all allocations of group {g:?} ({} unplaced):",
                m.coalesced_failures + 1
            );
            explain(m, "    ");
        }
    }
    println!("\nJob Modify Index: {}", resp.job_modify_index);
    Ok(if changes { EXIT_PLAN_CHANGES } else { 0 })
}

pub async fn job_history(c: &ApiClient, id: &str, fmt: &Format) -> anyhow::Result<i32> {
    let id = resolve(c, Kind::Job, id).await?;
    let v: serde_json::Value = c.get(&format!("/v1/job/{id}/versions")).await?;
    if fmt.print(&v)? {
        return Ok(0);
    }
    for j in v["Versions"].as_array().cloned().unwrap_or_default() {
        println!("Version     = {}", j["Version"]);
        println!("Stable      = false");
        println!(
            "Submit Date = {}",
            drover_model::serde_fmt::format(j["SubmitTime"].as_i64().unwrap_or(0))
                .unwrap_or_default()
        );
        println!();
    }
    Ok(0)
}

pub async fn eval_status(c: &ApiClient, id: &str, fmt: &Format) -> anyhow::Result<i32> {
    let id = resolve(c, Kind::Eval, id).await?;
    let e: api::Evaluation = c.get(&format!("/v1/evaluation/{id}")).await?;
    if fmt.print(&e)? {
        return Ok(0);
    }
    println!("ID                 = {}", e.id);
    println!(
        "Create Time        = {}",
        drover_model::serde_fmt::format(e.create_time).unwrap_or_default()
    );
    println!("Status             = {}", e.status);
    println!("Status Description = {}", e.status_description);
    println!("Type               = {}", e.job_type);
    println!("TriggeredBy        = {}", e.triggered_by);
    println!("Job ID             = {}", e.job_id);
    println!("Priority           = {}", e.priority);
    println!("Placement Failures = {}", !e.failed_tg_allocs.is_empty());
    for (g, m) in &e.failed_tg_allocs {
        println!(
            "\n==> Failed Placements\nTask Group {g:?} ({} unplaced):",
            m.coalesced_failures + 1
        );
        println!(
            "  * {} of {} nodes were filtered out",
            m.nodes_filtered, m.nodes_evaluated
        );
        explain(m, "  ");
    }
    Ok(0)
}

/// `drover config validate`: parses the files and checks every value as the agent would
/// at start (durations, addresses, ports, ...), without touching the machine. Plugin config
/// blocks are checked against each plugin's schema when the agent launches it.
pub fn config_validate(paths: &[std::path::PathBuf]) -> anyhow::Result<i32> {
    let cfg = crate::config::FileConfig::load_all(paths)?;
    for w in cfg.warnings() {
        eprintln!("Warning: {w}");
    }
    crate::config::AgentConfig::check(cfg, false)?;
    println!("Configuration is valid!");
    Ok(0)
}

pub async fn alloc_stop(c: &ApiClient, alloc: &str, detach: bool) -> anyhow::Result<i32> {
    let alloc = resolve(c, Kind::Alloc, alloc).await?;
    let resp: serde_json::Value = c
        .send(
            reqwest::Method::POST,
            &format!("/v1/allocation/{alloc}/stop"),
            None,
        )
        .await?;
    let eval_id = resp["EvalID"].as_str().unwrap_or_default().to_string();
    if detach {
        println!("{eval_id}");
        return Ok(0);
    }
    println!("==> Monitoring evaluation \"{}\"", short(&eval_id));
    monitor_eval(c, &eval_id).await
}

pub async fn alloc_action(
    c: &ApiClient,
    alloc: &str,
    task: Option<&str>,
    action: &str,
    signal: &str,
) -> anyhow::Result<i32> {
    let alloc = resolve(c, Kind::Alloc, alloc).await?;
    let body = serde_json::json!({ "TaskName": task.unwrap_or(""), "Task": task.unwrap_or(""), "Signal": signal });
    let _: serde_json::Value = c
        .send(
            reqwest::Method::POST,
            &format!("/v1/client/allocation/{alloc}/{action}"),
            Some(&body),
        )
        .await?;
    Ok(0)
}

pub async fn alloc_fs(c: &ApiClient, alloc: &str, path: &str, json: bool) -> anyhow::Result<i32> {
    let alloc = resolve(c, Kind::Alloc, alloc).await?;
    let q = |op: &str| {
        format!(
            "/v1/client/fs/{op}/{alloc}?path={}",
            path.replace('%', "%25")
                .replace(' ', "%20")
                .replace('&', "%26")
        )
    };
    let info: serde_json::Value = c.get(&q("stat")).await?;
    if info["IsDir"].as_bool() != Some(true) {
        let resp = c.stream(&q("cat")).await?;
        let mut out = std::io::stdout();
        out.write_all(&resp.bytes().await?)?;
        return Ok(0);
    }
    let entries: serde_json::Value = c.get(&q("ls")).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    let mut rows = vec![vec![
        "Mode".to_string(),
        "Size".into(),
        "Modified Time".into(),
        "Name".into(),
    ]];
    for e in entries.as_array().cloned().unwrap_or_default() {
        let dir = e["IsDir"].as_bool() == Some(true);
        rows.push(vec![
            format!(
                "{}{}",
                if dir { "d" } else { "-" },
                e["FileMode"].as_str().unwrap_or("")
            ),
            e["Size"].to_string(),
            e["ModTime"].as_str().unwrap_or("").to_string(),
            format!(
                "{}{}",
                e["Name"].as_str().unwrap_or(""),
                if dir { "/" } else { "" }
            ),
        ]);
    }
    print!("{}", table(rows));
    Ok(0)
}
