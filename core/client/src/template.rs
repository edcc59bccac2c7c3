//! Template rendering: renders a task's `template` blocks into its directory before the task
//! starts (Nomad's template runner, consul-template's language through `drover-template`).
//!
//! Data a template reads:
//! - `env "NAME"`: the task's environment;
//! - `nomadVar "path"` (the variable's items; a missing variable blocks the task until it
//!   exists, as in Nomad), `nomadVarExists "path"`, `nomadVarList "prefix"`: variables of
//!   the allocation's namespace, read from the servers with the node's secret and the
//!   task's default workload identity (which limits `nomad/` paths to its own job's);
//! - `secret "provider/path"`: a secret from the secret provider plugin named by the first
//!   path segment, as `.Data`, `.LeaseID`, `.LeaseDuration` (seconds) and `.Renewable`;
//!   the provider is shown the task's identity (`crate::provider_secrets`);
//! - `nomadService`, `nomadServices`, `service`, `services`: the service catalog, from the
//!   client's local copy (see `crate::template_services`).
//!
//! Data sources are asynchronous and the renderer is not, so a template is rendered in
//! passes: a pass records what it read that is not fetched yet (rendering it as null), the
//! hook fetches that, and renders again, until a pass reads nothing new. A template whose
//! reads depend on other reads (`nomadVar (env "X")`) takes one pass per level.
//!
//! While the task runs, [`watch`] re-renders the templates when a variable changes, or when
//! the catalog changes what a service function read, and acts on their `change_mode`
//! (restart, signal, noop).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use drover_catalog::CatalogView;
use drover_model::{Allocation, Task, Template as TemplateBlock, TemplateChangeMode};
use drover_template::{Functions, Options, Template, Value};

use crate::Client;
use crate::alloc_dir::AllocDir;
use crate::env::{TaskDirs, interpolate};
use crate::identities::TaskIdentities;
use crate::template_services::{self, SERVICE_FUNCTIONS};

/// What re-rendered templates ask of the running task (their `change_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Restart it ("restart", the default; also any `env = true` template, since a running
    /// process cannot take new environment variables).
    Restart,
    /// Send it this signal ("signal").
    Signal(String),
}

/// Passes before a template that keeps discovering new reads is given up on.
const MAX_PASSES: usize = 16;

/// Something a template reads from outside the task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Read {
    Var(String),
    VarList(String),
    Secret(String),
    /// The local copy of the catalog, before its first full set arrived.
    Catalog,
    /// A service function's call (name, arguments as JSON) and what it returned: answered
    /// at once from the local copy, recorded so the watcher can tell when it changes.
    Service(String, String),
}

/// What the service functions of a render read: (function, arguments as JSON) -> value.
pub(crate) type ServiceReads = BTreeMap<(String, String), Value>;

/// How long a render waits for the first copy of the catalog (a server older than the
/// client never sends one).
const CATALOG_WAIT: Duration = Duration::from_secs(60);

/// Why the hook did not finish.
#[derive(Debug)]
pub(crate) enum TemplateFailure {
    /// A variable the template needs does not exist (yet): the task waits for it.
    Missing(Vec<String>),
    /// The template is wrong, or a read failed: the task fails (its restart policy applies).
    Failed(String),
}

/// One pass's data: what was fetched, what the pass asked for that was not, and the paths
/// of the missing variables whose items it read.
struct Pass<'a> {
    env: &'a BTreeMap<String, String>,
    fetched: &'a BTreeMap<Read, Option<Value>>,
    wanted: BTreeSet<Read>,
    blocked: BTreeSet<String>,
    /// The catalog as this pass reads it, and the allocation's namespace.
    catalog: &'a CatalogView,
    namespace: &'a str,
    /// The service functions' reads in this pass.
    services: BTreeMap<Read, Option<Value>>,
}

impl Pass<'_> {
    /// None: not fetched yet (asked for); Some(None): there is no such thing.
    fn read(&mut self, r: Read) -> Option<Option<Value>> {
        let got = self.fetched.get(&r).cloned();
        if got.is_none() {
            self.wanted.insert(r);
        }
        got
    }
}

