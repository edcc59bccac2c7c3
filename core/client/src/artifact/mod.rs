//! The artifacts hook: before a task first starts, each of its `artifact` blocks is fetched
//! into the task directory, as Nomad's go-getter does for the sources Drover supports:
//!
//! - `source`: `http://` and `https://` URLs (streamed to disk; `headers` sent with the
//!   request; options other than `checksum` and `archive` become query parameters, as in
//!   go-getter), local files and directories as absolute paths or `file://` URLs;
//! - `destination`: relative to the task directory (default `local/`), refused if it
//!   escapes it (`..`, or a symlink leading out);
//! - `mode`: `any` (archives unpacked into the destination directory, other files kept
//!   under their own name there), `file` (the destination names the file), `dir` (an
//!   archive or a local directory, unpacked or copied into the destination);
//! - `options { checksum = "sha256:<hex>" }` (md5, sha1, sha256, sha512) verified before
//!   anything is unpacked; `options { archive = "false" }` keeps an archive packed;
//! - archives `.tar`, `.tar.gz`/`.tgz`, `.zip` (and a single `.gz` file) unpacked, refusing
//!   entries that escape the destination;
//! - `${NOMAD_*}`, the task's env, `${attr.*}`, `${meta.*}` and `${node.*}` interpolated in
//!   source, destination, options and headers.
//!
//! The transfer of each artifact is bounded by a timeout; unpacking runs on blocking threads.

mod checksum;
mod unpack;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use drover_model::TaskArtifact;
use reqwest::Url;
use tokio::io::AsyncWriteExt;

use crate::env::interpolate;
#[cfg(test)]
use checksum::ChecksumKind;
use checksum::{Checksum, Hasher};
pub use unpack::UnpackLimits;
use unpack::{ArchiveChoice, ArchiveKind};

/// How artifacts are fetched on this node: the client's `artifact { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactConfig {
    /// How long one artifact's transfer may take (`http_read_timeout`, Nomad's 30m).
    pub timeout: Duration,
    /// The largest artifact fetched, in bytes (`http_max_size`, Nomad's 100GB).
    pub max_size: u64,
    /// What one archive may unpack to (`decompression_size_limit`, Nomad's 100GB, and
    /// `decompression_file_count_limit`, Nomad's 4096).
    pub unpack: UnpackLimits,
    /// Host directories whose files a job may fetch as local artifacts (absolute paths,
    /// `file://` URLs); none by default: a job cannot copy host files (as root) into its
    /// task otherwise.
    pub allowed_host_paths: Vec<PathBuf>,
}

impl Default for ArtifactConfig {
    fn default() -> Self {
        ArtifactConfig {
            timeout: Duration::from_secs(30 * 60),
            max_size: 100_000_000_000,
            unpack: UnpackLimits {
                size: 100_000_000_000,
                files: 4096,
            },
            allowed_host_paths: Vec::new(),
        }
    }
}

/// What went wrong with one artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the source is empty")]
    EmptySource,
    #[error(
        "unsupported source {0:?}: Drover fetches http:// and https:// URLs, file:// URLs and \
         absolute paths (git, hg, s3, gcs and relative paths are not supported)"
    )]
    UnsupportedSource(String),
    #[error("{field} {value:?} refers to ${{{name}}}, which this task's environment does not have")]
    Unresolved {
        field: &'static str,
        value: String,
        name: String,
    },
    #[error("destination {0:?} escapes the task directory")]
    DestinationEscapes(String),
    #[error("unknown mode {0:?}: use \"any\", \"file\" or \"dir\"")]
    BadMode(String),
    #[error("option checksum {value:?}: {why}")]
    BadChecksum { value: String, why: String },
    #[error("option {key:?}: {why}")]
    BadOption { key: String, why: String },
    #[error("header {name:?}: {why}")]
    BadHeader { name: String, why: String },
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("GET {url}: {why}")]
    Http { url: String, why: String },
    #[error("GET {url}: the server answered {status}")]
    HttpStatus { url: String, status: String },
    #[error("the transfer did not finish within {0:?}")]
    Timeout(Duration),
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error(
        "{name} is a {suffix} archive, which Drover does not unpack (it unpacks tar, tar.gz, \
         tgz, zip and gz): set options {{ archive = \"false\" }} to keep it packed"
    )]
    UnsupportedArchive { name: String, suffix: String },
    #[error("unpacking {archive}: {why}")]
    Unpack { archive: String, why: String },
    #[error("unpacking {archive}: entry {entry:?} escapes the destination: {why}")]
    EntryEscapes {
        archive: String,
        entry: String,
        why: String,
    },
    #[error("{0}")]
    Mode(String),
    #[error(
        "{0} is a host path, and this client fetches none unless its artifact {{ allowed_host_paths }} lists a directory holding it"
    )]
    HostPathNotAllowed(String),
    #[error("the artifact is larger than {0} bytes (the client's artifact http_max_size)")]
    TooLarge(u64),
}

