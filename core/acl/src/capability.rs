//! Nomad's words: namespace capabilities, variable capabilities, and the coarse policy
//! levels of the node, agent, operator, quota and plugin rules.

/// Declares a closed set of Nomad's words once: the enum, `ALL` (each value with its word,
/// in declaration order), `parse` and `as_str`.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($variant:ident => $word:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            /// Every value, with its word.
            pub const ALL: &[($name, &str)] = &[$(($name::$variant, $word),)+];

            pub fn parse(word: &str) -> Option<$name> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }
    };
}

words! {
    /// A namespace capability (Nomad's `NamespaceCapability*`).
    pub enum NsCap {
        Deny => "deny",
        ListJobs => "list-jobs",
        ParseJob => "parse-job",
        ReadJob => "read-job",
        SubmitJob => "submit-job",
        DispatchJob => "dispatch-job",
        ReadLogs => "read-logs",
        ReadFs => "read-fs",
        AllocExec => "alloc-exec",
        AllocNodeExec => "alloc-node-exec",
        AllocLifecycle => "alloc-lifecycle",
        SentinelOverride => "sentinel-override",
        CsiRegisterPlugin => "csi-register-plugin",
        CsiWriteVolume => "csi-write-volume",
        CsiReadVolume => "csi-read-volume",
        CsiListVolume => "csi-list-volume",
        CsiMountVolume => "csi-mount-volume",
        HostVolumeCreate => "host-volume-create",
        HostVolumeRegister => "host-volume-register",
        HostVolumeRead => "host-volume-read",
        HostVolumeWrite => "host-volume-write",
        HostVolumeDelete => "host-volume-delete",
        ListScalingPolicies => "list-scaling-policies",
        ReadScalingPolicy => "read-scaling-policy",
        ReadJobScaling => "read-job-scaling",
        ScaleJob => "scale-job",
        SubmitRecommendation => "submit-recommendation",
        RegisterJob => "register-job",
        RevertJob => "revert-job",
        DeregisterJob => "deregister-job",
        PurgeJob => "purge-job",
        EvaluateJob => "evaluate-job",
        PlanJob => "plan-job",
        TagJobVersion => "tag-job-version",
        StableJob => "stable-job",
        FailDeployment => "fail-deployment",
        PauseDeployment => "pause-deployment",
        PromoteDeployment => "promote-deployment",
        UnblockDeployment => "unblock-deployment",
        CancelDeployment => "cancel-deployment",
        SetAllocHealthDeployment => "set-alloc-health-deployment",
        GcAllocation => "gc-allocation",
        PauseAllocation => "pause-allocation",
        ForcePeriodicJob => "force-periodic-job",
        DeleteServiceRegistration => "delete-service-registration",
    }
}

impl NsCap {
    /// The bit of this capability in a [`NsCaps`] set.
    pub(crate) fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// What a namespace rule's `policy` grants (Nomad's `expandNamespacePolicy`).
    pub fn expand_policy(level: Level) -> &'static [NsCap] {
        use NsCap::*;
        const READ: &[NsCap] = &[
            ListJobs,
            ParseJob,
            ReadJob,
            CsiListVolume,
            CsiReadVolume,
            ReadJobScaling,
            ListScalingPolicies,
            ReadScalingPolicy,
            HostVolumeRead,
        ];
        /// What `write` grants beyond `read`.
        const WRITE_ONLY: &[NsCap] = &[
            ScaleJob,
            SubmitJob,
            DispatchJob,
            ReadLogs,
            ReadFs,
            AllocExec,
            AllocLifecycle,
            CsiMountVolume,
            CsiWriteVolume,
            SubmitRecommendation,
            HostVolumeCreate,
        ];
        const WRITE: &[NsCap] = &concat::<{ READ.len() + WRITE_ONLY.len() }>(READ, WRITE_ONLY);
        const SCALE: &[NsCap] = &[
            ListScalingPolicies,
            ReadScalingPolicy,
            ReadJobScaling,
            ScaleJob,
            ReadJob,
            SubmitRecommendation,
        ];
        match level {
            Level::Deny => &[Deny],
            Level::Read => READ,
            Level::Write => WRITE,
            Level::Scale => SCALE,
            Level::List => &[],
        }
    }

    /// Capabilities implied by another (Nomad's `expandNamespaceCapabilities`).
    pub fn implied(self) -> &'static [NsCap] {
        use NsCap::*;
        match self {
            HostVolumeWrite => &[
                HostVolumeRegister,
                HostVolumeCreate,
                HostVolumeDelete,
                HostVolumeRead,
            ],
            HostVolumeRegister => &[HostVolumeCreate, HostVolumeRead],
            HostVolumeCreate => &[HostVolumeRead],
            _ => &[],
        }
    }
}

