//! A check's status from its results, as Consul computes it: `success_before_passing`
//! consecutive successes make it passing; consecutive unsuccessful results make it warning
//! after `failures_before_warning` and critical (or warning, for a warning result) after
//! `failures_before_critical`; in between, it keeps its status. An instance's health is the
//! worst of its checks' (critical > warning > passing).

use drover_model::{ServiceCheck, ServiceHealth};

/// What one run of a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    /// Consul's warning: a script's exit code 1, HTTP 429.
    Warning,
    Failure,
}

/// One check's status and its streaks.
#[derive(Debug, Clone)]
pub(crate) struct CheckHealth {
    pub status: ServiceHealth,
    successes: u32,
    failures: u32,
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
}

/// The status a check starts with: its `initial_status`, else critical (Consul's default:
/// an instance is not found healthy before its check passed once).
pub(crate) fn initial_status(check: &ServiceCheck) -> ServiceHealth {
    match check.initial_status.as_str() {
        "passing" => ServiceHealth::Passing,
        "warning" => ServiceHealth::Warning,
        _ => ServiceHealth::Critical,
    }
}

/// The worst of `healths` (passing when there is none).
pub(crate) fn worst(healths: impl IntoIterator<Item = ServiceHealth>) -> ServiceHealth {
    healths
        .into_iter()
        .max_by_key(|h| match h {
            ServiceHealth::Passing => 0,
            ServiceHealth::Warning => 1,
            ServiceHealth::Critical => 2,
        })
        .unwrap_or(ServiceHealth::Passing)
}

impl CheckHealth {
    pub(crate) fn new(check: &ServiceCheck) -> Self {
        let critical = check.failures_before_critical.max(1);
        CheckHealth {
            status: initial_status(check),
            successes: 0,
            failures: 0,
            success_before_passing: check.success_before_passing.max(1),
            // Consul: defaults to failures_before_critical.
            failures_before_warning: if check.failures_before_warning == 0 {
                critical
            } else {
                check.failures_before_warning
            },
            failures_before_critical: critical,
        }
    }

    /// Takes one result; returns the status after it.
    pub(crate) fn observe(&mut self, v: Verdict) -> ServiceHealth {
        match v {
            Verdict::Success => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.success_before_passing {
                    self.status = ServiceHealth::Passing;
                }
            }
            Verdict::Warning | Verdict::Failure => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                let as_given = if v == Verdict::Warning {
                    ServiceHealth::Warning
                } else {
                    ServiceHealth::Critical
                };
                if self.failures >= self.failures_before_critical {
                    self.status = as_given;
                } else if self.failures >= self.failures_before_warning {
                    self.status = ServiceHealth::Warning;
                }
            }
        }
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceHealth::{Critical, Passing};
    use Verdict::{Failure, Success};

    fn check(sbp: u32, fbw: u32, fbc: u32, initial: &str) -> ServiceCheck {
        ServiceCheck {
            success_before_passing: sbp,
            failures_before_warning: fbw,
            failures_before_critical: fbc,
            initial_status: initial.into(),
            ..Default::default()
        }
    }

    fn run(c: &ServiceCheck, vs: &[Verdict]) -> Vec<ServiceHealth> {
        let mut h = CheckHealth::new(c);
        vs.iter().map(|v| h.observe(*v)).collect()
    }

    #[test]
    fn defaults_follow_each_result_and_start_critical() {
        let c = check(0, 0, 0, "");
        assert_eq!(CheckHealth::new(&c).status, Critical);
        assert_eq!(
            run(&c, &[Success, Failure, Verdict::Warning, Success]),
            [Passing, Critical, ServiceHealth::Warning, Passing]
        );
    }

    #[test]
    fn success_before_passing_needs_consecutive_successes() {
        let c = check(3, 0, 0, "");
        assert_eq!(
            run(&c, &[Success, Success, Failure, Success, Success, Success]),
            [Critical, Critical, Critical, Critical, Critical, Passing]
        );
    }

    #[test]
    fn failures_pass_through_warning_before_critical() {
        let c = check(0, 1, 3, "passing");
        assert_eq!(CheckHealth::new(&c).status, Passing);
        assert_eq!(
            run(&c, &[Failure, Failure, Failure, Success]),
            [
                ServiceHealth::Warning,
                ServiceHealth::Warning,
                Critical,
                Passing
            ]
        );
        // Without failures_before_warning, the status holds until critical.
        let c = check(0, 0, 2, "passing");
        assert_eq!(run(&c, &[Failure, Failure]), [Passing, Critical]);
    }

    #[test]
    fn an_instance_is_its_worst_check() {
        assert_eq!(worst([]), Passing);
        assert_eq!(
            worst([Passing, ServiceHealth::Warning]),
            ServiceHealth::Warning
        );
        assert_eq!(worst([Critical, ServiceHealth::Warning, Passing]), Critical);
    }
}