impl ArtifactError {
    fn io(path: &Path, e: io::Error) -> ArtifactError {
        ArtifactError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        }
    }
}

/// An artifact that could not be fetched, named by its source (credentials redacted).
#[derive(Debug, thiserror::Error)]
#[error("failed to download artifact {artifact:?}: {error}")]
pub struct ArtifactFailure {
    pub artifact: String,
    #[source]
    pub error: ArtifactError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Any,
    File,
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Http(Url),
    /// A host path as the job gave it: not fetched until [`allowed_host_path`] resolves it.
    Local(PathBuf),
    /// A host path resolved inside an allowed directory: (that directory, the path below it).
    Allowed(PathBuf, PathBuf),
}

/// Resolves a local source (links, `..`) and accepts it only inside one of `allowed`
/// (themselves resolved): `/allowed/../../etc/shadow`, a link inside an allowed directory
/// that leads out, another allocation's directory, are all refused.
fn allowed_host_path(path: &Path, allowed: &[PathBuf]) -> Result<Source, ArtifactError> {
    let refused = || ArtifactError::HostPathNotAllowed(path.display().to_string());
    if allowed.is_empty() {
        return Err(refused());
    }
    let real = fs::canonicalize(path).map_err(|e| ArtifactError::io(path, e))?;
    for root in allowed {
        let Ok(root) = fs::canonicalize(root) else {
            continue;
        };
        if let Ok(rel) = real.strip_prefix(&root) {
            return Ok(Source::Allowed(root.clone(), rel.to_path_buf()));
        }
    }
    Err(refused())
}

/// One artifact with its fields interpolated and checked, ready to fetch.
#[derive(Debug)]
struct Plan {
    source: Source,
    /// The task directory everything is written beneath.
    task_dir: PathBuf,
    /// The destination directory (modes any, dir) or file (mode file).
    dest: PathBuf,
    /// As the jobspec gave it (interpolated), for messages.
    dest_text: String,
    mode: Mode,
    checksum: Option<Checksum>,
    archive: ArchiveChoice,
    headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    /// The largest artifact fetched, and what an archive may unpack to.
    max_size: u64,
    unpack: UnpackLimits,
}

/// Whether an artifact needs the node's attributes or meta to be interpolated.
pub fn needs_node(artifacts: &[TaskArtifact]) -> bool {
    let refers = |s: &str| {
        ["${attr.", "${meta.", "${node."]
            .iter()
            .any(|p| s.contains(p))
    };
    artifacts.iter().any(|a| {
        refers(&a.getter_source)
            || refers(&a.relative_dest)
            || a.getter_options.values().any(|v| refers(v))
            || a.getter_headers.values().any(|v| refers(v))
    })
}

/// The `${attr.*}`, `${meta.*}` and `${node.*}` names of a node.
pub fn node_vars(node: &drover_model::Node, region: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (k, v) in &node.attributes {
        vars.insert(format!("attr.{k}"), v.clone());
    }
    for (k, v) in &node.meta {
        vars.insert(format!("meta.{k}"), v.clone());
    }
    for (k, v) in [
        ("node.unique.id", &node.id),
        ("node.unique.name", &node.name),
        ("node.datacenter", &node.datacenter),
        ("node.class", &node.node_class),
        ("node.pool", &node.node_pool),
    ] {
        vars.insert(k.to_string(), v.clone());
    }
    vars.insert("node.region".into(), region.to_string());
    vars
}

