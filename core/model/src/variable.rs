use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Index, UnixNanos};

/// A variable (Nomad's `nomad var`): string items stored at a path in a namespace,
/// replicated through Raft and kept in snapshots like every other table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Variable {
    pub namespace: String,
    pub path: String,
    pub items: BTreeMap<String, String>,
    /// The items encrypted (what Raft and snapshots hold once a keyring exists; `items` is
    /// then empty). Never in an API answer: servers decrypt on read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<crate::EncryptedItems>,
    pub create_index: Index,
    pub modify_index: Index,
    pub create_time: UnixNanos,
    pub modify_time: UnixNanos,
}

/// The most a variable's items may hold, keys and values together (Nomad's limit).
pub const MAX_VARIABLE_BYTES: usize = 64 * 1024;

impl Variable {
    /// Checks the path and the items; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_variable_path(&self.path)?;
        if self.items.is_empty() {
            return Err(format!("variable {:?} has no items", self.path));
        }
        let size: usize = self.items.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_VARIABLE_BYTES {
            return Err(format!(
                "variable {:?} holds {size} bytes, more than the {MAX_VARIABLE_BYTES} allowed",
                self.path
            ));
        }
        if self.items.keys().any(|k| k.is_empty()) {
            return Err(format!(
                "variable {:?} has an item with an empty key",
                self.path
            ));
        }
        Ok(())
    }
}

/// A variable path: 1 to 128 characters of letters, digits and `-_~/`, not starting or
/// ending with `/` and without empty segments.
pub fn validate_variable_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > 128 {
        return Err(format!(
            "variable path {path:?} must be 1 to 128 characters long"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_~/".contains(*c)))
    {
        return Err(format!(
            "variable path {path:?} contains {c:?}: only letters, digits and -_~/ are allowed"
        ));
    }
    if path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(format!(
            "variable path {path:?} must not start or end with '/' or hold an empty segment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(path: &str, items: &[(&str, &str)]) -> Variable {
        Variable {
            path: path.into(),
            items: items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn paths_and_items_are_checked() {
        assert!(var("app/db", &[("password", "x")]).validate().is_ok());
        let e = var("app db", &[("k", "v")]).validate().unwrap_err();
        assert!(e.contains("' '"), "{e}");
        let e = var("/app", &[("k", "v")]).validate().unwrap_err();
        assert!(e.contains("start or end"), "{e}");
        let e = var("app", &[]).validate().unwrap_err();
        assert!(e.contains("no items"), "{e}");
        let big = "x".repeat(MAX_VARIABLE_BYTES);
        let e = var("app", &[("k", &big)]).validate().unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }
}
