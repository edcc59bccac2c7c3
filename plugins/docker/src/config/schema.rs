//! The config blocks' schemas, as the host checks jobspecs and plugin blocks against them
//! (`job validate` reports unknown keys with file:line). A unit test holds them and the serde
//! structs to the same keys.

use drover_plugin_sdk::proto::base::ConfigField;

const S: &str = "string";
const B: &str = "bool";
const N: &str = "number";
const LS: &str = "list(string)";
const M: &str = "map(string)";
const D: &str = "duration";

fn field(name: &str, ty: &str, description: &str) -> ConfigField {
    ConfigField {
        name: name.into(),
        r#type: ty.into(),
        required: false,
        description: description.into(),
        default_json: String::new(),
        fields: Vec::new(),
    }
}

fn with_default(mut f: ConfigField, default_json: &str) -> ConfigField {
    f.default_json = default_json.into();
    f
}

fn nested(name: &str, ty: &str, description: &str, fields: Vec<ConfigField>) -> ConfigField {
    let mut f = field(name, ty, description);
    f.fields = fields;
    f
}

fn required(mut f: ConfigField) -> ConfigField {
    f.required = true;
    f
}

/// A task's `config { }` block.
pub fn task_config_schema() -> Vec<ConfigField> {
    [
        process_fields(),
        isolation_fields(),
        resource_fields(),
        image_fields(),
    ]
    .concat()
}

/// The process, its files and its network.
fn process_fields() -> Vec<ConfigField> {
    vec![
        required(field(
            "image",
            S,
            "The image to run (name[:tag] or name@digest).",
        )),
        field(
            "command",
            S,
            "The command to run, instead of the image's CMD.",
        ),
        field("args", LS, "Arguments to the command."),
        field("entrypoint", LS, "Overrides the image's ENTRYPOINT."),
        field("work_dir", S, "The working directory inside the container."),
        field("ports", LS, "Labels of the group's ports to publish."),
        field(
            "network_mode",
            S,
            "bridge, host, none, container:<id> or a network's name.",
        ),
        nested(
            "mount",
            "list(block)",
            "A bind, volume or tmpfs mount.",
            mount_fields(),
        ),
        field(
            "volumes",
            LS,
            "host:container[:ro] binds; relative host paths are under the task directory.",
        ),
        field("labels", M, "Container labels."),
        field("hostname", S, "The container's host name."),
        field("dns_servers", LS, "DNS servers."),
        field("dns_search_domains", LS, "DNS search domains."),
        field("dns_options", LS, "DNS resolver options."),
        field("extra_hosts", LS, "host:ip lines added to /etc/hosts."),
    ]
}

/// What the container may do and see.
fn isolation_fields() -> Vec<ConfigField> {
    vec![
        field(
            "cap_add",
            LS,
            "Capabilities to add (within the plugin's allow_caps).",
        ),
        field(
            "cap_drop",
            LS,
            "Capabilities to drop (\"all\" drops every one).",
        ),
        with_default(
            field(
                "privileged",
                B,
                "Runs the container privileged (needs allow_privileged).",
            ),
            "false",
        ),
        with_default(
            field(
                "readonly_rootfs",
                B,
                "Mounts the container's root read-only.",
            ),
            "false",
        ),
        field("pids_limit", N, "Most processes the container may have."),
        field("ulimit", M, "Resource limits: name = \"soft[:hard]\"."),
        field("shm_size", N, "Size of /dev/shm in bytes."),
        field("sysctl", M, "Namespaced kernel parameters."),
        field(
            "security_opt",
            LS,
            "Security options: no-new-privileges; seccomp, apparmor and label options need allow_privileged.",
        ),
        with_default(field("tty", B, "Allocates a terminal."), "false"),
        with_default(field("interactive", B, "Keeps stdin open."), "false"),
        with_default(field("init", B, "Runs an init process as pid 1."), "false"),
        field("ipc_mode", S, "The IPC namespace mode."),
        field("pid_mode", S, "The PID namespace mode."),
        field("uts_mode", S, "The UTS namespace mode."),
        nested(
            "devices",
            "list(block)",
            "Host devices in the container.",
            vec![
                required(field("host_path", S, "The device on the host.")),
                field("container_path", S, "Its path inside (default: the same)."),
                field("cgroup_permissions", S, "r, w and m (default rwm)."),
            ],
        ),
    ]
}

