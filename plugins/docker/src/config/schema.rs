//! The config blocks' schemas, as the host checks jobspecs and plugin blocks against them
//! (`job validate` reports unknown keys with file:line). A unit test holds them and the serde
//! structs to the same keys.

use drover_plugin_sdk::proto::base::ConfigField;

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
    let s = "string";
    let b = "bool";
    let n = "number";
    let ls = "list(string)";
    let m = "map(string)";
    vec![
        required(field(
            "image",
            s,
            "The image to run (name[:tag] or name@digest).",
        )),
        field(
            "command",
            s,
            "The command to run, instead of the image's CMD.",
        ),
        field("args", ls, "Arguments to the command."),
        field("entrypoint", ls, "Overrides the image's ENTRYPOINT."),
        field("work_dir", s, "The working directory inside the container."),
        field("ports", ls, "Labels of the group's ports to publish."),
        field(
            "network_mode",
            s,
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
            ls,
            "host:container[:ro] binds; relative host paths are under the task directory.",
        ),
        field("labels", m, "Container labels."),
        field("hostname", s, "The container's host name."),
        field("dns_servers", ls, "DNS servers."),
        field("dns_search_domains", ls, "DNS search domains."),
        field("dns_options", ls, "DNS resolver options."),
        field("extra_hosts", ls, "host:ip lines added to /etc/hosts."),
        field(
            "cap_add",
            ls,
            "Capabilities to add (within the plugin's allow_caps).",
        ),
        field(
            "cap_drop",
            ls,
            "Capabilities to drop (\"all\" drops every one).",
        ),
        with_default(
            field(
                "privileged",
                b,
                "Runs the container privileged (needs allow_privileged).",
            ),
            "false",
        ),
        with_default(
            field(
                "readonly_rootfs",
                b,
                "Mounts the container's root read-only.",
            ),
            "false",
        ),
        field("pids_limit", n, "Most processes the container may have."),
        field("ulimit", m, "Resource limits: name = \"soft[:hard]\"."),
        field("shm_size", n, "Size of /dev/shm in bytes."),
        field("sysctl", m, "Namespaced kernel parameters."),
        field(
            "security_opt",
            ls,
            "Security options (seccomp, apparmor, no-new-privileges ...).",
        ),
        with_default(field("tty", b, "Allocates a terminal."), "false"),
        with_default(field("interactive", b, "Keeps stdin open."), "false"),
        with_default(field("init", b, "Runs an init process as pid 1."), "false"),
        field("ipc_mode", s, "The IPC namespace mode."),
        field("pid_mode", s, "The PID namespace mode."),
        field("uts_mode", s, "The UTS namespace mode."),
        nested(
            "devices",
            "list(block)",
            "Host devices in the container.",
            vec![
                required(field("host_path", s, "The device on the host.")),
                field("container_path", s, "Its path inside (default: the same)."),
                field("cgroup_permissions", s, "r, w and m (default rwm)."),
            ],
        ),
        with_default(
            field(
                "cpu_hard_limit",
                b,
                "Caps CPU at the task's cpu (a CFS quota) instead of weighting it.",
            ),
            "false",
        ),
        field(
            "cpu_cfs_period",
            n,
            "The CFS period in microseconds (default 100000).",
        ),
        field(
            "cpuset_cpus",
            s,
            "CPUs the container may use (e.g. \"0-2,4\").",
        ),
        field(
            "memory_hard_limit",
            n,
            "The memory limit in MB; memory becomes the reservation.",
        ),
        field("oom_score_adj", n, "The container's OOM score adjustment."),
        field(
            "group_add",
            ls,
            "Additional groups for the container's user.",
        ),
        field(
            "runtime",
            s,
            "The OCI runtime (within the plugin's allow_runtimes).",
        ),
        field("storage_opt", m, "Storage driver options."),
        with_default(
            field("force_pull", b, "Pulls the image even when it is present."),
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
                field("username", s, "User name."),
                field("password", s, "Password."),
                field("email", s, "E-mail (unused by most registries)."),
                field("server_address", s, "The registry."),
            ],
        ),
        with_default(
            field(
                "auth_soft_fail",
                b,
                "Pulls anonymously when no credentials are found or they fail.",
            ),
            "false",
        ),
        field(
            "load",
            s,
            "An image tarball (docker save) under local/, loaded instead of pulled.",
        ),
        nested(
            "logging",
            "block",
            "The container's log driver.",
            vec![
                field("type", s, "The log driver (default json-file)."),
                field("driver", s, "Former name of type."),
                field("config", m, "The log driver's options."),
            ],
        ),
        nested(
            "healthchecks",
            "block",
            "The image's HEALTHCHECK.",
            vec![with_default(
                field("disable", b, "Turns the image's health check off."),
                "false",
            )],
        ),
    ]
}

