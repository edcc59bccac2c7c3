//! Network configuration lists: the spec's `.conflist` (`cniVersion`, `name`,
//! `disableCheck`, `plugins[]`), and a single plugin `.conf` read as a one-plugin list.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::Error;
use crate::plugins::check_type;

/// The largest configuration file read (anything bigger is refused, not truncated).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The most plugins one list may chain.
pub const MAX_PLUGINS: usize = 64;
/// The file name extensions read from a configuration directory.
pub const CONFIG_EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

/// One network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub cni_version: String,
    pub name: String,
    /// CHECK is skipped for this network.
    pub disable_check: bool,
    pub plugins: Vec<PluginConfig>,
}

/// One plugin of a list: its `type`, the capabilities it asks for, and every key as written.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub plugin_type: String,
    /// `capabilities`: the runtime-config keys (e.g. `portMappings`) the plugin wants.
    pub capabilities: BTreeMap<String, bool>,
    /// The plugin's whole object as written (the runtime injects `name`, `cniVersion`,
    /// `prevResult` and `runtimeConfig` into a copy when it runs the plugin).
    pub raw: Map<String, Value>,
}

impl NetworkConfigList {
    /// Parses a `.conflist`, or a single plugin `.conf` (an object with `type` and no
    /// `plugins`) as a one-plugin list.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| cfg(format!("{e}")))?;
        Self::from_value(value)
    }

    /// As [`parse`](Self::parse), from JSON already read.
    pub fn from_value(value: Value) -> Result<Self, Error> {
        let Value::Object(mut top) = value else {
            return Err(cfg("not a JSON object".into()));
        };
        let cni_version = string_key(&top, "cniVersion")?;
        check_version(&cni_version)?;
        let name = string_key(&top, "name")?;
        check_network_name(&name)?;
        let disable_check = match top.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(cfg("disableCheck: not a boolean".into())),
        };
        let objects = match top.remove("plugins") {
            Some(Value::Array(list)) => list,
            Some(_) => return Err(cfg("plugins: not an array".into())),
            None if top.contains_key("type") => vec![Value::Object(top)],
            None => return Err(cfg("neither plugins nor type".into())),
        };
        if objects.is_empty() {
            return Err(cfg(format!("network {name:?}: plugins is empty")));
        }
        if objects.len() > MAX_PLUGINS {
            return Err(cfg(format!("more than {MAX_PLUGINS} plugins")));
        }
        let plugins = objects
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                PluginConfig::from_value(o).map_err(|e| cfg(format!("plugins[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetworkConfigList {
            cni_version,
            name,
            disable_check,
            plugins,
        })
    }

    /// The list as a `.conflist` JSON object (what the result cache keeps).
    pub fn to_value(&self) -> Value {
        let plugins = self
            .plugins
            .iter()
            .map(|p| Value::Object(p.raw.clone()))
            .collect();
        let mut top = Map::new();
        top.insert("cniVersion".into(), self.cni_version.clone().into());
        top.insert("name".into(), self.name.clone().into());
        if self.disable_check {
            top.insert("disableCheck".into(), true.into());
        }
        top.insert("plugins".into(), Value::Array(plugins));
        Value::Object(top)
    }
}

impl PluginConfig {
    fn from_value(value: Value) -> Result<Self, String> {
        let Value::Object(raw) = value else {
            return Err("not a JSON object".into());
        };
        let plugin_type = match raw.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err("type: missing or not a string".into()),
        };
        check_type(&plugin_type).map_err(|e| e.to_string())?;
        let capabilities = match raw.get("capabilities") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| format!("capabilities: {e}"))?
            }
        };
        Ok(PluginConfig {
            plugin_type,
            capabilities,
            raw,
        })
    }
}

/// Refuses a spec version this runtime does not speak.
pub fn check_version(v: &str) -> Result<(), Error> {
    if crate::SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(cfg(format!(
            "cniVersion {v:?} is not supported (supported: {})",
            crate::SUPPORTED_VERSIONS.join(", ")
        )))
    }
}

/// The spec's network name: an alphanumeric first, then alphanumerics, `_`, `.`, `-`.
pub fn check_network_name(name: &str) -> Result<(), Error> {
    if spec_identifier(name) {
        Ok(())
    } else {
        Err(cfg(format!(
            "network name {name:?}: must be alphanumeric, then alphanumerics, '_', '.' or '-' (at most 255)"
        )))
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, at most 255 bytes: network names and container ids.
pub(crate) fn spec_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    s.len() <= 255
        && first.is_ascii_alphanumeric()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn string_key(top: &Map<String, Value>, key: &str) -> Result<String, Error> {
    match top.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(cfg(format!("{key}: not a string"))),
        None => Err(cfg(format!("{key}: missing"))),
    }
}

fn cfg(why: String) -> Error {
    Error::Config(why)
}

/// A configuration file that could not be used: its path and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct ConfigFileError {
    pub path: PathBuf,
    #[source]
    pub error: Error,
}

/// What a configuration directory holds: the usable lists (with their files, sorted by file
/// name) and the files that were not usable.
#[derive(Debug, Default)]
pub struct LoadedConfigs {
    pub networks: Vec<(PathBuf, NetworkConfigList)>,
    pub errors: Vec<ConfigFileError>,
}

impl LoadedConfigs {
    /// The first list (in file name order) with this network name.
    pub fn find(&self, name: &str) -> Option<&NetworkConfigList> {
        self.networks
            .iter()
            .map(|(_, n)| n)
            .find(|n| n.name == name)
    }
}

