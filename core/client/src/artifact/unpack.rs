//! Unpacking artifacts (tar, tar.gz, zip, gz) into their destination, refusing every entry
//! that would land outside it: paths with `..`, links whose target is absolute or climbs
//! (`..`), devices and fifos. Blocking: the callers run it in `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::ArtifactError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    Zip,
    /// One gzip-compressed file.
    Gz,
}

/// Archive suffixes go-getter unpacks and Drover does not (yet): refused rather than kept
/// packed behind the user's back.
const UNSUPPORTED: &[&str] = &[
    ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".bz2", ".xz", ".zst",
];

impl ArchiveKind {
    pub fn name(self) -> &'static str {
        match self {
            ArchiveKind::Tar => "tar",
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::Zip => "zip",
            ArchiveKind::Gz => "gz",
        }
    }

    /// The `archive` option: `false` keeps the artifact packed, a type forces it, an empty
    /// value detects it from the file name.
    pub fn from_option(value: &str) -> Result<ArchiveChoice, ArtifactError> {
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "" => ArchiveChoice::Detect,
            "false" => ArchiveChoice::Keep,
            "tar" => ArchiveChoice::Force(ArchiveKind::Tar),
            "tar.gz" | "tgz" => ArchiveChoice::Force(ArchiveKind::TarGz),
            "zip" => ArchiveChoice::Force(ArchiveKind::Zip),
            "gz" => ArchiveChoice::Force(ArchiveKind::Gz),
            _ => {
                return Err(ArtifactError::BadOption {
                    key: "archive".into(),
                    why: format!(
                        "{value:?} is not an archive type Drover unpacks: use \"false\" to keep \
                         the artifact packed, or one of tar, tar.gz, tgz, zip, gz"
                    ),
                });
            }
        })
    }

    /// The archive type of a file name, None if it is no archive.
    pub fn detect(name: &str) -> Result<Option<ArchiveKind>, ArtifactError> {
        let lower = name.to_ascii_lowercase();
        if let Some(s) = UNSUPPORTED.iter().find(|s| lower.ends_with(*s)) {
            return Err(ArtifactError::UnsupportedArchive {
                name: name.to_string(),
                suffix: s.to_string(),
            });
        }
        Ok([
            (".tar.gz", ArchiveKind::TarGz),
            (".tgz", ArchiveKind::TarGz),
            (".tar", ArchiveKind::Tar),
            (".zip", ArchiveKind::Zip),
            (".gz", ArchiveKind::Gz),
        ]
        .into_iter()
        .find(|(s, _)| lower.ends_with(s))
        .map(|(_, k)| k))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveChoice {
    Detect,
    Keep,
    Force(ArchiveKind),
}

/// How much one archive may unpack to (Nomad's `decompression_size_limit` and
/// `decompression_file_count_limit`): an archive cannot fill the node's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of file contents, in all.
    pub size: u64,
    /// Entries (files, directories, links).
    pub files: u64,
}

/// What an archive has unpacked so far, against its limits.
struct Budget {
    limits: UnpackLimits,
    size: u64,
    files: u64,
}

impl Budget {
    fn new(limits: UnpackLimits) -> Self {
        Budget {
            limits,
            size: 0,
            files: 0,
        }
    }

    fn entry(&mut self, archive: &str, size: u64) -> Result<(), ArtifactError> {
        self.files += 1;
        if self.files > self.limits.files {
            return Err(unpack_error(
                archive,
                format!(
                    "it holds more than {} entries (the client's artifact decompression_file_count_limit)",
                    self.limits.files
                ),
            ));
        }
        self.size = self.size.saturating_add(size);
        if self.size > self.limits.size {
            return Err(self.too_big(archive));
        }
        Ok(())
    }

    fn too_big(&self, archive: &str) -> ArtifactError {
        unpack_error(
            archive,
            format!(
                "it unpacks to more than {} bytes (the client's artifact decompression_size_limit)",
                self.limits.size
            ),
        )
    }

    /// Copies at most what is left of the size budget, failing beyond it.
    fn copy(
        &mut self,
        archive: &str,
        from: &mut impl Read,
        to: &mut impl io::Write,
    ) -> Result<(), ArtifactError> {
        let left = self.limits.size.saturating_sub(self.size);
        let n = io::copy(&mut from.take(left.saturating_add(1)), to)
            .map_err(|e| unpack_error(archive, e))?;
        self.size = self.size.saturating_add(n);
        if n > left {
            return Err(self.too_big(archive));
        }
        Ok(())
    }
}

fn unpack_error(archive: &str, why: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Unpack {
        archive: archive.to_string(),
        why: why.to_string(),
    }
}

fn escapes(archive: &str, entry: &Path, why: &str) -> ArtifactError {
    ArtifactError::EntryEscapes {
        archive: archive.to_string(),
        entry: entry.display().to_string(),
        why: why.to_string(),
    }
}

/// An entry's path inside the destination: relative, without `..` (a leading `/` is
/// dropped, as tar does).
fn entry_path(archive: &str, raw: &Path) -> Result<PathBuf, ArtifactError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(escapes(archive, raw, "its path contains \"..\""));
            }
        }
    }
    Ok(out)
}

