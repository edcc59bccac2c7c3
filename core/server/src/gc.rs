//! The leader's garbage collection (Nomad's core GC). Without it the state, and every
//! snapshot, grows with each registration forever. One pass, on a snapshot, decides what is
//! collectable; one `Command::Collect` per batch deletes it through Raft, where each deletion
//! is checked again as it applies (so a pass on a stale view deletes nothing still in use).
//!
//! - A **job** goes, with its versions, evaluations and allocations, once it is dead (stopped,
//!   or a batch job whose allocations all finished), nothing of it changed for
//!   `job_gc_threshold`, and no evaluation or allocation of it is still in flight. Periodic
//!   and parameterized parents are templates for runs: they go only once stopped.
//! - An **evaluation** goes, with its allocations, once it is finished, older than
//!   `eval_gc_threshold` (`batch_eval_gc_threshold` for batch jobs), and every allocation it
//!   placed is collectable. An allocation is collectable once its client reports it ended and
//!   it is older than the threshold, unless the job still needs it: a live batch job's
//!   completed allocation (it records that the work is done) and a failed allocation not yet
//!   replaced (the reschedule policy counts it).
//! - An allocation whose evaluation is gone goes on the same terms.
//! - A **node** goes once it has been down for `node_gc_threshold` and runs nothing.
//!
//! A forced pass (`PUT /v1/system/gc`) uses zero thresholds.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use drover_model::{Allocation, Job, JobStatus, NodeStatus};
use drover_state::{Command, JobAt, NodeAt, StateSnapshot};

use crate::{Server, ServerError};

/// Most deletions one entry carries.
const BATCH: usize = 1024;

/// How old things must be before the collector deletes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcThresholds {
    /// Finished evaluations of service and system jobs (Nomad's `eval_gc_threshold`).
    pub eval: Duration,
    /// Finished evaluations of batch jobs (`batch_eval_gc_threshold`).
    pub batch_eval: Duration,
    /// Dead jobs (`job_gc_threshold`).
    pub job: Duration,
    /// Down nodes (`node_gc_threshold`).
    pub node: Duration,
}

impl Default for GcThresholds {
    /// Nomad's defaults.
    fn default() -> Self {
        GcThresholds {
            eval: Duration::from_secs(3600),
            batch_eval: Duration::from_secs(24 * 3600),
            job: Duration::from_secs(4 * 3600),
            node: Duration::from_secs(24 * 3600),
        }
    }
}

impl GcThresholds {
    /// A forced collection: everything finished goes, however recent.
    pub const ZERO: GcThresholds = GcThresholds {
        eval: Duration::ZERO,
        batch_eval: Duration::ZERO,
        job: Duration::ZERO,
        node: Duration::ZERO,
    };

    /// How often the leader runs a pass: half the shortest threshold, between 0.5 s and 5 min.
    fn interval(&self) -> Duration {
        let shortest = self.eval.min(self.batch_eval).min(self.job).min(self.node);
        (shortest / 2).clamp(Duration::from_millis(500), Duration::from_secs(300))
    }
}

/// A dead job and what it owns.
#[derive(Debug, PartialEq)]
pub(crate) struct DeadJob {
    pub at: JobAt,
    pub evals: Vec<String>,
    pub allocs: Vec<String>,
}

/// What one pass found to delete.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Garbage {
    pub jobs: Vec<DeadJob>,
    pub evals: Vec<String>,
    pub allocs: Vec<String>,
    pub nodes: Vec<NodeAt>,
}

impl Garbage {
    fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.evals.is_empty()
            && self.allocs.is_empty()
            && self.nodes.is_empty()
    }

    /// The deletions as Raft commands of about `BATCH` items each. A dead job travels in one
    /// command with its evaluations and allocations (alone when it owns more than a batch),
    /// so an entry never leaves a job without the records that make it dead, or records
    /// without their job.
    fn into_commands(self) -> Vec<Command> {
        let mut b = Batches::default();
        for job in self.jobs {
            b.make_room(1 + job.evals.len() + job.allocs.len());
            b.evals.extend(job.evals);
            b.allocs.extend(job.allocs);
            b.jobs.push(job.at);
        }
        for e in self.evals {
            b.make_room(1);
            b.evals.push(e);
        }
        for a in self.allocs {
            b.make_room(1);
            b.allocs.push(a);
        }
        for n in self.nodes {
            b.make_room(1);
            b.nodes.push(n);
        }
        b.flush();
        b.commands
    }
}

