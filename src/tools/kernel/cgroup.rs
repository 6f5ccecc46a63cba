//! cgroup_usage: one cgroup's memory, CPU throttling, pids and OOM events,
//! under cgroup v2 (unified) or v1 (one hierarchy per controller).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde_json::{Value, json};

use crate::tools::args::Args;

/// Where cgroupfs is mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// A `key value` per line file (cpu.stat, memory.events, memory.stat).
pub(crate) fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A limit file: a number, or `max` (v2) / a near-2^63 value (v1) for
/// no limit (None).
pub(crate) fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.split_whitespace().next()?.parse().ok()?;
    // v1 writes "no limit" as PAGE_COUNTER_MAX in bytes, just under 2^63.
    (n < (1u64 << 62)).then_some(n)
}

/// v2 `cpu.max`: `quota period` or `max period` → CPUs allowed.
pub(crate) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut f = text.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next()?.parse().ok()?;
    (period > 0.0).then(|| (quota / period * 100.0).round() / 100.0)
}

/// The sub-path of a cgroup, checked: relative under the root, no `..`.
fn clean(sub: &str) -> Result<String, String> {
    let p = Path::new(sub);
    let ok = p
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !ok {
        return Err(format!(
            "\"path\" {sub:?} must not contain . or .. components"
        ));
    }
    Ok(sub.trim_start_matches('/').to_string())
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// Figures of the cgroup `sub` under a v2 mount at `root`.
pub(crate) fn v2(root: &Path, sub: &str) -> Result<Value, String> {
    let dir = root.join(sub);
    if !dir.is_dir() {
        return Err(format!(
            "no cgroup {:?} under {}",
            format!("/{sub}"),
            root.display()
        ));
    }
    let num = |f: &str| read(&dir, f).and_then(|t| parse_limit(&t));
    let events = read(&dir, "memory.events")
        .map(|t| parse_keyed(&t))
        .unwrap_or_default();
    let cpu = read(&dir, "cpu.stat")
        .map(|t| parse_keyed(&t))
        .unwrap_or_default();
    let mem = num("memory.current");
    let max = num("memory.max");
    Ok(json!({
        "version": 2,
        "path": format!("/{sub}"),
        "memory_bytes": mem,
        "memory_max_bytes": max,
        "memory_high_bytes": num("memory.high"),
        "memory_used_pct": pct(mem, max),
        "swap_bytes": num("memory.swap.current"),
        "oom_events": events.get("oom").copied().unwrap_or(0),
        "oom_kills": events.get("oom_kill").copied().unwrap_or(0),
        "memory_max_hits": events.get("max").copied().unwrap_or(0),
        "cpu_usage_usec": cpu.get("usage_usec").copied(),
        "cpu_limit_cpus": read(&dir, "cpu.max").and_then(|t| parse_cpu_max(&t)),
        "cpu_periods": cpu.get("nr_periods").copied().unwrap_or(0),
        "cpu_throttled_periods": cpu.get("nr_throttled").copied().unwrap_or(0),
        "cpu_throttled_usec": cpu.get("throttled_usec").copied().unwrap_or(0),
        "pids": num("pids.current"),
        "pids_max": num("pids.max"),
        "children": children(&dir),
    }))
}

/// Figures of the cgroup `sub` under a v1 layout at `root`.
pub(crate) fn v1(root: &Path, sub: &str) -> Result<Value, String> {
    let mem_dir = root.join("memory").join(sub);
    let cpu_dir = root.join("cpu").join(sub);
    let acct_dir = root.join("cpuacct").join(sub);
    let pids_dir = root.join("pids").join(sub);
    if ![&mem_dir, &cpu_dir, &pids_dir].iter().any(|d| d.is_dir()) {
        return Err(format!(
            "no cgroup {:?} under {} (v1)",
            format!("/{sub}"),
            root.display()
        ));
    }
    let num = |d: &Path, f: &str| read(d, f).and_then(|t| parse_limit(&t));
    let oom = read(&mem_dir, "memory.oom_control")
        .map(|t| parse_keyed(&t))
        .unwrap_or_default();
    let cpu = read(&cpu_dir, "cpu.stat")
        .map(|t| parse_keyed(&t))
        .unwrap_or_default();
    let quota = read(&cpu_dir, "cpu.cfs_quota_us").and_then(|t| t.trim().parse::<i64>().ok());
    let period = read(&cpu_dir, "cpu.cfs_period_us").and_then(|t| t.trim().parse::<i64>().ok());
    let cpus = match (quota, period) {
        (Some(q), Some(p)) if q > 0 && p > 0 => Some((q as f64 / p as f64 * 100.0).round() / 100.0),
        _ => None,
    };
    let mem = num(&mem_dir, "memory.usage_in_bytes");
    let max = num(&mem_dir, "memory.limit_in_bytes");
    Ok(json!({
        "version": 1,
        "path": format!("/{sub}"),
        "memory_bytes": mem,
        "memory_max_bytes": max,
        "memory_used_pct": pct(mem, max),
        "memory_limit_hits": num(&mem_dir, "memory.failcnt").unwrap_or(0),
        "oom_kills": oom.get("oom_kill").copied().unwrap_or(0),
        "under_oom": oom.get("under_oom").copied().unwrap_or(0) == 1,
        "cpu_usage_usec": num(&acct_dir, "cpuacct.usage").map(|ns| ns / 1000),
        "cpu_limit_cpus": cpus,
        "cpu_periods": cpu.get("nr_periods").copied().unwrap_or(0),
        "cpu_throttled_periods": cpu.get("nr_throttled").copied().unwrap_or(0),
        "cpu_throttled_usec": cpu.get("throttled_time").copied().unwrap_or(0) / 1000,
        "pids": num(&pids_dir, "pids.current"),
        "pids_max": num(&pids_dir, "pids.max"),
        "children": children(&mem_dir),
    }))
}

fn pct(part: Option<u64>, whole: Option<u64>) -> Option<f64> {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0 => Some(((p as f64 * 1000.0 / w as f64).round()) / 10.0),
        _ => None,
    }
}

