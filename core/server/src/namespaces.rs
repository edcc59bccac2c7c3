//! Namespaces and node pools: what the API writes through Raft, and the checks a job
//! passes before it is registered in them.

use drover_model::{Job, Namespace, NodePool, is_builtin_node_pool};
use drover_state::{Command, StateSnapshot};

use crate::{Server, ServerError};

/// A job may be registered only in a namespace and a node pool that exist, with drivers
/// and network modes its namespace allows. Checked by the server before the write (not in
/// Raft apply: a `JobRegister` already in a log applies as it always did).
pub(crate) fn check_job_scope(snap: &StateSnapshot, job: &Job) -> Result<(), ServerError> {
    let ns = snap.namespace(&job.namespace).ok_or_else(|| {
        ServerError::Invalid(format!(
            "job {:?} is in nonexistent namespace {:?} (create it with `drover namespace apply {}`)",
            job.id, job.namespace, job.namespace
        ))
    })?;
    if snap.node_pool(&job.node_pool).is_none() {
        return Err(ServerError::Invalid(format!(
            "job {:?} is in nonexistent node pool {:?} (create it with `drover node pool apply`)",
            job.id, job.node_pool
        )));
    }
    for g in &job.groups {
        for net in &g.networks {
            if !ns.allows_network_mode(&net.mode) {
                return Err(ServerError::Invalid(format!(
                    "group {:?} uses network mode {:?}, which namespace {:?} does not allow",
                    g.name, net.mode, ns.name
                )));
            }
        }
        for t in &g.tasks {
            if !ns.allows_driver(&t.driver) {
                return Err(ServerError::Invalid(format!(
                    "task {:?} of group {:?} uses driver {:?}, which namespace {:?} does not allow",
                    t.name, g.name, t.driver, ns.name
                )));
            }
        }
    }
    Ok(())
}

impl Server {
    /// Creates or updates a namespace; returns the write's index.
    pub async fn upsert_namespace(&self, ns: Namespace) -> Result<u64, ServerError> {
        ns.validate()
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        let resp = self
            .raft()
            .write(Command::NamespaceUpsert {
                namespaces: vec![ns],
            })
            .await?;
        Ok(resp.index)
    }

    /// Deletes a namespace: not `default`, not one holding jobs or variables (the error
    /// says which). Returns the write's index.
    pub async fn delete_namespace(&self, name: &str) -> Result<u64, ServerError> {
        let snap = self.store().snapshot();
        if snap.namespace(name).is_none() {
            return Err(ServerError::NotFound(format!(
                "namespace {name:?} does not exist"
            )));
        }
        if let Some(why) = snap.namespace_in_use(name) {
            return Err(ServerError::Invalid(why));
        }
        let names = vec![name.to_string()];
        Ok(self
            .raft()
            .write(Command::NamespaceDelete { names })
            .await?
            .index)
    }

    /// Creates or updates a node pool (not a built-in one); returns the write's index.
    pub async fn upsert_node_pool(&self, pool: NodePool) -> Result<u64, ServerError> {
        if is_builtin_node_pool(&pool.name) {
            return Err(ServerError::Invalid(format!(
                "node pool {:?} is built in and cannot be modified",
                pool.name
            )));
        }
        pool.validate()
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        let pools = vec![pool];
        Ok(self
            .raft()
            .write(Command::NodePoolUpsert { pools })
            .await?
            .index)
    }

    /// Deletes a node pool: not a built-in one, not one holding nodes or jobs (the error
    /// says which). Returns the write's index.
    pub async fn delete_node_pool(&self, name: &str) -> Result<u64, ServerError> {
        let snap = self.store().snapshot();
        if snap.node_pool(name).is_none() {
            return Err(ServerError::NotFound(format!(
                "node pool {name:?} does not exist"
            )));
        }
        if let Some(why) = snap.node_pool_in_use(name) {
            return Err(ServerError::Invalid(why));
        }
        let names = vec![name.to_string()];
        Ok(self
            .raft()
            .write(Command::NodePoolDelete { names })
            .await?
            .index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{JobType, NamespaceCapabilities, Task, TaskGroup};
    use drover_state::{Entry, StateStore};

    fn job(ns: &str, pool: &str) -> Job {
        let mut j = Job::new("web", JobType::Service);
        j.namespace = ns.into();
        j.node_pool = pool.into();
        j.groups.push(TaskGroup::new(
            "g",
            1,
            JobType::Service,
            vec![Task::new("t", "docker")],
        ));
        j
    }

    #[test]
    fn a_job_needs_its_namespace_and_pool_and_their_permission() {
        let st = StateStore::new();
        let e = |r: Result<(), ServerError>| r.unwrap_err().to_string();
        let snap = st.snapshot();
        assert!(check_job_scope(&snap, &job("default", "default")).is_ok());
        assert!(check_job_scope(&snap, &job("default", "all")).is_ok());
        let m = e(check_job_scope(&snap, &job("prod", "default")));
        assert!(m.contains("nonexistent namespace \"prod\""), "{m}");
        let m = e(check_job_scope(&snap, &job("default", "gpu")));
        assert!(m.contains("nonexistent node pool \"gpu\""), "{m}");

        let ns = Namespace {
            name: "prod".into(),
            capabilities: Some(NamespaceCapabilities {
                disabled_task_drivers: vec!["docker".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        st.apply(
            1,
            &Entry {
                time: 1,
                command: Command::NamespaceUpsert {
                    namespaces: vec![ns],
                },
            },
        );
        let m = e(check_job_scope(&st.snapshot(), &job("prod", "default")));
        assert!(
            m.contains("driver \"docker\"") && m.contains("\"prod\""),
            "{m}"
        );
    }
}