/// Its cgroup limits and runtime.
fn resource_fields() -> Vec<ConfigField> {
    vec![
        with_default(
            field(
                "cpu_hard_limit",
                B,
                "Caps CPU at the task's cpu (a CFS quota) instead of weighting it.",
            ),
            "false",
        ),
        field(
            "cpu_cfs_period",
            N,
            "The CFS period in microseconds (default 100000).",
        ),
        field(
            "cpuset_cpus",
            S,
            "CPUs the container may use (e.g. \"0-2,4\").",
        ),
        field(
            "memory_hard_limit",
            N,
            "The memory limit in MB; memory becomes the reservation.",
        ),
        field("oom_score_adj", N, "The container's OOM score adjustment."),
        field(
            "group_add",
            LS,
            "Additional groups for the container's user.",
        ),
        field(
            "runtime",
            S,
            "The OCI runtime (within the plugin's allow_runtimes).",
        ),
        field("storage_opt", M, "Storage driver options."),
    ]
}

/// Where its image comes from, and its logs and health checks.
fn image_fields() -> Vec<ConfigField> {
    vec![
        with_default(
            field("force_pull", B, "Pulls the image even when it is present."),
            "false",
        ),
        with_default(
            field(
                "image_pull_timeout",
                "duration",
                "The longest a pull may take.",
            ),
            "\"5m\"",
        ),
        nested(
            "auth",
            "block",
            "Registry credentials.",
            vec![
                field("username", S, "User name."),
                field("password", S, "Password."),
                field("email", S, "E-mail (unused by most registries)."),
                field("server_address", S, "The registry."),
            ],
        ),
        with_default(
            field(
                "auth_soft_fail",
                B,
                "Pulls anonymously when no credentials are found or they fail.",
            ),
            "false",
        ),
        field(
            "load",
            S,
            "An image tarball (docker save) under local/, loaded instead of pulled.",
        ),
        nested(
            "logging",
            "block",
            "The container's log driver.",
            vec![
                field("type", S, "The log driver (default json-file)."),
                field("driver", S, "Former name of type."),
                field("config", M, "The log driver's options."),
            ],
        ),
        nested(
            "healthchecks",
            "block",
            "The image's HEALTHCHECK.",
            vec![with_default(
                field("disable", B, "Turns the image's health check off."),
                "false",
            )],
        ),
    ]
}

fn mount_fields() -> Vec<ConfigField> {
    vec![
        with_default(field("type", S, "bind, volume or tmpfs."), "\"volume\""),
        required(field("target", S, "The path inside the container.")),
        field("source", S, "The host path (bind) or volume name (volume)."),
        with_default(field("readonly", B, "Mounts read-only."), "false"),
        nested(
            "bind_options",
            "block",
            "Bind mount options.",
            vec![field(
                "propagation",
                S,
                "rprivate (default), private, rshared, shared, rslave or slave; other than private needs allow_privileged.",
            )],
        ),
        nested(
            "volume_options",
            "block",
            "Volume options.",
            vec![
                with_default(
                    field(
                        "no_copy",
                        B,
                        "Does not copy the image's data into a new volume.",
                    ),
                    "false",
                ),
                field("labels", "map(string)", "Labels of a new volume."),
                nested(
                    "driver_config",
                    "block",
                    "The volume driver.",
                    vec![
                        field("name", S, "The driver's name."),
                        field("options", "map(string)", "The driver's options."),
                    ],
                ),
            ],
        ),
        nested(
            "tmpfs_options",
            "block",
            "tmpfs options.",
            vec![
                field("size", N, "Size in bytes."),
                field("mode", N, "Permission bits (e.g. 1777 as octal digits)."),
            ],
        ),
    ]
}