/// Fetches every artifact of a task into its directory, in order; the first failure stops.
pub async fn fetch_all(
    artifacts: &[TaskArtifact],
    task_dir: &Path,
    vars: &BTreeMap<String, String>,
    config: &ArtifactConfig,
) -> Result<(), ArtifactFailure> {
    for (i, a) in artifacts.iter().enumerate() {
        let artifact = redact(&interpolate(&a.getter_source, vars));
        tracing::info!(%artifact, "downloading artifact");
        fetch_one(i, a, task_dir, vars, config)
            .await
            .map_err(|error| ArtifactFailure { artifact, error })?;
    }
    Ok(())
}

async fn fetch_one(
    index: usize,
    a: &TaskArtifact,
    task_dir: &Path,
    vars: &BTreeMap<String, String>,
    config: &ArtifactConfig,
) -> Result<(), ArtifactError> {
    let timeout = config.timeout;
    let mut plan = prepare(a, task_dir, vars)?;
    if let Source::Local(path) = &plan.source {
        let (path, allowed) = (path.clone(), config.allowed_host_paths.clone());
        plan.source = blocking(move || allowed_host_path(&path, &allowed)).await??;
    }
    plan.max_size = config.max_size;
    plan.unpack = config.unpack;
    // A staging directory inside the task directory: on the destination's filesystem, so
    // the finished artifact is moved into place with a rename.
    let staging = {
        let (task_dir, dest) = (task_dir.to_path_buf(), plan.dest.clone());
        let dest_text = plan.dest_text.clone();
        blocking(move || prepare_dirs(&task_dir, &dest, &dest_text, index)).await??
    };
    let _cleanup = RemoveOnDrop(staging.clone());
    let staged = match tokio::time::timeout(timeout, transfer(&plan, &staging)).await {
        Ok(r) => r?,
        Err(_) => return Err(ArtifactError::Timeout(timeout)),
    };
    let Some((file, name, digest)) = staged else {
        return Ok(()); // a local directory, copied
    };
    if let (Some(expected), Some(actual)) = (&plan.checksum, digest) {
        checksum::verify(expected, actual)?;
    }
    blocking(move || place(&plan, &file, &name, &staging)).await?
}

/// Interpolates and checks an artifact's fields; no I/O.
fn prepare(
    a: &TaskArtifact,
    task_dir: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<Plan, ArtifactError> {
    let resolve = |field: &'static str, raw: &str| -> Result<String, ArtifactError> {
        let v = interpolate(raw, vars);
        match unresolved(&v) {
            Some(name) => Err(ArtifactError::Unresolved {
                field,
                value: raw.to_string(),
                name: name.to_string(),
            }),
            None => Ok(v),
        }
    };
    let source_text = resolve("source", a.getter_source.trim())?;
    let dest_text = resolve("destination", &a.relative_dest)?;
    let mode = match a.getter_mode.trim() {
        "" | "any" => Mode::Any,
        "file" => Mode::File,
        "dir" => Mode::Dir,
        other => return Err(ArtifactError::BadMode(other.to_string())),
    };
    let dest_text = if dest_text.trim().is_empty() {
        "local/".to_string()
    } else {
        dest_text
    };
    let dest = join_inside(task_dir, &dest_text)
        .ok_or_else(|| ArtifactError::DestinationEscapes(dest_text.clone()))?;
    let mut options = BTreeMap::new();
    for (k, v) in &a.getter_options {
        options.insert(k.clone(), resolve("option", v)?);
    }
    let mut source = parse_source(&source_text)?;
    // go-getter reads checksum and archive from the URL's query too.
    // The query is rewritten only when it must be (a signed URL stays as it was written).
    let rewrite = match &source {
        Source::Http(url) => {
            url.query_pairs()
                .any(|(k, _)| k == "checksum" || k == "archive")
                || options.keys().any(|k| k != "checksum" && k != "archive")
        }
        Source::Local(_) | Source::Allowed(..) => false,
    };
    if let Source::Http(url) = &mut source
        && rewrite
    {
        let mut rest = Vec::new();
        for (k, v) in url.query_pairs() {
            if (k == "checksum" || k == "archive") && !options.contains_key(k.as_ref()) {
                options.insert(k.to_string(), v.to_string());
            } else if k != "checksum" && k != "archive" {
                rest.push((k.to_string(), v.to_string()));
            }
        }
        for (k, v) in &options {
            if k != "checksum" && k != "archive" {
                rest.push((k.clone(), v.clone()));
            }
        }
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
    } else if let Source::Local(_) = &source
        && let Some(k) = options.keys().find(|k| *k != "checksum" && *k != "archive")
    {
        return Err(ArtifactError::BadOption {
            key: k.clone(),
            why: "a local source takes only the checksum and archive options".into(),
        });
    }
    let checksum = match options.get("checksum") {
        Some(v) if !v.trim().is_empty() => Some(Checksum::parse(v)?),
        _ => None,
    };
    let archive = ArchiveKind::from_option(options.get("archive").map_or("", |v| v))?;
    let mut headers = Vec::new();
    for (k, v) in &a.getter_headers {
        let bad = |why: String| ArtifactError::BadHeader {
            name: k.clone(),
            why,
        };
        if !matches!(source, Source::Http(_)) {
            return Err(bad("headers apply to http and https sources only".into()));
        }
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| bad(format!("not a valid header name: {e}")))?;
        let value = reqwest::header::HeaderValue::from_str(&resolve("header", v)?)
            .map_err(|e| bad(format!("not a valid header value: {e}")))?;
        headers.push((name, value));
    }
    Ok(Plan {
        source,
        task_dir: task_dir.to_path_buf(),
        dest,
        dest_text,
        mode,
        checksum,
        archive,
        headers,
        max_size: ArtifactConfig::default().max_size,
        unpack: ArtifactConfig::default().unpack,
    })
}