/// `a` then `b`, in a constant.
const fn concat<const N: usize>(a: &[NsCap], b: &[NsCap]) -> [NsCap; N] {
    assert!(a.len() + b.len() == N);
    let mut out = [NsCap::Deny; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - a.len()];
        i += 1;
    }
    out
}

/// A set of namespace capabilities, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NsCaps(pub(crate) u64);

impl NsCaps {
    pub fn has(self, c: NsCap) -> bool {
        self.0 & c.bit() != 0
    }
    pub(crate) fn set(&mut self, c: NsCap) {
        self.0 |= c.bit();
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

words! {
    /// A variables path capability.
    pub enum VarCap {
        List => "list",
        Read => "read",
        Write => "write",
        Destroy => "destroy",
        Deny => "deny",
    }
}

impl VarCap {
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

words! {
    /// The coarse level of a rule's `policy` (Nomad's `PolicyDeny`/`Read`/`List`/`Write`/
    /// `Scale`).
    pub enum Level {
        List => "list",
        Read => "read",
        Write => "write",
        Scale => "scale",
        Deny => "deny",
    }
}

impl Level {
    /// The level that grants the most, deny winning over everything (Nomad's
    /// `maxPrivilege`; `scale` is not a level of these rules and grants nothing here).
    pub fn max(a: Option<Level>, b: Level) -> Option<Level> {
        let rank = |l: Option<Level>| match l {
            Some(Level::Deny) => 4,
            Some(Level::Write) => 3,
            Some(Level::Read) => 2,
            Some(Level::List) => 1,
            _ => 0,
        };
        let best = if rank(Some(b)) >= rank(a) { Some(b) } else { a };
        match best {
            Some(Level::Scale) => a,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_has_its_own_bit_and_word() {
        let mut seen = 0u64;
        for (c, w) in NsCap::ALL {
            assert_eq!(seen & c.bit(), 0, "{w}");
            seen |= c.bit();
            assert_eq!(NsCap::parse(w), Some(*c));
            assert_eq!(c.as_str(), *w);
        }
        assert!(NsCap::ALL.len() < 64);
    }

    #[test]
    fn words_round_trip_and_write_grants_what_read_does() {
        for (l, w) in Level::ALL {
            assert_eq!((Level::parse(w), l.as_str()), (Some(*l), *w));
        }
        for (c, w) in VarCap::ALL {
            assert_eq!((VarCap::parse(w), c.as_str()), (Some(*c), *w));
        }
        assert_eq!(Level::parse("admin"), None);
        let (read, write) = (
            NsCap::expand_policy(Level::Read),
            NsCap::expand_policy(Level::Write),
        );
        assert_eq!(&write[..read.len()], read);
        assert_eq!(write.len(), 20);
        assert!(write.contains(&NsCap::AllocExec) && !read.contains(&NsCap::AllocExec));
    }

    #[test]
    fn deny_wins_then_write_then_read() {
        assert_eq!(
            Level::max(Some(Level::Write), Level::Deny),
            Some(Level::Deny)
        );
        assert_eq!(
            Level::max(Some(Level::Deny), Level::Write),
            Some(Level::Deny)
        );
        assert_eq!(
            Level::max(Some(Level::Read), Level::Write),
            Some(Level::Write)
        );
        assert_eq!(Level::max(None, Level::Read), Some(Level::Read));
        assert_eq!(
            Level::max(Some(Level::Write), Level::List),
            Some(Level::Write)
        );
    }
}
