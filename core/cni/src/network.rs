//! ADD, CHECK and DEL of a whole network configuration list (the spec's section 3).
//!
//! - ADD runs each plugin in order, each given the previous plugin's result as
//!   `prevResult`; the last result is cached and returned. When a plugin fails, DEL runs
//!   for the plugins that ran, the failed one included (it may have left part of its work),
//!   in reverse order, with the last result obtained as `prevResult`.
//! - CHECK runs each plugin in order with the cached result as `prevResult`; skipped when
//!   the list sets `disableCheck`. (Both supported versions, 1.0.0 and 0.4.0, have CHECK.)
//!   portmap's IPv6 CHECK bug on IPv4-only attachments is tolerated (see `quirks`).
//! - DEL runs every plugin in reverse order with the cached result as `prevResult` (when
//!   there is one), continues past failures and reports them together; the cache entry is
//!   removed only when every plugin succeeded, so a retry still has the `prevResult`.

use serde_json::{Map, Value};

use crate::quirks::portmap_ipv6_check_bug;

use crate::{
    Attachment, CachedAttachment, CniResult, Command, Error, NetworkConfigList, PluginConfig,
    PluginRunner, ResultCache,
};

/// The runtime: plugins run by `runner`, results kept in `cache`.
#[derive(Debug, Clone)]
pub struct CniRuntime {
    runner: PluginRunner,
    cache: ResultCache,
}

impl CniRuntime {
    pub fn new(runner: PluginRunner, cache: ResultCache) -> Self {
        CniRuntime { runner, cache }
    }

