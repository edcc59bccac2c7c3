//! `drover`: the agent, the CLI, and the built-in plugins and task shim, in one binary.

mod acl_cmd;
mod agent;
mod api_client;
mod cli;
mod config;
mod driver_schemas;
mod exec_cmd;
mod ids;
mod job_init;
mod keyring_cmd;
mod namespace_cmd;
mod node_pool_cmd;
mod output;
mod plugins;
mod scheduler_cmd;
mod service_cmd;
mod tls;
mod tls_cmd;
mod tls_rotation;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Drover: one binary that runs your jobs",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(flatten)]
    globals: api_client::GlobalArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a Drover agent (server, client, or both).
    Agent(AgentArgs),
    /// Job commands.
    #[command(subcommand)]
    Job(JobCmd),
    /// Allocation commands.
    #[command(subcommand)]
    Alloc(AllocCmd),
    /// Evaluation commands.
    #[command(subcommand)]
    Eval(EvalCmd),
    /// Agent configuration commands.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Node commands.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Server commands.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Operator commands.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// System maintenance commands.
    #[command(subcommand)]
    System(SystemCmd),
    /// Variables: items stored at a path, replicated with the rest of the cluster state.
    #[command(subcommand)]
    Var(VarCmd),
    /// The service catalog: registered instances of jobs' services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Namespaces: where jobs, variables and services live.
    #[command(subcommand)]
    Namespace(NamespaceCmd),
    /// Plugin commands.
    #[command(subcommand)]
    Plugin(plugins::PluginCmd),
    /// ACLs: the bootstrap, policies, tokens and roles.
    #[command(subcommand)]
    Acl(acl_cmd::AclCmd),
    /// Certificate files for TLS: a CA, and servers', clients' and the CLI's certificates.
    #[command(subcommand)]
    Tls(tls_cmd::TlsCmd),
    /// Lists jobs, or shows one.
    Status {
        id: Option<String>,
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Prints the version.
    Version,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Development mode: server and client in one process on a fresh temporary data dir.
    #[arg(long)]
    dev: bool,
    /// A config file or directory; may repeat, merged in order.
    #[arg(long = "config")]
    config: Vec<PathBuf>,
    #[arg(long = "data-dir")]
    data_dir: Option<String>,
    #[arg(long)]
    bind: Option<String>,
    #[arg(long)]
    server: bool,
    #[arg(long)]
    client: bool,
    /// Server RPC addresses for a client (comma-separated).
    #[arg(long)]
    servers: Option<String>,
    #[arg(long = "node")]
    node: Option<String>,
    #[arg(long = "http-port")]
    http_port: Option<u16>,
    #[arg(long = "rpc-port")]
    rpc_port: Option<u16>,
    /// The DNS server's port (Consul's flag; 0: any free port).
    #[arg(long = "dns-port")]
    dns_port: Option<u16>,
    #[arg(long = "log-level")]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum JobCmd {
    /// Submits a job and follows its evaluation.
    Run {
        file: PathBuf,
        #[arg(long)]
        detach: bool,
        /// The file is API JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Shows what submitting the job would change, without changing anything.
    Plan {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Lists the job's versions.
    History {
        id: String,
        #[command(flatten)]
        fmt: output::Format,
    },
    Status {
        id: Option<String>,
        #[command(flatten)]
        fmt: output::Format,
    },
    Stop {
        id: String,
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        detach: bool,
    },
    Inspect {
        id: String,
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Writes an example job file (example.nomad.hcl); an existing file is not overwritten.
    Init {
        file: Option<PathBuf>,
        /// Without the explaining comments.
        #[arg(long)]
        short: bool,
    },
    Validate {
        file: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vars: VarArgs,
    },
}

/// Values for a jobspec's `variable` blocks.
#[derive(clap::Args)]
struct VarArgs {
    /// NAME=VALUE for a jobspec variable; may repeat.
    #[arg(long = "var")]
    var: Vec<String>,
    /// A file of `NAME = value` lines; may repeat.
    #[arg(long = "var-file")]
    var_file: Vec<PathBuf>,
}

impl VarArgs {
    fn load(&self) -> anyhow::Result<drover_jobspec::Variables> {
        use anyhow::Context;
        let mut v = drover_jobspec::Variables::default();
        for kv in &self.var {
            let (k, val) = kv
                .split_once('=')
                .with_context(|| format!("-var {kv:?}: write NAME=VALUE"))?;
            v.vars.push((k.to_string(), val.to_string()));
        }
        for f in &self.var_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read -var-file {}", f.display()))?;
            v.var_files.push((f.display().to_string(), text));
        }
        Ok(v)
    }
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Shows an evaluation and, when placements failed, why.
    Status {
        id: String,
        #[command(flatten)]
        fmt: output::Format,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Checks agent configuration files (or directories of them).
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AllocCmd {
    Status {
        id: String,
        #[command(flatten)]
        fmt: output::Format,
        /// Also show each task's CPU and memory use.
        #[arg(long)]
        stats: bool,
    },
    /// Runs a command inside an allocation's task (through its driver).
    Exec {
        /// Pass stdin to the command (-i=false to not).
        #[arg(short = 'i', long = "i", num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
        interactive: bool,
        /// Give the command a terminal (default: when stdin is a terminal).
        #[arg(short = 't', long = "t", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        tty: Option<bool>,
        /// The task, when the allocation runs several.
        #[arg(long)]
        task: Option<String>,
        alloc: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Lists a directory or prints a file of an allocation's directory.
    Fs {
        alloc: String,
        path: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stops an allocation; the scheduler places a replacement.
    Stop {
        alloc: String,
        #[arg(long)]
        detach: bool,
    },
    /// Restarts an allocation's task (every task without TASK).
    Restart { alloc: String, task: Option<String> },
    /// Sends a signal to an allocation's task (every task without TASK).
    Signal {
        #[arg(short = 's', default_value = "SIGKILL")]
        signal: String,
        alloc: String,
        task: Option<String>,
    },
    /// Prints a task's stdout (or stderr).
    Logs {
        alloc: String,
        task: Option<String>,
        #[arg(long)]
        stderr: bool,
        #[arg(short = 'f')]
        follow: bool,
        #[arg(long)]
        tail: bool,
        #[arg(short = 'n')]
        lines: Option<usize>,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Lists the nodes, or shows one (by id or prefix) with its drivers and allocations.
    Status {
        node: Option<String>,
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Node pools: groups of nodes jobs are placed in.
    #[command(subcommand)]
    Pool(NodePoolCmd),
}

#[derive(Subcommand)]
enum NodePoolCmd {
    /// Creates or updates a node pool from a specification file (`-` for stdin).
    Apply {
        input: String,
        /// The input is a node pool in API JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists the node pools.
    List {
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Shows a node pool.
    Info {
        name: String,
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Lists the jobs in a node pool (in `-namespace`, `*` for all).
    Jobs {
        name: String,
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Lists the nodes in a node pool.
    Nodes {
        name: String,
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Deletes a node pool that holds no nodes and no jobs.
    Delete { name: String },
}

#[derive(Subcommand)]
enum NamespaceCmd {
    /// Creates or updates a namespace: NAME (with -description, -quota) or a specification
    /// file (`-` for stdin).
    Apply {
        input: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        quota: Option<String>,
        /// The specification is a namespace in API JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists the namespaces.
    List {
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Shows a namespace.
    Status {
        name: String,
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Deletes a namespace that holds no jobs and no variables.
    Delete { name: String },
}

#[derive(Subcommand)]
enum ServerCmd {
    /// Lists the servers: status, leader, address, Raft state.
    Members,
    /// Removes a server (by name, id or RPC address) from the cluster, e.g. one that is gone
    /// for good.
    #[command(name = "force-leave")]
    ForceLeave { node: String },
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Garbage-collects now, whatever their age, every finished evaluation and allocation,
    /// dead job and down node that nothing still needs.
    Gc,
}

#[derive(Subcommand)]
enum VarCmd {
    /// Creates or replaces the variable at PATH with the items KEY=VALUE.
    Put {
        path: String,
        items: Vec<String>,
        /// Write only if the variable's modify index is this (0: only if it does not exist).
        #[arg(long = "check-index")]
        check_index: Option<u64>,
    },
    /// Prints a variable's items (or one item's value).
    Get {
        path: String,
        #[arg(long)]
        item: Option<String>,
    },
    /// Lists the variables whose path starts with PREFIX.
    List { prefix: Option<String> },
    /// Deletes the variable at PATH.
    Purge {
        path: String,
        #[arg(long = "check-index")]
        check_index: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Lists the registered services with their tags (in `-namespace`, `*` for all).
    List,
    /// Lists the registered instances of service NAME.
    Info { name: String },
    /// Deletes the registration ID of service NAME.
    Delete { name: String, id: String },
}

#[derive(Subcommand)]
enum OperatorCmd {
    #[command(subcommand)]
    Raft(RaftCmd),
    /// Backups of the whole cluster state.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// The cluster's scheduler configuration.
    #[command(subcommand)]
    Scheduler(SchedulerCmd),
    /// The root keys that encrypt variables (`operator root keyring ...`).
    #[command(subcommand)]
    Root(RootCmd),
    /// The CA made for you (Drover's).
    #[command(subcommand)]
    Tls(OperatorTlsCmd),
}

#[derive(Subcommand)]
enum OperatorTlsCmd {
    /// Takes the next step of rotating the CA made for you (trust the new CA everywhere;
    /// issue leaves from it; drop the old one), or shows where it stands with -status.
    #[command(name = "rotate-ca")]
    RotateCa {
        /// Shows the rotation's phase and how many leaves follow it; changes nothing.
        #[arg(long)]
        status: bool,
    },
}

#[derive(Subcommand)]
enum RootCmd {
    #[command(subcommand)]
    Keyring(KeyringCmd),
}

#[derive(Subcommand)]
enum KeyringCmd {
    /// Lists the root keys.
    List,
    /// Makes a new active root key.
    Rotate {
        /// Also re-encrypt every variable with the new key (in the background); the old
        /// keys become deprecated once nothing uses them.
        #[arg(long)]
        full: bool,
    },
    /// Removes a root key (refused while it is active or encrypts a variable).
    Remove { key_id: String },
}

#[derive(Subcommand)]
enum SchedulerCmd {
    /// Shows the scheduler configuration.
    #[command(name = "get-config")]
    GetConfig {
        #[command(flatten)]
        fmt: output::Format,
    },
    /// Changes the settings given by flags (e.g. -scheduler-algorithm=spread).
    #[command(name = "set-config")]
    SetConfig(scheduler_cmd::SetConfigArgs),
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Writes the whole cluster state (jobs, allocations, evaluations, nodes, variables) to
    /// FILE.
    Save {
        file: PathBuf,
        /// Read from the contacted server without checking with the leader.
        #[arg(long)]
        stale: bool,
        /// Seal the keyring in the file with this passphrase (argon2id) instead of the
        /// cluster's key-encryption key, so the file restores on any cluster (Drover's
        /// extension).
        #[arg(long, env = "DROVER_SNAPSHOT_PASSPHRASE", hide_env_values = true)]
        passphrase: Option<String>,
    },
    /// Replaces the cluster's state with FILE's, through Raft (every server ends identical).
    Restore {
        file: PathBuf,
        /// The passphrase the file was saved with, if any.
        #[arg(long, env = "DROVER_SNAPSHOT_PASSPHRASE", hide_env_values = true)]
        passphrase: Option<String>,
    },
    /// Prints what a snapshot file holds.
    Inspect { file: PathBuf },
}

#[derive(Subcommand)]
enum RaftCmd {
    #[command(name = "list-peers")]
    ListPeers,
    /// Removes a server from the Raft configuration.
    #[command(name = "remove-peer")]
    RemovePeer {
        #[arg(long = "peer-id")]
        peer_id: Option<String>,
        #[arg(long = "peer-address")]
        peer_address: Option<String>,
    },
}

/// mimalloc: the state store's persistent maps allocate and free many small nodes from
/// several threads; glibc's allocator spent a third of the end-to-end placement benchmark in
/// malloc/free and arena locks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Nomad's CLI takes single-dash long flags (`-detach`, `-address=...`): accept them.
fn normalize_args(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut passthrough = false;
    // `alloc exec [flags] ALLOC CMD ARGS...`: CMD's own flags are not ours to touch.
    let exec =
        args.get(1).is_some_and(|a| a == "alloc") && args.get(2).is_some_and(|a| a == "exec");
    let mut flag_wants_value = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if a == "--" {
            passthrough = true;
            out.push(a);
            continue;
        }
        if exec && i > 2 {
            if !a.starts_with('-') && !flag_wants_value {
                // The allocation id: everything after it is the command.
                passthrough = true;
            }
            flag_wants_value = matches!(a.as_str(), "-task" | "--task");
        }
        let long_single = a.starts_with('-')
            && !a.starts_with("--")
            && a.len() > 2
            && a.as_bytes()[1].is_ascii_alphabetic();
        out.push(if long_single { format!("-{a}") } else { a });
    }
    out
}

/// Logging from the agent's `log_level` (`-log-level` or the config; `DROVER_LOG` wins) and
/// `log_json` (one JSON object per line).
fn init_logging(level: Option<&str>, json: bool) -> anyhow::Result<()> {
    let level = level.unwrap_or("info").to_lowercase();
    if !["trace", "debug", "info", "warn", "error", "off"].contains(&level.as_str()) {
        anyhow::bail!("log_level {level:?} is not one of trace, debug, info, warn, error, off");
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    Ok(())
}

fn main() {
    // The task shim runs before any thread or runtime exists: it forks.
    drover_plugin_sdk::shim::exit_if_invoked();
    // So does `drover plugin serve NAME`, without building the CLI parser: launch time counts.
    plugins::exit_if_serve_invoked();
    let cli = match Cli::try_parse_from(normalize_args(std::env::args().collect())) {
        Ok(cli) => cli,
        // Help and the version print and exit 0; a usage error exits 1, as Nomad's.
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let cli = match cli.cmd {
        Cmd::Plugin(p) => return plugins::run(p, &cli.globals),
        cmd => Cli { cmd, ..cli },
    };
    let rt = tokio::runtime::Runtime::new()?;
    // Built once from the global flags; only the commands that talk to the API need it.
    let client = cli::ApiClient::from_args(&cli.globals);
    let api = || client.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"));
    rt.block_on(async {
        match cli.cmd {
            Cmd::Agent(a) => run_agent(a).await,
            Cmd::Job(JobCmd::Run {
                file,
                detach,
                json,
                vars,
            }) => cli::job_run(api()?, &file, detach, json, &vars.load()?).await,
            // `job plan` exits 255 on an error, as Nomad's (1 means "changes").
            Cmd::Job(JobCmd::Plan { file, json, vars }) => {
                let planned = match api() {
                    Ok(api) => match vars.load() {
                        Ok(vars) => cli::job_plan(api, &file, json, &vars).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                Ok(planned.unwrap_or_else(|e| {
                    eprintln!("Error: {e:#}");
                    cli::EXIT_PLAN_ERROR
                }))
            }
            Cmd::Job(JobCmd::History { id, fmt }) => cli::job_history(api()?, &id, &fmt).await,
            Cmd::Eval(EvalCmd::Status { id, fmt }) => cli::eval_status(api()?, &id, &fmt).await,
            Cmd::Config(ConfigCmd::Validate { paths }) => cli::config_validate(&paths),
            Cmd::Job(JobCmd::Status { id, fmt }) | Cmd::Status { id, fmt } => {
                cli::job_status(api()?, id.as_deref(), &fmt).await
            }
            Cmd::Job(JobCmd::Stop { id, purge, detach }) => {
                cli::job_stop(api()?, &id, purge, detach).await
            }
            Cmd::Job(JobCmd::Inspect { id, fmt }) => cli::job_inspect(api()?, &id, &fmt).await,
            Cmd::Job(JobCmd::Init { file, short }) => job_init::run(file.as_deref(), short),
            Cmd::Job(JobCmd::Validate { file, json, vars }) => {
                cli::job_validate(&file, json, &vars.load()?)
            }
            Cmd::Alloc(cmd) => alloc_command(api()?, cmd).await,
            Cmd::Node(NodeCmd::Status { node, fmt }) => {
                cli::node_status(api()?, node.as_deref(), &fmt).await
            }
            Cmd::Node(NodeCmd::Pool(cmd)) => node_pool_command(api()?, cmd).await,
            Cmd::Namespace(cmd) => namespace_command(api()?, cmd).await,
            Cmd::Operator(OperatorCmd::Scheduler(SchedulerCmd::GetConfig { fmt })) => {
                scheduler_cmd::get_config(api()?, &fmt).await
            }
            Cmd::Operator(OperatorCmd::Scheduler(SchedulerCmd::SetConfig(args))) => {
                scheduler_cmd::set_config(api()?, &args).await
            }
            Cmd::Server(ServerCmd::Members) => cli::server_members(api()?).await,
            Cmd::Server(ServerCmd::ForceLeave { node }) => cli::force_leave(api()?, &node).await,
            Cmd::Operator(OperatorCmd::Raft(RaftCmd::ListPeers)) => cli::raft_peers(api()?).await,
            Cmd::Operator(OperatorCmd::Raft(RaftCmd::RemovePeer {
                peer_id,
                peer_address,
            })) => cli::remove_peer(api()?, peer_id, peer_address).await,
            Cmd::Operator(OperatorCmd::Snapshot(SnapshotCmd::Save {
                file,
                stale,
                passphrase,
            })) => cli::snapshot_save(api()?, &file, stale, passphrase.as_deref()).await,
            Cmd::Operator(OperatorCmd::Snapshot(SnapshotCmd::Restore { file, passphrase })) => {
                cli::snapshot_restore(api()?, &file, passphrase.as_deref()).await
            }
            Cmd::Operator(OperatorCmd::Root(RootCmd::Keyring(k))) => match k {
                KeyringCmd::List => keyring_cmd::list(api()?).await,
                KeyringCmd::Rotate { full } => keyring_cmd::rotate(api()?, full).await,
                KeyringCmd::Remove { key_id } => keyring_cmd::remove(api()?, &key_id).await,
            },
            Cmd::Operator(OperatorCmd::Tls(OperatorTlsCmd::RotateCa { status })) => {
                tls_rotation::rotate_ca(api()?, status).await
            }
            Cmd::Operator(OperatorCmd::Snapshot(SnapshotCmd::Inspect { file })) => {
                cli::snapshot_inspect(&file)
            }
            Cmd::System(SystemCmd::Gc) => cli::system_gc(api()?).await,
            Cmd::Var(VarCmd::Put {
                path,
                items,
                check_index,
            }) => cli::var_put(api()?, &path, &items, check_index).await,
            Cmd::Var(VarCmd::Get { path, item }) => {
                cli::var_get(api()?, &path, item.as_deref()).await
            }
            Cmd::Var(VarCmd::List { prefix }) => {
                cli::var_list(api()?, prefix.as_deref().unwrap_or("")).await
            }
            Cmd::Var(VarCmd::Purge { path, check_index }) => {
                cli::var_purge(api()?, &path, check_index).await
            }
            Cmd::Service(ServiceCmd::List) => service_cmd::list(api()?).await,
            Cmd::Service(ServiceCmd::Info { name }) => service_cmd::info(api()?, &name).await,
            Cmd::Service(ServiceCmd::Delete { name, id }) => {
                service_cmd::delete(api()?, &name, &id).await
            }
            Cmd::Acl(cmd) => acl_cmd::run(api()?, cmd).await,
            Cmd::Tls(t) => tls_cmd::run(t, cli.globals.region.as_deref()),
            Cmd::Version => {
                println!("Drover v{}", env!("CARGO_PKG_VERSION"));
                Ok(0)
            }
            Cmd::Plugin(_) => unreachable!("plugin commands run without the CLI's runtime"),
        }
    })
}

/// `drover agent`: the config files merged with the flags, then the agent until a signal.
async fn run_agent(a: AgentArgs) -> anyhow::Result<i32> {
    let mut file = config::FileConfig::load_all(&a.config)?;
    let flags = config::FileConfig {
        log_level: a.log_level,
        data_dir: a.data_dir,
        bind_addr: a.bind,
        name: a.node,
        ports: (a.http_port.is_some() || a.rpc_port.is_some()).then_some(config::Ports {
            http: a.http_port,
            rpc: a.rpc_port,
            serf: None,
        }),
        dns: a.dns_port.map(|p| config::dns::DnsBlock {
            port: Some(p),
            ..Default::default()
        }),
        server: a.server.then(|| config::ServerBlock {
            enabled: Some(true),
            ..Default::default()
        }),
        client: (a.client || a.servers.is_some()).then(|| config::ClientBlock {
            enabled: Some(true),
            servers: a
                .servers
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
            ..Default::default()
        }),
        ..Default::default()
    };
    file.merge(flags);
    init_logging(file.log_level.as_deref(), file.log_json.unwrap_or(false))?;
    let cfg = config::AgentConfig::resolve(file, a.dev)?;
    agent::run(cfg).await?;
    Ok(0)
}

/// `drover namespace ...`.
async fn namespace_command(api: &cli::ApiClient, cmd: NamespaceCmd) -> anyhow::Result<i32> {
    match cmd {
        NamespaceCmd::Apply {
            input,
            description,
            quota,
            json,
        } => {
            let args = namespace_cmd::ApplyArgs {
                input: &input,
                description: description.as_deref(),
                quota: quota.as_deref(),
                json,
            };
            namespace_cmd::apply(api, args).await
        }
        NamespaceCmd::List { fmt } => namespace_cmd::list(api, &fmt).await,
        NamespaceCmd::Status { name, fmt } => namespace_cmd::status(api, &name, &fmt).await,
        NamespaceCmd::Delete { name } => namespace_cmd::delete(api, &name).await,
    }
}

/// `drover node pool ...`.
async fn node_pool_command(api: &cli::ApiClient, cmd: NodePoolCmd) -> anyhow::Result<i32> {
    match cmd {
        NodePoolCmd::Apply { input, json } => node_pool_cmd::apply(api, &input, json).await,
        NodePoolCmd::List { fmt } => node_pool_cmd::list(api, &fmt).await,
        NodePoolCmd::Info { name, fmt } => node_pool_cmd::info(api, &name, &fmt).await,
        NodePoolCmd::Jobs { name, fmt } => node_pool_cmd::jobs(api, &name, &fmt).await,
        NodePoolCmd::Nodes { name, fmt } => node_pool_cmd::nodes(api, &name, &fmt).await,
        NodePoolCmd::Delete { name } => node_pool_cmd::delete(api, &name).await,
    }
}

/// `drover alloc ...`.
async fn alloc_command(api: &cli::ApiClient, cmd: AllocCmd) -> anyhow::Result<i32> {
    match cmd {
        AllocCmd::Status { id, fmt, stats } => cli::alloc_status(api, &id, &fmt, stats).await,
        AllocCmd::Exec {
            interactive,
            tty,
            task,
            alloc,
            command,
        } => {
            exec_cmd::alloc_exec(
                api,
                exec_cmd::ExecArgs {
                    alloc: &alloc,
                    task: task.as_deref(),
                    command,
                    interactive,
                    tty,
                },
            )
            .await
        }
        AllocCmd::Logs {
            alloc,
            task,
            stderr,
            follow,
            tail,
            lines,
        } => {
            cli::alloc_logs(
                api,
                cli::LogsArgs {
                    alloc: &alloc,
                    task: task.as_deref(),
                    stderr,
                    follow,
                    tail,
                    lines,
                },
            )
            .await
        }
        AllocCmd::Fs { alloc, path, json } => {
            cli::alloc_fs(api, &alloc, path.as_deref().unwrap_or("/"), json).await
        }
        AllocCmd::Stop { alloc, detach } => cli::alloc_stop(api, &alloc, detach).await,
        AllocCmd::Restart { alloc, task } => {
            cli::alloc_action(api, &alloc, task.as_deref(), "restart", "").await
        }
        AllocCmd::Signal {
            signal,
            alloc,
            task,
        } => cli::alloc_action(api, &alloc, task.as_deref(), "signal", &signal).await,
    }
}
