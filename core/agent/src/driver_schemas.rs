//! The task config schemas of the drivers built into `drover`, for checking jobspecs'
//! task `config` blocks locally (`job validate`, `job run`, `job plan`). A driver not listed
//! here (a third-party plugin) is not checked.

use drover_plugin_sdk::proto::base::ConfigField;

/// The keys driver `driver`'s task config accepts; None for a driver not built in.
pub fn task_config_schema(driver: &str) -> Option<Vec<ConfigField>> {
    match driver {
        drover_plugin_exec::NAME => Some(drover_plugin_exec::task_config_schema()),
        drover_plugin_raw_exec::NAME => Some(drover_plugin_raw_exec::task_config_schema()),
        drover_plugin_docker::NAME => Some(drover_plugin_docker::task_config_schema()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_drivers_have_schemas_and_others_none() {
        for d in ["exec", "raw_exec"] {
            let s = task_config_schema(d).unwrap();
            assert!(s.iter().any(|f| f.name == "command" && f.required), "{d}");
        }
        let docker = task_config_schema("docker").unwrap();
        assert!(docker.iter().any(|f| f.name == "image" && f.required));
        assert!(
            docker
                .iter()
                .any(|f| f.name == "mount" && f.r#type == "list(block)" && !f.fields.is_empty()),
            "docker's mount blocks carry their keys"
        );
        assert!(task_config_schema("hello").is_none());
    }
}
