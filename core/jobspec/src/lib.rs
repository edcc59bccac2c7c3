//! Nomad-style HCL jobspecs to Drover's model.
//!
//! The document is walked on hcl-edit's syntax tree, which keeps byte spans, so every error
//! names `file:line:column` and the block path (`job "web" > group "g" > task "t"`).
//! Expressions are evaluated with hcl-rs, with HCL2 `variable` and `locals` blocks,
//! `-var`/`-var-file` values and Nomad's functions ([`functions`]); runtime interpolations
//! (`${NOMAD_*}`, `${attr.*}`, `${node.*}`, `${meta.*}`) are kept as written for the client.
//! Flat blocks decode straight into the model (whose serde names are Nomad's JSON names);
//! blocks whose HCL shape differs from the JSON (labels, ports, shorthand constraints) are
//! assembled here.

mod convert;
mod functions;
mod inherit;
mod reader;
mod recent_blocks;
mod task_config;
mod validate;

use std::collections::BTreeMap;

use drover_model::{
    Constraint, ConstraintOperand, Job, JobType, NetworkResource, Port, RestartPolicy, Service,
    Task, TaskGroup,
};
use hcl::edit::structure::{Block, Body};
use hcl::eval::Evaluate;
use serde_json::{Map, Value as Json};

use reader::{BlockReader, Source};

pub use drover_model::serde_fmt::{format_duration, parse_duration};
pub use task_config::SchemaLookup;

/// A jobspec that could not be turned into a job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}{sep}{message}", sep = if path.is_empty() { "" } else { ": " })]
pub struct JobspecError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Where in the document: `job "web" > group "g" > task "t"`.
    pub path: String,
    pub message: String,
}

/// Every error of a jobspec, in file order (never empty): parsing goes on after an error,
/// so one run reports them all. It dereferences to the first.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct JobspecErrors(Vec<JobspecError>);

impl JobspecErrors {
    /// Every error, in file order.
    pub fn all(&self) -> &[JobspecError] {
        &self.0
    }
}

impl std::ops::Deref for JobspecErrors {
    type Target = JobspecError;
    fn deref(&self) -> &JobspecError {
        &self.0[0]
    }
}

impl From<JobspecError> for JobspecErrors {
    fn from(e: JobspecError) -> Self {
        JobspecErrors(vec![e])
    }
}

/// A parsed job, and what in it Drover read but does not act on yet.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub job: Job,
    pub warnings: Vec<String>,
    /// Lines accepted only for compatibility (deprecated shapes), each with its
    /// `file:line:column` and what it was read as.
    pub compatibility: Vec<String>,
}

/// Values for the jobspec's `variable` blocks.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    /// `-var NAME=VALUE`, in order (later wins).
    pub vars: Vec<(String, String)>,
    /// `-var-file` contents: (file name, HCL text of `NAME = value` lines).
    pub var_files: Vec<(String, String)>,
    /// The jobspec is parsed on a server (`/v1/jobs/parse`), not on the submitting machine:
    /// `file()` and `fileexists()` fail naming the function instead of reading the server's
    /// files, and `NOMAD_VAR_*` is not read from the server's environment.
    pub on_server: bool,
}

/// Parses the HCL jobspec `src`, read from `file` (used in error messages).
pub fn parse(src: &str, file: &str) -> Result<Parsed, JobspecErrors> {
    parse_with(src, file, &Variables::default())
}

/// Parses with values for the jobspec's variables.
pub fn parse_with(src: &str, file: &str, vars: &Variables) -> Result<Parsed, JobspecErrors> {
    parse_inner(src, file, vars, None)
}

/// Parses, and checks each task's `config` block against its driver's schema (`schemas`
/// names it; a driver it does not know is not checked), reporting an unknown key or a wrong
/// type at its position.
pub fn parse_checked(
    src: &str,
    file: &str,
    vars: &Variables,
    schemas: SchemaLookup<'_>,
) -> Result<Parsed, JobspecErrors> {
    parse_inner(src, file, vars, Some(schemas))
}

fn parse_inner(
    src: &str,
    file: &str,
    vars: &Variables,
    schemas: Option<SchemaLookup<'_>>,
) -> Result<Parsed, JobspecErrors> {
    let mut source = Source::new(src, file);
    source.schemas = schemas;
    if vars.on_server {
        functions::refuse_host_functions(&mut source.ctx);
    }
    let body: Body = src.parse::<Body>().map_err(|e| JobspecError {
        file: file.to_string(),
        line: e.location().line(),
        column: e.location().column(),
        path: String::new(),
        message: format!("invalid HCL: {}", e.message()),
    })?;
    let mut warnings = Vec::new();
    declare_variables(&mut source, &body, vars)?;
    let source = source;
    let mut jobs = body.blocks().filter(|b| b.ident.as_str() == "job");
    let Some(job_block) = jobs.next() else {
        return Err(source
            .error_at(
                0,
                "",
                "no job block: a jobspec holds exactly one `job \"NAME\" { ... }`",
            )
            .into());
    };
    for second in jobs {
        source.report(source.error_span(second, "", "a jobspec holds exactly one job block"));
    }
    for s in body.iter() {
        if let Some(b) = s.as_block() {
            if !matches!(b.ident.as_str(), "job" | "variable" | "locals") {
                source.report(source.error_span(
                    b,
                    "",
                    &format!("unknown block {:?} at top level", b.ident.as_str()),
                ));
            }
        } else if let Some(a) = s.as_attribute() {
            source.report(source.error_span(
                a,
                "",
                &format!("unknown key {:?} at top level", a.key.as_str()),
            ));
        }
    }
    let job = source.recover(parse_job(&source, job_block, &mut warnings));
    let errors = source.take_errors();
    match job {
        Some(job) if errors.is_empty() => Ok(Parsed {
            job,
            warnings,
            compatibility: source.take_rewrites(),
        }),
        _ => Err(JobspecErrors(errors)),
    }
}