/// The first `${name}` left in a string after interpolation.
fn unresolved(s: &str) -> Option<&str> {
    let start = s.find("${")? + 2;
    let end = s[start..].find('}')?;
    Some(&s[start..start + end])
}

fn parse_source(s: &str) -> Result<Source, ArtifactError> {
    if s.is_empty() {
        return Err(ArtifactError::EmptySource);
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let url = Url::parse(s).map_err(|e| ArtifactError::Http {
            url: redact(s),
            why: format!("not a valid URL: {e}"),
        })?;
        return Ok(Source::Http(url));
    }
    if lower.starts_with("file://") {
        let url = Url::parse(s).map_err(|_| ArtifactError::UnsupportedSource(s.into()))?;
        let path = url
            .to_file_path()
            .map_err(|_| ArtifactError::UnsupportedSource(s.into()))?;
        return Ok(Source::Local(path));
    }
    if s.starts_with('/') {
        return Ok(Source::Local(PathBuf::from(s)));
    }
    Err(ArtifactError::UnsupportedSource(s.into()))
}

/// A URL with its password replaced, for messages.
fn redact(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}

/// `rel` under `root`, lexically: a leading `/` is ignored (Nomad joins it under the task
/// directory), `..` may not climb above `root`.
pub fn join_inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    let mut depth = 0usize;
    for c in Path::new(rel).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                depth = depth.checked_sub(1)?;
                out.pop();
            }
            Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
        }
    }
    Some(out)
}

/// Checks that the destination's existing part holds no link (a task may have planted one
/// on an earlier run: the client, as root, must not be led out of the task directory), and
/// creates the staging directory; both opened beneath the task directory without
/// following links.
fn prepare_dirs(
    task_dir: &Path,
    dest: &Path,
    dest_text: &str,
    index: usize,
) -> Result<PathBuf, ArtifactError> {
    let root = drover_beneath::Dir::open(task_dir).map_err(|e| ArtifactError::io(task_dir, e))?;
    let rel = dest
        .strip_prefix(task_dir)
        .map_err(|_| ArtifactError::DestinationEscapes(dest_text.to_string()))?;
    let escapes = || ArtifactError::DestinationEscapes(dest_text.to_string());
    let mut existing = rel;
    loop {
        match root.stat(existing, drover_beneath::Links::Never) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                root.dir(existing, drover_beneath::Links::Never)
                    .map_err(|_| escapes())?;
                break;
            }
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => return Err(escapes()),
            Ok(_) => break, // a file the artifact replaces
            Err(drover_beneath::Error::Link { .. } | drover_beneath::Error::Escapes { .. }) => {
                return Err(escapes());
            }
            Err(_) => match existing.parent() {
                Some(p) => existing = p,
                None => break,
            },
        }
    }
    let name = format!(
        ".artifact-{index}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    root.create_dirs(
        Path::new(&name),
        nix::sys::stat::Mode::from_bits_truncate(0o755),
    )
    .map_err(|e| ArtifactError::Io {
        path: task_dir.join(&name).display().to_string(),
        why: e.to_string(),
    })?;
    Ok(task_dir.join(name))
}

