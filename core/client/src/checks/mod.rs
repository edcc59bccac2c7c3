//! Service checks, run by the client that runs the task (Nomad's native checks, plus grpc
//! and script). A [`CheckSet`] runs one owner's checks (a task's, or the group's) while it
//! lives: each check on its own timer, its results kept in the client's [`CheckResults`]
//! for the API, its status computed with Consul's thresholds ([`health`]). What leaves the
//! client is only a change of an instance's health (the worst of its checks), published on
//! a watch channel the services hook turns into a catalog write — never one write per run.
//! A check with `check_restart` asks the task runner to restart its task through the
//! restart policy after `limit` unhealthy results in a row, not counting those within
//! `grace` of the start.

pub(crate) mod health;
mod probe;
pub(crate) mod results;
mod target;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_model::{
    Allocation, CheckRestart, Service, ServiceCheck, ServiceHealth, ServiceRegistration,
};
use md5::{Digest, Md5};
use tokio::sync::{mpsc, watch};

use self::health::{CheckHealth, Verdict, initial_status, worst};
use self::probe::Outcome;
use self::results::CheckResult;
pub(crate) use self::results::CheckResults;
use crate::Client;
use crate::env::interpolate;
use crate::netns::NetnsRuntime;

/// The health of each registration (by id) as its checks last made it.
pub(crate) type Healths = BTreeMap<String, ServiceHealth>;

/// The health an instance is registered with before its checks ran: the worst of their
/// initial statuses (passing without checks).
pub(crate) fn initial_health(s: &Service) -> ServiceHealth {
    worst(s.checks.iter().map(initial_status))
}

/// Nomad's check id: an MD5 of the allocation, group and the check's identifying fields.
pub(crate) fn check_id(alloc_id: &str, group: &str, task: &str, c: &ServiceCheck) -> String {
    let mut h = Md5::new();
    for s in [alloc_id, group, task, &c.name, &c.check_type, &c.port_label] {
        h.update(s.as_bytes());
    }
    for s in [&c.on_update, &c.address_mode] {
        h.update(s.as_bytes());
    }
    h.update((c.interval.as_nanos() as i64).to_le_bytes());
    h.update((c.timeout.as_nanos() as i64).to_le_bytes());
    for s in [&c.protocol, &c.path, &c.method] {
        h.update(s.as_bytes());
    }
    format!("{:x}", h.finalize())
}

/// How a check is run.
#[derive(Debug, Clone)]
enum How {
    /// http, tcp, grpc against this address (and path, interpolated).
    Network(SocketAddr, String),
    /// A script in this task: the argv, interpolated.
    Script { task: String, argv: Vec<String> },
    /// The check cannot run: every run fails with this reason.
    Broken(String),
}

/// One check of one registered instance.
#[derive(Debug, Clone)]
pub(crate) struct CheckSpec {
    id: String,
    reg_id: String,
    service: String,
    /// The task whose service it is ("" for a group service).
    task: String,
    check: ServiceCheck,
    how: How,
}

/// The checks of `services` (registered as `regs`, in the same order) of `owner_task`
/// (empty for the group's), with `env` to interpolate; `in_netns`: the allocation has its
/// own network namespace, where the checks run.
pub(crate) fn specs(
    alloc: &Allocation,
    owner_task: &str,
    services: &[Service],
    regs: &[ServiceRegistration],
    in_netns: bool,
    env: &BTreeMap<String, String>,
) -> Vec<CheckSpec> {
    let mut out = Vec::new();
    for (s, reg) in services.iter().zip(regs) {
        for c in &s.checks {
            let how = match c.check_type.as_str() {
                "script" => {
                    let task = if c.task_name.is_empty() {
                        owner_task.to_string()
                    } else {
                        c.task_name.clone()
                    };
                    let argv = std::iter::once(&c.command)
                        .chain(&c.args)
                        .map(|a| interpolate(a, env))
                        .collect();
                    How::Script { task, argv }
                }
                _ => match target::target(alloc, s, c, reg, in_netns, env) {
                    Ok(addr) => How::Network(addr, interpolate(&c.path, env)),
                    Err(e) => How::Broken(e.to_string()),
                },
            };
            out.push(CheckSpec {
                id: check_id(&alloc.id, &alloc.task_group, owner_task, c),
                reg_id: reg.id.clone(),
                service: reg.service_name.clone(),
                task: owner_task.to_string(),
                check: c.clone(),
                how,
            });
        }
    }
    out
}