/// Evaluates `variable` and `locals` blocks into `var.*` and `local.*`.
fn declare_variables(
    src: &mut Source<'_>,
    body: &Body,
    given: &Variables,
) -> Result<(), JobspecError> {
    let mut values: BTreeMap<String, hcl::Value> = BTreeMap::new();
    let mut from_files = variable_files(src, given)?;
    let declared: Vec<&Block> = body
        .blocks()
        .filter(|b| b.ident.as_str() == "variable")
        .collect();
    for b in &declared {
        let Some(name) = b.labels.first().map(|l| l.as_str().to_string()) else {
            return Err(src.error_span(
                *b,
                "",
                "a variable block takes one label: variable \"NAME\" { ... }",
            ));
        };
        let path = format!("variable {name:?}");
        let ty = b
            .body
            .get_attribute("type")
            .and_then(|a| reader::raw_text(src, &a.value))
            .unwrap_or_default();
        for a in b.body.attributes() {
            if !matches!(
                a.key.as_str(),
                "type" | "default" | "description" | "sensitive" | "nullable"
            ) {
                return Err(src.error_span(a, &path, &format!("unknown key {:?}", a.key.as_str())));
            }
        }
        let cli = given
            .vars
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone());
        let env = (!given.on_server)
            .then(|| std::env::var(format!("NOMAD_VAR_{name}")).ok())
            .flatten();
        let value = if let Some(text) = cli.or(env) {
            typed(&text, ty).map_err(|m| src.error_span(*b, &path, &m))?
        } else if let Some(v) = from_files.remove(&name) {
            v
        } else if let Some(d) = b.body.get_attribute("default") {
            reader::eval(src, &d.value, &path)?
        } else {
            return Err(src.error_span(*b, &path, &format!("variable {name:?} has no value: give it a default, or set it with -var {name}=VALUE or -var-file")));
        };
        values.insert(name, value);
    }
    for (k, _) in &given.vars {
        if !values.contains_key(k) {
            return Err(src.error_at(
                0,
                "",
                &format!("-var {k}=...: the jobspec declares no variable {k:?}"),
            ));
        }
    }
    if let Some(k) = from_files.keys().next() {
        return Err(src.error_at(
            0,
            "",
            &format!("variable file sets {k:?}, which the jobspec does not declare"),
        ));
    }
    src.ctx
        .declare_var("var", hcl::Value::Object(values.into_iter().collect()));
    declare_locals(src, body)
}

/// The values `-var-file` files set, by variable name.
fn variable_files(
    src: &Source<'_>,
    given: &Variables,
) -> Result<BTreeMap<String, hcl::Value>, JobspecError> {
    let mut from_files: BTreeMap<String, hcl::Value> = BTreeMap::new();
    for (name, text) in &given.var_files {
        let file_body: hcl::Body = hcl::from_str(text).map_err(|e| JobspecError {
            file: name.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("invalid variable file: {e}"),
        })?;
        for a in file_body.attributes() {
            let v = a.expr().evaluate(&src.ctx).map_err(|e| JobspecError {
                file: name.clone(),
                line: 0,
                column: 0,
                path: a.key().to_string(),
                message: format!("cannot evaluate: {e}"),
            })?;
            from_files.insert(a.key().to_string(), v);
        }
    }
    Ok(from_files)
}

/// Declares `local.*`: the `locals` blocks' attributes, which may refer to each other, are
/// evaluated until every one resolves (or none does: that one's error is the answer).
fn declare_locals(src: &mut Source<'_>, body: &Body) -> Result<(), JobspecError> {
    let mut pending: Vec<(&hcl::edit::structure::Attribute, String)> = Vec::new();
    for b in body.blocks().filter(|b| b.ident.as_str() == "locals") {
        for a in b.body.attributes() {
            pending.push((a, a.key.as_str().to_string()));
        }
    }
    let mut locals: hcl::Map<String, hcl::Value> = hcl::Map::new();
    while !pending.is_empty() {
        src.ctx
            .declare_var("local", hcl::Value::Object(locals.clone()));
        let before = pending.len();
        let mut last_err = None;
        pending.retain(|(a, name)| {
            let e: hcl::Expression = a.value.clone().into();
            match hcl::eval::Evaluate::evaluate(&e, &src.ctx) {
                Ok(v) => {
                    locals.insert(name.clone(), v);
                    false
                }
                Err(err) => {
                    last_err = Some((*a, err.to_string()));
                    true
                }
            }
        });
        if pending.len() == before {
            let (a, err) = last_err.expect("an error for what is pending");
            return Err(src.error_span(
                a,
                "locals",
                &format!("cannot evaluate local {:?}: {err}", a.key.as_str()),
            ));
        }
    }
    src.ctx.declare_var("local", hcl::Value::Object(locals));
    Ok(())
}

fn typed(text: &str, ty: &str) -> Result<hcl::Value, String> {
    let ty = ty.trim();
    if ty == "number" {
        return text
            .parse::<f64>()
            .map(hcl::Value::from)
            .map_err(|_| format!("{text:?} is not a number"));
    }
    if ty == "bool" {
        return text
            .parse::<bool>()
            .map(hcl::Value::from)
            .map_err(|_| format!("{text:?} is not true or false"));
    }
    if ty.starts_with("list")
        || ty.starts_with("map")
        || ty.starts_with("object")
        || ty.starts_with("set")
    {
        let e: hcl::Expression = text
            .parse()
            .map_err(|e| format!("{text:?} is not an HCL value: {e}"))?;
        return hcl::eval::Evaluate::evaluate(&e, &hcl::eval::Context::new())
            .map_err(|e| e.to_string());
    }
    Ok(hcl::Value::from(text))
}

/// The blocks Drover parses into the model but does not act on yet, and why that matters.
const NOT_ACTED_ON: &[(&str, &str)] = &[
    ("update", "rolling updates and canaries are not driven yet"),
    ("migrate", "drain migrations are not implemented yet"),
    (
        "periodic",
        "the job is registered as a parent that is never placed itself; launching its children is not implemented yet",
    ),
    (
        "parameterized",
        "the job is registered as a parent that is never placed itself; dispatch is not implemented yet",
    ),
    (
        "network",
        "a task's own network block is not acted on: the group's network block gives the allocation its ports and its network (host, bridge, none, cni/<name>)",
    ),
    (
        "volume",
        "host volumes are mounted; CSI volumes are not attached yet",
    ),
    (
        "volume_mount",
        "host volumes are mounted; CSI volumes are not attached yet",
    ),
    (
        "ephemeral_disk",
        "ephemeral disk sizes are not enforced yet",
    ),
    ("scaling", "scaling policies are not acted on yet"),
    (
        "vault",
        "Vault is not integrated: use secret blocks with a secret provider",
    ),
    ("csi_plugin", "CSI plugins are not registered yet"),
    ("dispatch_payload", "dispatch payloads are not written yet"),
    ("device", "devices are not scheduled yet"),
    (
        "ui",
        "Drover has no web UI: the description and links are kept in the job for tools that read it",
    ),
    (
        "disconnect",
        "allocations of a disconnected client are not replaced, stopped or reconciled by these rules yet",
    ),
    ("action", "task actions cannot be run yet"),
];