/// Brings the artifact into the staging directory: Some((file, its name, its digest when a
/// checksum is expected)), or None for a local directory, copied straight to its destination.
async fn transfer(
    plan: &Plan,
    staging: &Path,
) -> Result<Option<(PathBuf, String, Option<String>)>, ArtifactError> {
    let hasher = || plan.checksum.as_ref().map(|c| Hasher::new(c.kind));
    match &plan.source {
        Source::Http(url) => {
            let name = url_file_name(url);
            let file = staging.join(if name.is_empty() { "download" } else { &name });
            let digest = download(url, &plan.headers, &file, hasher(), plan.max_size).await?;
            Ok(Some((file, name, digest)))
        }
        Source::Local(path) => Err(ArtifactError::HostPathNotAllowed(
            path.display().to_string(),
        )),
        Source::Allowed(root, rel) => {
            let (root, rel, staging) = (root.clone(), rel.clone(), staging.to_path_buf());
            let (mode, dest, has_checksum) =
                (plan.mode, plan.dest.clone(), plan.checksum.is_some());
            let (h, max) = (hasher(), plan.max_size);
            blocking(move || copy_local(&root, &rel, &staging, mode, &dest, has_checksum, h, max))
                .await?
        }
    }
}

/// The reqwest client, built once (loading the system's root certificates reads files, so
/// it is built on a blocking thread).
async fn http_client() -> Result<&'static reqwest::Client, ArtifactError> {
    static CLIENT: tokio::sync::OnceCell<reqwest::Client> = tokio::sync::OnceCell::const_new();
    CLIENT
        .get_or_try_init(|| async {
            blocking(|| {
                reqwest::Client::builder()
                    .user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| ArtifactError::Http {
                        url: String::new(),
                        why: format!("cannot build the HTTP client: {}", chain(&e)),
                    })
            })
            .await?
        })
        .await
}

/// GETs `url` into `out`, chunk by chunk, digesting as it goes.
async fn download(
    url: &Url,
    headers: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)],
    out: &Path,
    mut hasher: Option<Hasher>,
    max_size: u64,
) -> Result<Option<String>, ArtifactError> {
    let shown = redact(url.as_str());
    let http_err = |e: reqwest::Error| ArtifactError::Http {
        url: shown.clone(),
        why: chain(&e),
    };
    let mut req = http_client().await?.get(url.clone());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let mut resp = req.send().await.map_err(http_err)?;
    if !resp.status().is_success() {
        return Err(ArtifactError::HttpStatus {
            url: shown,
            status: resp.status().to_string(),
        });
    }
    if resp.content_length().is_some_and(|n| n > max_size) {
        return Err(ArtifactError::TooLarge(max_size));
    }
    let mut f = tokio::fs::File::create(out)
        .await
        .map_err(|e| ArtifactError::io(out, e))?;
    let mut got: u64 = 0;
    while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
        got = got.saturating_add(chunk.len() as u64);
        if got > max_size {
            return Err(ArtifactError::TooLarge(max_size));
        }
        if let Some(h) = &mut hasher {
            h.update(&chunk);
        }
        f.write_all(&chunk)
            .await
            .map_err(|e| ArtifactError::io(out, e))?;
    }
    f.flush().await.map_err(|e| ArtifactError::io(out, e))?;
    Ok(hasher.map(Hasher::finish))
}

/// An error with its causes, which reqwest keeps out of its own message.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The last segment of a URL's path, percent-decoded ("" when there is none).
fn url_file_name(url: &Url) -> String {
    let seg = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    let name = String::from_utf8_lossy(&out).into_owned();
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        String::new()
    } else {
        name
    }
}

