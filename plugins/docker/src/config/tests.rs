//! The schemas and the serde structs agree: every schema key parses, every struct key is in
//! the schema, unknown keys are refused at every level.

use drover_plugin_sdk::proto::base::ConfigField;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::{Value, json};

use super::*;

/// A value of the schema type `ty`.
fn sample(f: &ConfigField) -> Value {
    match f.r#type.as_str() {
        "string" => json!("x"),
        "bool" => json!(true),
        "number" => json!(1),
        "duration" => json!("1s"),
        "list(string)" => json!(["x"]),
        "list(number)" => json!([1]),
        "map(string)" => json!({"k": "v"}),
        "block" => sample_block(&f.fields),
        "list(block)" => json!([sample_block(&f.fields)]),
        other => panic!("{}: unexpected schema type {other}", f.name),
    }
}

fn sample_block(fields: &[ConfigField]) -> Value {
    Value::Object(fields.iter().map(|f| (f.name.clone(), sample(f))).collect())
}

/// The field names serde's derive gives a struct.
fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Grab(Option<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for &mut Grab {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _v: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(de::Error::custom("grabbed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut g = Grab(None);
    let _ = T::deserialize(&mut g);
    g.0.expect("a struct")
}

fn names(fields: &[ConfigField]) -> Vec<String> {
    let mut v: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
    v.sort();
    v
}

fn sorted(fields: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn sub<'a>(fields: &'a [ConfigField], name: &str) -> &'a [ConfigField] {
    &fields.iter().find(|f| f.name == name).unwrap().fields
}

/// Every path to a block (an empty path is the top level), for the unknown-key checks.
fn block_paths(fields: &[ConfigField], prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for f in fields {
        if f.r#type == "block" || f.r#type == "list(block)" {
            let mut p = prefix.clone();
            p.push(f.name.clone());
            block_paths(&f.fields, p, out);
        }
    }
}

/// Inserts `bogus = 1` into the block at `path` of `v` (a block may be an array).
fn plant_unknown(v: &mut Value, path: &[String]) {
    let target = match v {
        Value::Array(items) => &mut items[0],
        other => other,
    };
    match path.split_first() {
        None => {
            target
                .as_object_mut()
                .unwrap()
                .insert("bogus".into(), json!(1));
        }
        Some((head, rest)) => plant_unknown(target.get_mut(head).unwrap(), rest),
    }
}

fn check_agreement(
    schema: &[ConfigField],
    parse: impl Fn(Value) -> Result<(), String>,
    what: &str,
) {
    let full = sample_block(schema);
    parse(full.clone()).unwrap_or_else(|e| panic!("{what}: every schema key parses: {e}"));
    let mut paths = Vec::new();
    block_paths(schema, Vec::new(), &mut paths);
    for p in paths {
        let mut v = full.clone();
        plant_unknown(&mut v, &p);
        let e = parse(v).expect_err(&format!("{what}: unknown key under {p:?} is refused"));
        assert!(e.contains("bogus"), "{what} {p:?}: {e}");
    }
}

#[test]
fn task_schema_and_struct_agree() {
    let schema = task_config_schema();
    check_agreement(
        &schema,
        |v| {
            serde_json::from_value::<TaskConfig>(v)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
        "task config",
    );
    assert_eq!(names(&schema), sorted(struct_fields::<TaskConfig>()));
    let m = sub(&schema, "mount");
    assert_eq!(names(m), sorted(struct_fields::<task::MountBlock>()));
    assert_eq!(
        names(sub(m, "volume_options")),
        sorted(struct_fields::<task::VolumeOptions>())
    );
    assert_eq!(
        names(sub(&schema, "auth")),
        sorted(struct_fields::<task::AuthBlock>())
    );
    assert_eq!(
        names(sub(&schema, "logging")),
        sorted(struct_fields::<task::LoggingBlock>())
    );
    assert_eq!(
        names(sub(&schema, "devices")),
        sorted(struct_fields::<task::DeviceBlock>())
    );
}

#[test]
fn plugin_schema_and_struct_agree() {
    let schema = plugin_config_schema();
    check_agreement(
        &schema,
        |v| {
            serde_json::from_value::<plugin::PluginConfig>(v)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
        "plugin config",
    );
    assert_eq!(
        names(&schema),
        sorted(struct_fields::<plugin::PluginConfig>())
    );
    let gc = sub(&schema, "gc");
    assert_eq!(names(gc), sorted(struct_fields::<plugin::GcBlock>()));
    assert_eq!(
        names(sub(gc, "dangling_containers")),
        sorted(struct_fields::<plugin::DanglingBlock>())
    );
}

#[test]
fn blocks_arrive_as_objects_or_one_element_arrays() {
    let one: TaskConfig = serde_json::from_value(json!({
        "image": "busybox:1",
        "mount": {"type": "bind", "target": "/x", "source": "x"},
        "auth": [{"username": "u"}],
        "ulimit": [{"nofile": "1024:2048"}],
    }))
    .unwrap();
    assert_eq!(one.mount.len(), 1);
    assert_eq!(one.auth.as_ref().unwrap().username.as_deref(), Some("u"));
    assert_eq!(one.ulimit["nofile"], "1024:2048");
    assert_eq!(one.image_pull_timeout, None);
    assert_eq!(one.pull_timeout(), std::time::Duration::from_secs(300));
}

#[test]
fn plugin_defaults_are_nomads() {
    let s = Settings::from_json(json!({})).unwrap();
    assert_eq!(s.endpoint, "unix:///var/run/docker.sock");
    assert!(
        !s.volumes_enabled,
        "host binds are off until an operator allows them"
    );
    assert!(!s.allow_privileged);
    assert!(!s.allow_caps.contains("NET_RAW"));
    assert_eq!(s.allow_runtimes, vec!["runc", "nvidia"]);
    assert_eq!(s.pull_activity_timeout.as_secs(), 120);
    assert_eq!(s.gc, GcConfig::default());
    assert_eq!(s.gc.image_delay.as_secs(), 180);
    assert!(s.gc.dangling.enabled);
    assert_eq!(s.infra_image, "registry.k8s.io/pause-amd64:3.3");
    assert_eq!(s.infra_image_pull_timeout.as_secs(), 300);
    let s = Settings::from_json(json!({
        "volumes": {"enabled": true},
        "gc": {"image_delay": "10s", "dangling_containers": [{"dry_run": true}]},
        "allow_caps": ["net_raw", "CAP_CHOWN"],
        "infra_image": "drover-test/pause:1.0",
        "infra_image_pull_timeout": "30s",
    }))
    .unwrap();
    assert_eq!(s.infra_image, "drover-test/pause:1.0");
    assert_eq!(s.infra_image_pull_timeout.as_secs(), 30);
    assert!(Settings::from_json(json!({"infra_image_pull_timeout": "soon"})).is_err());
    assert!(s.volumes_enabled);
    assert_eq!(s.gc.image_delay.as_secs(), 10);
    assert!(s.gc.dangling.dry_run && s.gc.dangling.enabled);
    assert!(s.allow_caps.contains("NET_RAW") && s.allow_caps.contains("CHOWN"));
    assert!(Settings::from_json(json!({"allow_caps": ["nope"]})).is_err());
    assert!(Settings::from_json(json!({"endpoint": "/var/run/docker.sock"})).is_err());
}
