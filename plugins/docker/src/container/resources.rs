//! The task's resources as the engine's cgroup limits, as Nomad sets them.

use bollard::models::{HostConfig, ResourcesUlimits};
use drover_plugin_sdk::proto::driver::Resources;

use super::SpecError;
use crate::config::TaskConfig;

/// The CFS period Nomad uses unless `cpu_cfs_period` says otherwise (microseconds).
pub const DEFAULT_CFS_PERIOD_US: i64 = 100_000;
/// The engine's smallest CPU weight.
const MIN_CPU_SHARES: i64 = 2;

const MB: i64 = 1024 * 1024;

/// (hard limit, reservation) in bytes: a hard limit above `memory` (the config's
/// `memory_hard_limit`, else `memory_max`) makes `memory` the reservation.
pub fn memory_limits(cfg: &TaskConfig, res: &Resources) -> Result<(i64, i64), SpecError> {
    let memory = res.memory_mb.max(0);
    let hard = match cfg.memory_hard_limit {
        Some(h) if h < 0 => {
            return Err(SpecError(format!(
                "memory_hard_limit {h} must not be negative"
            )));
        }
        Some(h) if h > 0 => h,
        _ => res.memory_max_mb.max(0),
    };
    if hard > memory {
        return Ok((hard.saturating_mul(MB), memory.saturating_mul(MB)));
    }
    Ok((memory.saturating_mul(MB), 0))
}

/// A cpuset list: digits, commas and ranges.
fn check_cpuset(s: &str) -> Result<(), SpecError> {
    let ok = !s.is_empty()
        && s.split(',').all(|part| {
            let mut it = part.splitn(2, '-');
            let a = it.next().unwrap_or("");
            let num =
                |x: &str| !x.is_empty() && x.len() <= 5 && x.bytes().all(|b| b.is_ascii_digit());
            num(a) && it.next().is_none_or(num)
        });
    if ok {
        Ok(())
    } else {
        Err(SpecError(format!(
            "cpuset_cpus {s:?} is not a list of CPUs (e.g. \"0-2,4\")"
        )))
    }
}

/// Sets memory, CPU weight or quota, and the cpuset on `hc`. `core_mhz` is one core's
/// share of the node's compute (what `cpu` is counted in).
pub fn apply(
    hc: &mut HostConfig,
    cfg: &TaskConfig,
    res: &Resources,
    core_mhz: u64,
) -> Result<(), SpecError> {
    let (hard, reservation) = memory_limits(cfg, res)?;
    if hard > 0 {
        hc.memory = Some(hard);
        // No swap beyond the limit, as Nomad.
        hc.memory_swap = Some(hard);
    }
    if reservation > 0 {
        hc.memory_reservation = Some(reservation);
    }
    hc.cpu_shares = Some(res.cpu_mhz.max(MIN_CPU_SHARES));
    if cfg.cpu_hard_limit {
        let period = cfg.cpu_cfs_period.unwrap_or(DEFAULT_CFS_PERIOD_US);
        if !(1000..=1_000_000).contains(&period) {
            return Err(SpecError(format!(
                "cpu_cfs_period {period} must be between 1000 and 1000000 microseconds"
            )));
        }
        let mhz = core_mhz.max(1) as i64;
        let quota = (period.saturating_mul(res.cpu_mhz.max(1)) / mhz).max(1000);
        hc.cpu_period = Some(period);
        hc.cpu_quota = Some(quota);
    }
    if !res.core_ids.is_empty() {
        let list: Vec<String> = res.core_ids.iter().map(u32::to_string).collect();
        hc.cpuset_cpus = Some(list.join(","));
    } else if let Some(c) = cfg.cpuset_cpus.as_deref().filter(|c| !c.is_empty()) {
        check_cpuset(c)?;
        hc.cpuset_cpus = Some(c.to_string());
    }
    Ok(())
}