/// `Command::Collect`s being filled.
#[derive(Default)]
struct Batches {
    commands: Vec<Command>,
    evals: Vec<String>,
    allocs: Vec<String>,
    jobs: Vec<JobAt>,
    nodes: Vec<NodeAt>,
}

impl Batches {
    fn size(&self) -> usize {
        self.evals.len() + self.allocs.len() + self.jobs.len() + self.nodes.len()
    }

    /// Starts a new command unless `n` more items fit in this one.
    fn make_room(&mut self, n: usize) {
        if self.size() + n > BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.size() > 0 {
            self.commands.push(Command::Collect {
                evals: std::mem::take(&mut self.evals),
                allocs: std::mem::take(&mut self.allocs),
                jobs: std::mem::take(&mut self.jobs),
                nodes: std::mem::take(&mut self.nodes),
            });
        }
    }
}

/// Whether a finished allocation may be deleted while `job` (None: gone) exists.
fn alloc_collectable(a: &Allocation, job: Option<&Job>, cutoff: i64) -> bool {
    a.client_status.is_terminal() && a.modify_time < cutoff && !a.still_needed_by(job)
}

fn cutoff(now: i64, threshold: Duration) -> i64 {
    now.saturating_sub(threshold.as_nanos().min(i64::MAX as u128) as i64)
}

/// Everything collectable in `snap` at `now` (Unix nanoseconds).
pub(crate) fn collectable(snap: &StateSnapshot, now: i64, t: &GcThresholds) -> Garbage {
    let mut g = Garbage::default();
    let mut gone_jobs: BTreeSet<(&str, &str)> = BTreeSet::new();

    let job_cutoff = cutoff(now, t.job);
    for job in snap.jobs() {
        let dead = job.status == JobStatus::Dead && (job.stop || job.job_type.runs_to_completion());
        // A periodic or parameterized parent is a template for runs: it goes only stopped.
        let parent = job.periodic.is_some() || job.parameterized.is_some();
        if !dead || (parent && !job.stop) {
            continue;
        }
        let evals: Vec<_> = snap.evals_by_job(&job.namespace, &job.id).collect();
        let allocs: Vec<_> = snap.allocs_by_job(&job.namespace, &job.id).collect();
        if evals.iter().any(|e| !e.status.is_terminal())
            || allocs.iter().any(|a| !a.client_status.is_terminal())
        {
            continue;
        }
        let last_change = evals
            .iter()
            .map(|e| e.modify_time)
            .chain(allocs.iter().map(|a| a.modify_time))
            .fold(job.submit_time, i64::max);
        if last_change >= job_cutoff {
            continue;
        }
        g.jobs.push(DeadJob {
            at: JobAt {
                namespace: job.namespace.clone(),
                job_id: job.id.clone(),
                modify_index: job.modify_index,
            },
            evals: evals.iter().map(|e| e.id.clone()).collect(),
            allocs: allocs.iter().map(|a| a.id.clone()).collect(),
        });
        gone_jobs.insert((&job.namespace, &job.id));
    }

    // The rest: evaluations with the allocations they placed, and allocations whose
    // evaluation is gone.
    let mut by_eval: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
    for a in snap.allocs() {
        if !gone_jobs.contains(&(a.namespace.as_str(), a.job_id.as_str())) {
            by_eval.entry(a.eval_id.as_str()).or_default().push(a);
        }
    }
    let eval_cutoff = |job: Option<&Job>| {
        let batch = job.is_some_and(|j| j.job_type.runs_to_completion());
        cutoff(now, if batch { t.batch_eval } else { t.eval })
    };
    for e in snap.evals() {
        if !e.status.is_terminal() || gone_jobs.contains(&(e.namespace.as_str(), e.job_id.as_str()))
        {
            continue;
        }
        let job = snap.job(&e.namespace, &e.job_id);
        let cutoff = eval_cutoff(job);
        let placed = by_eval.remove(e.id.as_str()).unwrap_or_default();
        if e.modify_time < cutoff && placed.iter().all(|a| alloc_collectable(a, job, cutoff)) {
            g.evals.push(e.id.clone());
            g.allocs.extend(placed.iter().map(|a| a.id.clone()));
        }
    }
    for (eval_id, allocs) in by_eval {
        if snap.eval(eval_id).is_some() {
            continue;
        }
        for a in allocs {
            let job = snap.job(&a.namespace, &a.job_id);
            if alloc_collectable(a, job, eval_cutoff(job)) {
                g.allocs.push(a.id.clone());
            }
        }
    }

    let node_cutoff = cutoff(now, t.node);
    for n in snap.nodes() {
        if n.status == NodeStatus::Down
            && n.status_updated_at < node_cutoff
            && snap
                .allocs_by_node(&n.id)
                .all(|a| a.client_status.is_terminal())
        {
            g.nodes.push(NodeAt {
                node_id: n.id.clone(),
                modify_index: n.modify_index,
            });
        }
    }
    g
}