/// How a `check_restart` reaches the task it restarts.
pub(crate) enum Restarter {
    /// A task's own checks: that task's runner, through its hook actions.
    Task(mpsc::Sender<crate::task_hooks::Action>),
    /// The group's checks: the task each check names (`task`, as Nomad's group service
    /// checks do), through the allocation's runner; a check naming none restarts nothing.
    Group,
}

/// One owner's checks, running until dropped (their results are then forgotten).
pub(crate) struct CheckSet {
    client: Client,
    alloc_id: String,
    ids: Vec<String>,
    _stop: watch::Sender<()>,
}

/// What every check of a set shares: the allocation, where results go, the healths.
struct Shared {
    client: Client,
    alloc_id: String,
    alloc_name: String,
    job_id: String,
    statuses: Mutex<BTreeMap<String, (String, ServiceHealth)>>,
    healths: watch::Sender<Healths>,
    restart: Restarter,
}

impl CheckSet {
    /// Starts `specs`; `netns`: the allocation's namespace, where network checks run;
    /// `healths` receives each instance's health when it changes (set to the initial
    /// healths at once); `restart` is how a `check_restart` reaches the task.
    pub(crate) fn start(
        client: &Client,
        alloc: &Allocation,
        specs: Vec<CheckSpec>,
        netns: Option<PathBuf>,
        healths: watch::Sender<Healths>,
        restart: Restarter,
    ) -> CheckSet {
        let (stop, stopped) = watch::channel(());
        let mut initial: BTreeMap<String, (String, ServiceHealth)> = BTreeMap::new();
        for s in &specs {
            initial.insert(s.id.clone(), (s.reg_id.clone(), initial_status(&s.check)));
        }
        healths.send_replace(aggregate(&initial));
        let shared = Arc::new(Shared {
            client: client.clone(),
            alloc_id: alloc.id.clone(),
            alloc_name: alloc.name.clone(),
            job_id: alloc.job_id.clone(),
            statuses: Mutex::new(initial),
            healths,
            restart,
        });
        for s in &specs {
            shared.record(s, None, initial_status(&s.check));
        }
        let ids = specs.iter().map(|s| s.id.clone()).collect();
        let supervisor = async move {
            let rt = match netns {
                Some(path) => match NetnsRuntime::enter(&path).await {
                    Ok(rt) => Some(Arc::new(rt)),
                    Err(e) => {
                        tracing::warn!(error = %e, "service checks cannot enter the allocation's network namespace");
                        let broken = How::Broken(format!(
                            "cannot enter the allocation's network namespace: {e}"
                        ));
                        let specs = specs.into_iter().map(|mut s| {
                            if matches!(s.how, How::Network(..)) {
                                s.how = broken.clone();
                            }
                            s
                        });
                        return run_all(shared, specs.collect(), None, stopped).await;
                    }
                },
                None => None,
            };
            run_all(shared, specs, rt, stopped).await
        };
        tokio::spawn(supervisor);
        CheckSet {
            client: client.clone(),
            alloc_id: alloc.id.clone(),
            ids,
            _stop: stop,
        }
    }
}

impl Drop for CheckSet {
    fn drop(&mut self) {
        self.client
            .check_results()
            .remove(&self.alloc_id, &self.ids);
    }
}

/// Each registration's health: the worst of its checks'.
fn aggregate(statuses: &BTreeMap<String, (String, ServiceHealth)>) -> Healths {
    let mut by_reg: BTreeMap<String, Vec<ServiceHealth>> = BTreeMap::new();
    for (reg, h) in statuses.values() {
        by_reg.entry(reg.clone()).or_default().push(*h);
    }
    by_reg.into_iter().map(|(r, hs)| (r, worst(hs))).collect()
}

