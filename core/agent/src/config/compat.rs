//! What Nomad's agent configs say that Drover reads differently: keys Nomad deprecated but
//! still accepts (moved to their replacement, or dropped, with a warning naming it),
//! settings of gossip, which Drover does not have (dropped with a warning), and Nomad
//! Enterprise's keys (refused, saying so). Runs on the object tree of a file
//! ([`super::hcl1`]) before it is decoded, so HCL and JSON files get the same treatment.

use serde_json::Value;

/// A deprecated key and where it went: `Some(new path)` moves its value there, `None` drops it.
struct Deprecated {
    key: &'static str,
    replacement: Option<&'static str>,
    advice: &'static str,
}

const DEPRECATED: &[Deprecated] = &[
    Deprecated {
        key: "server.retry_join",
        replacement: Some("server.server_join.retry_join"),
        advice: "use server { server_join { retry_join } }",
    },
    Deprecated {
        key: "server.start_join",
        replacement: Some("server.server_join.start_join"),
        advice: "use server { server_join { retry_join } }",
    },
    Deprecated {
        key: "server.retry_max",
        replacement: Some("server.server_join.retry_max"),
        advice: "use server { server_join { retry_max } }",
    },
    Deprecated {
        key: "server.retry_interval",
        replacement: Some("server.server_join.retry_interval"),
        advice: "use server { server_join { retry_interval } }",
    },
    Deprecated {
        key: "client.network_speed",
        replacement: None,
        advice: "bandwidth is neither fingerprinted nor scheduled; remove it",
    },
    Deprecated {
        key: "client.template.function_blacklist",
        replacement: Some("client.template.function_denylist"),
        advice: "use client { template { function_denylist } }",
    },
    Deprecated {
        key: "client.gc_parallel_destroys",
        replacement: None,
        advice: "Drover destroys allocations as they end; remove it",
    },
];

/// Settings of Serf's gossip ring: accepted and dropped, saying Drover has none.
const GOSSIP: &[&str] = &[
    "server.rejoin_after_leave",
    "server.retry_join_serf",
    "server.encrypt",
];

/// Keys only Nomad Enterprise has.
const ENTERPRISE: &[&str] = &[
    "server.non_voting_server",
    "server.redundancy_zone",
    "server.upgrade_version",
    "server.license_path",
    "server.license_env",
    "autopilot.enable_redundancy_zones",
    "autopilot.disable_upgrade_migration",
    "autopilot.enable_custom_upgrades",
    "sentinel",
    "audit",
    "reporting",
    "license_path",
];

/// What the pre-pass found: warnings to print, or the key to refuse and why.
#[derive(Debug, Default)]
pub struct Notices {
    pub warnings: Vec<String>,
}

/// A refused key: its dotted path and why.
#[derive(Debug)]
pub struct Refused {
    pub key: String,
    pub why: String,
}

/// Rewrites `tree` in place: deprecated keys moved or dropped, gossip keys dropped,
/// Enterprise keys and non-string `meta` values refused.
pub fn normalise(tree: &mut Value) -> Result<Notices, Refused> {
    let mut notices = Notices::default();
    for key in ENTERPRISE {
        if lookup(tree, key).is_some() {
            return Err(Refused {
                key: key.to_string(),
                why: "this is a Nomad Enterprise setting, which Drover does not have; remove it"
                    .into(),
            });
        }
    }
    for meta in ["client.meta"] {
        if let Some(Value::Object(m)) = lookup(tree, meta)
            && let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string())
        {
            return Err(Refused {
                key: format!("{meta}.{k}"),
                why: format!("meta values are strings: write {k} = \"{}\"", plain(v)),
            });
        }
    }
    for d in DEPRECATED {
        let Some(value) = take(tree, d.key) else {
            continue;
        };
        if let Some(to) = d.replacement {
            if lookup(tree, to).is_some() {
                return Err(Refused {
                    key: d.key.to_string(),
                    why: format!("{to} is set too: keep only {to}"),
                });
            }
            put(tree, to, value);
        }
        notices
            .warnings
            .push(format!("{} is deprecated: {}", d.key, d.advice));
    }
    if let Some(Value::Object(options)) = lookup_mut(tree, "client.options")
        && let Some(v) = options.remove(RAW_EXEC_OPTION)
    {
        let enabled = matches!(plain(&v).as_str(), "1" | "true");
        notices.warnings.push(format!(
            "client.options {RAW_EXEC_OPTION:?} is deprecated: use plugin \"raw_exec\" {{ config {{ enabled = {enabled} }} }}"
        ));
        if lookup(tree, "plugin.raw_exec.config.enabled").is_none() {
            put(tree, "plugin.raw_exec.config.enabled", Value::Bool(enabled));
        }
    }
    for key in GOSSIP {
        if take(tree, key).is_some() {
            notices.warnings.push(format!(
                "{key} is ignored: Drover has no gossip ring (servers talk over the RPC port)"
            ));
        }
    }
    Ok(notices)
}

/// Nomad's pre-plugin switch for raw_exec, still in many configs.
const RAW_EXEC_OPTION: &str = "driver.raw_exec.enable";

fn lookup_mut<'a>(tree: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(tree, |v, k| v.get_mut(k))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value at a dotted path of objects (`server.server_join.retry_join`).
fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |v, k| v.get(k))
}

/// Removes and returns the value at a dotted path.
fn take(tree: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (p.split('.').try_fold(&mut *tree, |v, k| v.get_mut(k))?, l),
        None => (tree, path),
    };
    parent.as_object_mut()?.remove(last)
}

/// Sets the value at a dotted path, creating the objects on the way.
fn put(tree: &mut Value, path: &str, value: Value) {
    let mut v = tree;
    let mut parts = path.split('.').peekable();
    while let Some(k) = parts.next() {
        if !v.is_object() {
            *v = Value::Object(Default::default());
        }
        let m = v.as_object_mut().expect("made an object above");
        if parts.peek().is_none() {
            m.insert(k.to_string(), value);
            return;
        }
        v = m
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deprecated_keys_move_to_their_replacement_with_a_warning() {
        let mut t = json!({"server": {"enabled": true, "retry_join": ["a"], "retry_max": 3, "rejoin_after_leave": true}, "client": {"network_speed": 100}});
        let n = normalise(&mut t).unwrap();
        assert_eq!(
            t,
            json!({"server": {"enabled": true, "server_join": {"retry_join": ["a"], "retry_max": 3}}, "client": {}})
        );
        let w = n.warnings.join("\n");
        assert!(
            w.contains(
                "server.retry_join is deprecated: use server { server_join { retry_join } }"
            ),
            "{w}"
        );
        assert!(w.contains("client.network_speed is deprecated"), "{w}");
        assert!(
            w.contains("server.rejoin_after_leave is ignored: Drover has no gossip ring"),
            "{w}"
        );
    }

    #[test]
    fn enterprise_keys_non_string_meta_and_double_settings_are_refused() {
        let e = normalise(&mut json!({"server": {"redundancy_zone": "az1"}})).unwrap_err();
        assert_eq!(e.key, "server.redundancy_zone");
        assert!(e.why.contains("Nomad Enterprise"), "{}", e.why);
        let e = normalise(&mut json!({"client": {"meta": {"zone": "a", "count": 3}}})).unwrap_err();
        assert_eq!(e.key, "client.meta.count");
        assert!(e.why.contains("write count = \"3\""), "{}", e.why);
        let e = normalise(
            &mut json!({"server": {"retry_join": ["a"], "server_join": {"retry_join": ["b"]}}}),
        )
        .unwrap_err();
        assert_eq!(e.key, "server.retry_join");
    }
}
