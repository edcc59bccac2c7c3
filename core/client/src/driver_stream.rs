//! Following one of a driver plugin's server streams (fingerprints, task events) for as long
//! as the client runs: a stream that breaks — the plugin died and is being relaunched — is
//! opened again at once, then with a growing pause while it keeps breaking.

use std::future::Future;
use std::time::Duration;

use drover_proto::driver::driver_client::DriverClient;
use tonic::transport::Channel;

use crate::Client;

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("driver plugin unavailable: {0}")]
    Unavailable(#[from] drover_plugin_host::HostError),
    #[error("{}", .0.message())]
    Rpc(#[from] tonic::Status),
}

/// A stream open at least this long counted as working.
const STEADY: Duration = Duration::from_secs(1);
/// The first pause before opening a stream that keeps breaking again, times 4.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// The pause before opening the stream again after `quick` consecutive streams that failed
/// or ended within [`STEADY`]: none after the first (a plugin that died is relaunched at
/// once, and what it says in between would be lost), then doubling up to 5 s.
pub fn reopen_pause(quick: u32) -> Duration {
    match quick {
        0 | 1 => Duration::ZERO,
        n => (REOPEN_AFTER / 4 * (1 << (n - 2).min(5))).min(Duration::from_secs(5)),
    }
}

/// Follows driver `name`'s stream `what` (for logs): `open` opens it on the plugin, `each`
/// takes every message, until the client shuts down.
pub async fn follow<T, Open, Fut>(
    client: &Client,
    name: &str,
    what: &str,
    mut open: Open,
    mut each: impl FnMut(T),
) where
    Open: FnMut(DriverClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
{
    let mut shutdown = client.inner.shutdown.subscribe();
    let mut quick = 0u32;
    loop {
        let opened = tokio::time::Instant::now();
        let stream = async {
            let driver = client.host().driver(name).await?;
            let mut s = open(driver).await?.into_inner();
            while let Some(m) = s.message().await? {
                each(m);
            }
            Ok::<(), StreamError>(())
        };
        tokio::select! {
            r = stream => {
                if let Err(e) = r {
                    tracing::debug!(driver = %name, error = %e, "{what} stream ended; re-opening");
                }
            }
            _ = shutdown.changed() => return,
        }
        quick = if opened.elapsed() >= STEADY {
            1
        } else {
            quick + 1
        };
        tokio::select! {
            _ = tokio::time::sleep(reopen_pause(quick)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_stream_is_reopened_at_once_then_with_backoff() {
        assert_eq!(reopen_pause(1), Duration::ZERO);
        assert_eq!(reopen_pause(2), Duration::from_millis(250));
        assert_eq!(reopen_pause(3), Duration::from_millis(500));
        assert_eq!(reopen_pause(40), Duration::from_secs(5));
    }
}