fn string_arg(name: &str, args: &[Value]) -> Result<String, String> {
    match args {
        [Value::String(s)] => Ok(s.clone()),
        _ => Err(format!("{name} takes one string argument")),
    }
}

const HOST_FUNCTIONS: [&str; 5] = [
    "env",
    "nomadVar",
    "nomadVarExists",
    "nomadVarList",
    "secret",
];

impl Pass<'_> {
    fn call_service(&mut self, name: &str, args: &[Value]) -> Result<Value, String> {
        if !self.catalog.synced() {
            self.wanted.insert(Read::Catalog);
            return Ok(Value::Array(Vec::new()));
        }
        let v = template_services::call(self.catalog, self.namespace, name, args)
            .map_err(|e| e.to_string())?;
        let key = serde_json::to_string(args).expect("template values serialize");
        self.services
            .insert(Read::Service(name.to_string(), key), Some(v.clone()));
        Ok(v)
    }
}

impl Functions for Pass<'_> {
    fn has(&self, name: &str) -> bool {
        HOST_FUNCTIONS.contains(&name) || SERVICE_FUNCTIONS.contains(&name)
    }

    fn call(&mut self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        if SERVICE_FUNCTIONS.contains(&name) {
            return Some(self.call_service(name, args));
        }
        if !self.has(name) {
            return None;
        }
        let arg = match string_arg(name, args) {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(match name {
            "env" => Value::String(self.env.get(&arg).cloned().unwrap_or_default()),
            // Reading a variable that does not exist blocks the template until it does;
            // `nomadVarExists` is how a template says a variable is optional.
            "nomadVar" => match self.read(Read::Var(arg.clone())) {
                Some(Some(v)) => v,
                Some(None) => {
                    self.blocked.insert(arg);
                    Value::Null
                }
                None => Value::Null,
            },
            "nomadVarExists" => Value::Bool(matches!(self.read(Read::Var(arg)), Some(Some(_)))),
            "nomadVarList" => self
                .read(Read::VarList(arg))
                .flatten()
                .unwrap_or(Value::Array(Vec::new())),
            _ => self
                .read(Read::Secret(arg))
                .flatten()
                .unwrap_or(Value::Null),
        }))
    }
}

/// A check on the template's own text, before any data is read.
struct ParseOnly;

impl Functions for ParseOnly {
    fn has(&self, name: &str) -> bool {
        HOST_FUNCTIONS.contains(&name) || SERVICE_FUNCTIONS.contains(&name)
    }
    fn call(&mut self, _: &str, _: &[Value]) -> Option<Result<Value, String>> {
        None
    }
}

/// Where a template's `destination` (relative to the task directory; `alloc/...` is the
/// allocation's shared directory) lands, refusing one outside the allocation's directory.
fn destination(dirs: &TaskDirs, dest: &str) -> Result<PathBuf, String> {
    let task_dir = Path::new(&dirs.task_dir);
    let alloc = AllocDir::of(dirs);
    let alloc_root = alloc.path();
    let rel = Path::new(dest);
    let joined = match rel.strip_prefix("alloc") {
        Ok(rest) if !rel.is_absolute() => Path::new(&dirs.alloc_dir).join(rest),
        _ if rel.is_absolute() => rel.to_path_buf(),
        _ => task_dir.join(rel),
    };
    let mut clean = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            c => clean.push(c),
        }
    }
    if !clean.starts_with(alloc_root) || clean == alloc_root {
        return Err(format!(
            "template destination {dest:?} is outside the allocation's directory"
        ));
    }
    Ok(clean)
}

/// Opens the directory `dir` (inside the allocation's directory) through [`AllocDir`], never
/// following a symbolic link; with `create`, makes the missing ones. A task can plant links
/// in its own directories and swap them at any moment, and the client, as root, must not be
/// led out.
fn open_dir_beneath(dirs: &TaskDirs, dir: &Path, create: bool) -> Result<OwnedFd, String> {
    let alloc = AllocDir::of(dirs);
    let rel = alloc.relative(dir).map_err(|e| e.to_string())?;
    alloc
        .dir(rel, create)
        .map(OwnedFd::from)
        .map_err(|e| e.to_string())
}