/// A local file is copied (and digested) into the staging directory; a local directory is
/// copied to its destination.
#[allow(clippy::too_many_arguments)]
fn copy_local(
    root: &Path,
    rel: &Path,
    staging: &Path,
    mode: Mode,
    dest: &Path,
    has_checksum: bool,
    mut hasher: Option<Hasher>,
    max_size: u64,
) -> Result<Option<(PathBuf, String, Option<String>)>, ArtifactError> {
    let path = &root.join(rel);
    let meta = fs::metadata(path).map_err(|e| ArtifactError::io(path, e))?;
    if meta.is_dir() {
        if has_checksum {
            return Err(ArtifactError::Mode(format!(
                "{} is a directory: a checksum applies to a file",
                path.display()
            )));
        }
        if mode == Mode::File {
            return Err(ArtifactError::Mode(format!(
                "mode is \"file\" but {} is a directory",
                path.display()
            )));
        }
        fs::create_dir_all(dest).map_err(|e| ArtifactError::io(dest, e))?;
        copy_tree(path, dest)?;
        return Ok(None);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = staging.join(&name);
    // Opened beneath the allowed directory: a link swapped in since it was resolved cannot
    // lead out of it, and only a regular file is read.
    let mut src = drover_beneath::Dir::open(root)
        .map_err(|e| ArtifactError::io(root, e))?
        .open_regular(rel, drover_beneath::Links::Inside)
        .map_err(|e| ArtifactError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    let mut dst = fs::File::create(&out).map_err(|e| ArtifactError::io(&out, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied: u64 = 0;
    loop {
        let n = src.read(&mut buf).map_err(|e| ArtifactError::io(path, e))?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > max_size {
            return Err(ArtifactError::TooLarge(max_size));
        }
        if let Some(h) = &mut hasher {
            h.update(&buf[..n]);
        }
        dst.write_all(&buf[..n])
            .map_err(|e| ArtifactError::io(&out, e))?;
    }
    // Keep the source's permission bits (a script stays executable).
    fs::set_permissions(&out, meta.permissions()).map_err(|e| ArtifactError::io(&out, e))?;
    Ok(Some((out, name, hasher.map(Hasher::finish))))
}

/// Copies a local directory tree; symlinks are recreated when they stay inside it.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ArtifactError> {
    for entry in fs::read_dir(from).map_err(|e| ArtifactError::io(from, e))? {
        let entry = entry.map_err(|e| ArtifactError::io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ty = entry.file_type().map_err(|e| ArtifactError::io(&src, e))?;
        if ty.is_dir() {
            fs::create_dir_all(&dst).map_err(|e| ArtifactError::io(&dst, e))?;
            copy_tree(&src, &dst)?;
        } else if ty.is_symlink() {
            let target = fs::read_link(&src).map_err(|e| ArtifactError::io(&src, e))?;
            if target.is_absolute() || target.components().any(|c| c == Component::ParentDir) {
                return Err(ArtifactError::Mode(format!(
                    "{} links to {}, outside the directory being copied",
                    src.display(),
                    target.display()
                )));
            }
            let _ = fs::remove_file(&dst);
            std::os::unix::fs::symlink(&target, &dst).map_err(|e| ArtifactError::io(&dst, e))?;
        } else if ty.is_file() {
            fs::copy(&src, &dst).map_err(|e| ArtifactError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Moves a fetched (and verified) file to its destination, unpacking it if it is an archive.
fn place(plan: &Plan, file: &Path, name: &str, staging: &Path) -> Result<(), ArtifactError> {
    let kind = match plan.archive {
        ArchiveChoice::Keep => None,
        ArchiveChoice::Force(k) => Some(k),
        ArchiveChoice::Detect => ArchiveKind::detect(name)?,
    };
    let dest = &plan.dest;
    // Directories are made beneath the task directory, following no link on the way.
    let mkdir = |d: &Path| -> Result<(), ArtifactError> {
        let rel = d
            .strip_prefix(&plan.task_dir)
            .map_err(|_| ArtifactError::DestinationEscapes(plan.dest_text.clone()))?;
        drover_beneath::Dir::open(&plan.task_dir)
            .map_err(|e| ArtifactError::io(&plan.task_dir, e))?
            .create_dirs(rel, nix::sys::stat::Mode::from_bits_truncate(0o755))
            .map(drop)
            .map_err(|e| match e {
                drover_beneath::Error::Link { .. } | drover_beneath::Error::Escapes { .. } => {
                    ArtifactError::DestinationEscapes(plan.dest_text.clone())
                }
                e => ArtifactError::Io {
                    path: d.display().to_string(),
                    why: e.to_string(),
                },
            })
    };
    let rename = |to: &Path| {
        if fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) {
            return Err(ArtifactError::Mode(format!(
                "destination {} is a directory: with mode = \"file\" the destination names the file",
                plan.dest_text
            )));
        }
        fs::rename(file, to).map_err(|e| ArtifactError::io(to, e))
    };
    match (plan.mode, kind) {
        (Mode::Any, Some(ArchiveKind::Gz)) => {
            mkdir(dest)?;
            let stem = &name[..name.len() - 3];
            if stem.is_empty() {
                return Err(ArtifactError::Mode(format!(
                    "cannot name the file unpacked from {name:?}: use mode = \"file\" and name it in the destination"
                )));
            }
            unpack::gunzip(file, name, &dest.join(stem), plan.unpack)
        }
        (Mode::Dir, Some(ArchiveKind::Gz)) => Err(ArtifactError::Mode(format!(
            "mode is \"dir\" but {name} is a single gzip-compressed file"
        ))),
        (Mode::File, Some(ArchiveKind::Gz)) => {
            mkdir(dest.parent().unwrap_or(dest))?;
            unpack::gunzip(file, name, dest, plan.unpack)
        }
        (Mode::Any | Mode::Dir, Some(k)) => {
            mkdir(dest)?;
            unpack::unpack_into(k, file, name, dest, plan.unpack)
        }
        (Mode::File, Some(k)) => {
            // As go-getter: an archive of exactly one file, which becomes the destination.
            let out = staging.join(".unpacked");
            mkdir(&out)?;
            unpack::unpack_into(k, file, name, &out, plan.unpack)?;
            let files = regular_files(&out)?;
            match files.as_slice() {
                [one] => {
                    mkdir(dest.parent().unwrap_or(dest))?;
                    if fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
                        return Err(ArtifactError::Mode(format!(
                            "destination {} is a directory: with mode = \"file\" the destination names the file",
                            plan.dest_text
                        )));
                    }
                    fs::rename(one, dest).map_err(|e| ArtifactError::io(dest, e))
                }
                _ => Err(ArtifactError::Mode(format!(
                    "mode is \"file\" but the {} archive {name} holds {} files: use mode = \"dir\", or options {{ archive = \"false\" }} to keep it packed",
                    k.name(),
                    files.len()
                ))),
            }
        }
        (Mode::Any, None) => {
            if name.is_empty() {
                return Err(ArtifactError::Mode(
                    "the URL's path names no file: use mode = \"file\" and name it in the destination"
                        .into(),
                ));
            }
            mkdir(dest)?;
            rename(&dest.join(name))
        }
        (Mode::File, None) => {
            mkdir(dest.parent().unwrap_or(dest))?;
            rename(dest)
        }
        (Mode::Dir, None) => Err(ArtifactError::Mode(format!(
            "mode is \"dir\" but {} is neither an archive nor a local directory",
            if name.is_empty() { "the source" } else { name }
        ))),
    }
}

fn regular_files(dir: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| ArtifactError::io(dir, e))? {
        let e = e.map_err(|e| ArtifactError::io(dir, e))?;
        let ty = e
            .file_type()
            .map_err(|err| ArtifactError::io(&e.path(), err))?;
        if ty.is_dir() {
            out.extend(regular_files(&e.path())?);
        } else {
            out.push(e.path());
        }
    }
    Ok(out)
}

/// Runs blocking file work off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArtifactError::Io {
            path: String::new(),
            why: format!("the blocking file task failed: {e}"),
        })
}

/// Removes the staging directory, whatever happened (also when the fetch is cancelled).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.0);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || {
                let _ = fs::remove_dir_all(dir);
            });
        } else {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests;
