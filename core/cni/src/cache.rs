//! The result cache: each successful ADD's result, configuration and parameters, one file
//! per network and container (`<network>~<container id>.json`, 0600 in a 0700 directory,
//! written atomically: temp + rename), so CHECK and DEL have the `prevResult` and a DEL
//! after an agent crash needs nothing but the cache. DEL removes the entry once every
//! plugin succeeded.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conflist::spec_identifier;
use crate::{Attachment, CniResult, Error, NetworkConfigList};

/// What a cache file says it is.
pub const CACHE_KIND: &str = "drover-cni-cache-v1";
/// The largest cache file read.
pub const MAX_CACHE_BYTES: u64 = 4 << 20;

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAttachment {
    pub kind: String,
    pub network: String,
    pub attachment: Attachment,
    /// The network configuration list the ADD ran (`.conflist` JSON).
    pub config: Value,
    /// The ADD's final result.
    pub result: CniResult,
}

impl CachedAttachment {
    pub fn new(net: &NetworkConfigList, attachment: &Attachment, result: &CniResult) -> Self {
        CachedAttachment {
            kind: CACHE_KIND.to_string(),
            network: net.name.clone(),
            attachment: attachment.clone(),
            config: net.to_value(),
            result: result.clone(),
        }
    }

    /// The configuration list the ADD ran.
    pub fn network_config(&self) -> Result<NetworkConfigList, Error> {
        NetworkConfigList::from_value(self.config.clone())
    }
}

/// The cache directory (the caller's: e.g. under the client's data dir).
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ResultCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `network` + `container_id` (both checked against the spec's pattern,
    /// which holds no `/` and no `~`).
    pub fn path(&self, network: &str, container_id: &str) -> Result<PathBuf, Error> {
        if !spec_identifier(network) || !spec_identifier(container_id) {
            return Err(Error::Parameter {
                what: "cache key",
                why: format!("{network:?} / {container_id:?}"),
            });
        }
        Ok(self.dir.join(format!("{network}~{container_id}.json")))
    }

    /// Writes the entry atomically (0600, directory 0700).
    pub async fn store(&self, entry: &CachedAttachment) -> Result<(), Error> {
        let path = self.path(&entry.network, &entry.attachment.container_id)?;
        let bytes = serde_json::to_vec(entry).map_err(|e| cache_err(&path, e.into()))?;
        let dir = self.dir.clone();
        blocking(path.clone(), move || {
            drover_durable::ensure_dir(&dir, drover_durable::DIR_MODE)?;
            // Temporary files a crash left beside this entry.
            drover_durable::remove_stale_temps(&path);
            drover_durable::write_atomic(&path, &bytes)
        })
        .await
    }

    /// The entry of `network` + `container_id`, if there is one.
    pub async fn load(
        &self,
        network: &str,
        container_id: &str,
    ) -> Result<Option<CachedAttachment>, Error> {
        let path = self.path(network, container_id)?;
        let read = path.clone();
        let Some(bytes) = blocking(path.clone(), move || read_bounded(&read)).await? else {
            return Ok(None);
        };
        let entry: CachedAttachment =
            serde_json::from_slice(&bytes).map_err(|e| cache_err(&path, e.into()))?;
        if entry.kind != CACHE_KIND
            || entry.network != network
            || entry.attachment.container_id != container_id
        {
            return Err(cache_err(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not this attachment's entry",
                ),
            ));
        }
        Ok(Some(entry))
    }

    /// Removes the entry (absent is fine).
    pub async fn remove(&self, network: &str, container_id: &str) -> Result<(), Error> {
        let path = self.path(network, container_id)?;
        blocking(path.clone(), move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        })
        .await
    }

    /// The (network, container id) of every entry, sorted: what an agent restart compares
    /// with the allocations it still has.
    pub async fn keys(&self) -> Result<Vec<(String, String)>, Error> {
        let dir = self.dir.clone();
        blocking(dir.clone(), move || {
            let mut keys = Vec::new();
            let rd = match std::fs::read_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
                r => r?,
            };
            for e in rd {
                let name = e?.file_name();
                let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                    continue;
                };
                if let Some((net, id)) = stem.split_once('~')
                    && spec_identifier(net)
                    && spec_identifier(id)
                {
                    keys.push((net.to_string(), id.to_string()));
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }
}

/// Reads a cache file without following a link, bounded; `None` when it does not exist.
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        r => r?,
    };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CACHE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CACHE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_CACHE_BYTES} bytes"),
        ));
    }
    Ok(Some(bytes))
}

async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await?
        .map_err(|e| cache_err(&path, e))
}

fn cache_err(path: &Path, source: std::io::Error) -> Error {
    Error::Cache {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entry(net: &str, id: &str) -> CachedAttachment {
        let list = NetworkConfigList::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"{net}","plugins":[{{"type":"loopback"}}]}}"#)
                .as_bytes(),
        )
        .unwrap();
        let result: CniResult =
            serde_json::from_str(r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}"#)
                .unwrap();
        CachedAttachment::new(&list, &Attachment::new(id, "/run/netns/x", "eth0"), &result)
    }

    #[tokio::test]
    async fn entries_are_private_and_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(tmp.path().join("cni"));
        assert_eq!(cache.load("net", "a1").await.unwrap(), None);
        let e = entry("net", "a1");
        cache.store(&e).await.unwrap();
        cache.store(&entry("other", "b2")).await.unwrap();
        let path = cache.path("net", "a1").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let back = cache.load("net", "a1").await.unwrap().unwrap();
        assert_eq!(back, e);
        assert_eq!(
            back.network_config().unwrap().plugins[0].plugin_type,
            "loopback"
        );
        assert_eq!(
            cache.keys().await.unwrap(),
            [("net".into(), "a1".into()), ("other".into(), "b2".into())]
        );
        cache.remove("net", "a1").await.unwrap();
        cache.remove("net", "a1").await.unwrap();
        assert_eq!(cache.load("net", "a1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn hostile_keys_and_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(tmp.path());
        assert!(cache.path("../x", "a").is_err());
        assert!(cache.path("n", "a/../../b").is_err());
        assert!(cache.path("n~m", "a").is_err());
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("n~a.json")).unwrap();
        assert!(matches!(
            cache.load("n", "a").await,
            Err(Error::Cache { .. })
        ));
        let mut e = entry("n", "b");
        e.network = "m".into();
        std::fs::write(tmp.path().join("n~b.json"), serde_json::to_vec(&e).unwrap()).unwrap();
        assert!(
            cache.load("n", "b").await.is_err(),
            "an entry under another name"
        );
    }
}
