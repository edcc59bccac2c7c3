//! Finding a plugin binary by its `type` on `cni_path`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::Error;

/// Nomad's default `cni_path` (Debian's package installs to `/usr/lib/cni`).
pub const DEFAULT_CNI_PATH: &str = "/opt/cni/bin";

/// The directories plugins are looked up in, in order (`cni_path`, colon-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginPath {
    dirs: Vec<PathBuf>,
}

impl Default for PluginPath {
    fn default() -> Self {
        PluginPath::parse(DEFAULT_CNI_PATH)
    }
}

impl PluginPath {
    /// Parses a colon-separated list; empty entries are skipped.
    pub fn parse(cni_path: &str) -> Self {
        PluginPath {
            dirs: cni_path
                .split(':')
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The list as `CNI_PATH` gives it to plugins (which find their IPAM plugin on it).
    pub fn to_env(&self) -> String {
        self.dirs
            .iter()
            .map(|d| d.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The first executable regular file named `plugin_type` in the directories.
    /// Blocking (it stats files); the directories are the operator's, so links there are
    /// followed as the operator set them.
    pub fn find(&self, plugin_type: &str) -> Result<PathBuf, Error> {
        check_type(plugin_type)?;
        self.dirs
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| {
                std::fs::metadata(p)
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
            .ok_or_else(|| Error::PluginNotFound {
                plugin: plugin_type.to_string(),
                cni_path: self.to_env(),
            })
    }
}

/// A plugin `type` must be a plain file name: no `/`, not `.` or `..`, nothing but
/// alphanumerics, `_`, `-`, `.` (which every real plugin name fits), at most 255 bytes.
pub fn check_type(plugin_type: &str) -> Result<(), Error> {
    let plain = !plugin_type.is_empty()
        && plugin_type.len() <= 255
        && plugin_type != "."
        && plugin_type != ".."
        && plugin_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        Ok(())
    } else {
        Err(Error::BadPluginType(plugin_type.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_type_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../bridge",
            "/usr/bin/sh",
            "a/b",
            "br idge",
            "x\0y",
            "bridge;rm",
            "~root",
            "$(id)",
        ] {
            assert!(
                matches!(check_type(bad), Err(Error::BadPluginType(_))),
                "{bad:?} accepted"
            );
        }
        for good in ["bridge", "host-local", "my_plugin.v2", "..x"] {
            check_type(good).unwrap();
        }
        let long = "a".repeat(256);
        assert!(check_type(&long).is_err());
    }

    #[test]
    fn a_hostile_type_is_never_looked_up() {
        let path = PluginPath::parse("/usr/lib/cni");
        assert!(matches!(
            path.find("../../bin/sh"),
            Err(Error::BadPluginType(_))
        ));
    }

    #[test]
    fn plugins_are_found_on_the_path_in_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let exe = |dir: &std::path::Path, name: &str, mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        exe(a.path(), "plain", 0o644);
        let in_b = exe(b.path(), "plain", 0o755);
        let first = exe(a.path(), "both", 0o755);
        exe(b.path(), "both", 0o755);
        std::fs::create_dir(a.path().join("dir")).unwrap();
        let path = PluginPath::parse(&format!("{}::{}", a.path().display(), b.path().display()));
        assert_eq!(path.dirs().len(), 2);
        assert_eq!(
            path.find("plain").unwrap(),
            in_b,
            "not executable is skipped"
        );
        assert_eq!(path.find("both").unwrap(), first);
        let missing = path.find("dir").unwrap_err();
        assert!(matches!(missing, Error::PluginNotFound { ref plugin, .. } if plugin == "dir"));
        assert!(
            missing
                .to_string()
                .contains(&a.path().display().to_string())
        );
        assert_eq!(PluginPath::default().to_env(), "/opt/cni/bin");
    }
}