async fn run_all(
    shared: Arc<Shared>,
    specs: Vec<CheckSpec>,
    rt: Option<Arc<NetnsRuntime>>,
    stopped: watch::Receiver<()>,
) {
    let loops = specs.into_iter().map(|s| {
        let shared = shared.clone();
        let rt = rt.clone();
        let mut stopped = stopped.clone();
        async move {
            tokio::select! {
                _ = run_check(&shared, &s, rt.as_deref()) => {}
                _ = stopped.changed() => {}
            }
        }
    });
    futures::future::join_all(loops).await;
}

/// How long after the start the first run comes (at most the interval): the task has a
/// moment to open its port, and its runner to record it running (for script checks).
const FIRST_RUN: Duration = Duration::from_secs(1);

/// Runs one check every `interval` until the set stops.
async fn run_check(shared: &Shared, spec: &CheckSpec, rt: Option<&NetnsRuntime>) {
    let mut health = CheckHealth::new(&spec.check);
    let mut restart = RestartCounter::new(spec.check.check_restart.clone());
    let mut started = tokio::time::Instant::now();
    let mut next = tokio::time::Instant::now() + FIRST_RUN.min(spec.check.interval);
    loop {
        tokio::time::sleep_until(next).await;
        next = tokio::time::Instant::now() + spec.check.interval;
        let outcome = run_once(shared, spec, rt).await;
        let status = health.observe(outcome.verdict);
        shared.record(spec, Some(&outcome), status);
        if restart.observe(status, started.elapsed()) {
            shared.restart_task(spec).await;
            // The task starts again: its grace starts again too.
            started = tokio::time::Instant::now();
        }
    }
}

async fn run_once(shared: &Shared, spec: &CheckSpec, rt: Option<&NetnsRuntime>) -> Outcome {
    match &spec.how {
        How::Broken(why) => Outcome::failure(why.clone()),
        How::Network(addr, path) => {
            let run = probe::network(spec.check.clone(), *addr, path.clone());
            match rt {
                Some(rt) => {
                    rt.handle().spawn(run).await.unwrap_or_else(|e| {
                        Outcome::failure(format!("the check did not finish: {e}"))
                    })
                }
                None => run.await,
            }
        }
        How::Script { task, argv } => {
            probe::script(
                &shared.client,
                &shared.alloc_id,
                task,
                argv.clone(),
                spec.check.timeout,
            )
            .await
        }
    }
}

impl Shared {
    /// `check_restart` reached its limit: the check's task is stopped as failed, and its
    /// restart policy decides.
    async fn restart_task(&self, spec: &CheckSpec) {
        let why = format!(
            "healthcheck: check {:?} of service {:?} unhealthy",
            spec.check.name, spec.service
        );
        match &self.restart {
            Restarter::Task(ask) => {
                tracing::info!(check = %spec.check.name, service = %spec.service, "restarting the task: its check keeps failing");
                let _ = ask
                    .send(crate::task_hooks::Action::RestartUnhealthy { why })
                    .await;
            }
            Restarter::Group if spec.check.task_name.is_empty() => {
                tracing::warn!(check = %spec.check.name, service = %spec.service, "the group check's check_restart names no task (`task`): nothing restarted");
            }
            Restarter::Group => {
                let task = &spec.check.task_name;
                tracing::info!(check = %spec.check.name, service = %spec.service, %task, "restarting the task the group check names: the check keeps failing");
                let asked = match self.client.runner(&self.alloc_id) {
                    Ok(runner) => runner.restart_unhealthy(task, why).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = asked {
                    tracing::warn!(%task, error = %e, "the group check's task was not restarted");
                }
            }
        }
    }

    /// Keeps the result for the API and publishes the instance's health if it changed.
    fn record(&self, spec: &CheckSpec, outcome: Option<&Outcome>, status: ServiceHealth) {
        let mode = if spec.check.on_update == "ignore" {
            "readiness"
        } else {
            "healthiness"
        };
        let (verdict, output, code) = match outcome {
            None => ("pending", String::new(), None),
            Some(o) => (
                if o.verdict == Verdict::Success {
                    "success"
                } else {
                    "failure"
                },
                o.output.clone(),
                o.status_code,
            ),
        };
        self.client.check_results().set(
            &self.alloc_id,
            CheckResult {
                id: spec.id.clone(),
                check: spec.check.name.clone(),
                group: self.alloc_name.clone(),
                job_id: self.job_id.clone(),
                mode,
                output,
                service: spec.service.clone(),
                status: verdict,
                status_code: code,
                task: spec.task.clone(),
                timestamp: (drover_model::now_nanos() / 1_000_000_000) as i64,
                health: status,
            },
        );
        let healths = {
            let mut st = self.statuses.lock().expect("check statuses lock");
            st.insert(spec.id.clone(), (spec.reg_id.clone(), status));
            aggregate(&st)
        };
        self.healths.send_if_modified(|h| {
            if *h == healths {
                false
            } else {
                *h = healths;
                true
            }
        });
    }
}

/// `check_restart`: counts unhealthy statuses in a row (a warning only without
/// `ignore_warnings`), none within `grace` of the start; says when `limit` is reached.
struct RestartCounter {
    policy: Option<CheckRestart>,
    unhealthy: u32,
}

impl RestartCounter {
    fn new(policy: Option<CheckRestart>) -> Self {
        RestartCounter {
            policy: policy.filter(|p| p.limit > 0),
            unhealthy: 0,
        }
    }