/// The warnings the HCL path gives for blocks not acted on yet, for a job that arrives as
/// API JSON (no positions: each names the job, group and task it is in).
pub fn model_warnings(job: &Job) -> Vec<String> {
    let mut w = Vec::new();
    let mut warn = |set: bool, path: &str, kind: &str| {
        if set && let Some((_, why)) = NOT_ACTED_ON.iter().find(|(k, _)| *k == kind) {
            w.push(format!(
                "{path}: block {kind:?} is parsed but not acted on yet: {why}"
            ));
        }
    };
    let jp = format!("job {:?}", job.id);
    warn(job.update.is_some(), &jp, "update");
    warn(job.periodic.is_some(), &jp, "periodic");
    warn(job.parameterized.is_some(), &jp, "parameterized");
    warn(job.ui.is_some(), &jp, "ui");
    for g in &job.groups {
        let gp = format!("{jp} > group {:?}", g.name);
        warn(g.update.is_some(), &gp, "update");
        warn(g.migrate.is_some(), &gp, "migrate");
        warn(!g.volumes.is_empty(), &gp, "volume");
        warn(g.scaling.is_some(), &gp, "scaling");
        warn(g.disconnect.is_some(), &gp, "disconnect");
        for t in &g.tasks {
            let tp = format!("{gp} > task {:?}", t.name);
            warn(t.vault.is_some(), &tp, "vault");
            warn(!t.volume_mounts.is_empty(), &tp, "volume_mount");
            warn(t.dispatch_payload.is_some(), &tp, "dispatch_payload");
            warn(t.csi_plugin.is_some(), &tp, "csi_plugin");
            warn(!t.resources.networks.is_empty(), &tp, "network");
            warn(!t.resources.devices.is_empty(), &tp, "device");
            warn(!t.actions.is_empty(), &tp, "action");
            warn(!t.scaling_policies.is_empty(), &tp, "scaling");
        }
    }
    w.extend(consul_provider_warning(job));
    w
}

/// The one warning for services of the "consul" provider (Nomad's default): they are
/// registered in Drover's own catalog, and Consul itself is not used.
fn consul_provider_warning(job: &Job) -> Option<String> {
    job.groups.iter().any(|g| g.uses_consul_provider()).then(|| {
        format!(
            "job {:?}: services with provider \"consul\" (the default) are registered in Drover's own catalog; Consul itself is not used",
            job.id
        )
    })
}

pub(crate) fn warn_not_acted_on(r: &mut BlockReader<'_>, b: &Block) {
    let kind = b.ident.as_str();
    if let Some((_, why)) = NOT_ACTED_ON.iter().find(|(k, _)| *k == kind) {
        r.warn_at(
            b,
            &format!("block {kind:?} is parsed but not acted on yet: {why}"),
        );
    }
}

pub(crate) fn obj(pairs: Vec<(&str, Json)>) -> Map<String, Json> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Json {
    serde_json::to_value(v).expect("model types serialize")
}

fn parse_job(
    src: &Source<'_>,
    block: &Block,
    warnings: &mut Vec<String>,
) -> Result<Job, JobspecError> {
    let mut r = BlockReader::new(src, block, String::new(), "job")?;
    let id = r.label().to_string();
    let meta = src.recover(r.meta()).unwrap_or_default();
    let constraints = src
        .recover(constraints(src, &mut r, "constraint", warnings))
        .unwrap_or_default();
    let affinities = src
        .recover(affinities(src, &mut r, warnings))
        .unwrap_or_default();
    let spreads = src
        .recover(spreads(src, &mut r, warnings))
        .unwrap_or_default();
    let periodic = src.recover(periodic(src, &mut r, warnings)).flatten();
    let parameterized = src
        .recover(decode_block::<drover_model::ParameterizedJobConfig>(
            src,
            &mut r,
            "parameterized",
            &[],
            warnings,
        ))
        .flatten();
    let ui = src
        .recover(recent_blocks::ui(src, &mut r, warnings))
        .flatten();
    // Job-level update, migrate, reschedule, vault and secrets are defaults for the groups.
    let defaults = inherit::Defaults::read(src, &mut r, None, warnings);
    for b in r
        .blocks("multiregion")
        .into_iter()
        .chain(r.blocks("consul"))
    {
        r.warn_at(b, &format!("block {:?} at job level is accepted but ignored: Drover runs one region and has no Consul integration", b.ident.as_str()));
    }
    r.unimplemented_attrs(&["vault_token", "consul_token"]);
    let mut job_type = JobType::Service;
    if let Some((s, _)) = src.recover(r.opt_string("type")).flatten() {
        match JobType::parse(&s) {
            Some(jt) => job_type = jt,
            None => src.report(r.error_key(
                "type",
                &format!("type {s:?} is not one of service, batch, system, sysbatch"),
            )),
        }
    }
    let mut groups = Vec::new();
    // A job-level task is wrapped in a group of its own name, before the groups (as Nomad's
    // HCL2 parser does).
    for t in r.blocks("task") {
        src.rewrite(
            t,
            r.path(),
            &format!(
                "task {:?} outside a group: read as group {:?} holding only this task",
                t.labels.first().map(|l| l.as_str()).unwrap_or(""),
                t.labels.first().map(|l| l.as_str()).unwrap_or("")
            ),
        );
        let mut ports = validate::PortLabels::default();
        let Some(task) = src.recover(parse_task(
            src,
            t,
            r.path(),
            job_type,
            &defaults,
            &mut ports,
            warnings,
        )) else {
            continue;
        };
        let mut g = TaskGroup::new(task.name.clone(), 1, job_type, vec![task]);
        defaults.apply_to_lone_group(&mut g);
        inherit::move_task_ports(&mut g);
        push_group(src, &mut groups, g, t, r.path());
    }
    for g in r.blocks("group") {
        if let Some(group) =
            src.recover(parse_group(src, g, r.path(), job_type, &defaults, warnings))
        {
            push_group(src, &mut groups, group, g, r.path());
        }
    }
    if r.blocks("group").is_empty() && r.blocks("task").is_empty() {
        src.report(r.error_here("a job needs at least one group block"));
    }
    let mut extra = obj(vec![
        ("ID", Json::from(id.clone())),
        ("Name", Json::from(id)),
    ]);
    extra.insert("Meta".into(), to_json(&meta));
    let mut job: Job = r.decode(&[("id", "ID")], extra)?;
    job.job_type = job_type;
    job.constraints = constraints;
    job.affinities = affinities;
    job.spreads = spreads;
    job.update = defaults.update.clone();
    job.periodic = periodic;
    job.parameterized = parameterized;
    job.ui = ui;
    job.groups = groups;
    warnings.extend(r.finish());
    if !job.groups.is_empty()
        && let Err(errs) = job.canonicalize()
    {
        for e in errs {
            src.report(src.error_span(block, "", &e));
        }
    }
    warnings.extend(consul_provider_warning(&job));
    Ok(job)
}