fn mode(perms: &str) -> Result<u32, String> {
    let p = if perms.is_empty() { "0644" } else { perms };
    u32::from_str_radix(p, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("template perms {perms:?} is not an octal file mode like \"0644\""))
}

/// `KEY=VALUE` lines (blank lines and `#` comments skipped; `export ` and quotes allowed), as
/// Nomad reads a template with `env = true`.
fn parse_env(text: &str, dest: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("{dest}:{}: {line:?} is not a KEY=VALUE line", n + 1))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{dest}:{}: {k:?} is not an environment variable name",
                n + 1
            ));
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

/// Renders every template of `task` into its directory; returns the variables the
/// `env = true` templates add to the task's environment.
pub(crate) async fn render_all(
    client: &Client,
    alloc: &Allocation,
    identities: &TaskIdentities,
    task: &Task,
    dirs: &TaskDirs,
    env: &BTreeMap<String, String>,
) -> Result<Rendered, TemplateFailure> {
    let mut fetched: BTreeMap<Read, Option<Value>> = BTreeMap::new();
    let mut added = BTreeMap::new();
    for (i, block) in task.templates.iter().enumerate() {
        let (name, dest, rendered) =
            render_block(client, alloc, identities, i, block, dirs, env, &mut fetched).await?;
        write(dirs, &dest, &rendered, block)
            .await
            .map_err(TemplateFailure::Failed)?;
        if block.envvars {
            added.extend(parse_env(&rendered, &name).map_err(TemplateFailure::Failed)?);
        }
    }
    Ok(Rendered {
        env: added,
        refresh: refresh_after(&fetched),
        services: service_reads(&fetched),
    })
}

/// The service functions' reads among what a render fetched.
fn service_reads(fetched: &BTreeMap<Read, Option<Value>>) -> ServiceReads {
    fetched
        .iter()
        .filter_map(|(r, v)| match (r, v) {
            (Read::Service(f, args), Some(v)) => Some(((f.clone(), args.clone()), v.clone())),
            _ => None,
        })
        .collect()
}

/// Whether `view` answers any of `reads` differently (or not at all any more).
pub(crate) fn services_changed(reads: &ServiceReads, view: &CatalogView, namespace: &str) -> bool {
    reads.iter().any(|((f, args), before)| {
        let args: Vec<Value> = serde_json::from_str(args).unwrap_or_default();
        template_services::call(view, namespace, f, &args)
            .ok()
            .as_ref()
            != Some(before)
    })
}

/// What rendering a task's templates gave.
pub(crate) struct Rendered {
    /// What the `env = true` templates add to the task's environment.
    pub env: BTreeMap<String, String>,
    /// When the leased secrets read are due to be fetched again.
    pub refresh: Option<Duration>,
    /// What the service functions read.
    pub services: ServiceReads,
}

/// Two thirds of the shortest lease among the secrets read (at least a second), when the
/// templates are rendered again with fresh secrets, as consul-template does; None when no
/// secret read is leased.
fn refresh_after(fetched: &BTreeMap<Read, Option<Value>>) -> Option<Duration> {
    fetched
        .iter()
        .filter(|(r, _)| matches!(r, Read::Secret(_)))
        .filter_map(|(_, v)| v.as_ref()?.get("LeaseDuration")?.as_u64())
        .filter(|secs| *secs > 0)
        .min()
        .map(|secs| Duration::from_millis(secs * 2000 / 3).max(Duration::from_secs(1)))
}

/// One template rendered: its name (for messages), where it goes, and its text.
#[allow(clippy::too_many_arguments)]
async fn render_block(
    client: &Client,
    alloc: &Allocation,
    identities: &TaskIdentities,
    i: usize,
    block: &TemplateBlock,
    dirs: &TaskDirs,
    env: &BTreeMap<String, String>,
    fetched: &mut BTreeMap<Read, Option<Value>>,
) -> Result<(String, PathBuf, String), TemplateFailure> {
    let name = if block.dest_path.is_empty() {
        format!("template {}", i + 1)
    } else {
        block.dest_path.clone()
    };
    let text = source(block, dirs, env)
        .await
        .map_err(TemplateFailure::Failed)?;
    let opts = Options {
        name: &name,
        left: &block.left_delim,
        right: &block.right_delim,
        error_on_missing_key: block.err_missing_key,
    };
    let parsed = Template::parse(&text, &opts, &ParseOnly)
        .map_err(|e| TemplateFailure::Failed(e.to_string()))?;
    let rendered = render(client, alloc, identities, &parsed, env, fetched).await?;
    let dest =
        destination(dirs, &interpolate(&block.dest_path, env)).map_err(TemplateFailure::Failed)?;
    Ok((name, dest, rendered))
}

