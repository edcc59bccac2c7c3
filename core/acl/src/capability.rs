//! Nomad's words: namespace capabilities, variable capabilities, and the coarse policy
//! levels of the node, agent, operator, quota and plugin rules.

/// A namespace capability (Nomad's `NamespaceCapability*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NsCap {
    Deny,
    ListJobs,
    ParseJob,
    ReadJob,
    SubmitJob,
    DispatchJob,
    ReadLogs,
    ReadFs,
    AllocExec,
    AllocNodeExec,
    AllocLifecycle,
    SentinelOverride,
    CsiRegisterPlugin,
    CsiWriteVolume,
    CsiReadVolume,
    CsiListVolume,
    CsiMountVolume,
    HostVolumeCreate,
    HostVolumeRegister,
    HostVolumeRead,
    HostVolumeWrite,
    HostVolumeDelete,
    ListScalingPolicies,
    ReadScalingPolicy,
    ReadJobScaling,
    ScaleJob,
    SubmitRecommendation,
    RegisterJob,
    RevertJob,
    DeregisterJob,
    PurgeJob,
    EvaluateJob,
    PlanJob,
    TagJobVersion,
    StableJob,
    FailDeployment,
    PauseDeployment,
    PromoteDeployment,
    UnblockDeployment,
    CancelDeployment,
    SetAllocHealthDeployment,
    GcAllocation,
    PauseAllocation,
    ForcePeriodicJob,
    DeleteServiceRegistration,
}

impl NsCap {
    /// Every capability, with its word.
    pub const ALL: &[(NsCap, &str)] = &[
        (NsCap::Deny, "deny"),
        (NsCap::ListJobs, "list-jobs"),
        (NsCap::ParseJob, "parse-job"),
        (NsCap::ReadJob, "read-job"),
        (NsCap::SubmitJob, "submit-job"),
        (NsCap::DispatchJob, "dispatch-job"),
        (NsCap::ReadLogs, "read-logs"),
        (NsCap::ReadFs, "read-fs"),
        (NsCap::AllocExec, "alloc-exec"),
        (NsCap::AllocNodeExec, "alloc-node-exec"),
        (NsCap::AllocLifecycle, "alloc-lifecycle"),
        (NsCap::SentinelOverride, "sentinel-override"),
        (NsCap::CsiRegisterPlugin, "csi-register-plugin"),
        (NsCap::CsiWriteVolume, "csi-write-volume"),
        (NsCap::CsiReadVolume, "csi-read-volume"),
        (NsCap::CsiListVolume, "csi-list-volume"),
        (NsCap::CsiMountVolume, "csi-mount-volume"),
        (NsCap::HostVolumeCreate, "host-volume-create"),
        (NsCap::HostVolumeRegister, "host-volume-register"),
        (NsCap::HostVolumeRead, "host-volume-read"),
        (NsCap::HostVolumeWrite, "host-volume-write"),
        (NsCap::HostVolumeDelete, "host-volume-delete"),
        (NsCap::ListScalingPolicies, "list-scaling-policies"),
        (NsCap::ReadScalingPolicy, "read-scaling-policy"),
        (NsCap::ReadJobScaling, "read-job-scaling"),
        (NsCap::ScaleJob, "scale-job"),
        (NsCap::SubmitRecommendation, "submit-recommendation"),
        (NsCap::RegisterJob, "register-job"),
        (NsCap::RevertJob, "revert-job"),
        (NsCap::DeregisterJob, "deregister-job"),
        (NsCap::PurgeJob, "purge-job"),
        (NsCap::EvaluateJob, "evaluate-job"),
        (NsCap::PlanJob, "plan-job"),
        (NsCap::TagJobVersion, "tag-job-version"),
        (NsCap::StableJob, "stable-job"),
        (NsCap::FailDeployment, "fail-deployment"),
        (NsCap::PauseDeployment, "pause-deployment"),
        (NsCap::PromoteDeployment, "promote-deployment"),
        (NsCap::UnblockDeployment, "unblock-deployment"),
        (NsCap::CancelDeployment, "cancel-deployment"),
        (
            NsCap::SetAllocHealthDeployment,
            "set-alloc-health-deployment",
        ),
        (NsCap::GcAllocation, "gc-allocation"),
        (NsCap::PauseAllocation, "pause-allocation"),
        (NsCap::ForcePeriodicJob, "force-periodic-job"),
        (
            NsCap::DeleteServiceRegistration,
            "delete-service-registration",
        ),
    ];

    pub fn parse(word: &str) -> Option<NsCap> {
        NsCap::ALL.iter().find(|(_, w)| *w == word).map(|(c, _)| *c)
    }

    pub fn as_str(self) -> &'static str {
        NsCap::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, w)| *w)
            .expect("every capability has a word")
    }

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
        const WRITE: &[NsCap] = &[
            ListJobs,
            ParseJob,
            ReadJob,
            CsiListVolume,
            CsiReadVolume,
            ReadJobScaling,
            ListScalingPolicies,
            ReadScalingPolicy,
            HostVolumeRead,
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

/// A variables path capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VarCap {
    List,
    Read,
    Write,
    Destroy,
    Deny,
}

impl VarCap {
    pub const ALL: &[(VarCap, &str)] = &[
        (VarCap::List, "list"),
        (VarCap::Read, "read"),
        (VarCap::Write, "write"),
        (VarCap::Destroy, "destroy"),
        (VarCap::Deny, "deny"),
    ];

    pub fn parse(word: &str) -> Option<VarCap> {
        VarCap::ALL
            .iter()
            .find(|(_, w)| *w == word)
            .map(|(c, _)| *c)
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The coarse level of a rule's `policy` (Nomad's `PolicyDeny`/`Read`/`List`/`Write`/
/// `Scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    List,
    Read,
    Write,
    Scale,
    Deny,
}

impl Level {
    pub const ALL: &[(Level, &str)] = &[
        (Level::Deny, "deny"),
        (Level::Read, "read"),
        (Level::List, "list"),
        (Level::Write, "write"),
        (Level::Scale, "scale"),
    ];

    pub fn parse(word: &str) -> Option<Level> {
        Level::ALL.iter().find(|(_, w)| *w == word).map(|(l, _)| *l)
    }

    pub fn as_str(self) -> &'static str {
        Level::ALL
            .iter()
            .find(|(l, _)| *l == self)
            .map(|(_, w)| *w)
            .expect("every level has a word")
    }

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
