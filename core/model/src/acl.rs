//! Nomad's ACL objects: policies (rules in Nomad's policy language), tokens (client or
//! management, bound to policies and roles) and roles (named sets of policies).
//!
//! A token's secret is never stored: the state keeps its SHA-256 (`SecretHash`, Drover's
//! field), so a secret is shown once, when the token is created, and cannot be read back
//! (Nomad stores and shows it; Drover deliberately does not).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Index, UnixNanos};

/// The most policies, roles or names one object may list, and the longest name or
/// description: values that size memory are bounded.
pub const MAX_ACL_LINKS: usize = 64;
pub const MAX_ACL_NAME: usize = 128;
pub const MAX_ACL_DESCRIPTION: usize = 256;
/// The longest policy text.
pub const MAX_ACL_RULES: usize = 64 * 1024;

/// The policy Nomad applies to requests without a token, when it exists.
pub const ANONYMOUS_POLICY: &str = "anonymous";

/// Nomad's `JobACL`: a policy attached to a job's workload identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobAcl {
    pub namespace: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub group: String,
    pub task: String,
}

/// An ACL policy: a name and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclPolicy {
    pub name: String,
    pub description: String,
    /// The rules, HCL or JSON, as written.
    pub rules: String,
    #[serde(rename = "JobACL", skip_serializing_if = "Option::is_none")]
    pub job_acl: Option<JobAcl>,
    pub create_index: Index,
    pub modify_index: Index,
}

/// A role's link to a policy, by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclRolePolicyLink {
    pub name: String,
}

/// A token's link to a role: by id or by name (the servers fill in both).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclTokenRoleLink {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
}

/// An ACL role: a named set of policies tokens can be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclRole {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<AclRolePolicyLink>,
    pub create_index: Index,
    pub modify_index: Index,
}

/// A token's type: `client` (its policies and roles) or `management` (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AclTokenType {
    #[default]
    Client,
    Management,
}

impl AclTokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            AclTokenType::Client => "client",
            AclTokenType::Management => "management",
        }
    }
}

/// An ACL token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// Empty except in the answer that creates the token: only its hash is stored.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub token_type: AclTokenType,
    pub policies: Vec<String>,
    pub roles: Vec<AclTokenRoleLink>,
    pub global: bool,
    #[serde(with = "crate::serde_fmt::rfc3339")]
    pub create_time: UnixNanos,
    /// When the token stops working (None: never).
    #[serde(with = "opt_rfc3339")]
    pub expiration_time: Option<UnixNanos>,
    /// The TTL the token was created with (nanoseconds; 0: none).
    #[serde(rename = "ExpirationTTL")]
    pub expiration_ttl: i64,
    /// Drover's: the hex SHA-256 of the secret, the only form of it that is stored. Never
    /// shown by the API.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_hash: String,
    pub create_index: Index,
    pub modify_index: Index,
}

impl AclToken {
    /// Whether the token has expired at `now`.
    pub fn expired(&self, now: UnixNanos) -> bool {
        self.expiration_time.is_some_and(|t| t <= now)
    }

    pub fn is_management(&self) -> bool {
        self.token_type == AclTokenType::Management
    }
}

/// Checks an ACL object's name: 1 to 128 letters, digits, `-` and `_` (Nomad's rule).
pub fn validate_acl_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ACL_NAME {
        return Err(format!(
            "{what} name {name:?} must be 1 to {MAX_ACL_NAME} characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{what} name {name:?} has {c:?}: use letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

/// An optional time as RFC 3339 (null when unset).
mod opt_rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match t.and_then(crate::serde_fmt::format) {
            Some(v) => s.serialize_str(&v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let t: i64 = crate::serde_fmt::rfc3339::deserialize(d)?;
        Ok((t > 0).then_some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_in_nomads_shape() {
        let t = AclToken {
            accessor_id: "a".into(),
            name: "n".into(),
            token_type: AclTokenType::Management,
            create_time: 1_700_000_000_000_000_000,
            expiration_time: Some(1_700_000_060_000_000_000),
            expiration_ttl: 60_000_000_000,
            ..Default::default()
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["Type"], "management");
        assert_eq!(v["AccessorID"], "a");
        assert!(
            v["ExpirationTime"]
                .as_str()
                .unwrap()
                .starts_with("2023-11-14T22:14")
        );
        assert!(v.get("SecretHash").is_none());
        let back: AclToken = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
        let none: AclToken = serde_json::from_str(r#"{"ExpirationTime":null}"#).unwrap();
        assert_eq!(none.expiration_time, None);
        assert!(t.expired(1_700_000_060_000_000_000) && !t.expired(1));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_acl_name("policy", "read-only_1").is_ok());
        assert!(validate_acl_name("policy", "").is_err());
        assert!(
            validate_acl_name("policy", "a b")
                .unwrap_err()
                .contains("' '")
        );
    }
}