fn mount_fields() -> Vec<ConfigField> {
    let s = "string";
    let b = "bool";
    let n = "number";
    vec![
        with_default(field("type", s, "bind, volume or tmpfs."), "\"volume\""),
        required(field("target", s, "The path inside the container.")),
        field("source", s, "The host path (bind) or volume name (volume)."),
        with_default(field("readonly", b, "Mounts read-only."), "false"),
        nested(
            "bind_options",
            "block",
            "Bind mount options.",
            vec![field(
                "propagation",
                s,
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
                        b,
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
                        field("name", s, "The driver's name."),
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
                field("size", n, "Size in bytes."),
                field("mode", n, "Permission bits (e.g. 1777 as octal digits)."),
            ],
        ),
    ]
}

/// The plugin's `config { }` block.
pub fn plugin_config_schema() -> Vec<ConfigField> {
    let s = "string";
    let b = "bool";
    let d = "duration";
    vec![
        with_default(
            field(
                "endpoint",
                s,
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
                    s,
                    "A docker config.json whose auths hold credentials.",
                ),
                field(
                    "helper",
                    s,
                    "A credential helper (docker-credential-<helper>).",
                ),
            ],
        ),
        nested(
            "tls",
            "block",
            "TLS for a tcp:// endpoint.",
            vec![
                field("cert", s, "Client certificate (PEM)."),
                field("key", s, "Client key (PEM)."),
                field("ca", s, "CA certificate (PEM)."),
            ],
        ),
        with_default(
            field(
                "allow_privileged",
                b,
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
        nested(
            "volumes",
            "block",
            "Host volumes.",
            vec![
                with_default(
                    field(
                        "enabled",
                        b,
                        "Lets tasks bind host paths (relative paths under the task directory are always allowed).",
                    ),
                    "false",
                ),
                field("selinuxlabel", s, "The SELinux label for binds."),
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
                d,
                "A pull without progress for this long fails.",
            ),
            "\"2m\"",
        ),
        with_default(
            field(
                "infra_image",
                s,
                "The image of bridge-mode groups' network container.",
            ),
            "\"registry.k8s.io/pause-amd64:3.3\"",
        ),
        nested(
            "gc",
            "block",
            "Garbage collection.",
            vec![
                with_default(field("image", b, "Removes images no task uses."), "true"),
                with_default(
                    field("image_delay", d, "How long an unused image stays."),
                    "\"3m\"",
                ),
                with_default(
                    field("container", b, "Removes a task's container with the task."),
                    "true",
                ),
                nested(
                    "dangling_containers",
                    "block",
                    "Reaps containers Drover made but no longer tracks.",
                    vec![
                        with_default(field("enabled", b, "Runs the reaper."), "true"),
                        with_default(field("period", d, "How often it runs."), "\"5m\""),
                        with_default(
                            field("creation_grace", d, "Leaves containers younger than this."),
                            "\"5m\"",
                        ),
                        with_default(
                            field("dry_run", b, "Only logs what it would remove."),
                            "false",
                        ),
                    ],
                ),
            ],
        ),
        with_default(
            field(
                "disable_log_collection",
                b,
                "Does not follow containers' logs into alloc/logs.",
            ),
            "false",
        ),
    ]
}