/// Where the last render of a task's templates left off: what its watcher starts from.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastRender {
    /// The variables index read before rendering (0: unknown).
    pub index: u64,
    /// When the leased secrets read are due to be fetched again.
    pub refresh: Option<Duration>,
    /// What the service functions read (the watcher re-renders when the catalog answers
    /// any of them differently).
    pub services: ServiceReads,
}

/// While the task runs: waits for the variables its templates can read to change after
/// `from.index` (a blocking read of the variables table), re-renders every template,
/// rewrites the files whose text changed, and sends the task runner what their
/// `change_mode` asks for, after a random delay of up to `splay`. Leased secrets also
/// trigger a re-render, with fresh secrets, at two thirds of their lease (`from.refresh`,
/// then each render's). Ends when `changes` is dropped.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn watch(
    client: Client,
    alloc: Allocation,
    identities: TaskIdentities,
    task: Task,
    dirs: TaskDirs,
    env: BTreeMap<String, String>,
    from: LastRender,
    changes: tokio::sync::mpsc::Sender<Change>,
) {
    let mut index = from.index;
    tracing::debug!(
        index,
        services = from.services.len(),
        "watching the data the templates read"
    );
    let mut due = from.refresh.map(|d| tokio::time::Instant::now() + d);
    let mut reads = from.services;
    let mut catalog = client.catalog().subscribe();
    // The catalog may have moved between the render and now: then render again at once.
    let mut catalog_moved = {
        let view = catalog.borrow_and_update().clone();
        services_changed(&reads, &view, &alloc.namespace)
    };
    // The long poll of the variables index, kept across catalog wake-ups.
    let poll = |index: u64, pause: Duration| {
        let (client, alloc_id) = (client.clone(), alloc.id.clone());
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            client.variables_index(&alloc_id, Some(index)).await
        })
    };
    let mut vars = poll(index, Duration::ZERO);
    enum Wake {
        Vars(Result<u64, String>),
        Lease,
        Catalog(bool),
    }
    loop {
        if !catalog_moved {
            // When the leased secrets are due again (never when none is leased).
            let never = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
            let wake = tokio::select! {
                r = &mut vars => Wake::Vars(r),
                _ = tokio::time::sleep_until(due.unwrap_or(never)) => Wake::Lease,
                r = catalog.changed() => Wake::Catalog(r.is_ok()),
                _ = changes.closed() => return,
            };
            match wake {
                Wake::Lease => {
                    tracing::debug!("leased secrets are due: rendering the templates again")
                }
                Wake::Vars(Err(e)) => {
                    tracing::debug!(error = %e, "template watch: cannot read the variables index");
                    vars = poll(index, Duration::from_secs(5));
                    continue;
                }
                // The blocking read timed out.
                Wake::Vars(Ok(next)) if next <= index => {
                    vars = poll(index, Duration::ZERO);
                    continue;
                }
                // `from.index` is the variables index read before the files were rendered
                // (0 when unknown, e.g. a task reattached after an agent restart: then the
                // first change re-renders, and unchanged files are left alone).
                Wake::Vars(Ok(next)) => {
                    index = next;
                    vars = poll(index, Duration::ZERO);
                }
                // The client is gone.
                Wake::Catalog(false) => return,
                Wake::Catalog(true) => {
                    let view = catalog.borrow_and_update().clone();
                    if !services_changed(&reads, &view, &alloc.namespace) {
                        continue;
                    }
                    tracing::debug!(
                        "the catalog changed what the templates read: rendering them again"
                    );
                }
            }
        }
        catalog_moved = false;
        let mut fetched = BTreeMap::new();
        let (mut restart, mut signals, mut splay) = (false, BTreeSet::new(), Duration::ZERO);
        for (i, block) in task.templates.iter().enumerate() {
            let (name, dest, text) = match render_block(
                &client,
                &alloc,
                &identities,
                i,
                block,
                &dirs,
                &env,
                &mut fetched,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    // Nomad keeps the last good file when a re-render fails.
                    tracing::warn!(template = i + 1, error = ?e, "template re-render failed; the file is kept");
                    continue;
                }
            };
            if read_inside(&dirs, &dest).await.ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            if let Err(e) = write(&dirs, &dest, &text, block).await {
                tracing::warn!(template = %name, error = %e, "template re-render not written");
                continue;
            }
            tracing::info!(template = %name, mode = %block.change_mode, "template re-rendered");
            match block.change_mode {
                _ if block.envvars => restart = true,
                TemplateChangeMode::Noop => continue,
                TemplateChangeMode::Signal => {
                    signals.insert(block.change_signal.clone());
                }
                TemplateChangeMode::Script => {
                    tracing::warn!(template = %name, "change_mode \"script\" is not supported; the file was rewritten and nothing else done");
                    continue;
                }
                TemplateChangeMode::Restart => restart = true,
            }
            splay = splay.max(block.splay);
        }
        due = refresh_after(&fetched).map(|d| tokio::time::Instant::now() + d);
        reads = service_reads(&fetched);
        if !restart && signals.is_empty() {
            continue;
        }
        tokio::time::sleep(jitter(splay)).await;
        let wanted = if restart {
            vec![Change::Restart]
        } else {
            signals.into_iter().map(Change::Signal).collect()
        };
        for change in wanted {
            if changes.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// A random duration in [0, max) (so that many tasks do not restart at once).
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    let random = uuid::Uuid::new_v4().as_u128();
    Duration::from_nanos((random % max.as_nanos()) as u64)
}

