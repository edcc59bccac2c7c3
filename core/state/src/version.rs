//! Versions of what Drover writes: every Raft entry and snapshot carries the encoding
//! version that wrote it (`"v"`), so a reader can tell which schema it is reading.
//!
//! The rule (docs/ARCHITECTURE.md, "Versions on disk"): unknown fields are ignored on read;
//! an entry whose command does not decode (an unknown command, an unknown enum value, a
//! changed type) is kept byte for byte as a [`Command::Unknown`] — stored, replicated,
//! never applied: the state machine stops applying at it and reports why.

use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Command, Entry};
use drover_model::UnixNanos;

/// The encoding this build writes. 1 is everything written before versions existed (no
/// `"v"`, up to and including commit 580767e's schema); 2 added the version itself.
pub const ENCODING_VERSION: u32 = 2;

/// The server version this build reports in the membership: the newest command it
/// applies (`Command::min_version`). A server that reports none is version 1.
pub const SERVER_VERSION: u32 = 4;

/// The version of a payload that carries none.
pub const UNVERSIONED: u32 = 1;

pub(crate) fn unversioned() -> u32 {
    UNVERSIONED
}

/// A command this server cannot decode, kept as written (the same JSON value) so it is
/// stored and replicated unchanged, but never applied.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownCommand {
    /// The encoding version of the entry that carried it.
    pub version: u32,
    /// The command's name (its tag), when it has one.
    pub name: String,
    /// Why it did not decode.
    pub error: String,
    raw: serde_json::Value,
}

impl UnknownCommand {
    fn new(version: u32, raw: serde_json::Value, error: serde_json::Error) -> Self {
        let name = match &raw {
            serde_json::Value::Object(m) if m.len() == 1 => m.keys().next().cloned(),
            serde_json::Value::String(s) => Some(s.clone()),
            _ => None,
        }
        .unwrap_or_default();
        UnknownCommand {
            version,
            name,
            error: error.to_string(),
            raw,
        }
    }
}

impl std::fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command {:?} (encoding version {}; this server reads up to {ENCODING_VERSION}) does not decode: {}",
            self.name, self.version, self.error
        )
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Entry", 3)?;
        match &self.command {
            // Written back exactly as the newer server wrote it.
            Command::Unknown(u) => {
                st.serialize_field("v", &u.version)?;
                st.serialize_field("time", &self.time)?;
                st.serialize_field("command", &u.raw)?;
            }
            c => {
                st.serialize_field("v", &ENCODING_VERSION)?;
                st.serialize_field("time", &self.time)?;
                st.serialize_field("command", c)?;
            }
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default = "unversioned")]
            v: u32,
            time: UnixNanos,
            command: serde_json::Value,
        }
        let w = Wire::deserialize(d)?;
        if w.v == 0 {
            return Err(D::Error::custom("entry encoding version 0 is not valid"));
        }
        let command = match Command::deserialize(&w.command) {
            Ok(c) => c,
            Err(e) => Command::Unknown(UnknownCommand::new(w.v, w.command, e)),
        };
        Ok(Entry {
            time: w.time,
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_command_is_kept_as_written_and_named() {
        let raw = r#"{"v":7,"time":5,"command":{"JobScale":{"count":3,"future":true}}}"#;
        let e: Entry = serde_json::from_str(raw).unwrap();
        let Command::Unknown(u) = &e.command else {
            panic!("decoded as {:?}", e.command);
        };
        assert_eq!((u.version, u.name.as_str()), (7, "JobScale"));
        assert!(u.to_string().contains("encoding version 7"), "{u}");
        let back: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(raw).unwrap()
        );
    }

    #[test]
    fn an_unknown_enum_value_makes_the_command_unknown_not_a_panic() {
        let raw = r#"{"v":3,"time":5,"command":{"NodeStatus":{"node_id":"n","status":"hibernating","description":"","evals":[]}}}"#;
        let e: Entry = serde_json::from_str(raw).unwrap();
        assert!(matches!(&e.command, Command::Unknown(u) if u.name == "NodeStatus"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_versions_written() {
        let raw = r#"{"v":3,"time":5,"extra":1,"command":{"VarDelete":{"namespace":"a","path":"p","cas":null,"force":true}}}"#;
        let e: Entry = serde_json::from_str(raw).unwrap();
        assert!(matches!(&e.command, Command::VarDelete { path, .. } if path == "p"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["v"], ENCODING_VERSION);
        // An entry without a version is version 1.
        let old: Entry =
            serde_json::from_str(r#"{"time":1,"command":{"EvalUpsert":{"evals":[]}}}"#).unwrap();
        assert!(matches!(old.command, Command::EvalUpsert { .. }));
    }
}