/// Adds a group, refusing a name that is not a valid group name or is taken.
fn push_group(
    src: &Source<'_>,
    groups: &mut Vec<TaskGroup>,
    group: TaskGroup,
    at: &Block,
    path: &str,
) {
    if let Err(e) = drover_model::check_name(&group.name) {
        src.report(src.error_span(at, path, &format!("group name: {e}")));
    } else if groups.iter().any(|x| x.name == group.name) {
        src.report(src.error_span(
            at,
            path,
            &format!("group {:?} is defined twice", group.name),
        ));
    } else {
        groups.push(group);
    }
}

/// Decodes an optional flat block that may appear once.
fn decode_block<T: serde::de::DeserializeOwned>(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    ident: &str,
    renames: &[(&str, &str)],
    warnings: &mut Vec<String>,
) -> Result<Option<T>, JobspecError> {
    let Some(b) = r.block_once(ident)? else {
        return Ok(None);
    };
    warn_not_acted_on(r, b);
    let mut br = BlockReader::new(src, b, r.path().to_string(), ident)?;
    let v = br.decode(renames, Map::new())?;
    warnings.extend(br.finish());
    Ok(Some(v))
}

/// The operators a jobspec may write, for the error naming them.
fn operator_words() -> String {
    let words: Vec<&str> = ConstraintOperand::WORDS
        .iter()
        .copied()
        .filter(|w| !w.is_empty())
        .collect();
    words.join(", ")
}

