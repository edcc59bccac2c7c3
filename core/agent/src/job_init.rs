//! `drover job init`: writes an example job file to start from (Nomad's name,
//! `example.nomad.hcl`), never over an existing file.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

/// The file `job init` writes when given none (Nomad's default).
pub const DEFAULT_FILE: &str = "example.nomad.hcl";

/// The example, with comments explaining each block.
const EXAMPLE: &str = r#"# An example job: one group of one task, run by the docker driver.
# Run it with `drover job run example.nomad.hcl`; see what would change first with
# `drover job plan example.nomad.hcl`.
job "example" {
  # The datacenters the job may be placed in ("*" matches every one).
  datacenters = ["*"]

  # "service" jobs run until stopped; "batch" jobs run to completion.
  type = "service"

  # A group's tasks are placed together, on one node.
  group "cache" {
    # How many instances of the group to run.
    count = 1

    # The group's ports: "db" is given a dynamic host port, mapped to 6379 inside.
    network {
      port "db" {
        to = 6379
      }
    }

    # What happens when a task fails: restart it in place a few times first.
    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "fail"
    }

    task "redis" {
      driver = "docker"

      config {
        image          = "redis:7"
        ports          = ["db"]
        auth_soft_fail = true
      }

      # What the task needs from the node: CPU in MHz, memory in MiB.
      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
"#;

/// The example without its comments (`-short`).
fn short_example() -> String {
    EXAMPLE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Writes the example to `file` (default `example.nomad.hcl`); an existing file (or link)
/// is refused, not overwritten.
pub fn run(file: Option<&Path>, short: bool) -> anyhow::Result<i32> {
    let path = file.unwrap_or(Path::new(DEFAULT_FILE));
    let text = if short {
        short_example()
    } else {
        EXAMPLE.to_string()
    };
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("Job '{}' already exists", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("Example job file written to {}", path.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_parse_and_an_existing_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DEFAULT_FILE);
        for short in [false, true] {
            let _ = std::fs::remove_file(&file);
            assert_eq!(run(Some(&file), short).unwrap(), 0);
            let job = crate::cli::load_job(&file, false, &Default::default())
                .unwrap()
                .job;
            assert_eq!(job.id, "example");
            assert_eq!(job.groups[0].tasks[0].name, "redis");
            let text = std::fs::read_to_string(&file).unwrap();
            assert_eq!(text.contains("# "), !short);
        }
        std::fs::write(&file, "mine").unwrap();
        let e = run(Some(&file), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Job '{}' already exists", file.display())
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    }
}