/// Names of the child cgroups (at most 50, sorted).
fn children(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.truncate(50);
    names
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let sub = match (args.string("unit", 256)?, args.string("path", 1024)?) {
        (Some(_), Some(_)) => return Err("give \"unit\" or \"path\", not both".into()),
        (Some(unit), None) => {
            if unit.contains('/') || unit.starts_with('.') {
                return Err(format!(
                    "\"unit\" {unit:?} must be a unit name such as nginx.service"
                ));
            }
            let unit = if unit.contains('.') {
                unit
            } else {
                format!("{unit}.service")
            };
            format!("system.slice/{unit}")
        }
        (None, path) => clean(path.as_deref().unwrap_or("/"))?,
    };
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        v2(root, &sub)
    } else if root.join("memory").is_dir() || root.join("cpu").is_dir() {
        v1(root, &sub)
    } else {
        Ok(crate::tools::logs::unavailable(format!(
            "no cgroup filesystem at {ROOT}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    #[test]
    fn v2_cgroup_figures() {
        let d = tree(&[
            ("system.slice/nginx.service/memory.current", "536870912\n"),
            ("system.slice/nginx.service/memory.max", "1073741824\n"),
            ("system.slice/nginx.service/memory.high", "max\n"),
            (
                "system.slice/nginx.service/memory.events",
                include_str!("../fixtures/cgroup_v2_memory.events"),
            ),
            (
                "system.slice/nginx.service/cpu.stat",
                include_str!("../fixtures/cgroup_v2_cpu.stat"),
            ),
            ("system.slice/nginx.service/cpu.max", "150000 100000\n"),
            ("system.slice/nginx.service/pids.current", "12\n"),
            ("system.slice/nginx.service/pids.max", "max\n"),
            ("system.slice/nginx.service/worker/cgroup.procs", ""),
        ]);
        let v = v2(d.path(), "system.slice/nginx.service").expect("v2");
        assert_eq!(v["memory_used_pct"], 50.0);
        assert_eq!(v["memory_high_bytes"], Value::Null);
        assert_eq!(v["oom_kills"], 2);
        assert_eq!(v["cpu_limit_cpus"], 1.5);
        assert_eq!(v["cpu_throttled_periods"], 42);
        assert_eq!(v["cpu_throttled_usec"], 1234567);
        assert_eq!(v["pids"], 12);
        assert_eq!(v["pids_max"], Value::Null);
        assert_eq!(v["children"], json!(["worker"]));
        let e = v2(d.path(), "nope").unwrap_err();
        assert!(e.contains("no cgroup \"/nope\""), "{e}");
    }

    #[test]
    fn v1_cgroup_figures() {
        let d = tree(&[
            ("memory/app/memory.usage_in_bytes", "100\n"),
            ("memory/app/memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory/app/memory.failcnt", "3\n"),
            (
                "memory/app/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            ),
            ("cpu/app/cpu.cfs_quota_us", "-1\n"),
            ("cpu/app/cpu.cfs_period_us", "100000\n"),
            (
                "cpu/app/cpu.stat",
                "nr_periods 10\nnr_throttled 2\nthrottled_time 5000000\n",
            ),
            ("cpuacct/app/cpuacct.usage", "2000000\n"),
        ]);
        let v = v1(d.path(), "app").expect("v1");
        assert_eq!(v["memory_max_bytes"], Value::Null, "unlimited");
        assert_eq!(v["memory_used_pct"], Value::Null);
        assert_eq!(v["oom_kills"], 1);
        assert_eq!(v["memory_limit_hits"], 3);
        assert_eq!(v["cpu_limit_cpus"], Value::Null);
        assert_eq!(v["cpu_throttled_usec"], 5000);
        assert_eq!(v["cpu_usage_usec"], 2000);
    }

    #[test]
    fn paths_cannot_climb_out() {
        let a = Args::of(r#"{"path":"/../../etc"}"#, &["path", "unit"]);
        assert!(run(&a).unwrap_err().contains(".."));
        let a = Args::of(r#"{"unit":"../x"}"#, &["path", "unit"]);
        assert!(run(&a).unwrap_err().contains("unit name"));
        let v = run(&Args::empty()).expect("root cgroup");
        assert!(v["version"].is_u64() || v["available"] == false, "{v}");
    }
}
