//! Service checks as a job declares them: the words each field accepts and the bounds on
//! what a check may make the client send, checked when the job is canonicalized (the API's
//! job decoding and the jobspec both canonicalize), so a bad check is refused at submit time
//! with the field named rather than failing on the client.

use std::time::Duration;

use crate::{Service, ServiceCheck, TaskGroup};

/// The check types Drover runs: Nomad's native `http` and `tcp`, and `grpc` and `script`
/// (Consul-only in Nomad; Drover's extension).
pub const CHECK_TYPES: &[&str] = &["http", "tcp", "grpc", "script"];
/// The shortest interval and timeout (Nomad's `minCheckInterval`, `minCheckTimeout`).
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
pub const MIN_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds on what one check makes the client send.
pub const MAX_CHECK_BODY_BYTES: usize = 64 * 1024;
pub const MAX_CHECK_HEADERS: usize = 32;
pub const MAX_CHECK_HEADER_BYTES: usize = 8 * 1024;
pub const MAX_CHECK_ARGS: usize = 64;
pub const MAX_CHECK_PATH_BYTES: usize = 4 * 1024;

/// Why a check cannot run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service {service:?} check {check:?}: {why}")]
pub struct CheckError {
    pub service: String,
    pub check: String,
    pub why: String,
}

/// A check's status words (`initial_status`), Consul's.
const STATUSES: &[&str] = &["passing", "warning", "critical"];
const ON_UPDATE: &[&str] = &["require_healthy", "ignore_warnings", "ignore"];
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

fn one_of(field: &str, v: &str, words: &[&str]) -> Result<(), String> {
    if v.is_empty() || words.contains(&v) {
        Ok(())
    } else {
        Err(format!("{field} {v:?} is not one of {}", words.join(", ")))
    }
}

impl ServiceCheck {
    /// Checks the words and bounds of the check (`task_names`: the group's tasks, which a
    /// check's `task` must name).
    pub fn validate(&self, task_names: &[&str]) -> Result<(), String> {
        if !CHECK_TYPES.contains(&self.check_type.as_str()) {
            return Err(format!(
                "type {:?} is not one of {}",
                self.check_type,
                CHECK_TYPES.join(", ")
            ));
        }
        if self.interval < MIN_CHECK_INTERVAL {
            return Err(format!(
                "interval {:?} is shorter than {MIN_CHECK_INTERVAL:?}",
                self.interval
            ));
        }
        if self.timeout < MIN_CHECK_TIMEOUT {
            return Err(format!(
                "timeout {:?} is shorter than {MIN_CHECK_TIMEOUT:?}",
                self.timeout
            ));
        }
        one_of("initial_status", &self.initial_status, STATUSES)?;
        one_of("on_update", &self.on_update, ON_UPDATE)?;
        one_of("protocol", &self.protocol, &["http", "https"])?;
        one_of(
            "address_mode",
            &self.address_mode,
            &["host", "alloc", "auto"],
        )?;
        one_of("method", &self.method.to_ascii_uppercase(), METHODS)?;
        if !self.task_name.is_empty() && !task_names.contains(&self.task_name.as_str()) {
            return Err(format!(
                "task {:?} is not a task of the group",
                self.task_name
            ));
        }
        match self.check_type.as_str() {
            "http" if self.path.is_empty() => return Err("an http check needs a path".into()),
            "script" if self.command.is_empty() => {
                return Err("a script check needs a command".into());
            }
            _ => {}
        }
        if self.path.len() > MAX_CHECK_PATH_BYTES {
            return Err(format!("path longer than {MAX_CHECK_PATH_BYTES} bytes"));
        }
        if self.body.len() > MAX_CHECK_BODY_BYTES {
            return Err(format!("body longer than {MAX_CHECK_BODY_BYTES} bytes"));
        }
        if self.header.len() > MAX_CHECK_HEADERS {
            return Err(format!("more than {MAX_CHECK_HEADERS} headers"));
        }
        let header_bytes: usize = self
            .header
            .iter()
            .map(|(k, vs)| k.len() + vs.iter().map(String::len).sum::<usize>())
            .sum();
        if header_bytes > MAX_CHECK_HEADER_BYTES {
            return Err(format!(
                "headers longer than {MAX_CHECK_HEADER_BYTES} bytes"
            ));
        }
        if self.args.len() > MAX_CHECK_ARGS {
            return Err(format!("more than {MAX_CHECK_ARGS} args"));
        }
        Ok(())
    }
}