/// The template's text: `data`, or the file `source` names (relative to the task directory,
/// e.g. one an artifact brought).
async fn source(
    block: &TemplateBlock,
    dirs: &TaskDirs,
    env: &BTreeMap<String, String>,
) -> Result<String, String> {
    if block.source_path.is_empty() {
        return Ok(block.embedded_tmpl.clone());
    }
    let path = destination(dirs, &interpolate(&block.source_path, env))?;
    read_inside(dirs, &path)
        .await
        .map_err(|e| format!("template source {e}"))
}

/// Reads a file inside the allocation's directory without following a link out of it
/// (see [`open_dir_beneath`]).
async fn read_inside(dirs: &TaskDirs, path: &Path) -> Result<String, String> {
    let (dirs, path) = (dirs.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let alloc = AllocDir::of(&dirs);
        let rel = alloc.relative(&path).map_err(|e| e.to_string())?;
        let mut text = String::new();
        alloc
            .read_file(rel)
            .map_err(|e| e.to_string())?
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(text)
    })
    .await
    .map_err(|e| format!("template reader: {e}"))?
}

async fn render(
    client: &Client,
    alloc: &Allocation,
    identities: &TaskIdentities,
    template: &Template,
    env: &BTreeMap<String, String>,
    fetched: &mut BTreeMap<Read, Option<Value>>,
) -> Result<String, TemplateFailure> {
    for _ in 0..MAX_PASSES {
        let catalog = client.catalog().view();
        let mut pass = Pass {
            env,
            fetched,
            wanted: BTreeSet::new(),
            blocked: BTreeSet::new(),
            catalog: &catalog,
            namespace: &alloc.namespace,
            services: BTreeMap::new(),
        };
        let out = template.render(&Value::Null, &mut pass);
        let (wanted, blocked, services) = (pass.wanted, pass.blocked, pass.services);
        fetched.extend(services);
        if wanted.is_empty() {
            if !blocked.is_empty() {
                // How Nomad names a variable a template waits for.
                let ns = &alloc.namespace;
                let missing = blocked.iter().map(|p| format!("nomad.var.block({p}@{ns})"));
                return Err(TemplateFailure::Missing(missing.collect()));
            }
            return out.map_err(|e| TemplateFailure::Failed(e.to_string()));
        }
        for r in wanted {
            let v = fetch(client, alloc, identities, &r)
                .await
                .map_err(TemplateFailure::Failed)?;
            fetched.insert(r, v);
        }
    }
    Err(TemplateFailure::Failed(format!(
        "the template kept asking for new data after {MAX_PASSES} passes"
    )))
}

