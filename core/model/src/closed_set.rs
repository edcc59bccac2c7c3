//! The model's closed sets of words: enums whose serde names are Nomad's strings, so the JSON
//! on the wire and on disk is the one Nomad writes, and a word outside the set is refused
//! when a body, a jobspec or a stored object is decoded (serde names the field and lists the
//! accepted words).

use serde::{Deserialize, Serialize};

/// An enum over a closed set of words: each variant's serde name, `as_str`, `parse` and the
/// list of accepted words come from one table.
macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $word)] $variant, )+
        }

        impl $name {
            /// Every word of the set, in declaration order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word as Nomad writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }

            /// The variant written `s`, if `s` is one of [`Self::WORDS`].
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $( $word => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

closed_set! {
    /// A constraint's or an affinity's operator. The aliases (`==`, `is`, `not`) are kept as
    /// written, so a job reads back exactly as it was submitted.
    #[derive(Default)]
    pub enum ConstraintOperand {
        /// No operator written (an API body without `Operand`): equality, as `=`.
        #[default]
        Unset = "",
        Equal = "=",
        EqualEqual = "==",
        Is = "is",
        NotEqual = "!=",
        Not = "not",
        Greater = ">",
        GreaterEqual = ">=",
        Less = "<",
        LessEqual = "<=",
        Regexp = "regexp",
        Version = "version",
        Semver = "semver",
        SetContains = "set_contains",
        SetContainsAny = "set_contains_any",
        SetContainsAll = "set_contains_all",
        IsSet = "is_set",
        IsNotSet = "is_not_set",
        DistinctHosts = "distinct_hosts",
        DistinctProperty = "distinct_property",
    }
}

closed_set! {
    /// When a task runs relative to the group's main tasks (`lifecycle { hook = ... }`).
    pub enum LifecycleHook {
        Prestart = "prestart",
        Poststart = "poststart",
        Poststop = "poststop",
    }
}

closed_set! {
    /// The kind of a group's volume request.
    pub enum VolumeType {
        Host = "host",
        Csi = "csi",
    }
}

closed_set! {
    /// Whether the scheduler may place new allocations on a node. A node that never said is
    /// ineligible, as an empty word was before.
    #[derive(Default)]
    pub enum SchedulingEligibility {
        Eligible = "eligible",
        /// Also read from an empty word, which older objects may carry.
        #[default]
        #[serde(alias = "")]
        Ineligible = "ineligible",
    }
}

closed_set! {
    /// What a re-rendered template asks of its running task.
    pub enum TemplateChangeMode {
        Restart = "restart",
        Signal = "signal",
        /// Not run: the file is rewritten and nothing else is done.
        Script = "script",
        Noop = "noop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_serde() {
        for w in ConstraintOperand::WORDS {
            let op = ConstraintOperand::parse(w).unwrap();
            assert_eq!(op.as_str(), *w);
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("{w:?}"));
            assert_eq!(
                serde_json::from_str::<ConstraintOperand>(&json).unwrap(),
                op
            );
        }
    }

    #[test]
    fn an_unknown_word_is_refused_naming_the_accepted_ones() {
        let e = serde_json::from_str::<LifecycleHook>("\"prestrat\"").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("prestrat") && msg.contains("poststart"),
            "{msg}"
        );
        assert!(VolumeType::parse("nfs").is_none());
    }
}
