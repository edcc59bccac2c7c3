//! Plugin logging: one JSON object per line on stderr, in the shape of HashiCorp's hclog
//! (`{"@level":"info","@message":"...","@module":"raw_exec","@timestamp":"..."}` plus extra
//! fields), which both Drover's host and go-plugin hosts parse and forward into their own logs.
//!
//! The shape is exactly hclog's because go-plugin hosts are strict about it: go-plugin 1.0.1's
//! host panics on a line whose `@message` or `@level` is not a string, and reads `@timestamp`
//! only in hclog's layout `2006-01-02T15:04:05.000000Z07:00` (exactly six fractional digits).
//! Every extra field is written as a string.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

pub use drover_plugin_abi::hclog::format_timestamp;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Environment variable holding a `tracing` filter for plugin logs (default `info`).
pub const ENV_LOG_FILTER: &str = "DROVER_PLUGIN_LOG";

/// Installs the global subscriber: hclog JSON lines on stderr, module `name`.
/// Calling it twice is harmless (the second call does nothing).
pub fn init_logging(name: &str) {
    let filter = EnvFilter::try_from_env(ENV_LOG_FILTER).unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = HclogLayer::new(name, std::io::stderr());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}

/// A `tracing` layer writing hclog-shaped JSON lines.
pub struct HclogLayer<W: Write + Send + 'static> {
    module: String,
    out: Mutex<W>,
}

impl<W: Write + Send + 'static> HclogLayer<W> {
    /// A layer that labels every line with `@module` = `module` and writes to `out`.
    pub fn new(module: &str, out: W) -> Self {
        Self {
            module: module.to_string(),
            out: Mutex::new(out),
        }
    }
}

/// hclog's level names.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.extra
                .insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.message = v;
        } else {
            self.extra.insert(field.name().to_string(), v);
        }
    }
}

impl<S: Subscriber, W: Write + Send + 'static> Layer<S> for HclogLayer<W> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format_line(
            level_name(event.metadata().level()),
            &fields.message,
            &self.module,
            SystemTime::now(),
            &fields.extra,
        );
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// One hclog JSON line (with its trailing newline). Extra fields never override the `@` keys.
pub fn format_line(
    level: &str,
    message: &str,
    module: &str,
    at: SystemTime,
    extra: &BTreeMap<String, String>,
) -> String {
    let mut obj = serde_json::Map::new();
    for (k, v) in extra {
        obj.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    obj.insert("@level".into(), level.into());
    obj.insert("@message".into(), message.into());
    obj.insert("@module".into(), module.into());
    obj.insert("@timestamp".into(), format_timestamp(at).into());
    let mut line = serde_json::Value::Object(obj).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn line_is_hclog_json() {
        let mut extra = BTreeMap::new();
        extra.insert("task_id".to_string(), "a/b/0".to_string());
        extra.insert("@level".to_string(), "spoof".to_string());
        let line = format_line(
            "warn",
            "it \"broke\"",
            "raw_exec",
            UNIX_EPOCH + Duration::from_secs(1),
            &extra,
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["@level"], "warn");
        assert_eq!(v["@message"], "it \"broke\"");
        assert_eq!(v["@module"], "raw_exec");
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:01.000000Z");
        assert_eq!(v["task_id"], "a/b/0");
    }

    #[test]
    fn layer_writes_events() {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(HclogLayer::new("m", buf.clone()));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(task_id = "t1", count = 3, "started {}", "x");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["@message"], "started x");
        assert_eq!(v["@level"], "info");
        assert_eq!(v["task_id"], "t1");
        assert_eq!(v["count"], "3");
    }
}