/// The plugin's `config { }` block.
pub fn plugin_config_schema() -> Vec<ConfigField> {
    [engine_fields(), policy_fields()].concat()
}

/// The engine and registries.
fn engine_fields() -> Vec<ConfigField> {
    vec![
        with_default(
            field(
                "endpoint",
                S,
                "The engine: unix:///path or tcp://host:port.",
            ),
            "\"unix:///var/run/docker.sock\"",
        ),
        nested(
            "auth",
            "block",
            "Registry credentials for pulls.",
            vec![
                field(
                    "config",
                    S,
                    "A docker config.json whose auths hold credentials.",
                ),
                field(
                    "helper",
                    S,
                    "A credential helper (docker-credential-<helper>).",
                ),
            ],
        ),
        nested(
            "tls",
            "block",
            "TLS for a tcp:// endpoint.",
            vec![
                field("cert", S, "Client certificate (PEM)."),
                field("key", S, "Client key (PEM)."),
                field("ca", S, "CA certificate (PEM)."),
            ],
        ),
        with_default(
            field(
                "allow_privileged",
                B,
                "Lets tasks run privileged and use mount propagation.",
            ),
            "false",
        ),
        with_default(
            field("allow_caps", "list(string)", "Capabilities tasks may have."),
            &serde_json::to_string(
                &crate::caps::NOMAD_DEFAULT_ALLOWED
                    .iter()
                    .map(|c| c.to_ascii_lowercase())
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        ),
        with_default(
            field(
                "allow_runtimes",
                "list(string)",
                "OCI runtimes tasks may choose.",
            ),
            "[\"runc\",\"nvidia\"]",
        ),
    ]
}

/// What tasks may do, and housekeeping.
fn policy_fields() -> Vec<ConfigField> {
    vec![
        nested(
            "volumes",
            "block",
            "Host volumes.",
            vec![
                with_default(
                    field(
                        "enabled",
                        B,
                        "Lets tasks bind host paths (relative paths under the task directory are always allowed).",
                    ),
                    "false",
                ),
                field("selinuxlabel", S, "The SELinux label for binds."),
            ],
        ),
        field(
            "extra_labels",
            "list(string)",
            "Task metadata added as container labels (job_name, task_group_name, ...; * for all).",
        ),
        with_default(
            field(
                "pull_activity_timeout",
                D,
                "A pull without progress for this long fails.",
            ),
            "\"2m\"",
        ),
        with_default(
            field(
                "infra_image",
                S,
                "The image of bridge-mode groups' network container.",
            ),
            "\"registry.k8s.io/pause-amd64:3.3\"",
        ),
        with_default(
            field(
                "infra_image_pull_timeout",
                D,
                "The longest a pull of infra_image may take.",
            ),
            "\"5m\"",
        ),
        nested(
            "gc",
            "block",
            "Garbage collection.",
            vec![
                with_default(field("image", B, "Removes images no task uses."), "true"),
                with_default(
                    field("image_delay", D, "How long an unused image stays."),
                    "\"3m\"",
                ),
                with_default(
                    field("container", B, "Removes a task's container with the task."),
                    "true",
                ),
                nested(
                    "dangling_containers",
                    "block",
                    "Reaps containers Drover made but no longer tracks.",
                    vec![
                        with_default(field("enabled", B, "Runs the reaper."), "true"),
                        with_default(field("period", D, "How often it runs."), "\"5m\""),
                        with_default(
                            field("creation_grace", D, "Leaves containers younger than this."),
                            "\"5m\"",
                        ),
                        with_default(
                            field("dry_run", B, "Only logs what it would remove."),
                            "false",
                        ),
                    ],
                ),
            ],
        ),
        with_default(
            field(
                "disable_log_collection",
                B,
                "Does not follow containers' logs into alloc/logs.",
            ),
            "false",
        ),
    ]
}