/// Fetches one read. None: no such variable.
async fn fetch(
    client: &Client,
    alloc: &Allocation,
    identities: &TaskIdentities,
    r: &Read,
) -> Result<Option<Value>, String> {
    match r {
        Read::Var(path) => {
            let id = identities.get(crate::identities::DEFAULT).await?;
            let vars = client
                .read_variables(&alloc.id, &id.jwt, path, false)
                .await?;
            Ok(vars.into_iter().next().map(|v| {
                Value::Object(
                    v.items
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect(),
                )
            }))
        }
        Read::VarList(prefix) => {
            let id = identities.get(crate::identities::DEFAULT).await?;
            let vars = client
                .read_variables(&alloc.id, &id.jwt, prefix, true)
                .await?;
            // The server lists variables without their items: Path, Namespace, indexes, times.
            Ok(Some(Value::Array(
                vars.iter()
                    .map(|v| serde_json::to_value(v).expect("a variable serializes"))
                    .collect(),
            )))
        }
        Read::Catalog => {
            tokio::time::timeout(CATALOG_WAIT, client.catalog().synced())
                .await
                .map_err(|_| {
                    format!(
                        "the service catalog has not reached this client within {CATALOG_WAIT:?} (are the servers older than the client?)"
                    )
                })?;
            Ok(None)
        }
        Read::Service(..) => Ok(None),
        Read::Secret(spec) => {
            let (provider, path) = spec.split_once('/').ok_or_else(|| {
                format!("secret {spec:?} must be \"<provider>/<path>\": the first segment names the secret provider plugin")
            })?;
            let r = crate::secret_sources::fetch_from_plugin(client, identities, provider, path)
                .await
                .map_err(|e| format!("secret {spec:?}: {e}"))?;
            Ok(Some(serde_json::json!({
                "Data": r.data,
                "LeaseID": r.lease_id,
                "LeaseDuration": r.ttl_ms / 1000,
                "Renewable": r.renewable,
            })))
        }
    }
}