    pub fn runner(&self) -> &PluginRunner {
        &self.runner
    }

    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// ADD of the whole list; the result is cached before it is returned.
    pub async fn add(
        &self,
        net: &NetworkConfigList,
        attachment: &Attachment,
    ) -> Result<CniResult, Error> {
        attachment.validate()?;
        let mut prev: Option<CniResult> = None;
        for (i, plugin) in net.plugins.iter().enumerate() {
            match self.add_one(net, plugin, attachment, prev.as_ref()).await {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    let ran = &net.plugins[..=i];
                    return Err(self
                        .rolled_back(net, ran, attachment, prev.as_ref(), e)
                        .await);
                }
            }
        }
        let result = prev.expect("a list has at least one plugin");
        let entry = CachedAttachment::new(net, attachment, &result);
        if let Err(e) = self.cache.store(&entry).await {
            return Err(self
                .rolled_back(net, &net.plugins, attachment, Some(&result), e)
                .await);
        }
        Ok(result)
    }

    async fn add_one(
        &self,
        net: &NetworkConfigList,
        plugin: &PluginConfig,
        attachment: &Attachment,
        prev: Option<&CniResult>,
    ) -> Result<CniResult, Error> {
        let stdin = plugin_stdin(net, plugin, attachment, prev)?;
        let out = self
            .runner
            .run(Command::Add, &plugin.plugin_type, attachment, stdin)
            .await?;
        serde_json::from_slice(&out).map_err(|source| Error::BadResult {
            plugin: plugin.plugin_type.clone(),
            command: Command::Add,
            source,
        })
    }

    async fn rolled_back(
        &self,
        net: &NetworkConfigList,
        ran: &[PluginConfig],
        attachment: &Attachment,
        prev: Option<&CniResult>,
        cause: Error,
    ) -> Error {
        tracing::warn!(network = %net.name, container = %attachment.container_id, error = %cause, "CNI ADD failed; deleting what was added");
        let rollback = self.del_plugins(net, ran, attachment, prev).await;
        Error::Add {
            network: net.name.clone(),
            source: Box::new(cause),
            rollback,
        }
    }

    /// CHECK of the whole list against the cached result of its ADD.
    pub async fn check(
        &self,
        net: &NetworkConfigList,
        attachment: &Attachment,
    ) -> Result<(), Error> {
        attachment.validate()?;
        if net.disable_check {
            return Ok(());
        }
        let cached = self
            .cache
            .load(&net.name, &attachment.container_id)
            .await?
            .ok_or_else(|| Error::NotCached {
                network: net.name.clone(),
                container_id: attachment.container_id.clone(),
            })?;
        for plugin in &net.plugins {
            let stdin = plugin_stdin(net, plugin, attachment, Some(&cached.result))?;
            let checked = self
                .runner
                .run(Command::Check, &plugin.plugin_type, attachment, stdin)
                .await;
            match checked {
                Ok(_) => {}
                Err(e) if portmap_ipv6_check_bug(&plugin.plugin_type, &e, &cached.result) => {
                    tracing::debug!(network = %net.name, error = %e, "ignoring portmap's IPv6 CHECK failure on an IPv4-only attachment (containernetworking/plugins#819)");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// DEL of the whole list (with the cached result, when there is one).
    pub async fn del(&self, net: &NetworkConfigList, attachment: &Attachment) -> Result<(), Error> {
        attachment.validate()?;
        let cached = self.cache.load(&net.name, &attachment.container_id).await?;
        let prev = cached.map(|c| c.result);
        let errors = self
            .del_plugins(net, &net.plugins, attachment, prev.as_ref())
            .await;
        if !errors.is_empty() {
            return Err(Error::Del {
                network: net.name.clone(),
                errors,
            });
        }
        self.cache.remove(&net.name, &attachment.container_id).await
    }

    /// DEL from the cache alone (configuration, parameters and result of the ADD): after
    /// an agent crash. `Ok(false)` when nothing is cached.
    pub async fn del_cached(&self, network: &str, container_id: &str) -> Result<bool, Error> {
        let Some(cached) = self.cache.load(network, container_id).await? else {
            return Ok(false);
        };
        let net = cached.network_config()?;
        self.del(&net, &cached.attachment).await?;
        Ok(true)
    }

    /// DEL of `plugins` in reverse order; every one runs; the failures are returned.
    async fn del_plugins(
        &self,
        net: &NetworkConfigList,
        plugins: &[PluginConfig],
        attachment: &Attachment,
        prev: Option<&CniResult>,
    ) -> Vec<Error> {
        let mut errors = Vec::new();
        for plugin in plugins.iter().rev() {
            let run = async {
                let stdin = plugin_stdin(net, plugin, attachment, prev)?;
                self.runner
                    .run(Command::Del, &plugin.plugin_type, attachment, stdin)
                    .await
            };
            if let Err(e) = run.await {
                tracing::warn!(network = %net.name, plugin = %plugin.plugin_type, error = %e, "CNI DEL failed");
                errors.push(e);
            }
        }
        errors
    }
}

/// A plugin's stdin: its own object with the list's `name` and `cniVersion`, `prevResult`
/// when there is one (and only then), and `runtimeConfig` with the capability arguments it
/// asks for.
pub fn plugin_stdin(
    net: &NetworkConfigList,
    plugin: &PluginConfig,
    attachment: &Attachment,
    prev: Option<&CniResult>,
) -> Result<Vec<u8>, Error> {
    let mut obj: Map<String, Value> = plugin.raw.clone();
    obj.insert("name".into(), net.name.clone().into());
    obj.insert("cniVersion".into(), net.cni_version.clone().into());
    obj.remove("prevResult");
    if let Some(prev) = prev {
        let value = serde_json::to_value(prev).map_err(|e| Error::Config(e.to_string()))?;
        obj.insert("prevResult".into(), value);
    }
    let runtime = attachment.runtime_config(&plugin.capabilities);
    if !runtime.is_empty() {
        obj.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    serde_json::to_vec(&obj).map_err(|e| Error::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_carries_name_version_prev_result_and_runtime_config() {
        let net = NetworkConfigList::parse(
            br#"{"cniVersion":"0.4.0","name":"n","plugins":[
                {"type":"bridge","name":"spoofed","prevResult":{"ips":[]}},
                {"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let mut att = Attachment::new("c1", "/run/netns/x", "eth0");
        att.capability_args.insert(
            "portMappings".into(),
            serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        let first: Value =
            serde_json::from_slice(&plugin_stdin(&net, &net.plugins[0], &att, None).unwrap())
                .unwrap();
        assert_eq!(first["name"], "n");
        assert_eq!(first["cniVersion"], "0.4.0");
        assert!(
            first.get("prevResult").is_none(),
            "the file's own prevResult is dropped"
        );
        assert!(first.get("runtimeConfig").is_none());
        let prev: CniResult = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]}"#,
        )
        .unwrap();
        let second: Value = serde_json::from_slice(
            &plugin_stdin(&net, &net.plugins[1], &att, Some(&prev)).unwrap(),
        )
        .unwrap();
        assert_eq!(second["prevResult"]["ips"][0]["address"], "10.0.0.2/24");
        assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    }
}