/// Reads every `*.conflist`, `*.conf` and `*.json` in `dir` (`cni_config_dir`), sorted by file
/// name; a bad file is reported in `errors` and does not hide the others. A missing
/// directory holds no networks. Blocking: call it from `spawn_blocking` (or use
/// [`load_dir_async`]).
pub fn load_dir(dir: &Path) -> std::io::Result<LoadedConfigs> {
    let mut files = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoadedConfigs::default()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if CONFIG_EXTENSIONS.contains(&ext) {
            files.push(path);
        }
    }
    files.sort();
    let mut out = LoadedConfigs::default();
    for path in files {
        match read_bounded(&path).and_then(|b| NetworkConfigList::parse(&b)) {
            Ok(list) => out.networks.push((path, list)),
            Err(error) => out.errors.push(ConfigFileError { path, error }),
        }
    }
    Ok(out)
}

/// [`load_dir`] off the async runtime.
pub async fn load_dir_async(dir: PathBuf) -> Result<LoadedConfigs, Error> {
    tokio::task::spawn_blocking(move || {
        load_dir(&dir).map_err(|e| cfg(format!("{}: {e}", dir.display())))
    })
    .await?
}

/// Reads a regular file of at most [`MAX_CONFIG_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |e: std::io::Error| cfg(e.to_string());
    // Checked before opening too: opening a FIFO for reading would block.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(cfg("not a regular file".into()));
    }
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(cfg("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cfg(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{
        "cniVersion": "1.0.0",
        "name": "nomad",
        "disableCheck": true,
        "plugins": [
            {"type": "loopback"},
            {"type": "bridge", "bridge": "nomad", "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "172.26.64.0/20"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    }"#;

    #[test]
    fn a_conflist_parses_with_every_key_kept() {
        let list = NetworkConfigList::parse(LIST.as_bytes()).unwrap();
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.name, "nomad");
        assert!(list.disable_check);
        let types: Vec<_> = list
            .plugins
            .iter()
            .map(|p| p.plugin_type.as_str())
            .collect();
        assert_eq!(types, ["loopback", "bridge", "portmap"]);
        assert_eq!(list.plugins[1].raw["ipam"]["type"], "host-local");
        assert!(list.plugins[2].capabilities["portMappings"]);
        let again = NetworkConfigList::from_value(list.to_value()).unwrap();
        assert_eq!(again, list);
    }

    #[test]
    fn a_single_conf_is_a_one_plugin_list() {
        let list = NetworkConfigList::parse(
            br#"{"cniVersion":"0.4.0","name":"mynet","type":"ptp","ipMasq":true}"#,
        )
        .unwrap();
        assert_eq!(list.cni_version, "0.4.0");
        assert!(!list.disable_check);
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].plugin_type, "ptp");
        assert_eq!(list.plugins[0].raw["ipMasq"], true);
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        let cases = [
            ("[]", "not a JSON object"),
            (r#"{"name":"n","plugins":[{"type":"x"}]}"#, "cniVersion"),
            (
                r#"{"cniVersion":"0.3.1","name":"n","plugins":[{"type":"x"}]}"#,
                "not supported",
            ),
            (r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#, "name"),
            (
                r#"{"cniVersion":"1.0.0","name":"../n","plugins":[{"type":"x"}]}"#,
                "network name",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, "empty"),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "plugins[0]",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{}]}"#,
                "type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x","capabilities":[1]}]}"#,
                "capabilities",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","disableCheck":"yes","plugins":[{"type":"x"}]}"#,
                "disableCheck",
            ),
            (r#"{"cniVersion":"1.0.0","name":"n"}"#, "neither"),
            ("{", "EOF"),
        ];
        for (json, why) in cases {
            let e = NetworkConfigList::parse(json.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(why), "{json}: {e}");
        }
        let many = format!(
            r#"{{"cniVersion":"1.0.0","name":"n","plugins":[{}]}}"#,
            vec![r#"{"type":"x"}"#; MAX_PLUGINS + 1].join(",")
        );
        assert!(NetworkConfigList::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn a_directory_loads_sorted_and_reports_bad_files_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, body: &[u8]| std::fs::write(dir.path().join(name), body).unwrap();
        w("20-b.conflist", LIST.as_bytes());
        w(
            "10-a.conf",
            br#"{"cniVersion":"1.0.0","name":"a","type":"ptp"}"#,
        );
        w(
            "30-c.json",
            br#"{"cniVersion":"1.0.0","name":"c","plugins":[{"type":"macvlan"}]}"#,
        );
        w("15-broken.conflist", b"{ nope");
        w("README.md", b"not a config");
        let big = vec![b' '; MAX_CONFIG_BYTES as usize + 1];
        w("40-big.conflist", &big);
        std::fs::create_dir(dir.path().join("50-dir.conf")).unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        let names: Vec<_> = loaded
            .networks
            .iter()
            .map(|(_, n)| n.name.as_str())
            .collect();
        assert_eq!(names, ["a", "nomad", "c"]);
        let bad: Vec<_> = loaded
            .errors
            .iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            bad,
            ["15-broken.conflist", "40-big.conflist", "50-dir.conf"]
        );
        assert!(loaded.errors[0].to_string().contains("15-broken.conflist"));
        assert!(loaded.errors[1].to_string().contains("larger than"));
        assert_eq!(loaded.find("c").unwrap().plugins[0].plugin_type, "macvlan");
        assert!(
            load_dir(&dir.path().join("missing"))
                .unwrap()
                .networks
                .is_empty()
        );
    }
}
