//! Garbage the driver leaves on the engine: images no task uses any more (removed
//! `image_delay` after their last task went, when `gc.image` is on), and containers the
//! driver created but no longer tracks (Nomad's dangling-container reaper).
//!
//! The settings are plain structs here; the plugin's `gc { }` config block maps onto them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, RemoveContainerOptions, RemoveImageOptions,
};
use tokio::task::JoinHandle;

pub use crate::config::DanglingConfig;

use crate::container::{LABEL_MANAGED as MANAGED_LABEL, LABEL_NODE_ID};

/// `gc { image, image_delay }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageGc {
    pub enabled: bool,
    pub delay: Duration,
}

/// Why garbage could not be listed or removed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("listing the engine's containers: {0}")]
    List(#[source] bollard::errors::Error),
}

/// How many tasks use each image, and the removals waiting for `delay` to pass.
///
/// The key is the image as the task's container was created from it (a reference or an
/// id); removing it removes that reference only (never forced: an image other containers
/// use, or an id under several names, stays and the refusal is logged). Acquire before
/// making sure the image is present: a removal can be under way when the count is taken.
pub struct ImageRefs {
    docker: Docker,
    settings: ImageGc,
    images: Mutex<BTreeMap<String, Refs>>,
    me: Weak<ImageRefs>,
}

#[derive(Debug, Default)]
struct Refs {
    tasks: u64,
    /// Bumped at each release to zero and each acquire: a waiting removal goes ahead only
    /// if nothing happened to the image since it was scheduled.
    generation: u64,
}

impl ImageRefs {
    pub fn new(docker: Docker, settings: ImageGc) -> Arc<ImageRefs> {
        Arc::new_cyclic(|me| ImageRefs {
            docker,
            settings,
            images: Mutex::new(BTreeMap::new()),
            me: me.clone(),
        })
    }

    fn images(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Refs>> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A task starts on `image` (also after a restart, for each recovered task).
    pub fn acquire(&self, image: &str) {
        let mut images = self.images();
        let refs = images.entry(image.to_string()).or_default();
        refs.tasks += 1;
        refs.generation += 1;
    }

    /// A task on `image` was destroyed; at zero tasks the image is removed after the delay
    /// (when image GC is on), unless a task acquires it meanwhile.
    pub fn release(&self, image: &str) {
        let generation = {
            let mut images = self.images();
            let Some(refs) = images.get_mut(image) else {
                tracing::debug!(image, "released an image no task holds");
                return;
            };
            refs.tasks = refs.tasks.saturating_sub(1);
            if refs.tasks > 0 {
                return;
            }
            if !self.settings.enabled {
                images.remove(image);
                return;
            }
            refs.generation += 1;
            refs.generation
        };
        let (me, image, delay) = (self.me.clone(), image.to_string(), self.settings.delay);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(refs) = me.upgrade() {
                refs.remove_if_unused(&image, generation).await;
            }
        });
    }

    /// How many tasks hold `image`.
    pub fn tasks_on(&self, image: &str) -> u64 {
        self.images().get(image).map_or(0, |r| r.tasks)
    }

    async fn remove_if_unused(&self, image: &str, generation: u64) {
        {
            let mut images = self.images();
            match images.get(image) {
                Some(r) if r.tasks == 0 && r.generation == generation => {
                    images.remove(image);
                }
                _ => return,
            }
        }
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) => tracing::info!(image, "removed an image no task uses"),
            Err(e) => tracing::warn!(image, error = %e, "could not remove an unused image"),
        }
    }
}

/// Starts the dangling-container reaper: every `period`, containers labelled
/// `drover.managed=true` (and `drover.node_id=<node>` unless `node` is empty) that `tracked`
/// does not know and that were created more than
/// `creation_grace` ago are force-removed (with `dry_run`, only logged). Disabled, the
/// task ends at once.
pub fn spawn_reaper(
    docker: Docker,
    node: String,
    settings: DanglingConfig,
    tracked: Arc<dyn Fn(&str) -> bool + Send + Sync>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if !settings.enabled {
            return;
        }
        // The first pass waits a whole period: a plugin that just started has not been
        // handed its tasks back yet (RecoverTask), and would take their containers for
        // dangling ones.
        let period = settings.period.max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = reap_once(&docker, &node, &settings, tracked.as_ref()).await {
                tracing::warn!(error = %e, "the dangling-container reaper could not run");
            }
        }
    })
}

/// One pass of the reaper; returns the ids of the dangling containers found (removed, or
/// with `dry_run` only logged).
pub async fn reap_once(
    docker: &Docker,
    node: &str,
    settings: &DanglingConfig,
    tracked: &(dyn Fn(&str) -> bool + Send + Sync),
) -> Result<Vec<String>, GcError> {
    let mut labels = vec![format!("{MANAGED_LABEL}=true")];
    if !node.is_empty() {
        labels.push(format!("{LABEL_NODE_ID}={node}"));
    }
    let filters = [("label".to_string(), labels)];
    let options = ListContainersOptions {
        all: true,
        filters: Some(filters.into_iter().collect()),
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(GcError::List)?;
    let now = drover_plugin_sdk::shim::now_nanos() / 1_000_000_000;
    let grace = i64::try_from(settings.creation_grace.as_secs()).unwrap_or(i64::MAX);
    let mut dangling = Vec::new();
    for c in containers {
        let (Some(id), Some(created)) = (c.id, c.created) else {
            continue;
        };
        if tracked(&id) || now.saturating_sub(created) < grace {
            continue;
        }
        if settings.dry_run {
            tracing::info!(container = %id, "dangling container (dry run: left in place)");
        } else {
            let options = RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            };
            match docker.remove_container(&id, Some(options)).await {
                Ok(()) => tracing::info!(container = %id, "removed a dangling container"),
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "could not remove a dangling container")
                }
            }
        }
        dangling.push(id);
    }
    Ok(dangling)
}

#[cfg(test)]
mod tests;
