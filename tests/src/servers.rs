//! Several `drover` servers on loopback that find each other with `retry_join` and share
//! one keyring KEK (as an operator copies it): the setup of the cluster tests, the TLS test
//! and the TLS benchmark.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Agent, free_port, wait_for};

/// How long a cluster may take to agree on a leader on a busy machine.
const LEADER_WAIT: Duration = Duration::from_secs(60);

/// One server of a cluster to start.
pub struct ServerSpec {
    pub name: String,
    pub host: String,
    pub http: u16,
    pub rpc: u16,
    pub data: PathBuf,
    pub config: PathBuf,
}

/// What the servers' configurations add.
#[derive(Default, Clone, Copy)]
pub struct Extra<'a> {
    /// Lines inside the `server` block.
    pub server: &'a str,
    /// Top-level blocks (e.g. `tls { ... }`).
    pub top: &'a str,
}

/// A server's configuration file `<dir>/<name>.hcl`: `bootstrap_expect`, `retry_join` to
/// `join`, the KEK at `<dir>/keyring.kek` (outside the data dirs, so it survives their
/// wipe).
pub fn server_config(
    dir: &Path,
    name: &str,
    host: &str,
    expect: usize,
    join: &[String],
    extra: Extra<'_>,
) -> PathBuf {
    let join: Vec<String> = join.iter().map(|a| format!("{a:?}")).collect();
    let cfg = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &cfg,
        format!(
            "name = \"{name}\"\nbind_addr = \"{host}\"\nkeyring \"file\" {{\n  path = \"{}\"\n}}\nserver {{\n  enabled = true\n  bootstrap_expect = {expect}\n  server_join {{\n    retry_join = [{}]\n    retry_interval = \"500ms\"\n  }}\n{}}}\n{}",
            dir.join("keyring.kek").display(),
            join.join(", "),
            extra.server,
            extra.top,
        ),
    )
    .unwrap();
    cfg
}

/// Specs for `n` servers named s1..sn on 127.0.0.<base+i> (all on 127.0.0.1 when `base`
/// is None), each knowing all the others' RPC addresses.
pub fn specs(dir: &Path, base: Option<u8>, n: usize, extra: Extra<'_>) -> Vec<ServerSpec> {
    let hosts: Vec<String> = (0..n)
        .map(|i| match base {
            Some(b) => format!("127.0.0.{}", b + i as u8),
            None => "127.0.0.1".to_string(),
        })
        .collect();
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let rpcs: Vec<String> = hosts
        .iter()
        .zip(&ports)
        .map(|(h, (_, r))| format!("{h}:{r}"))
        .collect();
    (0..n)
        .map(|i| {
            let name = format!("s{}", i + 1);
            ServerSpec {
                config: server_config(dir, &name, &hosts[i], n, &rpcs, extra),
                data: dir.join(&name),
                name,
                host: hosts[i].clone(),
                http: ports[i].0,
                rpc: ports[i].1,
            }
        })
        .collect()
}

/// Starts the server of `spec`.
pub fn start(spec: &ServerSpec) -> Agent {
    Agent::start_on(
        &spec.host,
        &[],
        &["-config", spec.config.to_str().unwrap()],
        &spec.data,
        spec.http,
        spec.rpc,
    )
}

/// Starts `n` servers on 127.0.0.1 with `extra`.
pub fn start_cluster(dir: &Path, n: usize, extra: Extra<'_>) -> Vec<Agent> {
    specs(dir, None, n, extra).iter().map(start).collect()
}

/// Specs for `n` servers on 127.0.0.<base+i>, `server` inside their `server` block.
pub fn loopback_specs(dir: &Path, base: u8, n: usize, server: &str) -> Vec<ServerSpec> {
    specs(dir, Some(base), n, Extra { server, top: "" })
}

/// The leader's RPC address as `agent` sees it.
pub fn leader_of(agent: &Agent) -> Option<String> {
    agent
        .get("/v1/status/leader")
        .and_then(|v| v.as_str().map(String::from))
}

/// Waits until every running server agrees on one leader among them; returns its index.
pub fn wait_leader(servers: &[Agent]) -> usize {
    wait_for(
        "one leader all running servers agree on",
        LEADER_WAIT,
        || {
            let live: Vec<&Agent> = servers.iter().filter(|a| a.child.is_some()).collect();
            let first = leader_of(live[0])?;
            live.iter()
                .all(|a| leader_of(a).as_deref() == Some(first.as_str()))
                .then_some(())?;
            servers
                .iter()
                .position(|a| a.child.is_some() && a.rpc_addr() == first)
        },
    )
}
