use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::Digest;

use super::*;

fn artifact(source: &str, dest: &str) -> TaskArtifact {
    TaskArtifact {
        getter_source: source.into(),
        relative_dest: dest.into(),
        getter_mode: "any".into(),
        ..Default::default()
    }
}

fn sha256(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fetching with every host path allowed (the tests' local sources live in temporary
/// directories).
fn config(timeout: Duration) -> ArtifactConfig {
    ArtifactConfig {
        timeout,
        allowed_host_paths: vec!["/".into()],
        ..ArtifactConfig::default()
    }
}

async fn fetch(task_dir: &Path, a: TaskArtifact) -> Result<(), ArtifactFailure> {
    fetch_all(
        &[a],
        task_dir,
        &BTreeMap::new(),
        &config(Duration::from_secs(30)),
    )
    .await
}

/// A task directory as the allocation runner makes it.
fn task_dir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for d in ["local", "secrets", "tmp"] {
        fs::create_dir(t.path().join(d)).unwrap();
    }
    t
}

fn no_staging_left(dir: &Path) {
    // The staging directory is removed on a blocking thread: give it a moment.
    for _ in 0..50 {
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".artifact-"))
            .collect();
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("a staging directory was left in {}", dir.display());
}

/// A tar.gz with `app/run.sh` (mode 755) and `app/conf/app.conf`.
fn tar_gz() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (path, mode, data) in [
        ("app/run.sh", 0o755, &b"#!/bin/sh\necho hi\n"[..]),
        ("app/conf/app.conf", 0o644, &b"port = 8080\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A tar whose entry is written with a raw name (tar::Builder refuses `..` itself).
fn tar_with_raw_entry(name: &[u8], kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"pwned\n"
    } else {
        b""
    };
    h.set_size(data.len() as u64);
    if let Some(l) = link {
        h.set_link_name(l).unwrap();
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

fn zip_of(entries: &[(&str, Option<u32>, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, mode, data) in entries {
        let mut o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        if let Some(m) = mode {
            o = o.unix_permissions(*m);
        }
        if name.ends_with('/') {
            w.add_directory(*name, o).unwrap();
        } else {
            w.start_file(*name, o).unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn destinations_stay_inside_the_task_dir() {
    let root = Path::new("/t");
    assert_eq!(join_inside(root, "local/").unwrap(), Path::new("/t/local"));
    assert_eq!(
        join_inside(root, "local/a/../b").unwrap(),
        Path::new("/t/local/b")
    );
    // As Nomad: an absolute destination is joined under the task directory.
    assert_eq!(
        join_inside(root, "/etc/app").unwrap(),
        Path::new("/t/etc/app")
    );
    assert_eq!(join_inside(root, ".").unwrap(), Path::new("/t"));
    for bad in ["..", "../x", "local/../../x", "a/../../../etc"] {
        assert!(join_inside(root, bad).is_none(), "{bad}");
    }
}

#[test]
fn fields_are_checked_before_any_io() {
    let dir = Path::new("/t");
    let vars = BTreeMap::new();
    let err = |a: TaskArtifact| prepare(&a, dir, &vars).unwrap_err().to_string();
    assert!(
        err(artifact("https://h/x", "../../etc")).contains("destination \"../../etc\" escapes"),
    );
    let mut a = artifact("https://h/x", "");
    a.getter_mode = "tree".into();
    assert!(err(a).contains("unknown mode \"tree\""));
    for s in [
        "git::https://github.com/x/y",
        "github.com/x/y",
        "relative/file.tgz",
        "s3://bucket/key",
    ] {
        let e = err(artifact(s, ""));
        assert!(e.contains("unsupported source") && e.contains(s), "{e}");
    }
    let e = err(artifact("https://h/${attr.cpu.arch}/app", ""));
    assert!(e.contains("${attr.cpu.arch}"), "{e}");
    let mut a = artifact("/srv/app.tgz", "");
    a.getter_options.insert("ref".into(), "main".into());
    assert!(err(a).contains("option \"ref\""));
    let mut a = artifact("https://h/app", "");
    a.getter_headers.insert("Bad Header".into(), "x".into());
    assert!(err(a).contains("header \"Bad Header\""));
    let mut a = artifact("https://h/app", "");
    a.getter_options.insert("archive".into(), "rar".into());
    assert!(err(a).contains("option \"archive\""));
}

#[test]
fn interpolation_and_options_shape_the_request() {
    let vars: BTreeMap<String, String> = [
        ("NOMAD_TASK_NAME", "web"),
        ("attr.cpu.arch", "x86_64"),
        ("meta.channel", "stable"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut a = artifact(
        "https://user:pw@h/${meta.channel}/app-${attr.cpu.arch}.tgz?checksum=md5:5eb63bbbe01eeed093cb22bb8f5acdc3&x=1",
        "local/${NOMAD_TASK_NAME}",
    );
    a.getter_options.insert("token".into(), "abc".into());
    a.getter_headers
        .insert("X-Task".into(), "${NOMAD_TASK_NAME}".into());
    let p = prepare(&a, Path::new("/t"), &vars).unwrap();
    let Source::Http(url) = &p.source else {
        panic!("{:?}", p.source)
    };
    assert_eq!(url.path(), "/stable/app-x86_64.tgz");
    // checksum is taken out of the URL; other options are query parameters.
    assert_eq!(url.query(), Some("x=1&token=abc"));
    assert_eq!(p.checksum.unwrap().kind, ChecksumKind::Md5);
    assert_eq!(p.dest, Path::new("/t/local/web"));
    assert_eq!(p.headers[0].1, "web");
    assert_eq!(
        redact(url.as_str()),
        "https://user:redacted@h/stable/app-x86_64.tgz?x=1&token=abc"
    );
    // A URL without options to add keeps its query byte for byte (signed URLs).
    let signed =
        "https://h/a.tgz?X-Amz-Credential=AK%2F2026%2Fs3&X-Amz-Signature=ab%2Bcd&note=a%20b";
    let Source::Http(url) = prepare(&artifact(signed, ""), Path::new("/t"), &vars)
        .unwrap()
        .source
    else {
        panic!()
    };
    assert_eq!(url.as_str(), signed);
    let Source::Local(path) = prepare(
        &artifact("file:///srv/a%20b.txt", ""),
        Path::new("/t"),
        &vars,
    )
    .unwrap()
    .source
    else {
        panic!()
    };
    assert_eq!(path, Path::new("/srv/a b.txt"));
}

#[tokio::test]
async fn a_local_file_with_a_good_checksum_reaches_local() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("config.json");
    fs::write(&file, b"{\"a\":1}").unwrap();
    let t = task_dir();
    let mut a = artifact(file.to_str().unwrap(), "");
    a.getter_options.insert(
        "checksum".into(),
        format!("sha256:{}", sha256(b"{\"a\":1}")),
    );
    fetch(t.path(), a).await.unwrap();
    assert_eq!(
        fs::read(t.path().join("local/config.json")).unwrap(),
        b"{\"a\":1}"
    );
    no_staging_left(t.path());
}

#[tokio::test]
async fn a_checksum_mismatch_names_both_digests_and_places_nothing() {
    let src = tempfile::tempdir().unwrap();
    let data = tar_gz();
    let file = src.path().join("app.tar.gz");
    fs::write(&file, &data).unwrap();
    let t = task_dir();
    let wrong = "0".repeat(128);
    let mut a = artifact(&format!("file://{}", file.display()), "local/app");
    a.getter_options
        .insert("checksum".into(), format!("sha512:{wrong}"));
    let err = fetch(t.path(), a).await.unwrap_err().to_string();
    let actual = sha2::Sha512::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert!(
        err.contains(&format!(
            "failed to download artifact \"file://{}\"",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("expected sha512:{wrong}")), "{err}");
    assert!(err.contains(&format!("got sha512:{actual}")), "{err}");
    assert!(
        !t.path().join("local/app").exists(),
        "unpacked despite the mismatch"
    );
    no_staging_left(t.path());
}

#[tokio::test]
async fn a_tar_gz_is_unpacked_keeping_modes_or_kept_packed() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("app.tgz");
    fs::write(&file, tar_gz()).unwrap();
    let t = task_dir();
    fetch(t.path(), artifact(file.to_str().unwrap(), "local/"))
        .await
        .unwrap();
    let run = t.path().join("local/app/run.sh");
    assert_eq!(fs::read_to_string(&run).unwrap(), "#!/bin/sh\necho hi\n");
    assert_eq!(
        fs::metadata(&run).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_to_string(t.path().join("local/app/conf/app.conf")).unwrap(),
        "port = 8080\n"
    );
    // archive = "false" keeps it packed; mode file names it.
    let mut a = artifact(file.to_str().unwrap(), "local/packed.tgz");
    a.getter_mode = "file".into();
    a.getter_options.insert("archive".into(), "false".into());
    fetch(t.path(), a).await.unwrap();
    assert_eq!(
        fs::read(t.path().join("local/packed.tgz")).unwrap(),
        tar_gz()
    );
    // mode file with an archive of two files cannot become one file.
    let mut a = artifact(file.to_str().unwrap(), "local/one");
    a.getter_mode = "file".into();
    let err = fetch(t.path(), a).await.unwrap_err().to_string();
    assert!(err.contains("holds 2 files"), "{err}");
    no_staging_left(t.path());
}

#[tokio::test]
async fn a_zip_is_unpacked_with_its_directories_and_modes() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("bundle.zip");
    fs::write(
        &file,
        zip_of(&[
            ("bin/", None, b""),
            ("bin/tool", Some(0o755), b"#!/bin/sh\nexit 0\n"),
            ("README", None, b"read me\n"),
        ]),
    )
    .unwrap();
    let t = task_dir();
    let mut a = artifact(file.to_str().unwrap(), "local/bundle");
    a.getter_mode = "dir".into();
    fetch(t.path(), a).await.unwrap();
    let tool = t.path().join("local/bundle/bin/tool");
    assert_eq!(fs::read_to_string(&tool).unwrap(), "#!/bin/sh\nexit 0\n");
    assert_eq!(
        fs::metadata(&tool).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::read_to_string(t.path().join("local/bundle/README")).unwrap(),
        "read me\n"
    );
}

#[tokio::test]
async fn archive_entries_that_escape_are_refused() {
    let src = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot.tar",
            tar_with_raw_entry(b"../../escaped", tar::EntryType::Regular, None),
            "its path contains \"..\"",
        ),
        (
            "abs-link.tar",
            tar_with_raw_entry(b"etc", tar::EntryType::Symlink, Some("/etc")),
            "links to the absolute path /etc",
        ),
        (
            "climb-link.tar",
            tar_with_raw_entry(b"up", tar::EntryType::Symlink, Some("../..")),
            "climbs",
        ),
        (
            "dotdot.zip",
            zip_of(&[("../../escaped", None, b"pwned\n")]),
            "its path contains \"..\"",
        ),
    ];
    for (name, data, why) in cases {
        let file = src.path().join(name);
        fs::write(&file, data).unwrap();
        let t = task_dir();
        let dest = t.path().join("local/deep");
        let err = fetch(t.path(), artifact(file.to_str().unwrap(), "local/deep"))
            .await
            .unwrap_err();
        assert!(
            matches!(err.error, ArtifactError::EntryEscapes { .. }),
            "{name}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("escapes the destination") && msg.contains(why),
            "{name}: {msg}"
        );
        assert!(!t.path().join("escaped").exists() && !t.path().join("local/escaped").exists());
        assert!(
            fs::read_dir(&dest).map(|d| d.count()).unwrap_or(0) == 0,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_destination_symlinked_out_of_the_task_dir_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let t = task_dir();
    std::os::unix::fs::symlink(outside.path(), t.path().join("local/out")).unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.txt");
    fs::write(&file, b"x").unwrap();
    let err = fetch(t.path(), artifact(file.to_str().unwrap(), "local/out/sub"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.error, ArtifactError::DestinationEscapes(_)),
        "{err}"
    );
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_local_directory_is_copied_and_gz_files_are_decompressed() {
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("tree/sub")).unwrap();
    fs::write(src.path().join("tree/sub/a.txt"), b"a").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"plain text\n").unwrap();
    fs::write(src.path().join("notes.txt.gz"), gz.finish().unwrap()).unwrap();
    let t = task_dir();
    let mut a = artifact(src.path().join("tree").to_str().unwrap(), "local/tree");
    a.getter_mode = "dir".into();
    fetch(t.path(), a).await.unwrap();
    assert_eq!(
        fs::read(t.path().join("local/tree/sub/a.txt")).unwrap(),
        b"a"
    );
    fetch(
        t.path(),
        artifact(src.path().join("notes.txt.gz").to_str().unwrap(), ""),
    )
    .await
    .unwrap();
    assert_eq!(
        fs::read(t.path().join("local/notes.txt")).unwrap(),
        b"plain text\n"
    );
    let err = fetch(t.path(), artifact("/definitely/not/here.txt", ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/definitely/not/here.txt") && err.contains("No such file"),
        "{err}"
    );
}

/// A one-thread HTTP server for fixed paths; it records each request's head.
struct Server {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(files: BTreeMap<&'static str, Vec<u8>>) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let path = path.split('?').next().unwrap().to_string();
            seen.lock().unwrap().push(head);
            let reply = match files.get(path.as_str()) {
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = conn.write_all(&reply);
        }
    });
    Server { addr, requests }
}

#[tokio::test]
async fn http_downloads_stream_with_headers_and_report_bad_statuses() {
    let data = tar_gz();
    let srv = serve(
        [
            ("/dl/app.tar.gz", data.clone()),
            ("/bin/tool", b"tool".to_vec()),
        ]
        .into(),
    );
    let t = task_dir();
    let mut a = artifact(&format!("{}/dl/app.tar.gz", srv.addr), "local/");
    a.getter_headers.insert("X-Token".into(), "s3cret".into());
    a.getter_options
        .insert("checksum".into(), format!("sha256:{}", sha256(&data)));
    a.getter_options.insert("version".into(), "2".into());
    let mut b = artifact(&format!("{}/bin/tool", srv.addr), "bin/tool");
    b.getter_mode = "file".into();
    fetch_all(
        &[a, b],
        t.path(),
        &BTreeMap::new(),
        &config(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert!(t.path().join("local/app/run.sh").exists());
    assert_eq!(fs::read(t.path().join("bin/tool")).unwrap(), b"tool");
    let reqs = srv.requests.lock().unwrap().clone();
    assert!(
        reqs[0].starts_with("GET /dl/app.tar.gz?version=2 "),
        "{reqs:?}"
    );
    assert!(
        reqs[0].to_ascii_lowercase().contains("x-token: s3cret"),
        "{reqs:?}"
    );

    let err = fetch(t.path(), artifact(&format!("{}/missing.txt", srv.addr), ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/missing.txt") && err.contains("404 Not Found"),
        "{err}"
    );
    // Nothing listens on this port any more: a connection error, named.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = fetch(
        t.path(),
        artifact(&format!("http://127.0.0.1:{port}/x"), ""),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("GET http://127.0.0.1:{port}/x")),
        "{err}"
    );
    no_staging_left(t.path());
}

#[tokio::test]
async fn a_transfer_that_takes_too_long_times_out() {
    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(3));
        drop(conns);
    });
    let t = task_dir();
    let err = fetch_all(
        &[artifact(&format!("http://{addr}/slow.bin"), "")],
        t.path(),
        &BTreeMap::new(),
        &config(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.error, ArtifactError::Timeout(_)), "{err}");
    assert!(
        err.to_string().contains("did not finish within 300ms"),
        "{err}"
    );
}

#[test]
fn node_attributes_and_meta_are_named_as_in_nomad() {
    let mut node = drover_model::Node {
        id: "n-1".into(),
        name: "box".into(),
        datacenter: "dc1".into(),
        ..Default::default()
    };
    node.attributes.insert("cpu.arch".into(), "x86_64".into());
    node.meta.insert("rack".into(), "r7".into());
    let vars = node_vars(&node, "global");
    for (k, v) in [
        ("attr.cpu.arch", "x86_64"),
        ("meta.rack", "r7"),
        ("node.unique.id", "n-1"),
        ("node.unique.name", "box"),
        ("node.datacenter", "dc1"),
        ("node.region", "global"),
    ] {
        assert_eq!(vars.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(!needs_node(&[artifact("https://h/${NOMAD_JOB_NAME}", "")]));
    assert!(needs_node(&[artifact("https://h/${attr.cpu.arch}", "")]));
    let mut a = artifact("https://h/x", "");
    a.getter_headers.insert("X".into(), "${meta.rack}".into());
    assert!(needs_node(&[a]));
}

#[tokio::test]
async fn host_paths_are_fetched_only_inside_allowed_directories() {
    let host = tempfile::tempdir().unwrap();
    let allowed = host.path().join("allowed");
    fs::create_dir_all(&allowed).unwrap();
    fs::write(allowed.join("app.conf"), "ok\n").unwrap();
    fs::write(host.path().join("shadow"), "host secret\n").unwrap();
    std::os::unix::fs::symlink(host.path().join("shadow"), allowed.join("out")).unwrap();
    let cfg = |allowed_host_paths: Vec<PathBuf>| ArtifactConfig {
        allowed_host_paths,
        ..ArtifactConfig::default()
    };
    let t = task_dir();
    // Nothing allowed: no host path at all, as a path or a file:// URL.
    for src in [
        "/etc/hostname".to_string(),
        format!("file://{}", allowed.join("app.conf").display()),
        format!("file://localhost{}", allowed.join("app.conf").display()),
    ] {
        let e = fetch_all(
            &[artifact(&src, "")],
            t.path(),
            &BTreeMap::new(),
            &cfg(vec![]),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e.error, ArtifactError::HostPathNotAllowed(_)),
            "{src}: {e}"
        );
    }
    // One directory allowed: its files come, nothing that resolves outside it does.
    let only = cfg(vec![allowed.clone()]);
    fetch_all(
        &[artifact(
            &format!("file://localhost{}", allowed.join("app.conf").display()),
            "",
        )],
        t.path(),
        &BTreeMap::new(),
        &only,
    )
    .await
    .unwrap();
    assert_eq!(
        fs::read_to_string(t.path().join("local/app.conf")).unwrap(),
        "ok\n"
    );
    for src in [
        format!("{}/../shadow", allowed.display()),
        allowed.join("out").display().to_string(),
        format!("file://{}/../shadow", allowed.display()),
    ] {
        let e = fetch_all(
            &[artifact(&src, "local/x")],
            t.path(),
            &BTreeMap::new(),
            &only,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e.error, ArtifactError::HostPathNotAllowed(_)),
            "{src}: {e}"
        );
    }
    assert!(!t.path().join("local/x").exists());
}

#[tokio::test]
async fn artifacts_and_archives_are_bounded() {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("big.bin"), vec![7u8; 4096]).unwrap();
    let t = task_dir();
    let mut small = config(Duration::from_secs(30));
    small.max_size = 1000;
    let src = host.path().join("big.bin").display().to_string();
    let e = fetch_all(&[artifact(&src, "")], t.path(), &BTreeMap::new(), &small)
        .await
        .unwrap_err();
    assert!(matches!(e.error, ArtifactError::TooLarge(1000)), "{e}");

    // A small archive that unpacks to more than the limit, and one with too many entries.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(10_000_000);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "zeros", std::io::repeat(0).take(10_000_000))
        .unwrap();
    fs::write(
        host.path().join("bomb.tar.gz"),
        b.into_inner().unwrap().finish().unwrap(),
    )
    .unwrap();
    let mut limits = config(Duration::from_secs(30));
    limits.unpack.size = 1_000_000;
    let src = host.path().join("bomb.tar.gz").display().to_string();
    let e = fetch_all(
        &[artifact(&src, "local/bomb")],
        t.path(),
        &BTreeMap::new(),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("decompression_size_limit"), "{e}");

    let mut b = tar::Builder::new(Vec::new());
    for i in 0..20 {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("f{i}"), &b"x"[..]).unwrap();
    }
    fs::write(host.path().join("many.tar"), b.into_inner().unwrap()).unwrap();
    let mut limits = config(Duration::from_secs(30));
    limits.unpack.files = 10;
    let src = host.path().join("many.tar").display().to_string();
    let e = fetch_all(
        &[artifact(&src, "local/many")],
        t.path(),
        &BTreeMap::new(),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("decompression_file_count_limit"),
        "{e}"
    );
}
