//! Garbage collection of terminal allocations: their directories and local state go once
//! more than `gc_max_allocs` are kept, or the data dir's disk is fuller than the threshold —
//! oldest first. The servers keep the allocations' records.

use std::time::Duration;

use crate::Client;

pub async fn run(client: Client) {
    let mut shutdown = client.inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
        collect(&client).await;
    }
}

fn disk_usage_percent(path: &std::path::Path) -> f64 {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) if s.blocks() > 0 => {
            100.0 * (s.blocks() - s.blocks_available()) as f64 / s.blocks() as f64
        }
        _ => 0.0,
    }
}

async fn collect(client: &Client) {
    let cfg = &client.inner.config;
    let mut done: Vec<((i64, String), crate::alloc_runner::AllocRunner)> = client
        .inner
        .runners
        .lock()
        .expect("runners lock")
        .values()
        .filter(|r| r.is_done())
        .map(|r| (r.modified(), r.clone()))
        .collect();
    done.sort_by(|a, b| a.0.cmp(&b.0));
    let dir = cfg.data_dir.clone();
    let usage = tokio::task::spawn_blocking(move || disk_usage_percent(&dir))
        .await
        .unwrap_or(0.0);
    let mut excess = done.len().saturating_sub(cfg.gc_max_allocs);
    if usage > cfg.gc_disk_usage_threshold {
        excess = done.len(); // over the disk threshold: every terminal allocation goes
    }
    for ((_, id), runner) in done.into_iter().take(excess) {
        client
            .inner
            .runners
            .lock()
            .expect("runners lock")
            .remove(&id);
        tracing::info!(alloc_id = %id, disk_usage = usage, "garbage-collecting a terminal allocation");
        runner.destroy_when_done();
    }
}