/// What a pass deleted (as far as the collector knows: the apply may have kept some).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    pub evals: usize,
    pub allocs: usize,
    pub jobs: usize,
    pub nodes: usize,
}

impl Server {
    /// One garbage-collection pass over this server's view of the state, with `thresholds`
    /// ([`GcThresholds::ZERO`] forces everything finished out). The deletions go through
    /// Raft, so a follower's pass is written by the leader.
    pub async fn collect_garbage(
        &self,
        thresholds: &GcThresholds,
    ) -> Result<Collected, ServerError> {
        // A pass walks the whole state: off the runtime's workers.
        let (snap, t) = (self.store().snapshot(), *thresholds);
        let garbage =
            tokio::task::spawn_blocking(move || collectable(&snap, crate::now_nanos(), &t))
                .await
                .expect("the garbage collection pass panicked");
        let counted = Collected {
            evals: garbage.evals.len() + garbage.jobs.iter().map(|j| j.evals.len()).sum::<usize>(),
            allocs: garbage.allocs.len()
                + garbage.jobs.iter().map(|j| j.allocs.len()).sum::<usize>(),
            jobs: garbage.jobs.len(),
            nodes: garbage.nodes.len(),
        };
        if garbage.is_empty() {
            return Ok(counted);
        }
        for command in garbage.into_commands() {
            self.raft().write(command).await?;
        }
        tracing::debug!(?counted, "garbage collected");
        Ok(counted)
    }
}