fn constraints(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    ident: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Constraint>, JobspecError> {
    let blocks = r.blocks(ident);
    Ok(src.each(blocks, |b| {
        warn_not_acted_on(r, b);
        let mut br = BlockReader::new(src, b, r.path().to_string(), "constraint")?;
        // Nomad's shorthands: `distinct_hosts = true`, `distinct_property = "${meta.rack}"`,
        // `regexp|version|semver|set_contains* = "..."` with `attribute`.
        let mut c = Constraint {
            operand: ConstraintOperand::Equal,
            ..Default::default()
        };
        if let Some((a, _)) = br.opt_string("attribute")? {
            c.l_target = a;
        }
        if let Some((v, _)) = br.opt_string("value")? {
            c.r_target = v;
        }
        if let Some((o, _)) = br.opt_string("operator")? {
            c.operand = match ConstraintOperand::parse(&o) {
                Some(op) if op != ConstraintOperand::Unset => op,
                _ => {
                    return Err(br.error_key(
                        "operator",
                        &format!("operator {o:?} is not one of {}", operator_words()),
                    ));
                }
            };
        }
        if let Some(true) = br.opt_bool("distinct_hosts")? {
            c.operand = ConstraintOperand::DistinctHosts;
            c.r_target = "true".into();
        }
        if let Some((p, _)) = br.opt_string("distinct_property")? {
            c.operand = ConstraintOperand::DistinctProperty;
            c.l_target = p;
        }
        for op in [
            ConstraintOperand::Regexp,
            ConstraintOperand::Version,
            ConstraintOperand::Semver,
            ConstraintOperand::SetContains,
            ConstraintOperand::SetContainsAny,
            ConstraintOperand::SetContainsAll,
        ] {
            if let Some((v, _)) = br.opt_string(op.as_str())? {
                c.operand = op;
                c.r_target = v;
            }
        }
        warnings.extend(br.finish());
        Ok(c)
    }))
}

fn affinities(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<drover_model::Affinity>, JobspecError> {
    let blocks = r.blocks("affinity");
    Ok(src.each(blocks, |b| {
        warn_not_acted_on(r, b);
        let mut br = BlockReader::new(src, b, r.path().to_string(), "affinity")?;
        let mut a: drover_model::Affinity = br.decode(
            &[
                ("attribute", "LTarget"),
                ("value", "RTarget"),
                ("operator", "Operand"),
            ],
            obj(vec![("Weight", Json::from(50))]),
        )?;
        if a.operand == ConstraintOperand::Unset {
            a.operand = ConstraintOperand::Equal;
        }
        if !(-100..=100).contains(&a.weight) {
            return Err(br.error_key("weight", "weight must be between -100 and 100"));
        }
        warnings.extend(br.finish());
        Ok(a)
    }))
}

fn spreads(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<drover_model::Spread>, JobspecError> {
    let blocks = r.blocks("spread");
    Ok(src.each(blocks, |b| {
        warn_not_acted_on(r, b);
        let mut br = BlockReader::new(src, b, r.path().to_string(), "spread")?;
        let mut targets = Vec::new();
        for t in br.blocks("target") {
            let mut tr = BlockReader::new(src, t, br.path().to_string(), "target")?;
            let label = t
                .labels
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default();
            let target: drover_model::SpreadTarget =
                tr.decode(&[], obj(vec![("Value", Json::from(label))]))?;
            warnings.extend(tr.finish());
            targets.push(target);
        }
        let s: drover_model::Spread = br.decode(
            &[],
            obj(vec![
                ("Weight", Json::from(50)),
                ("SpreadTarget", to_json(&targets)),
            ]),
        )?;
        warnings.extend(br.finish());
        Ok(s)
    }))
}

fn periodic(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<drover_model::PeriodicConfig>, JobspecError> {
    let Some(b) = r.block_once("periodic")? else {
        return Ok(None);
    };
    warn_not_acted_on(r, b);
    let mut br = BlockReader::new(src, b, r.path().to_string(), "periodic")?;
    let p: drover_model::PeriodicConfig = br.decode(
        &[("cron", "Spec"), ("crons", "Specs")],
        obj(vec![
            ("Enabled", Json::from(true)),
            ("SpecType", Json::from("cron")),
        ]),
    )?;
    if p.spec.is_empty() && p.specs.is_empty() {
        return Err(br.error_here("a periodic block needs cron (or crons)"));
    }
    warnings.extend(br.finish());
    Ok(Some(p))
}

fn parse_group(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    job_type: JobType,
    job_defaults: &inherit::Defaults,
    warnings: &mut Vec<String>,
) -> Result<TaskGroup, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "group")?;
    let name = r.label().to_string();
    let meta = src.recover(r.meta()).unwrap_or_default();
    let restart = match src.recover(r.block_once("restart")).flatten() {
        Some(b) => src.recover(parse_restart(
            src,
            b,
            r.path(),
            RestartPolicy::default_for(job_type),
            warnings,
        )),
        None => None,
    }
    .unwrap_or_else(|| RestartPolicy::default_for(job_type));
    let constraints = src
        .recover(constraints(src, &mut r, "constraint", warnings))
        .unwrap_or_default();
    let affinities = src
        .recover(affinities(src, &mut r, warnings))
        .unwrap_or_default();
    let spreads = src
        .recover(spreads(src, &mut r, warnings))
        .unwrap_or_default();
    // The group's update, migrate, reschedule, vault and secrets over the job's.
    let defaults = inherit::Defaults::read(src, &mut r, Some(job_defaults), warnings);
    let ephemeral_disk = src
        .recover(decode_block::<drover_model::EphemeralDisk>(
            src,
            &mut r,
            "ephemeral_disk",
            &[("size", "SizeMB")],
            warnings,
        ))
        .flatten();
    let scaling = src.recover(scaling(src, &mut r, warnings)).flatten();
    let disconnect = src
        .recover(recent_blocks::disconnect(src, &mut r, warnings))
        .flatten();
    let mut ports = validate::PortLabels::default();
    let mut networks = Vec::new();
    for b in r.blocks("network") {
        networks.extend(src.recover(network(src, b, r.path(), &mut ports, warnings)));
    }
    let services = src
        .recover(services(src, &mut r, warnings))
        .unwrap_or_default();
    let mut volumes = BTreeMap::new();
    for b in r.blocks("volume") {
        warn_not_acted_on(&mut r, b);
        if let Some((label, v)) = src.recover(volume(src, b, r.path(), warnings)) {
            volumes.insert(label, v);
        }
    }
    let consul = match src.recover(r.block_once("consul")).flatten() {
        Some(b) => {
            r.warn_at(
                b,
                "block \"consul\" is accepted but ignored: service discovery is built in",
            );
            src.recover(r.free_form(b))
        }
        None => None,
    };
    r.unimplemented_attrs(&["prevent_reschedule_on_lost"]);
    for key in ["stop_after_client_disconnect", "max_client_disconnect"] {
        let now = if key == "max_client_disconnect" {
            "lost_after"
        } else {
            "stop_on_client_after"
        };
        r.deprecated(
            key,
            &format!("deprecated since Nomad 1.8: write disconnect {{ {now} = ... }}"),
            true,
        );
    }
    let mut tasks: Vec<Task> = Vec::new();
    for t in r.blocks("task") {
        let Some(task) = src.recover(parse_task(
            src,
            t,
            r.path(),
            job_type,
            &defaults,
            &mut ports,
            warnings,
        )) else {
            continue;
        };
        if let Err(e) = drover_model::check_name(&task.name) {
            src.report(src.error_span(t, r.path(), &format!("task name: {e}")));
        } else if tasks.iter().any(|x| x.name == task.name) {
            src.report(src.error_span(
                t,
                r.path(),
                &format!("task {:?} is defined twice", task.name),
            ));
        } else {
            tasks.push(task);
        }
    }
    if r.blocks("task").is_empty() {
        src.report(r.error_here("a group needs at least one task block"));
    }
    let mut extra = obj(vec![("Name", Json::from(name)), ("Meta", to_json(&meta))]);
    extra.insert("Count".into(), Json::from(1));
    let mut g: TaskGroup = r.decode(&[], extra)?;
    // Nomad's canonicalization: without a count the group starts at the scaling block's
    // min, and a scaling block without min starts at the count.
    let mut scaling = scaling;
    if let Some(s) = &mut scaling {
        match s.min {
            Some(min) if block.body.get_attribute("count").is_none() => {
                g.count = u32::try_from(min).unwrap_or(0)
            }
            None => s.min = Some(i64::from(g.count)),
            _ => {}
        }
        src.recover(validate::scaling_count(&r, s, g.count));
    }
    g.restart = Some(restart);
    g.constraints = constraints;
    g.affinities = affinities;
    g.spreads = spreads;
    g.reschedule = defaults.reschedule;
    g.migrate = defaults.migrate;
    g.update = defaults.update;
    g.ephemeral_disk = ephemeral_disk;
    g.scaling = scaling;
    g.disconnect = disconnect;
    g.networks = networks;
    g.services = services;
    g.volumes = volumes;
    g.consul = consul;
    g.tasks = tasks;
    inherit::move_task_ports(&mut g);
    warnings.extend(r.finish());
    Ok(g)
}

/// A group's `volume "NAME"` block (with a CSI volume's `mount_options`).
fn volume(
    src: &Source<'_>,
    b: &Block,
    parent: &str,
    warnings: &mut Vec<String>,
) -> Result<(String, drover_model::VolumeRequest), JobspecError> {
    let mut br = BlockReader::new(src, b, parent.to_string(), "volume")?;
    let label = br.label().to_string();
    let mut extra = obj(vec![("Name", Json::from(label.clone()))]);
    if let Some(m) = br.block_once("mount_options")? {
        let mut mr = BlockReader::new(src, m, br.path().to_string(), "mount_options")?;
        let o: drover_model::CsiMountOptions = mr.decode(&[("fs_type", "FSType")], Map::new())?;
        warnings.extend(mr.finish());
        extra.insert("MountOptions".into(), to_json(&o));
    }
    let v = br.decode(&[], extra)?;
    warnings.extend(br.finish());
    Ok((label, v))
}

fn scaling(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<drover_model::ScalingPolicy>, JobspecError> {
    let Some(b) = r.block_once("scaling")? else {
        return Ok(None);
    };
    warn_not_acted_on(r, b);
    let mut br = BlockReader::new(src, b, r.path().to_string(), "scaling")?;
    let s = scaling_policy(&mut br, validate::GROUP_SCALING_TYPE)?;
    src.recover(validate::scaling(&br, &s, validate::GROUP_SCALING_TYPE));
    warnings.extend(br.finish());
    Ok(Some(s))
}

/// A scaling block's keys and free-form `policy`, with `policy_type` when it names none.
pub(crate) fn scaling_policy(
    br: &mut BlockReader<'_>,
    policy_type: &str,
) -> Result<drover_model::ScalingPolicy, JobspecError> {
    let policy = match br.block_once("policy")? {
        Some(p) => br.free_form(p)?,
        None => Map::new(),
    };
    br.decode(
        &[],
        obj(vec![
            ("Enabled", Json::from(true)),
            ("Type", Json::from(policy_type)),
            ("Policy", Json::Object(policy)),
        ]),
    )
}

fn network(
    src: &Source<'_>,
    b: &Block,
    parent: &str,
    ports: &mut validate::PortLabels,
    warnings: &mut Vec<String>,
) -> Result<NetworkResource, JobspecError> {
    let mut br = BlockReader::new(src, b, parent.to_string(), "network")?;
    let mut reserved = Vec::new();
    let mut dynamic = Vec::new();
    for p in br.blocks("port") {
        let Some(port) = src.recover(port(src, p, br.path(), ports, warnings)) else {
            continue;
        };
        if port.value != 0 {
            reserved.push(port)
        } else {
            dynamic.push(port)
        }
    }
    let dns = match br.block_once("dns")? {
        Some(d) => {
            let mut dr = BlockReader::new(src, d, br.path().to_string(), "dns")?;
            let v: drover_model::DnsConfig = dr.decode(&[], Map::new())?;
            warnings.extend(dr.finish());
            Some(v)
        }
        None => None,
    };
    let cni = match br.block_once("cni")? {
        Some(c) => {
            let mut cr = BlockReader::new(src, c, br.path().to_string(), "cni")?;
            let v: drover_model::CniConfig = cr.decode(&[], Map::new())?;
            warnings.extend(cr.finish());
            Some(v)
        }
        None => None,
    };
    let mut extra = obj(vec![("Mode", Json::from("host"))]);
    extra.insert("ReservedPorts".into(), to_json(&reserved));
    extra.insert("DynamicPorts".into(), to_json(&dynamic));
    extra.insert("DNS".into(), to_json(&dns));
    extra.insert("CNI".into(), to_json(&cni));
    let n = br.decode(&[("mbits", "MBits")], extra)?;
    warnings.extend(br.finish());
    Ok(n)
}

/// A network's `port "LABEL" { static, to, host_network }` block.
fn port(
    src: &Source<'_>,
    p: &Block,
    parent: &str,
    ports: &mut validate::PortLabels,
    warnings: &mut Vec<String>,
) -> Result<Port, JobspecError> {
    let mut pr = BlockReader::new(src, p, parent.to_string(), "port")?;
    let label = pr.label().to_string();
    ports.add(src, p, pr.path(), &label)?;
    let port = pr.decode(
        &[("static", "Value")],
        obj(vec![("Label", Json::from(label))]),
    )?;
    warnings.extend(pr.finish());
    Ok(port)
}

fn services(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Service>, JobspecError> {
    let mut out = Vec::new();
    for b in r.blocks("service") {
        let mut br = BlockReader::new(src, b, r.path().to_string(), "service")?;
        let meta = br.meta()?;
        let tagged_addresses = br.string_map("tagged_addresses")?;
        let canary_meta = br.string_map("canary_meta")?;
        service_keys_not_acted_on(&mut br, b);
        let connect = match br.block_once("connect")? {
            Some(c) => {
                br.warn_at(
                    c,
                    "block \"connect\" is accepted but ignored: there is no service mesh yet",
                );
                Some(br.free_form(c)?)
            }
            None => None,
        };
        let service_restart = parse_check_restart(src, &mut br, warnings)?;
        let mut checks = Vec::new();
        for c in br.blocks("check") {
            let mut cr = BlockReader::new(src, c, br.path().to_string(), "check")?;
            let check_restart = parse_check_restart(src, &mut cr, warnings)?;
            let header: BTreeMap<String, Vec<String>> = match cr.block_once("header")? {
                Some(h) => serde_json::from_value(Json::Object(cr.free_form(h)?)).map_err(|e| {
                    src.error_span(
                        h,
                        cr.path(),
                        &format!("header values must be lists of strings: {e}"),
                    )
                })?,
                None => BTreeMap::new(),
            };
            let mut extra = obj(vec![
                ("CheckRestart", to_json(&check_restart)),
                ("Header", to_json(&header)),
            ]);
            extra.insert("Interval".into(), Json::from(10_000_000_000i64));
            extra.insert("Timeout".into(), Json::from(2_000_000_000i64));
            let check: drover_model::ServiceCheck = cr.decode(
                &[
                    ("port", "PortLabel"),
                    ("task", "TaskName"),
                    ("tls_skip_verify", "TLSSkipVerify"),
                    ("tls_server_name", "TLSServerName"),
                    ("grpc_service", "GRPCService"),
                    ("grpc_use_tls", "GRPCUseTLS"),
                ],
                extra,
            )?;
            warnings.extend(cr.finish());
            checks.push(check);
        }
        let mut extra = obj(vec![("Meta", to_json(&meta)), ("Checks", to_json(&checks))]);
        extra.insert("Connect".into(), to_json(&connect));
        extra.insert("TaggedAddresses".into(), to_json(&tagged_addresses));
        extra.insert("CanaryMeta".into(), to_json(&canary_meta));
        extra.insert("CheckRestart".into(), to_json(&service_restart));
        let s = br.decode(&[("port", "PortLabel"), ("task", "TaskName")], extra)?;
        warnings.extend(br.finish());
        out.push(s);
    }
    Ok(out)
}

/// A service's keys Drover reads into the job but does not act on yet.
fn service_keys_not_acted_on(br: &mut BlockReader<'_>, b: &Block) {
    let why = [
        (
            "tagged_addresses",
            "tagged addresses are a Consul feature: they are kept in the job, Drover's catalog does not serve them",
        ),
        ("canary_meta", "canaries are not driven yet"),
    ];
    for (key, why) in why {
        let msg = format!("key {key:?} is parsed but not acted on yet: {why}");
        if let Some(a) = b.body.get_attribute(key) {
            br.warn_at(a, &msg);
        } else if let Some(x) = b.body.blocks().find(|x| x.ident.as_str() == key) {
            br.warn_at(x, &msg);
        }
    }
}

/// A `check_restart` block of a service or a check.
fn parse_check_restart(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<drover_model::CheckRestart>, JobspecError> {
    let Some(x) = r.block_once("check_restart")? else {
        return Ok(None);
    };
    let mut xr = BlockReader::new(src, x, r.path().to_string(), "check_restart")?;
    let v: drover_model::CheckRestart = xr.decode(&[], Map::new())?;
    warnings.extend(xr.finish());
    Ok(Some(v))
}

fn parse_restart(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    default: RestartPolicy,
    warnings: &mut Vec<String>,
) -> Result<RestartPolicy, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "restart")?;
    let base = match to_json(&default) {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    let p = r.decode(&[], base)?;
    warnings.extend(r.finish());
    Ok(p)
}

fn parse_task(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    job_type: JobType,
    defaults: &inherit::Defaults,
    ports: &mut validate::PortLabels,
    warnings: &mut Vec<String>,
) -> Result<Task, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "task")?;
    let name = r.label().to_string();
    if block.body.get_attribute("driver").is_none() {
        src.report(r.error_here("missing required key \"driver\""));
    }
    let config_block = src.recover(r.block_once("config")).flatten();
    let config = match config_block {
        Some(c) => src.recover(r.free_form(c)).unwrap_or_default(),
        None => Map::new(),
    };
    let env = src.recover(r.string_map("env")).unwrap_or_default();
    let meta = src.recover(r.meta()).unwrap_or_default();
    let resources = src
        .recover(task_resources(src, &mut r, ports, warnings))
        .unwrap_or_default();
    let restart = match src.recover(r.block_once("restart")).flatten() {
        Some(b) => src.recover(parse_restart(
            src,
            b,
            r.path(),
            RestartPolicy::default_for(job_type),
            warnings,
        )),
        None => None,
    };
    let logs = src
        .recover(task_logs(src, &mut r, warnings))
        .unwrap_or_default();
    let constraints = src
        .recover(constraints(src, &mut r, "constraint", warnings))
        .unwrap_or_default();
    let affinities = src
        .recover(affinities(src, &mut r, warnings))
        .unwrap_or_default();
    let services = src
        .recover(services(src, &mut r, warnings))
        .unwrap_or_default();
    let templates = src
        .recover(templates(src, &mut r, warnings))
        .unwrap_or_default();
    let artifacts = src
        .recover(artifacts(src, &mut r, warnings))
        .unwrap_or_default();
    let vault = src.recover(inherit::vault(src, &mut r, warnings)).flatten();
    let identities = src
        .recover(identities(src, &mut r, warnings))
        .unwrap_or_default();
    let lifecycle = src
        .recover(decode_block::<drover_model::TaskLifecycleConfig>(
            src,
            &mut r,
            "lifecycle",
            &[],
            warnings,
        ))
        .flatten();
    let volume_mounts = src
        .recover(volume_mounts(src, &mut r, warnings))
        .unwrap_or_default();
    let dispatch_payload = src
        .recover(decode_block::<drover_model::DispatchPayload>(
            src,
            &mut r,
            "dispatch_payload",
            &[],
            warnings,
        ))
        .flatten();
    let csi_plugin = src
        .recover(decode_block::<drover_model::CsiPluginConfig>(
            src,
            &mut r,
            "csi_plugin",
            &[("id", "ID"), ("type", "Type")],
            warnings,
        ))
        .flatten();
    let secrets = secrets(src, &mut r, warnings);
    let actions = recent_blocks::actions(src, &mut r, warnings);
    let scaling_policies = recent_blocks::task_scaling(src, &mut r, warnings);
    for b in r.blocks("consul") {
        r.warn_at(b, "block \"consul\" in a task is accepted but ignored");
    }
    let mut extra = obj(vec![
        ("Name", Json::from(name)),
        ("Config", Json::Object(config)),
    ]);
    extra.insert("Env".into(), to_json(&env));
    extra.insert("Meta".into(), to_json(&meta));
    let mut task: Task = r.decode(&[], extra)?;
    // A task without a config block is left to its driver (as Nomad's job validate does).
    if let Some(lookup) = src.schemas
        && let Some(fields) = lookup(&task.driver).filter(|f| !f.is_empty())
        && let Some(c) = config_block
    {
        task_config::check(src, c, &format!("{} > config", r.path()), &fields);
    }
    task.resources = resources;
    task.restart = restart;
    task.logs = logs;
    task.constraints = constraints;
    task.affinities = affinities;
    task.services = services;
    task.templates = templates;
    task.artifacts = artifacts;
    task.vault = vault;
    task.identities = identities;
    task.lifecycle = lifecycle;
    task.volume_mounts = volume_mounts;
    task.dispatch_payload = dispatch_payload;
    task.csi_plugin = csi_plugin;
    task.secrets = secrets;
    task.actions = actions;
    task.scaling_policies = scaling_policies;
    defaults.apply_to_task(&mut task);
    warnings.extend(r.finish());
    Ok(task)
}

/// A task's `resources` block (with its `device` blocks); Nomad's defaults when absent.
fn task_resources(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    ports: &mut validate::PortLabels,
    warnings: &mut Vec<String>,
) -> Result<drover_model::Resources, JobspecError> {
    let Some(b) = r.block_once("resources")? else {
        return Ok(drover_model::Resources::default());
    };
    let mut br = BlockReader::new(src, b, r.path().to_string(), "resources")?;
    let devices = src.each(br.blocks("device"), |d| {
        warn_not_acted_on(&mut br, d);
        device(src, d, br.path(), warnings)
    });
    // Deprecated since Nomad 0.12: a task's network; its ports move to the group's network
    // (inherit::move_task_ports).
    let networks = src.each(br.blocks("network"), |n| {
        let mbits = n.body.get_attribute("mbits").is_some();
        let what = format!(
            "network in a task's resources is deprecated: its ports are read as ports of the group's network{}",
            if mbits { "; mbits is ignored" } else { "" }
        );
        src.rewrite(n, br.path(), &what);
        let mut net = network(src, n, br.path(), ports, warnings)?;
        net.mbits = 0;
        Ok(net)
    });
    let mut extra = obj(vec![
        ("CPU", Json::from(100)),
        ("MemoryMB", Json::from(300)),
    ]);
    extra.insert("Devices".into(), to_json(&devices));
    let mut res: drover_model::Resources = br.decode(
        &[
            ("memory", "MemoryMB"),
            ("memory_max", "MemoryMaxMB"),
            ("disk", "DiskMB"),
        ],
        extra,
    )?;
    res.networks = networks;
    warnings.extend(br.finish());
    Ok(res)
}

/// A task's `device "NAME"` request.
fn device(
    src: &Source<'_>,
    d: &Block,
    parent: &str,
    warnings: &mut Vec<String>,
) -> Result<drover_model::RequestedDevice, JobspecError> {
    let mut dr = BlockReader::new(src, d, parent.to_string(), "device")?;
    let label = dr.label().to_string();
    let cons = src
        .recover(constraints(src, &mut dr, "constraint", warnings))
        .unwrap_or_default();
    let affs = src
        .recover(affinities(src, &mut dr, warnings))
        .unwrap_or_default();
    let mut extra = obj(vec![("Name", Json::from(label)), ("Count", Json::from(1))]);
    extra.insert("Constraints".into(), to_json(&cons));
    extra.insert("Affinities".into(), to_json(&affs));
    let dev = dr.decode(&[], extra)?;
    warnings.extend(dr.finish());
    Ok(dev)
}

/// A task's `logs` block; Nomad's defaults when absent.
fn task_logs(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<drover_model::LogConfig, JobspecError> {
    Ok(match r.block_once("logs")? {
        Some(b) => {
            let mut br = BlockReader::new(src, b, r.path().to_string(), "logs")?;
            let enabled = br.opt_bool("enabled")?;
            let mut l: drover_model::LogConfig =
                br.decode(&[("max_file_size", "MaxFileSizeMB")], Map::new())?;
            if enabled == Some(false) {
                l.disabled = true;
            }
            if l.max_files == 0 || l.max_file_size_mb == 0 {
                return Err(br.error_here("max_files and max_file_size must be at least 1"));
            }
            warnings.extend(br.finish());
            l
        }
        None => drover_model::LogConfig::default(),
    })
}

/// A task's `template` blocks.
fn templates(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<drover_model::Template>, JobspecError> {
    let blocks = r.blocks("template");
    Ok(src.each(blocks, |b| template(src, b, r.path(), warnings)))
}

fn template(
    src: &Source<'_>,
    b: &Block,
    parent: &str,
    warnings: &mut Vec<String>,
) -> Result<drover_model::Template, JobspecError> {
    let mut br = BlockReader::new(src, b, parent.to_string(), "template")?;
    if let Some(cs) = br.block_once("change_script")? {
        br.warn_at(
            cs,
            "block \"change_script\" is accepted but ignored: a re-rendered template with change_mode \"script\" is rewritten and nothing else is done",
        );
    }
    br.deprecated(
        "vault_grace",
        "deprecated, and ignored by Nomad since 0.11: ignored",
        false,
    );
    let mut base = match to_json(&drover_model::Template::default()) {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(w) = br.block_once("wait")? {
        br.warn_at(
            w,
            "block \"wait\" is parsed but not acted on yet: a template is re-rendered as soon as what it reads changes",
        );
        let mut wr = BlockReader::new(src, w, br.path().to_string(), "wait")?;
        let wait: drover_model::WaitConfig = wr.decode(&[], Map::new())?;
        if let (Some(min), Some(max)) = (wait.min, wait.max)
            && min > max
        {
            src.report(wr.error_key("min", "min must not be greater than max"));
        }
        warnings.extend(wr.finish());
        base.insert("Wait".into(), to_json(&wait));
    }
    let t = br.decode(
        &[
            ("source", "SourcePath"),
            ("destination", "DestPath"),
            ("data", "EmbeddedTmpl"),
            ("left_delimiter", "LeftDelim"),
            ("right_delimiter", "RightDelim"),
            ("env", "Envvars"),
            ("error_on_missing_key", "ErrMissingKey"),
            ("uid", "Uid"),
            ("gid", "Gid"),
        ],
        base,
    )?;
    warnings.extend(br.finish());
    Ok(t)
}

/// A task's `artifact` blocks.
fn artifacts(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<drover_model::TaskArtifact>, JobspecError> {
    let blocks = r.blocks("artifact");
    Ok(src.each(blocks, |b| {
        let mut br = BlockReader::new(src, b, r.path().to_string(), "artifact")?;
        let options = br.string_map("options")?;
        let headers = br.string_map("headers")?;
        let extra = obj(vec![
            ("GetterOptions", to_json(&options)),
            ("GetterHeaders", to_json(&headers)),
            ("GetterMode", Json::from("any")),
        ]);
        let a = br.decode(
            &[
                ("source", "GetterSource"),
                ("destination", "RelativeDest"),
                ("mode", "GetterMode"),
            ],
            extra,
        )?;
        warnings.extend(br.finish());
        Ok(a)
    }))
}

/// A task's `identity` blocks (workload identities: the client's identity hook).
fn identities(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<drover_model::WorkloadIdentity>, JobspecError> {
    let blocks = r.blocks("identity");
    let mut names = std::collections::BTreeSet::new();
    Ok(src.each(blocks, |b| {
        // `identity { ... }` is the default identity, `identity "name" { ... }` a named one.
        let mut br = if b.labels.is_empty() {
            BlockReader::new(src, b, r.path().to_string(), "identity")?
        } else {
            BlockReader::labelled(src, b, r.path().to_string(), "identity")?
        };
        let name = match br.label() {
            "" => "default".to_string(),
            label => label.to_string(),
        };
        if !names.insert(name.clone()) {
            return Err(br.error_here(&format!("identity {name:?} is defined twice here")));
        }
        let i = br.decode(
            &[("aud", "Audience"), ("ttl", "TTL")],
            obj(vec![("Name", Json::from(name))]),
        )?;
        warnings.extend(br.finish());
        Ok(i)
    }))
}

/// A task's `volume_mount` blocks.
fn volume_mounts(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<drover_model::VolumeMount>, JobspecError> {
    let blocks = r.blocks("volume_mount");
    Ok(src.each(blocks, |b| {
        warn_not_acted_on(r, b);
        let mut br = BlockReader::new(src, b, r.path().to_string(), "volume_mount")?;
        let v = br.decode(&[], Map::new())?;
        warnings.extend(br.finish());
        Ok(v)
    }))
}

/// A task's `secret` blocks, each with its free-form `config`.
pub(crate) fn secrets(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Vec<drover_model::Secret> {
    let blocks = r.blocks("secret");
    let mut names = std::collections::BTreeSet::new();
    src.each(blocks, |b| {
        warn_not_acted_on(r, b);
        let mut br = BlockReader::new(src, b, r.path().to_string(), "secret")?;
        let label = br.label().to_string();
        if !names.insert(label.clone()) {
            return Err(br.error_here(&format!("secret {label:?} is defined twice here")));
        }
        let config = match br.block_once("config")? {
            Some(c) => br.free_form(c)?,
            None => Map::new(),
        };
        let env = br.string_map("env")?;
        let s = br.decode(
            &[],
            obj(vec![
                ("Name", Json::from(label)),
                ("Config", Json::Object(config)),
                ("Env", to_json(&env)),
            ]),
        )?;
        warnings.extend(br.finish());
        Ok(s)
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod compat_tests;
