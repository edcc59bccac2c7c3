use std::io::{Read, Write};
use std::os::unix::fs::symlink;

use super::*;

fn rd() -> OFlag {
    OFlag::O_RDONLY
}

fn setup() -> (tempfile::TempDir, tempfile::TempDir, Dir) {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "host secret").unwrap();
    std::fs::create_dir_all(root.path().join("a/b")).unwrap();
    std::fs::write(root.path().join("a/b/f"), "inside").unwrap();
    let dir = Dir::open(root.path()).unwrap();
    (root, outside, dir)
}

fn read(mut f: File) -> String {
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn opens_what_is_inside_with_or_without_a_leading_slash() {
    let (_r, _o, dir) = setup();
    for p in ["a/b/f", "/a/b/f", "./a/./b/f"] {
        for links in [Links::Never, Links::Inside] {
            let f = dir.file(Path::new(p), rd(), Mode::empty(), links).unwrap();
            assert_eq!(read(f), "inside", "{p}");
        }
    }
}

#[test]
fn a_link_out_is_never_followed() {
    let (root, outside, dir) = setup();
    symlink(outside.path().join("secret"), root.path().join("a/out")).unwrap();
    symlink(outside.path(), root.path().join("a/outdir")).unwrap();
    symlink("../../..", root.path().join("a/b/up")).unwrap();
    for p in ["a/out", "a/outdir/secret", "a/b/up/etc/hostname"] {
        for links in [Links::Never, Links::Inside] {
            let e = dir
                .file(Path::new(p), rd(), Mode::empty(), links)
                .unwrap_err();
            assert!(
                matches!(e, Error::Escapes { .. } | Error::Link { .. }),
                "{p} {links:?}: {e}"
            );
        }
    }
    // Writing through a planted link creates nothing outside.
    let e = dir
        .file(
            Path::new("a/outdir/new"),
            OFlag::O_WRONLY | OFlag::O_CREAT,
            Mode::from_bits_truncate(0o600),
            Links::Never,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Link { .. }), "{e}");
    assert!(!outside.path().join("new").exists());
}

#[test]
fn dot_dot_is_refused_or_kept_inside() {
    let (_r, _o, dir) = setup();
    let e = dir
        .file(Path::new("a/../a/b/f"), rd(), Mode::empty(), Links::Never)
        .unwrap_err();
    assert!(matches!(e, Error::BadPath { .. }), "{e}");
    let f = dir
        .file(Path::new("a/../a/b/f"), rd(), Mode::empty(), Links::Inside)
        .unwrap();
    assert_eq!(read(f), "inside");
    let e = dir
        .file(Path::new("../x"), rd(), Mode::empty(), Links::Inside)
        .unwrap_err();
    assert!(matches!(e, Error::Escapes { .. }), "{e}");
}

#[test]
fn links_inside_are_followed_only_when_asked() {
    let (root, _o, dir) = setup();
    symlink("b/f", root.path().join("a/in")).unwrap();
    let f = dir
        .file(Path::new("a/in"), rd(), Mode::empty(), Links::Inside)
        .unwrap();
    assert_eq!(read(f), "inside");
    let e = dir
        .file(Path::new("a/in"), rd(), Mode::empty(), Links::Never)
        .unwrap_err();
    assert!(matches!(e, Error::Link { .. }), "{e}");
}

#[test]
fn create_dirs_follows_no_link_and_makes_what_is_missing() {
    let (root, outside, dir) = setup();
    let d = dir
        .create_dirs(Path::new("x/y/z"), Mode::from_bits_truncate(0o755))
        .unwrap();
    let mut f = d
        .file(
            Path::new("f"),
            OFlag::O_WRONLY | OFlag::O_CREAT,
            Mode::from_bits_truncate(0o600),
            Links::Never,
        )
        .unwrap();
    f.write_all(b"hi").unwrap();
    assert_eq!(
        std::fs::read_to_string(root.path().join("x/y/z/f")).unwrap(),
        "hi"
    );
    symlink(outside.path(), root.path().join("x/l")).unwrap();
    let e = dir
        .create_dirs(Path::new("x/l/deeper"), Mode::from_bits_truncate(0o755))
        .unwrap_err();
    assert!(matches!(e, Error::Link { .. }), "{e}");
    assert!(!outside.path().join("deeper").exists());
}

#[test]
fn the_walk_alone_is_as_strict() {
    let (root, outside, dir) = setup();
    symlink(outside.path(), root.path().join("a/outdir")).unwrap();
    let parts = components(Path::new("a/outdir/secret"), Links::Never).unwrap();
    let e = dir
        .walk(Path::new("a/outdir/secret"), &parts, rd(), Mode::empty())
        .unwrap_err();
    assert!(matches!(e, Error::Link { .. }), "{e}");
    let parts = components(Path::new("a/b/f"), Links::Never).unwrap();
    let f = dir
        .walk(Path::new("a/b/f"), &parts, rd(), Mode::empty())
        .unwrap();
    assert_eq!(read(File::from(f)), "inside");
}

#[test]
fn names_with_nul_or_slashes_are_refused() {
    let (_r, _o, dir) = setup();
    assert!(dir.remove_file(OsStr::new("a/b")).is_err());
    assert!(dir.remove_file(OsStr::new("..")).is_err());
    assert!(dir.rename(OsStr::new("a"), OsStr::new("../a")).is_err());
    let nul = OsStr::from_bytes(b"a\0b");
    assert!(matches!(
        dir.file(Path::new(nul), rd(), Mode::empty(), Links::Inside),
        Err(Error::BadPath { .. })
    ));
}

#[test]
fn entries_list_names_without_following() {
    let (root, outside, dir) = setup();
    symlink(outside.path(), root.path().join("l")).unwrap();
    let names: Vec<_> = dir.entries().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![OsString::from("a"), OsString::from("l")]);
}

#[test]
fn only_regular_files_are_opened_for_reading() {
    let (root, _o, dir) = setup();
    nix::unistd::mkfifo(&root.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
    let started = std::time::Instant::now();
    let e = dir
        .open_regular(Path::new("fifo"), Links::Never)
        .unwrap_err();
    assert!(matches!(e, Error::NotRegular { .. }), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let e = dir.open_regular(Path::new("a"), Links::Never).unwrap_err();
    assert!(matches!(e, Error::NotRegular { .. }), "{e}");
    let f = dir.open_regular(Path::new("a/b/f"), Links::Never).unwrap();
    assert_eq!(read(f), "inside");
}

#[test]
fn a_device_node_is_refused_without_being_opened() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test makes a device node: run it as root");
    }
    let (root, _o, dir) = setup();
    nix::sys::stat::mknod(
        &root.path().join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let e = dir
        .open_regular(Path::new("null"), Links::Never)
        .unwrap_err();
    assert!(matches!(e, Error::NotRegular { .. }), "{e}");
    let e = dir
        .create_regular(Path::new("null"), Mode::from_bits_truncate(0o644), false)
        .unwrap_err();
    assert!(matches!(e, Error::NotRegular { .. }), "{e}");
}
