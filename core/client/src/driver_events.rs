//! Driver events as task events: the client follows each driver plugin's `TaskEvents`
//! stream and appends every event to its task (by allocation id and task name) as a
//! "Driver" event with `DriverMessage` (an image pull's progress, for instance). A broken
//! stream (the plugin restarted) is opened again.

use drover_model::{TaskEvent, now_nanos};
use drover_proto::driver::TaskEventsRequest;
use drover_proto::driver::driver_client::DriverClient;
use tonic::transport::Channel;

use crate::{Client, driver_stream};

/// Nomad's event type for what a driver reports.
pub const DRIVER_EVENT: &str = "Driver";
/// Bytes kept of a driver's message (what the servers keep of free text).
pub const MAX_DRIVER_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn cap_text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The task event a driver's event becomes: "Driver", with its message (cut to size) as
/// `DriverMessage` and display message, at the driver's time when it gives a plausible one.
pub fn task_event(e: &drover_proto::driver::TaskEvent) -> TaskEvent {
    let msg = cap_text(e.message.trim_end(), MAX_DRIVER_MESSAGE);
    let now = now_nanos();
    let time = if e.timestamp_unix_nanos > 0 && e.timestamp_unix_nanos <= now {
        e.timestamp_unix_nanos
    } else {
        now
    };
    TaskEvent {
        kind: DRIVER_EVENT.into(),
        time,
        display_message: msg.clone(),
        driver_message: msg,
        ..Default::default()
    }
}

/// Follows driver `name`'s task events for as long as the client runs, handing each to the
/// runner of its allocation (which keeps it only for a task of that driver).
pub async fn follow(client: Client, name: String) {
    let open =
        |mut d: DriverClient<Channel>| async move { d.task_events(TaskEventsRequest {}).await };
    driver_stream::follow(&client, &name, "task event", open, |e| {
        match client.runner(&e.alloc_id) {
            Ok(r) => r.driver_event(&e.task_name, &name, task_event(&e)),
            Err(_) => {
                tracing::debug!(driver = %name, alloc_id = %e.alloc_id, "driver event for an unknown allocation")
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_event_becomes_a_bounded_driver_task_event() {
        let e = drover_proto::driver::TaskEvent {
            alloc_id: "a".into(),
            task_name: "t".into(),
            timestamp_unix_nanos: 5,
            message: "Downloading image busybox:1.0\n".into(),
            ..Default::default()
        };
        let t = task_event(&e);
        assert_eq!(t.kind, "Driver");
        assert_eq!(t.driver_message, "Downloading image busybox:1.0");
        assert_eq!(t.display_message, t.driver_message);
        assert_eq!(t.time, 5);
        let long = drover_proto::driver::TaskEvent {
            message: "é".repeat(4000),
            timestamp_unix_nanos: i64::MAX,
            ..Default::default()
        };
        let t = task_event(&long);
        assert!(t.driver_message.len() <= MAX_DRIVER_MESSAGE);
        assert!(t.driver_message.ends_with("..."));
        assert!(t.time < i64::MAX, "a time in the future is replaced by now");
    }
}