impl TaskGroup {
    /// Merges each service's `check_restart` into its checks that have none (Nomad's API
    /// canonicalization) and checks every check; the errors found, each naming its service
    /// and check.
    pub fn canonicalize_checks(&mut self) -> Vec<CheckError> {
        let task_names: Vec<String> = self.tasks.iter().map(|t| t.name.clone()).collect();
        let names: Vec<&str> = task_names.iter().map(String::as_str).collect();
        let mut errs = Vec::new();
        let group_services = self.services.iter_mut().map(|s| (s, true));
        let task_services = self
            .tasks
            .iter_mut()
            .flat_map(|t| t.services.iter_mut().map(|s| (s, false)));
        for (s, in_group) in group_services.chain(task_services) {
            canonicalize_service(s, in_group, &names, &mut errs);
        }
        errs
    }
}

fn canonicalize_service(
    s: &mut Service,
    in_group: bool,
    task_names: &[&str],
    errs: &mut Vec<CheckError>,
) {
    let restart = s.check_restart.take();
    for c in &mut s.checks {
        if c.check_restart.is_none() {
            c.check_restart = restart.clone();
        }
        let err = |why: String| CheckError {
            service: s.name.clone(),
            check: c.name.clone(),
            why,
        };
        if let Err(why) = c.validate(task_names) {
            errs.push(err(why));
            continue;
        }
        // A group service's check runs beside the group: a script runs in the task it names.
        if in_group && c.task_name.is_empty() && c.check_type == "script" {
            errs.push(err("a script check of a group service needs `task`".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CheckRestart, JobType, Task};

    fn check(kind: &str) -> ServiceCheck {
        ServiceCheck {
            name: "c".into(),
            check_type: kind.into(),
            path: "/health".into(),
            command: "/bin/true".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            ..Default::default()
        }
    }

    fn group(svc: Service, in_group: bool) -> TaskGroup {
        let mut t = Task::new("web", "raw_exec");
        if !in_group {
            t.services.push(svc.clone());
        }
        let mut g = TaskGroup::new("g", 1, JobType::Service, vec![t]);
        if in_group {
            g.services.push(svc);
        }
        g
    }

    #[test]
    fn the_services_check_restart_reaches_its_checks() {
        let mut own = check("tcp");
        own.check_restart = Some(CheckRestart {
            limit: 7,
            ..Default::default()
        });
        let svc = Service {
            name: "api".into(),
            checks: vec![check("tcp"), own],
            check_restart: Some(CheckRestart {
                limit: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut g = group(svc, false);
        assert!(g.canonicalize_checks().is_empty());
        let s = &g.tasks[0].services[0];
        assert!(s.check_restart.is_none());
        assert_eq!(s.checks[0].check_restart.as_ref().unwrap().limit, 3);
        assert_eq!(s.checks[1].check_restart.as_ref().unwrap().limit, 7);
    }

    #[test]
    fn bad_checks_are_named_with_the_reason() {
        let cases: Vec<(ServiceCheck, &str)> = vec![
            (
                ServiceCheck {
                    check_type: "udp".into(),
                    ..check("tcp")
                },
                "type \"udp\" is not one of",
            ),
            (
                ServiceCheck {
                    interval: Duration::from_millis(100),
                    ..check("tcp")
                },
                "interval",
            ),
            (
                ServiceCheck {
                    path: String::new(),
                    ..check("http")
                },
                "needs a path",
            ),
            (
                ServiceCheck {
                    initial_status: "ok".into(),
                    ..check("tcp")
                },
                "initial_status \"ok\"",
            ),
            (
                ServiceCheck {
                    task_name: "db".into(),
                    ..check("tcp")
                },
                "task \"db\" is not a task",
            ),
            (
                ServiceCheck {
                    body: "x".repeat(MAX_CHECK_BODY_BYTES + 1),
                    ..check("http")
                },
                "body longer",
            ),
        ];
        for (c, want) in cases {
            let svc = Service {
                name: "api".into(),
                checks: vec![c],
                ..Default::default()
            };
            let errs = group(svc, false).canonicalize_checks();
            assert_eq!(errs.len(), 1, "{want}: {errs:?}");
            let e = errs[0].to_string();
            assert!(e.contains(want) && e.contains("service \"api\""), "{e}");
        }
    }

    #[test]
    fn a_group_services_script_check_names_its_task() {
        let svc = Service {
            name: "api".into(),
            checks: vec![check("script")],
            ..Default::default()
        };
        let errs = group(svc.clone(), true).canonicalize_checks();
        assert!(errs[0].why.contains("needs `task`"), "{errs:?}");
        assert!(group(svc, false).canonicalize_checks().is_empty());
        let named = Service {
            name: "api".into(),
            checks: vec![ServiceCheck {
                task_name: "web".into(),
                ..check("script")
            }],
            ..Default::default()
        };
        assert!(group(named, true).canonicalize_checks().is_empty());
    }
}
