//! A docker task's output reaches `alloc/logs/<task>.std{out,err}.<n>` through the plugin's
//! follower: every line exactly once across kill -9 of the plugin, all of it written before
//! the exit is reported; nothing with `disable_log_collection`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use drover_proto::driver::RecoverTaskRequest;
use serde_json::json;

/// The lines of `<logs>/<name>.<n>` for every n, in file order.
fn lines(logs: &Path, name: &str) -> Vec<String> {
    let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().to_string_lossy().into_owned();
            let n = f.strip_prefix(&format!("{name}."))?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|(_, p)| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_reaches_the_log_files_exactly_once_across_plugin_kills() {
    const N: usize = 600;
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({}));
    let id = task_id("logs", "count");
    let _rm = RemoveContainers(vec![id.clone()]);
    let script = format!(
        "i=0; while [ $i -lt {N} ]; do echo $i; echo err$i >&2; i=$((i+1)); sleep 0.01; done; exit 3"
    );
    let started = try_start(&host, task(&id, tmp.path(), sh(&script)))
        .await
        .unwrap();
    let logs = tmp.path().join("alloc/logs");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        driver(&host).kill_plugin().await;
        host.driver("docker")
            .await
            .unwrap()
            .recover_task(RecoverTaskRequest {
                handle: started.handle.clone(),
            })
            .await
            .unwrap();
    }
    let exit = wait(&host, &id).await;
    assert_eq!(exit.exit_code, 3);
    // The exit is reported once the output is written: nothing is missing at that moment.
    let out = lines(&logs, "count.stdout");
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(out.len(), N, "stdout lines: {}", out.len());
    assert_eq!(out, expected, "stdout holds 0..{N} once each, in order");
    let err = lines(&logs, "count.stderr");
    let expected: Vec<String> = (0..N).map(|i| format!("err{i}")).collect();
    assert_eq!(err, expected, "stderr holds its own lines once each");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_log_collection_writes_no_log_files() {
    let tmp = tempfile::tempdir().unwrap();
    let host = host(tmp.path(), json!({ "disable_log_collection": true }));
    let id = task_id("nologs", "quiet");
    let _rm = RemoveContainers(vec![id.clone()]);
    try_start(&host, task(&id, tmp.path(), sh("echo hello; exit 0")))
        .await
        .unwrap();
    assert_eq!(wait(&host, &id).await.exit_code, 0);
    let logs = tmp.path().join("alloc/logs");
    let files: Vec<_> = std::fs::read_dir(&logs).unwrap().flatten().collect();
    assert!(files.is_empty(), "{files:?}");
    host.shutdown().await;
}
