//! Finding the task's executable (as execvp does, with the task's own `PATH`) and turning
//! its strings into C strings.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::LaunchSpec;

/// The default `PATH` when the task's environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves the command like execvp does, with the task's own `PATH`.
pub(super) fn resolve_command(spec: &LaunchSpec) -> Result<PathBuf, String> {
    let path = spec
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(DEFAULT_PATH);
    resolve_in_path(&spec.command, path, &spec.cwd)
}

/// Resolves `cmd` like execvp does with `path`; a relative path with a slash is taken from
/// `cwd`.
pub(crate) fn resolve_in_path(cmd: &str, path: &str, cwd: &Path) -> Result<PathBuf, String> {
    if cmd.is_empty() {
        return Err("no command to run".into());
    }
    if cmd.contains('/') {
        let p = Path::new(cmd);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        };
        if !full.exists() {
            return Err(format!("executable not found: {cmd}"));
        }
        return Ok(p.to_path_buf());
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(cmd);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "executable not found: {cmd} (searched PATH={path})"
    ))
}

pub(super) fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, String> {
    CString::new(s.as_ref().to_vec()).map_err(|_| format!("{what} contains a NUL byte"))
}
