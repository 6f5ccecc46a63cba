//! Read-only, structured diagnostic tools: everything a guest may learn
//! about the host comes from here, so this is the whole of what a session
//! can see, and none of it can change the host.
//!
//! Each tool reads /proc and /sys directly (a helper command only where
//! the kernel offers no file: `dmesg`, `systemctl`, `journalctl`, `nft`)
//! and returns JSON with fixed field names, because guest runners parse
//! it. [`call_with`] (tests also use `call`, which allows no files or
//! targets) is the one way out: every string of every result is masked,
//! then the output is bounded to [`output::MAX_OUTPUT_BYTES`] (lists shortened,
//! rows dropped and counted in `"omitted": {"<list>": n}` so the result
//! stays valid JSON, and only then the text cut with a marker), in that
//! order (see
//! `output.rs`). A tool that cuts a field itself (command lines, log
//! lines) masks it before the cut, for the same reason. Tools are
//! synchronous; the sandbox host runs them on a blocking thread.
//!
//! - `args.rs`: argument parsing with errors that name the arg
//! - `targets.rs`: the operator's allow-lists (`[tools]`): paths, endpoints
//! - `cmd.rs`: helper commands: no stdin, timeout, bounded output
//! - `procfs.rs`: reading /proc; pure parsers over its text (fixture tests)
//! - `system.rs`: cpu, memory, uptime, fd_usage, heartbeat figures
//! - `storage.rs`: disk_usage, mounts
//! - `net.rs`: network_interfaces, tcp_summary
//! - `procs.rs`: top_processes
//! - `logs.rs`: kernel_log, failed_units; kernel records, systemd presence
//! - `kernel/`: pressure, cgroups, OOM, kernel log search, interrupts,
//!   NUMA, thermal, sysctl, security modules, coredumps, vmstat
//! - `block/`: disk I/O, block devices, inodes, LVM, md RAID
//! - `netstack/`: retransmits, connections, listeners, routes, neighbours,
//!   addresses, conntrack, sockstat, softnet
//! - `process/`: zombies, threads, open files, process counts, fd limits
//! - `service/`: systemd units and journal, allow-listed logs, files and
//!   certificates, NTP, host identity, firewall
//! - `remote/`: the network-touching tools, allow-listed targets only
//! - `x509.rs`: certificate validity and names from DER
//! - `tool.rs`: the `Tool` type the groups build their catalogs from
//! - `output.rs`: what every result goes through: mask, shorten, cut
//! - `mask/`: secret masking (shapes, keys, per-program flags)
//! - `tests_host.rs`: every tool run for real on this host
//!
//! Fixtures of captured /proc, /sys and command output are in `fixtures/`.
//! A tool that cannot work here (no binary, no privilege, no such kernel
//! feature) answers `{"available": false, "reason": …}` rather than failing.

mod args;
mod block;
mod cmd;
mod kernel;
mod logs;
mod mask;
mod net;
mod netstack;
pub(crate) mod output;
mod process;
mod procfs;
mod procs;
mod remote;
mod service;
mod storage;
mod system;
mod targets;
mod tool;
mod x509;

pub(crate) use args::Args;
pub(crate) use mask::{mask_json, mask_secrets, masked_cut};
#[cfg(test)]
pub(crate) use remote::{CALL_BUDGET, DEFAULT_TIMEOUT_MS};
pub(crate) use system::{cpu_busy_pct_since_last, mem_used_pct};
pub use targets::{Targets, ToolConfig};

#[cfg(test)]
mod tests_host;

use serde_json::Value;

#[cfg(test)]
use output::MAX_OUTPUT_BYTES;
pub(crate) use tool::ToolInfo;
use tool::{NO_ARGS, Tool};

