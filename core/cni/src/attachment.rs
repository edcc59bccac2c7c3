//! The runtime parameters of one attachment: which container (allocation), its network
//! namespace, the interface name, `CNI_ARGS` and the capability arguments (`runtimeConfig`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;
use crate::conflist::spec_identifier;

/// The most `CNI_ARGS` pairs, and the longest `CNI_ARGS` string.
pub const MAX_ARGS: usize = 64;
pub const MAX_ARGS_LEN: usize = 8192;

/// One container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID` (Drover: the allocation id).
    pub container_id: String,
    /// `CNI_NETNS`: the namespace's path (e.g. `/var/run/netns/<name>`).
    pub netns: PathBuf,
    /// `CNI_IFNAME` (Drover: `eth0`).
    pub ifname: String,
    /// `CNI_ARGS`, in order.
    #[serde(default)]
    pub args: Vec<(String, String)>,
    /// Capability arguments (e.g. `portMappings`), given in `runtimeConfig` to the plugins
    /// whose `capabilities` ask for them.
    #[serde(default)]
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    pub fn new(container_id: &str, netns: impl Into<PathBuf>, ifname: &str) -> Self {
        Attachment {
            container_id: container_id.to_string(),
            netns: netns.into(),
            ifname: ifname.to_string(),
            args: Vec::new(),
            capability_args: Map::new(),
        }
    }

    /// Refuses parameters that the spec does not allow or that would break the protocol.
    pub fn validate(&self) -> Result<(), Error> {
        if !spec_identifier(&self.container_id) {
            return Err(param(
                "container id",
                format!(
                    "{:?}: must be alphanumeric, then alphanumerics, '_', '.' or '-'",
                    self.container_id
                ),
            ));
        }
        check_ifname(&self.ifname)?;
        if self.netns.as_os_str().is_empty() || !self.netns.is_absolute() {
            return Err(param(
                "netns",
                format!("{:?}: not an absolute path", self.netns),
            ));
        }
        format_args(&self.args).map(drop)
    }

    /// `CNI_ARGS`: `K=V;K=V`.
    pub fn cni_args(&self) -> Result<String, Error> {
        format_args(&self.args)
    }

    /// The `runtimeConfig` for a plugin asking for `capabilities`: each enabled capability
    /// the runtime has an argument for.
    pub fn runtime_config(
        &self,
        capabilities: &std::collections::BTreeMap<String, bool>,
    ) -> Map<String, Value> {
        capabilities
            .iter()
            .filter(|(_, on)| **on)
            .filter_map(|(k, _)| self.capability_args.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

/// The interface name: what Linux accepts (1 to 15 bytes, no `/`, `:`, whitespace, not `.`
/// or `..`).
pub fn check_ifname(ifname: &str) -> Result<(), Error> {
    let ok = !ifname.is_empty()
        && ifname.len() <= 15
        && ifname != "."
        && ifname != ".."
        && ifname
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if ok {
        Ok(())
    } else {
        Err(param("interface name", format!("{ifname:?}")))
    }
}

/// Formats `CNI_ARGS`. Keys are non-empty and hold no `=` or `;`; values hold no `;`;
/// neither holds a NUL; the whole is bounded.
pub fn format_args(args: &[(String, String)]) -> Result<String, Error> {
    if args.len() > MAX_ARGS {
        return Err(param("CNI_ARGS", format!("more than {MAX_ARGS} pairs")));
    }
    for (k, v) in args {
        if k.is_empty() || k.contains(['=', ';', '\0']) {
            return Err(param("CNI_ARGS", format!("key {k:?}")));
        }
        if v.contains([';', '\0']) {
            return Err(param("CNI_ARGS", format!("value of {k}: {v:?} holds ';'")));
        }
    }
    let s = args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    if s.len() > MAX_ARGS_LEN {
        return Err(param(
            "CNI_ARGS",
            format!("longer than {MAX_ARGS_LEN} bytes"),
        ));
    }
    Ok(s)
}

/// Parses `CNI_ARGS` (`K=V;K=V`; a value may hold `=`).
pub fn parse_args(s: &str) -> Result<Vec<(String, String)>, Error> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let pairs = s
        .split(';')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(param("CNI_ARGS", format!("{kv:?} is not K=V"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    format_args(&pairs)?;
    Ok(pairs)
}

fn param(what: &'static str, why: String) -> Error {
    Error::Parameter { what, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cni_args_round_trip() {
        let args = kv(&[
            ("IgnoreUnknown", "1"),
            ("NOMAD_JOB_ID", "web"),
            ("X", "a=b"),
        ]);
        let s = format_args(&args).unwrap();
        assert_eq!(s, "IgnoreUnknown=1;NOMAD_JOB_ID=web;X=a=b");
        assert_eq!(parse_args(&s).unwrap(), args);
        assert_eq!(format_args(&[]).unwrap(), "");
        assert!(parse_args("").unwrap().is_empty());
    }

    #[test]
    fn cni_args_that_would_inject_pairs_are_refused() {
        for bad in [
            kv(&[("K", "v;IP=10.0.0.9")]),
            kv(&[("K=X", "v")]),
            kv(&[("", "v")]),
            kv(&[("K;L", "v")]),
            kv(&[("K", "v\0")]),
        ] {
            assert!(
                matches!(format_args(&bad), Err(Error::Parameter { .. })),
                "{bad:?}"
            );
        }
        for bad in ["novalue", "=v", "A=1;;B=2"] {
            assert!(parse_args(bad).is_err(), "{bad}");
        }
        let many: Vec<_> = (0..=MAX_ARGS)
            .map(|i| (format!("K{i}"), "v".into()))
            .collect();
        assert!(format_args(&many).is_err());
        assert!(format_args(&kv(&[("K", &"v".repeat(MAX_ARGS_LEN))])).is_err());
    }

    #[test]
    fn attachments_are_validated() {
        let ok = Attachment::new("3f1c-a", "/var/run/netns/x", "eth0");
        ok.validate().unwrap();
        let mut a = ok.clone();
        a.container_id = "../etc".into();
        assert!(a.validate().is_err());
        let mut a = ok.clone();
        a.ifname = "a-very-long-interface".into();
        assert!(a.validate().is_err());
        let mut a = ok.clone();
        a.ifname = "et/h0".into();
        assert!(a.validate().is_err());
        let mut a = ok.clone();
        a.netns = "relative".into();
        assert!(a.validate().is_err());
    }

    #[test]
    fn runtime_config_holds_only_enabled_capabilities_the_runtime_has() {
        let mut a = Attachment::new("c", "/run/netns/x", "eth0");
        a.capability_args.insert(
            "portMappings".into(),
            serde_json::json!([{"hostPort": 8080}]),
        );
        a.capability_args
            .insert("bandwidth".into(), serde_json::json!({"ingressRate": 1}));
        let caps = [
            ("portMappings".to_string(), true),
            ("bandwidth".to_string(), false),
            ("ips".to_string(), true),
        ]
        .into_iter()
        .collect();
        let rc = a.runtime_config(&caps);
        assert_eq!(rc.len(), 1);
        assert_eq!(rc["portMappings"][0]["hostPort"], 8080);
    }
}