/// A link's target must stay inside the destination: relative and never climbing.
fn check_link(archive: &str, entry: &Path, target: &Path) -> Result<(), ArtifactError> {
    if target.is_absolute() {
        return Err(escapes(
            archive,
            entry,
            &format!("it links to the absolute path {}", target.display()),
        ));
    }
    if target.components().any(|c| c == Component::ParentDir) {
        return Err(escapes(
            archive,
            entry,
            &format!("it links to {}, which climbs with \"..\"", target.display()),
        ));
    }
    Ok(())
}

/// Fails unless `dir` (existing) resolves inside `root` (existing), symlinks followed.
pub fn ensure_inside(root: &Path, dir: &Path) -> io::Result<bool> {
    let root = fs::canonicalize(root)?;
    Ok(fs::canonicalize(dir)?.starts_with(root))
}

/// Unpacks a tar, tar.gz or zip archive into `dest` (an existing directory).
pub fn unpack_into(
    kind: ArchiveKind,
    archive: &Path,
    name: &str,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<(), ArtifactError> {
    let file = File::open(archive).map_err(|e| unpack_error(name, e))?;
    let mut budget = Budget::new(limits);
    match kind {
        ArchiveKind::Tar => unpack_tar(file, name, dest, &mut budget),
        ArchiveKind::TarGz => {
            unpack_tar(flate2::read::GzDecoder::new(file), name, dest, &mut budget)
        }
        ArchiveKind::Zip => unpack_zip(file, name, dest, &mut budget),
        ArchiveKind::Gz => Err(unpack_error(
            name,
            "a gzip file holds one file, not a directory",
        )),
    }
}

fn unpack_tar(
    reader: impl Read,
    name: &str,
    dest: &Path,
    budget: &mut Budget,
) -> Result<(), ArtifactError> {
    use tar::EntryType;
    let mut ar = tar::Archive::new(reader);
    ar.set_overwrite(true);
    let entries = ar.entries().map_err(|e| unpack_error(name, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_error(name, e))?;
        let raw = entry
            .path()
            .map_err(|e| unpack_error(name, e))?
            .into_owned();
        entry_path(name, &raw)?;
        // An entry carries exactly the size its header declares.
        budget.entry(
            name,
            entry.header().size().map_err(|e| unpack_error(name, e))?,
        )?;
        match entry.header().entry_type() {
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| unpack_error(name, e))?
                    .ok_or_else(|| {
                        unpack_error(name, format!("link {} has no target", raw.display()))
                    })?;
                check_link(name, &raw, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                return Err(unpack_error(
                    name,
                    format!(
                        "entry {} is a device or fifo, which an artifact may not carry",
                        raw.display()
                    ),
                ));
            }
            _ => {}
        }
        // unpack_in also refuses to write through a symlink that leaves `dest`.
        let inside = entry.unpack_in(dest).map_err(|e| unpack_error(name, e))?;
        if !inside {
            return Err(escapes(
                name,
                &raw,
                "it would be written outside the destination",
            ));
        }
    }
    Ok(())
}

fn unpack_zip(
    file: File,
    name: &str,
    dest: &Path,
    budget: &mut Budget,
) -> Result<(), ArtifactError> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| unpack_error(name, e))?;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| unpack_error(name, e))?;
        let raw = PathBuf::from(f.name().map_err(|e| unpack_error(name, e))?.into_owned());
        let rel = entry_path(name, &raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        budget.entry(name, 0)?;
        let out = dest.join(&rel);
        if f.is_dir() {
            fs::create_dir_all(&out)
                .map_err(|e| unpack_error(name, format!("{}: {e}", raw.display())))?;
            continue;
        }
        let parent = out.parent().unwrap_or(dest);
        let io_err = |e: io::Error| unpack_error(name, format!("{}: {e}", raw.display()));
        fs::create_dir_all(parent).map_err(io_err)?;
        if !ensure_inside(dest, parent).map_err(io_err)? {
            return Err(escapes(
                name,
                &raw,
                "its directory leads outside the destination",
            ));
        }
        if fs::symlink_metadata(&out).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(&out).map_err(io_err)?;
        }
        if f.is_symlink() {
            let mut target = String::new();
            f.read_to_string(&mut target).map_err(io_err)?;
            check_link(name, &raw, Path::new(&target))?;
            std::os::unix::fs::symlink(&target, &out).map_err(io_err)?;
            continue;
        }
        let mode = f.unix_mode().map(|m| m & 0o777).unwrap_or(0o644);
        let mut o = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&out)
            .map_err(io_err)?;
        budget.copy(name, &mut f, &mut o)?;
        // The umask may have narrowed the mode the archive asks for.
        fs::set_permissions(&out, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    }
    Ok(())
}

/// Decompresses one gzip file into `out` (a new file).
pub fn gunzip(
    archive: &Path,
    name: &str,
    out: &Path,
    limits: UnpackLimits,
) -> Result<(), ArtifactError> {
    let file = File::open(archive).map_err(|e| unpack_error(name, e))?;
    let mut d = flate2::read::GzDecoder::new(file);
    if fs::symlink_metadata(out).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(out).map_err(|e| unpack_error(name, e))?;
    }
    let mut o = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(out)
        .map_err(|e| unpack_error(name, format!("{}: {e}", out.display())))?;
    Budget::new(limits).copy(name, &mut d, &mut o)
}