/// The first tools, whose code predates the groups below.
const BASE: &[Tool] = &[
    Tool::new(
        "cpu",
        "CPU busy/iowait/steal percent (sampled over 200 ms), core count, load averages",
        NO_ARGS,
        system::cpu,
    ),
    Tool::new(
        "memory",
        "memory and swap totals, use and percentages from /proc/meminfo",
        NO_ARGS,
        system::memory,
    ),
    Tool::new(
        "disk_usage",
        "space and inode use of every real filesystem",
        NO_ARGS,
        storage::disk_usage,
    ),
    Tool::new(
        "mounts",
        "every mount: device, mount point, type, read-only flag, options",
        NO_ARGS,
        storage::mounts,
    ),
    Tool::new(
        "top_processes",
        "top processes by CPU (sampled over 200 ms) or by memory, command lines masked",
        r#"{"type":"object","properties":{"by":{"type":"string","enum":["cpu","memory"],"default":"cpu"},"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        procs::top_processes,
    ),
    Tool::new(
        "network_interfaces",
        "network interfaces with state, MTU, MAC and traffic/error counters",
        NO_ARGS,
        net::interfaces,
    ),
    Tool::new(
        "tcp_summary",
        "TCP sockets by state and the listening ports (IPv4 and IPv6)",
        NO_ARGS,
        net::tcp_summary,
    ),
    Tool::new(
        "uptime",
        "uptime, boot time, hostname, kernel release, OS name",
        NO_ARGS,
        system::uptime,
    ),
    Tool::new(
        "fd_usage",
        "system-wide file descriptor use and the processes holding the most",
        r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        system::fd_usage,
    ),
    Tool::new(
        "kernel_log",
        "the last lines of the kernel log (/dev/kmsg, else dmesg), secrets masked",
        r#"{"type":"object","properties":{"lines":{"type":"integer","minimum":1,"maximum":500,"default":50}},"additionalProperties":false}"#,
        logs::kernel_log,
    )
    .logs(),
    Tool::new(
        "failed_units",
        "failed systemd units, or why systemd is not available",
        NO_ARGS,
        logs::failed_units,
    ),
];

/// Every group of tools, in catalog order.
const GROUPS: [&[Tool]; 7] = [
    BASE,
    kernel::TOOLS,
    block::TOOLS,
    netstack::TOOLS,
    process::TOOLS,
    service::TOOLS,
    remote::TOOLS,
];

fn tools() -> impl Iterator<Item = &'static Tool> {
    GROUPS.iter().flat_map(|g| g.iter())
}

/// Every tool, in a stable order.
pub(crate) fn catalog() -> &'static [ToolInfo] {
    static CATALOG: std::sync::OnceLock<Vec<ToolInfo>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| tools().map(|t| t.info).collect())
}

/// Runs one tool with no operator allow-lists (network tools and
/// file tools then refuse every target). See [`call_with`].
#[cfg(test)]
pub(crate) fn call(name: &str, args_json: &str) -> Result<String, String> {
    static NONE: std::sync::OnceLock<std::sync::Arc<ToolConfig>> = std::sync::OnceLock::new();
    call_with(NONE.get_or_init(Default::default), name, args_json)
}

/// Runs one tool under the operator's allow-lists `config`. `args_json`
/// is a JSON object (`{}` or `""` for none). Ok is the JSON result,
/// secrets masked, at most [`output::MAX_OUTPUT_BYTES`]; Err is a one-line
/// message fit to show an operator, secrets masked too.
pub(crate) fn call_with(
    config: &std::sync::Arc<ToolConfig>,
    name: &str,
    args_json: &str,
) -> Result<String, String> {
    let Some(tool) = tools().find(|t| t.info.name == name) else {
        let known: Vec<&str> = tools().map(|t| t.info.name).collect();
        return Err(format!(
            "unknown tool \"{name}\" (known: {})",
            known.join(", ")
        ));
    };
    let args = args::Args::parse(name, args_json, &schema_keys(tool.info.params_schema))?
        .with_config(config.clone());
    let value = (tool.run)(&args).map_err(|e| mask_secrets(&format!("tool {name}: {e}")))?;
    Ok(output::finish(value, tool.drop_from_front))
}

/// Argument names a schema declares.
pub(crate) fn schema_keys(schema: &str) -> Vec<String> {
    serde_json::from_str::<Value>(schema)
        .ok()
        .and_then(|v| {
            v.get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_in_the_catalog_has_a_schema_and_a_description() {
        let names: Vec<&str> = catalog().iter().map(|t| t.name).collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "duplicate names: {names:?}");
        for n in &names {
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "tool names are snake_case: {n}"
            );
        }
        for t in catalog() {
            let schema: Value = serde_json::from_str(t.params_schema).expect("schema is JSON");
            assert_eq!(schema["type"], "object", "{}", t.name);
            assert_eq!(schema["additionalProperties"], false, "{}", t.name);
            assert!(schema["properties"].is_object(), "{}", t.name);
            assert!(!t.description.is_empty() && !t.description.contains('\n'));
        }
    }

    #[test]
    fn unknown_tools_list_the_known_ones() {
        let e = call("rm_rf", "{}").unwrap_err();
        let known: Vec<&str> = catalog().iter().map(|t| t.name).collect();
        assert_eq!(
            e,
            format!("unknown tool \"rm_rf\" (known: {})", known.join(", "))
        );
    }
}
