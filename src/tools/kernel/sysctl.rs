//! sysctl: kernel parameters, but only allow-listed ones: the built-in
//! list below (tuning that diagnoses need) plus `[tools] sysctl_keys`.
//! Some parameters are not meant for every eye (e.g. `kernel.random.*`
//! seeds, netfilter helpers), so the list is closed.

use serde_json::{Map, Value, json};

use crate::tools::args::Args;

/// Keys any session may read.
pub(crate) const BUILT_IN: [&str; 44] = [
    "fs.file-max",
    "fs.file-nr",
    "fs.nr_open",
    "fs.inotify.max_user_watches",
    "fs.inotify.max_user_instances",
    "fs.aio-max-nr",
    "kernel.pid_max",
    "kernel.threads-max",
    "kernel.tainted",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.hung_task_timeout_secs",
    "kernel.randomize_va_space",
    "kernel.core_pattern",
    "kernel.sched_autogroup_enabled",
    "vm.swappiness",
    "vm.overcommit_memory",
    "vm.overcommit_ratio",
    "vm.max_map_count",
    "vm.min_free_kbytes",
    "vm.dirty_ratio",
    "vm.dirty_background_ratio",
    "vm.vfs_cache_pressure",
    "vm.zone_reclaim_mode",
    "vm.panic_on_oom",
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.ipv4.ip_forward",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.conf.all.rp_filter",
    "net.netfilter.nf_conntrack_max",
];

/// The /proc/sys file of `key`; None for a key that is not a plain
/// dotted name.
pub(crate) fn key_path(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    ok.then(|| format!("/proc/sys/{}", key.replace('.', "/")))
}

/// Names of the taint flags set in `kernel.tainted` (bit order as in
/// the kernel's admin-guide/tainted-kernels).
pub(crate) fn taint_flags(value: u64) -> Vec<&'static str> {
    const FLAGS: [&str; 19] = [
        "proprietary module",
        "module force loaded",
        "kernel running on an out of specification system",
        "module force unloaded",
        "processor reported a Machine Check Exception",
        "bad page referenced or some unexpected page flags",
        "taint requested by userspace",
        "kernel died recently (OOPS or BUG)",
        "ACPI table overridden by user",
        "kernel issued warning",
        "staging driver was loaded",
        "workaround for platform firmware bug applied",
        "externally-built (out-of-tree) module was loaded",
        "unsigned module was loaded",
        "soft lockup occurred",
        "kernel has been live patched",
        "auxiliary taint",
        "kernel was built with the struct randomization plugin",
        "an in-kernel test has been run",
    ];
    (0..FLAGS.len())
        .filter(|b| value & (1 << b) != 0)
        .map(|b| FLAGS[b])
        .collect()
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let extra = &args.config().sysctl_keys;
    let allowed = |k: &str| BUILT_IN.contains(&k) || extra.iter().any(|e| e == k);
    let mut keys = args.strings("keys", 64, 128)?;
    if keys.is_empty() {
        keys = BUILT_IN
            .iter()
            .map(|k| k.to_string())
            .chain(extra.iter().cloned())
            .collect();
    }
    for k in &keys {
        if !allowed(k) {
            return Err(format!(
                "sysctl key {k:?} is not allow-listed: the built-in list or [tools] sysctl_keys must name it"
            ));
        }
    }
    let mut values = Map::new();
    let mut missing = Vec::new();
    for k in &keys {
        let Some(path) = key_path(k) else {
            missing.push(k.clone());
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
                values.insert(k.clone(), Value::String(t));
            }
            Err(_) => missing.push(k.clone()),
        }
    }
    let taint = values
        .get("kernel.tainted")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<u64>().ok())
        .map(taint_flags);
    Ok(json!({ "values": values, "unavailable": missing, "taint": taint }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::ToolConfig;

    #[test]
    fn keys_map_to_proc_sys_and_odd_keys_do_not() {
        assert_eq!(
            key_path("vm.swappiness").as_deref(),
            Some("/proc/sys/vm/swappiness")
        );
        assert_eq!(
            key_path("fs.inotify.max_user_watches").as_deref(),
            Some("/proc/sys/fs/inotify/max_user_watches")
        );
        for bad in ["", "vm..x", "vm/../etc", "a.b c", "../x"] {
            assert_eq!(key_path(bad), None, "{bad}");
        }
        assert_eq!(taint_flags(0), Vec::<&str>::new());
        assert_eq!(
            taint_flags(1 | 512),
            ["proprietary module", "kernel issued warning"]
        );
    }

    #[test]
    fn only_allow_listed_keys_are_read() {
        let a = Args::of(r#"{"keys":["vm.swappiness","kernel.tainted"]}"#, &["keys"]);
        let v = run(&a).expect("sysctl");
        assert!(v["values"]["vm.swappiness"].is_string(), "{v}");
        assert!(v["taint"].is_array(), "{v}");
        let a = Args::of(r#"{"keys":["kernel.random.boot_id"]}"#, &["keys"]);
        let e = run(&a).unwrap_err();
        assert!(e.contains("[tools] sysctl_keys"), "{e}");
        let cfg = ToolConfig {
            sysctl_keys: vec!["kernel.ostype".into()],
            ..ToolConfig::default()
        };
        let a = Args::of(r#"{"keys":"kernel.ostype"}"#, &["keys"]).with_config(cfg.into());
        let v = run(&a).expect("sysctl");
        assert_eq!(v["values"]["kernel.ostype"], "Linux");
        let all = run(&Args::empty()).expect("all");
        assert!(
            all["values"].as_object().is_some_and(|m| m.len() > 20),
            "{all}"
        );
    }
}