/// Runs while this server leads: a pass every half the shortest threshold (at most every
/// 5 minutes).
pub(crate) async fn run(server: Server) {
    let thresholds = server.config().gc;
    let mut tick = tokio::time::interval(thresholds.interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = server.collect_garbage(&thresholds).await {
            tracing::warn!(error = %e, "garbage collection failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{ClientStatus, EvalStatus, Evaluation, JobType, Node, Task, TaskGroup};
    use drover_state::{Entry, PlanResult, StateStore};

    const HOUR: i64 = 3_600_000_000_000;

    fn job(id: &str, job_type: JobType) -> Job {
        let mut job = Job::new(id, job_type);
        job.groups.push(TaskGroup::new(
            "g",
            1,
            job_type,
            vec![Task::new("t", "raw_exec")],
        ));
        job
    }

    fn eval(id: &str, job: &Job, status: EvalStatus) -> Evaluation {
        let mut e = Evaluation::new(id.into(), job, "job-register");
        e.status = status;
        e
    }

    fn alloc(id: &str, job: &Job, eval: &str, status: ClientStatus) -> Allocation {
        Allocation {
            id: id.into(),
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            eval_id: eval.into(),
            node_id: "n1".into(),
            client_status: status,
            ..Default::default()
        }
    }

    /// Applies `command` at `index`, stamped `time` hours after the epoch.
    fn apply(store: &StateStore, index: u64, hours: i64, command: Command) {
        let r = store.apply(
            index,
            &Entry {
                time: hours * HOUR,
                command,
            },
        );
        assert_eq!(r.error, None);
    }

    fn register(store: &StateStore, index: u64, job: &Job) {
        let job = Box::new(job.clone());
        apply(store, index, 0, Command::JobRegister { job, eval: None });
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn evaluations_go_with_their_allocations_unless_the_job_still_needs_them() {
        let web = job("web", JobType::Service);
        let batch = job("batch", JobType::Batch);
        let store = StateStore::new();
        register(&store, 1, &web);
        register(&store, 2, &batch);
        let evals = vec![
            eval("done", &web, EvalStatus::Complete),
            eval("failed", &web, EvalStatus::Failed),
            eval("pending", &web, EvalStatus::Pending),
            eval("blocked", &web, EvalStatus::Blocked),
            eval("running-alloc", &web, EvalStatus::Complete),
            eval("replaced-alloc", &web, EvalStatus::Complete),
            eval("unreplaced-failure", &web, EvalStatus::Complete),
            eval("batch-done", &batch, EvalStatus::Complete),
        ];
        apply(&store, 3, 1, Command::EvalUpsert { evals });
        let mut replaced = alloc("a-replaced", &web, "replaced-alloc", ClientStatus::Failed);
        replaced.next_allocation = "a-running".into();
        let allocs = vec![
            alloc("a-running", &web, "running-alloc", ClientStatus::Running),
            replaced,
            alloc("a-failed", &web, "unreplaced-failure", ClientStatus::Failed),
            alloc("a-batch", &batch, "batch-done", ClientStatus::Complete),
            alloc("a-orphan", &web, "no-such-eval", ClientStatus::Complete),
        ];
        let plan = PlanResult {
            allocs,
            ..Default::default()
        };
        apply(&store, 4, 1, Command::PlanApply(plan));
        let young = vec![eval("young", &web, EvalStatus::Complete)];
        apply(&store, 5, 9, Command::EvalUpsert { evals: young });

        // The batch job is dead (its one allocation completed), but younger than
        // job_gc_threshold: only its evaluation is looked at.
        let t = GcThresholds {
            eval: Duration::from_secs(3600),
            batch_eval: Duration::from_secs(3600),
            job: Duration::from_secs(24 * 3600),
            node: Duration::from_secs(3600),
        };
        let g = collectable(&store.snapshot(), 9 * HOUR + 1, &t);
        assert_eq!(
            sorted(g.evals),
            ["done", "failed", "replaced-alloc"].map(String::from)
        );
        assert_eq!(
            sorted(g.allocs),
            ["a-orphan", "a-replaced"].map(String::from)
        );
        assert!(g.jobs.is_empty() && g.nodes.is_empty());
    }

    #[test]
    fn dead_jobs_go_whole_once_nothing_changed_for_the_threshold() {
        let stopped = job("stopped", JobType::Service);
        let finished = job("finished", JobType::Batch);
        let running = job("running", JobType::Batch);
        let mut periodic = job("periodic", JobType::Batch);
        periodic.periodic = Some(Default::default());
        let mut cron_stopped = job("cron-stopped", JobType::Batch);
        cron_stopped.periodic = Some(Default::default());
        let store = StateStore::new();
        for (i, j) in [&stopped, &finished, &running, &periodic, &cron_stopped]
            .iter()
            .enumerate()
        {
            register(&store, i as u64 + 1, j);
        }
        let stop_parent = Command::JobDeregister {
            namespace: "default".into(),
            job_id: "cron-stopped".into(),
            purge: false,
            eval: None,
        };
        apply(&store, 9, 1, stop_parent);
        let evals = vec![
            eval("e-stopped", &stopped, EvalStatus::Complete),
            eval("e-finished", &finished, EvalStatus::Complete),
            eval("e-running", &running, EvalStatus::Complete),
        ];
        apply(&store, 10, 1, Command::EvalUpsert { evals });
        let allocs = vec![
            alloc("a-stopped", &stopped, "e-stopped", ClientStatus::Complete),
            alloc(
                "a-finished",
                &finished,
                "e-finished",
                ClientStatus::Complete,
            ),
            alloc("a-running", &running, "e-running", ClientStatus::Running),
        ];
        let plan = PlanResult {
            allocs,
            ..Default::default()
        };
        apply(&store, 11, 1, Command::PlanApply(plan));
        let deregister = Command::JobDeregister {
            namespace: "default".into(),
            job_id: "stopped".into(),
            purge: false,
            eval: None,
        };
        apply(&store, 12, 1, deregister);
        let node = Node {
            id: "n-down".into(),
            status: NodeStatus::Down,
            ..Default::default()
        };
        apply(&store, 13, 1, Command::NodeRegister { node });

        let snap = store.snapshot();
        assert_eq!(
            snap.job("default", "finished").unwrap().status,
            JobStatus::Dead
        );
        let t = GcThresholds {
            job: Duration::from_secs(4 * 3600),
            node: Duration::from_secs(24 * 3600),
            ..GcThresholds::default()
        };
        let too_soon = collectable(&snap, 4 * HOUR, &t);
        assert!(too_soon.jobs.is_empty(), "{too_soon:?}");

        let g = collectable(&snap, 6 * HOUR, &t);
        let mut jobs: Vec<(&str, &[String], &[String])> = g
            .jobs
            .iter()
            .map(|j| (j.at.job_id.as_str(), &j.evals[..], &j.allocs[..]))
            .collect();
        jobs.sort();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            jobs,
            [
                ("cron-stopped", &[][..], &[][..]),
                (
                    "finished",
                    &strings(&["e-finished"])[..],
                    &strings(&["a-finished"])[..]
                ),
                (
                    "stopped",
                    &strings(&["e-stopped"])[..],
                    &strings(&["a-stopped"])[..]
                ),
            ]
        );
        assert!(g.evals.is_empty() && g.allocs.is_empty());
        assert!(g.nodes.is_empty(), "a node goes after node_gc_threshold");

        for (i, command) in g.into_commands().into_iter().enumerate() {
            apply(&store, 20 + i as u64, 6, command);
        }
        let snap = store.snapshot();
        assert!(snap.job("default", "stopped").is_none());
        assert!(snap.job("default", "finished").is_none());
        assert!(snap.job("default", "running").is_some());
        assert!(snap.job("default", "periodic").is_some());
        assert!(snap.job("default", "cron-stopped").is_none());
        assert_eq!(snap.allocs().count(), 1);

        let g = collectable(&snap, 26 * HOUR, &t);
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].node_id, "n-down");
    }

    #[test]
    fn a_pass_larger_than_a_batch_collects_every_dead_job_whole() {
        // 700 finished batch jobs, one evaluation and one allocation each: 2,100 deletions,
        // more than two entries' worth. Every job must go with what it owns, whatever the
        // entry boundaries (a job split from its records would be left pending, alive).
        let store = StateStore::new();
        let mut index = 1;
        let mut evals = Vec::new();
        let mut allocs = Vec::new();
        for i in 0..700 {
            let j = job(&format!("b{i}"), JobType::Batch);
            register(&store, index, &j);
            index += 1;
            evals.push(eval(&format!("e{i}"), &j, EvalStatus::Complete));
            allocs.push(alloc(
                &format!("a{i}"),
                &j,
                &format!("e{i}"),
                ClientStatus::Complete,
            ));
        }
        apply(&store, index, 1, Command::EvalUpsert { evals });
        let plan = PlanResult {
            allocs,
            ..Default::default()
        };
        apply(&store, index + 1, 1, Command::PlanApply(plan));
        let g = collectable(&store.snapshot(), 10 * HOUR, &GcThresholds::default());
        assert_eq!(g.jobs.len(), 700);
        let commands = g.into_commands();
        assert_eq!(commands.len(), 3);
        for c in &commands {
            let Command::Collect {
                evals,
                allocs,
                jobs,
                ..
            } = c
            else {
                panic!("{c:?}")
            };
            assert!(evals.len() + allocs.len() + jobs.len() <= BATCH);
            assert_eq!((evals.len(), allocs.len()), (jobs.len(), jobs.len()));
        }
        for (i, c) in commands.into_iter().enumerate() {
            apply(&store, index + 2 + i as u64, 10, c);
        }
        let snap = store.snapshot();
        assert_eq!(
            (
                snap.jobs().count(),
                snap.evals().count(),
                snap.allocs().count()
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn the_apply_keeps_what_a_job_registered_again_still_needs() {
        // The collector saw a stopped batch job; before its entry applied, the job was
        // registered again. The job stays, and so does its completed allocation (the record
        // that its work is done), which the new registration still needs.
        let j = job("again", JobType::Batch);
        let store = StateStore::new();
        register(&store, 1, &j);
        let evals = vec![eval("e", &j, EvalStatus::Complete)];
        apply(&store, 2, 1, Command::EvalUpsert { evals });
        let plan = PlanResult {
            allocs: vec![alloc("a", &j, "e", ClientStatus::Complete)],
            ..Default::default()
        };
        apply(&store, 3, 1, Command::PlanApply(plan));
        let stop = Command::JobDeregister {
            namespace: "default".into(),
            job_id: "again".into(),
            purge: false,
            eval: None,
        };
        apply(&store, 4, 1, stop);
        let g = collectable(&store.snapshot(), 10 * HOUR, &GcThresholds::default());
        assert_eq!(g.jobs.len(), 1);
        register(&store, 5, &j);
        for c in g.into_commands() {
            apply(&store, 6, 10, c);
        }
        let snap = store.snapshot();
        assert!(snap.job("default", "again").is_some());
        assert!(snap.alloc("a").is_some());
    }
}