/// Writes the file atomically: a new temporary file (created, never opened through a link)
/// with the block's mode and owner set on the open file, renamed over the destination — all
/// relative to the destination's directory, opened without following links
/// ([`open_dir_beneath`]).
async fn write(
    dirs: &TaskDirs,
    dest: &Path,
    text: &str,
    block: &TemplateBlock,
) -> Result<(), String> {
    use nix::fcntl::{OFlag, openat, renameat};
    use nix::sys::stat::Mode;
    use nix::unistd::{UnlinkatFlags, unlinkat};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mode = mode(&block.perms)?;
    let (dirs, dest, text) = (dirs.clone(), dest.to_path_buf(), text.to_string());
    let (uid, gid) = (block.uid, block.gid);
    tokio::task::spawn_blocking(move || {
        let what = |e: String| format!("cannot write template {}: {e}", dest.display());
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(what("it names no file".into()));
        };
        let dir = open_dir_beneath(&dirs, parent, true).map_err(what)?;
        let tmp = format!(
            ".{}.{}.drover-tmp",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        );
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&dir, tmp.as_str(), flags, Mode::from_bits_truncate(0o600))
            .map_err(|e| what(e.to_string()))?;
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::from(fd);
            f.write_all(text.as_bytes())?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if uid.is_some() || gid.is_some() {
                let id = |v: Option<i64>| v.filter(|v| *v >= 0).map(|v| v as u32);
                std::os::unix::fs::fchown(&f, id(uid), id(gid))?;
            }
            renameat(&dir, tmp.as_str(), &dir, name).map_err(std::io::Error::from)
        })();
        if written.is_err() {
            let _ = unlinkat(&dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        written.map_err(|e| what(e.to_string()))
    })
    .await
    .map_err(|e| format!("template writer: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> TaskDirs {
        TaskDirs {
            alloc_dir: "/data/alloc/a1/alloc".into(),
            task_dir: "/data/alloc/a1/web".into(),
            local_dir: "/data/alloc/a1/web/local".into(),
            secrets_dir: "/data/alloc/a1/web/secrets".into(),
            tmp_dir: "/data/alloc/a1/web/tmp".into(),
        }
    }

    #[test]
    fn destinations_stay_inside_the_allocation() {
        let d = dirs();
        assert_eq!(
            destination(&d, "local/app.conf").unwrap(),
            Path::new("/data/alloc/a1/web/local/app.conf")
        );
        assert_eq!(
            destination(&d, "secrets/./db.env").unwrap(),
            Path::new("/data/alloc/a1/web/secrets/db.env")
        );
        assert_eq!(
            destination(&d, "alloc/shared.txt").unwrap(),
            Path::new("/data/alloc/a1/alloc/shared.txt")
        );
        assert_eq!(
            destination(&d, "/data/alloc/a1/web/local/x").unwrap(),
            Path::new("/data/alloc/a1/web/local/x")
        );
        for bad in ["../../etc/passwd", "/etc/passwd", "local/../../../x", ".."] {
            let e = destination(&d, bad).unwrap_err();
            assert!(e.contains("outside the allocation"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn writes_never_follow_a_task_planted_link_out_of_the_allocation() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a1");
        for d in ["alloc", "web/local"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let outside = tmp.path().join("host");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("shadow"), "host secret").unwrap();
        let dirs = TaskDirs {
            alloc_dir: root.join("alloc").display().to_string(),
            task_dir: root.join("web").display().to_string(),
            local_dir: root.join("web/local").display().to_string(),
            secrets_dir: root.join("web/secrets").display().to_string(),
            tmp_dir: root.join("web/tmp").display().to_string(),
        };
        let block = TemplateBlock {
            perms: "0640".into(),
            ..Default::default()
        };
        // A directory link out: refused.
        std::os::unix::fs::symlink(&outside, root.join("web/local/out")).unwrap();
        let dest = destination(&dirs, "local/out/shadow").unwrap();
        let e = write(&dirs, &dest, "pwned", &block).await.unwrap_err();
        assert!(e.contains("outside the allocation's directory"), "{e}");
        // A file link out: replaced by the file, the target untouched.
        std::os::unix::fs::symlink(outside.join("shadow"), root.join("web/local/app.conf"))
            .unwrap();
        let dest = destination(&dirs, "local/app.conf").unwrap();
        write(&dirs, &dest, "rendered", &block).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("shadow")).unwrap(),
            "host secret"
        );
        let meta = std::fs::symlink_metadata(&dest).unwrap();
        assert!(meta.file_type().is_file());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "rendered");
        // Missing directories on the way are made.
        let dest = destination(&dirs, "local/new/deeper/x.conf").unwrap();
        write(&dirs, &dest, "deep", &block).await.unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "deep");
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(root.join("web/local"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(!left.iter().any(|n| n.ends_with(".drover-tmp")), "{left:?}");
        // A source file reached through a link out: refused.
        let source_block = TemplateBlock {
            source_path: "local/out/shadow".into(),
            ..Default::default()
        };
        let e = source(&source_block, &dirs, &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(e.contains("outside the allocation's directory"), "{e}");
    }

    #[test]
    fn env_files_read_like_nomads() {
        let env = parse_env(
            "# db\nUSER=app\nexport PASS=\"s3 cret\"\n\nQ='x=y'\n",
            "secrets/db.env",
        )
        .unwrap();
        assert_eq!(env["USER"], "app");
        assert_eq!(env["PASS"], "s3 cret");
        assert_eq!(env["Q"], "x=y");
        let e = parse_env("A=1\nnot a pair\n", "secrets/db.env").unwrap_err();
        assert!(e.starts_with("secrets/db.env:2:"), "{e}");
        let e = parse_env("BAD-NAME=1\n", "x").unwrap_err();
        assert!(e.contains("not an environment variable name"), "{e}");
    }

    #[test]
    fn perms_are_octal_modes() {
        assert_eq!(mode("0600").unwrap(), 0o600);
        assert_eq!(mode("").unwrap(), 0o644);
        assert!(mode("rw-r--r--").unwrap_err().contains("octal"));
        assert!(mode("99999").is_err());
    }
}