    /// Takes the check's status, `since_start` the task (re)started; true when the task
    /// must restart.
    fn observe(&mut self, status: ServiceHealth, since_start: Duration) -> bool {
        let Some(p) = &self.policy else { return false };
        if since_start < p.grace {
            return false;
        }
        let unhealthy = match status {
            ServiceHealth::Passing => false,
            ServiceHealth::Warning => !p.ignore_warnings,
            ServiceHealth::Critical => true,
        };
        self.unhealthy = if unhealthy { self.unhealthy + 1 } else { 0 };
        if self.unhealthy >= p.limit {
            self.unhealthy = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_restart_waits_out_grace_then_counts_unhealthy_results_in_a_row() {
        let mut r = RestartCounter::new(Some(CheckRestart {
            limit: 2,
            grace: Duration::from_secs(10),
            ignore_warnings: true,
        }));
        let early = Duration::from_secs(5);
        let late = Duration::from_secs(11);
        assert!(!r.observe(ServiceHealth::Critical, early));
        assert!(!r.observe(ServiceHealth::Critical, early), "within grace");
        assert!(!r.observe(ServiceHealth::Critical, late));
        assert!(
            !r.observe(ServiceHealth::Warning, late),
            "an ignored warning breaks the streak"
        );
        assert!(!r.observe(ServiceHealth::Critical, late));
        assert!(r.observe(ServiceHealth::Critical, late));
        assert!(
            !r.observe(ServiceHealth::Critical, late),
            "counting starts again"
        );
        let mut none = RestartCounter::new(None);
        assert!(!none.observe(ServiceHealth::Critical, late));
    }

    #[test]
    fn instances_take_their_worst_check_and_start_from_initial_statuses() {
        let mut st = BTreeMap::new();
        st.insert("c1".to_string(), ("r1".to_string(), ServiceHealth::Passing));
        st.insert("c2".to_string(), ("r1".to_string(), ServiceHealth::Warning));
        st.insert("c3".to_string(), ("r2".to_string(), ServiceHealth::Passing));
        let h = aggregate(&st);
        assert_eq!(h["r1"], ServiceHealth::Warning);
        assert_eq!(h["r2"], ServiceHealth::Passing);
        let s = Service {
            checks: vec![
                ServiceCheck {
                    initial_status: "passing".into(),
                    ..Default::default()
                },
                ServiceCheck::default(),
            ],
            ..Default::default()
        };
        assert_eq!(initial_health(&s), ServiceHealth::Critical);
        assert_eq!(initial_health(&Service::default()), ServiceHealth::Passing);
    }

    #[test]
    fn check_ids_are_stable_and_differ_by_check() {
        let c = ServiceCheck {
            name: "alive".into(),
            check_type: "tcp".into(),
            ..Default::default()
        };
        let a = check_id("a1", "g", "t", &c);
        assert_eq!(a, check_id("a1", "g", "t", &c));
        assert_eq!(a.len(), 32);
        assert_ne!(a, check_id("a2", "g", "t", &c));
        let other = ServiceCheck {
            name: "ready".into(),
            ..c
        };
        assert_ne!(a, check_id("a1", "g", "t", &other));
    }
}
