//! Linux capabilities as Nomad's docker driver names them (`net_raw`, `CAP_NET_RAW` and
//! `NET_RAW` are one), and the set a task ends up with.

use std::collections::BTreeSet;

/// What the engine gives a container by default.
pub const DOCKER_DEFAULT: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Nomad's default `allow_caps`: the engine's defaults without NET_RAW.
pub const NOMAD_DEFAULT_ALLOWED: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const KNOWN: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// Why a capability name or a task's capabilities are refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CapError {
    #[error("{0:?} is not a Linux capability")]
    Unknown(String),
    #[error("{key}: {name:?} is not a Linux capability")]
    UnknownIn { key: &'static str, name: String },
    #[error("cap_add = [\"all\"] needs allow_caps = [\"all\"] in the docker plugin's config")]
    AllNotAllowed,
    #[error("cap_add {cap} is not in the docker plugin's allow_caps ({allowed})")]
    NotAllowed { cap: String, allowed: String },
}

/// `net_raw` / `CAP_NET_RAW` -> `NET_RAW`; `all` -> `ALL`; an unknown name is an error.
pub fn normalize(name: &str) -> Result<String, CapError> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up).to_string();
    if bare == "ALL" || KNOWN.contains(&bare.as_str()) {
        Ok(bare)
    } else {
        Err(CapError::Unknown(name.to_string()))
    }
}

/// [`normalize`] for a name under `key` (`cap_add`, `cap_drop`).
fn normalize_in(key: &'static str, name: &str) -> Result<String, CapError> {
    normalize(name).map_err(|_| CapError::UnknownIn {
        key,
        name: name.to_string(),
    })
}

/// The capabilities a task's container gets: the engine's defaults that `allowed` permits,
/// plus `add` (each must be allowed), minus `drop` (`all` drops every one). Nomad's rules.
pub fn effective(
    allowed: &BTreeSet<String>,
    add: &[String],
    drop: &[String],
) -> Result<BTreeSet<String>, CapError> {
    let all_allowed = allowed.contains("ALL");
    let permits = |c: &str| all_allowed || allowed.contains(c);
    let mut set: BTreeSet<String> = DOCKER_DEFAULT
        .iter()
        .filter(|c| permits(c))
        .map(|c| c.to_string())
        .collect();
    for a in add {
        let c = normalize_in("cap_add", a)?;
        if c == "ALL" {
            if !all_allowed {
                return Err(CapError::AllNotAllowed);
            }
            set.extend(KNOWN.iter().map(|c| c.to_string()));
            continue;
        }
        if !permits(&c) {
            return Err(CapError::NotAllowed {
                cap: c,
                allowed: allowed.iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        set.insert(c);
    }
    for d in drop {
        let c = normalize_in("cap_drop", d)?;
        if c == "ALL" {
            set.clear();
        } else {
            set.remove(&c);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn names_and_sets() {
        assert_eq!(normalize("net_raw").unwrap(), "NET_RAW");
        assert_eq!(normalize("CAP_SYS_ADMIN").unwrap(), "SYS_ADMIN");
        assert!(normalize("bogus").is_err());
        let def = allowed(NOMAD_DEFAULT_ALLOWED);
        let s = effective(&def, &[], &[]).unwrap();
        assert!(!s.contains("NET_RAW"), "NET_RAW is not allowed by default");
        assert_eq!(s.len(), NOMAD_DEFAULT_ALLOWED.len());
        let e = effective(&def, &["sys_admin".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("SYS_ADMIN"), "{e}");
        let s = effective(&allowed(&["ALL"]), &["sys_admin".into()], &["chown".into()]).unwrap();
        assert!(s.contains("SYS_ADMIN") && s.contains("NET_RAW") && !s.contains("CHOWN"));
        assert!(effective(&def, &[], &["all".into()]).unwrap().is_empty());
        assert!(effective(&def, &["all".into()], &[]).is_err());
    }
}