const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `ulimit { nofile = "1024:2048" }`: soft[:hard].
pub fn ulimits(cfg: &TaskConfig) -> Result<Vec<ResourcesUlimits>, SpecError> {
    cfg.ulimit
        .iter()
        .map(|(name, v)| {
            if !ULIMITS.contains(&name.as_str()) {
                return Err(SpecError(format!(
                    "ulimit {name:?} is not a resource limit"
                )));
            }
            let bad = || {
                SpecError(format!(
                    "ulimit {name} = {v:?}: expected \"soft\" or \"soft:hard\""
                ))
            };
            let (soft, hard) = match v.split_once(':') {
                Some((s, h)) => (s.trim(), h.trim()),
                None => (v.trim(), v.trim()),
            };
            let soft: i64 = soft.parse().map_err(|_| bad())?;
            let hard: i64 = hard.parse().map_err(|_| bad())?;
            if soft < 0 || hard < soft {
                return Err(bad());
            }
            Ok(ResourcesUlimits {
                name: Some(name.clone()),
                soft: Some(soft),
                hard: Some(hard),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: i64, mem: i64, max: i64) -> Resources {
        Resources {
            cpu_mhz: cpu,
            memory_mb: mem,
            memory_max_mb: max,
            ..Default::default()
        }
    }

    #[test]
    fn memory_as_nomad() {
        let cfg = TaskConfig::default();
        assert_eq!(memory_limits(&cfg, &res(100, 64, 0)).unwrap(), (64 * MB, 0));
        assert_eq!(
            memory_limits(&cfg, &res(100, 64, 128)).unwrap(),
            (128 * MB, 64 * MB)
        );
        let cfg = TaskConfig {
            memory_hard_limit: Some(256),
            ..Default::default()
        };
        assert_eq!(
            memory_limits(&cfg, &res(100, 64, 128)).unwrap(),
            (256 * MB, 64 * MB)
        );
        let cfg = TaskConfig {
            memory_hard_limit: Some(-1),
            ..Default::default()
        };
        assert!(memory_limits(&cfg, &res(100, 64, 0)).is_err());
    }

    #[test]
    fn cpu_shares_quota_and_cores() {
        let mut hc = HostConfig::default();
        let cfg = TaskConfig {
            cpu_hard_limit: true,
            cpuset_cpus: Some("0-1".into()),
            ..Default::default()
        };
        apply(&mut hc, &cfg, &res(500, 64, 0), 1000).unwrap();
        assert_eq!(hc.cpu_shares, Some(500));
        assert_eq!(hc.cpu_period, Some(100_000));
        assert_eq!(hc.cpu_quota, Some(50_000), "half a core");
        assert_eq!(hc.cpuset_cpus.as_deref(), Some("0-1"));
        assert_eq!(hc.memory, Some(64 * MB));
        let mut r = res(0, 0, 0);
        r.core_ids = vec![1, 3];
        let mut hc = HostConfig::default();
        apply(&mut hc, &cfg, &r, 1000).unwrap();
        assert_eq!(
            hc.cpuset_cpus.as_deref(),
            Some("1,3"),
            "the scheduler's cores win"
        );
        assert_eq!(hc.cpu_shares, Some(2));
        for bad in ["a", "1-", "0,,1", "1;2", "99999999"] {
            let cfg = TaskConfig {
                cpuset_cpus: Some(bad.into()),
                ..Default::default()
            };
            assert!(
                apply(&mut HostConfig::default(), &cfg, &res(1, 1, 0), 1000).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn ulimit_strings() {
        let cfg = TaskConfig {
            ulimit: [
                ("nofile".to_string(), "1024:2048".to_string()),
                ("nproc".into(), "64".into()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let u = ulimits(&cfg).unwrap();
        assert_eq!((u[0].soft, u[0].hard), (Some(1024), Some(2048)));
        assert_eq!((u[1].soft, u[1].hard), (Some(64), Some(64)));
        for (k, v) in [("nofile", "2:1"), ("nofile", "x"), ("bogus", "1")] {
            let cfg = TaskConfig {
                ulimit: [(k.to_string(), v.to_string())].into_iter().collect(),
                ..Default::default()
            };
            assert!(ulimits(&cfg).is_err(), "{k}={v}");
        }
    }
}
