//! Read-only, structured diagnostic tools: everything a guest may learn
//! about the host comes from here, so this is the whole of what a session
//! can see, and none of it can change the host.
//!
//! Each tool reads /proc and /sys directly (a helper command only where
//! the kernel offers no file: `dmesg`, `systemctl`) and returns JSON with
//! fixed field names, because guest runners parse it. [`call`] is the one
//! way out: every string of every result is masked, then the output is
//! bounded to [`MAX_OUTPUT_BYTES`] (lists shortened, rows dropped and
//! counted in `"omitted": {"<list>": n}` so the result stays valid JSON,
//! and only then the text cut with a marker), in that order (see
//! `output.rs`). A tool that cuts a field itself (command lines, log
//! lines) masks it before the cut, for the same reason. Tools are
//! synchronous; the sandbox host runs them on a blocking thread.
//!
//! - `args.rs`: argument parsing with errors that name the arg
//! - `cmd.rs`: helper commands: no stdin, timeout, bounded output
//! - `procfs.rs`: reading /proc; pure parsers over its text (fixture tests)
//! - `system.rs`: cpu, memory, uptime, fd_usage, heartbeat figures
//! - `storage.rs`: disk_usage, mounts
//! - `net.rs`: network_interfaces, tcp_summary
//! - `procs.rs`: top_processes
//! - `logs.rs`: kernel_log, failed_units
//! - `output.rs`: what every result goes through: mask, shorten, cut
//! - `mask/`: secret masking (shapes, keys, per-program flags)
//! - `tests_host.rs`: every tool run for real on this host

mod args;
mod cmd;
mod logs;
mod mask;
mod net;
mod output;
mod procfs;
mod procs;
mod storage;
mod system;

pub(crate) use mask::mask_secrets;
pub(crate) use system::{cpu_busy_pct_since_last, mem_used_pct};

#[cfg(test)]
mod tests_host;

use serde_json::Value;

/// One tool in the catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolInfo {
    /// Name passed to [`call`].
    pub name: &'static str,
    /// One line saying what it returns.
    pub description: &'static str,
    /// JSON Schema of its arguments.
    pub params_schema: &'static str,
}

/// Largest tool output in bytes.
pub(crate) const MAX_OUTPUT_BYTES: usize = 32 * 1024;

const NO_ARGS: &str = r#"{"type":"object","properties":{},"additionalProperties":false}"#;

/// A catalog entry and how to run it.
struct Tool {
    info: ToolInfo,
    run: fn(&args::Args) -> Result<Value, String>,
    /// Whether oversized lists lose their first rows (oldest log lines)
    /// rather than their last (least important).
    drop_from_front: bool,
}

const TOOLS: [Tool; 11] = [
    Tool {
        info: ToolInfo {
            name: "cpu",
            description: "CPU busy/iowait/steal percent (sampled over 200 ms), core count, load averages",
            params_schema: NO_ARGS,
        },
        run: system::cpu,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "memory",
            description: "memory and swap totals, use and percentages from /proc/meminfo",
            params_schema: NO_ARGS,
        },
        run: system::memory,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "disk_usage",
            description: "space and inode use of every real filesystem",
            params_schema: NO_ARGS,
        },
        run: storage::disk_usage,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "mounts",
            description: "every mount: device, mount point, type, read-only flag, options",
            params_schema: NO_ARGS,
        },
        run: storage::mounts,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "top_processes",
            description: "top processes by CPU (sampled over 200 ms) or by memory, command lines masked",
            params_schema: r#"{"type":"object","properties":{"by":{"type":"string","enum":["cpu","memory"],"default":"cpu"},"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        },
        run: procs::top_processes,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "network_interfaces",
            description: "network interfaces with state, MTU, MAC and traffic/error counters",
            params_schema: NO_ARGS,
        },
        run: net::interfaces,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "tcp_summary",
            description: "TCP sockets by state and the listening ports (IPv4 and IPv6)",
            params_schema: NO_ARGS,
        },
        run: net::tcp_summary,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "uptime",
            description: "uptime, boot time, hostname, kernel release, OS name",
            params_schema: NO_ARGS,
        },
        run: system::uptime,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "fd_usage",
            description: "system-wide file descriptor use and the processes holding the most",
            params_schema: r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        },
        run: system::fd_usage,
        drop_from_front: false,
    },
    Tool {
        info: ToolInfo {
            name: "kernel_log",
            description: "the last lines of the kernel log (/dev/kmsg, else dmesg), secrets masked",
            params_schema: r#"{"type":"object","properties":{"lines":{"type":"integer","minimum":1,"maximum":500,"default":50}},"additionalProperties":false}"#,
        },
        run: logs::kernel_log,
        drop_from_front: true,
    },
    Tool {
        info: ToolInfo {
            name: "failed_units",
            description: "failed systemd units, or why systemd is not available",
            params_schema: NO_ARGS,
        },
        run: logs::failed_units,
        drop_from_front: false,
    },
];

/// Every tool, in a stable order.
pub(crate) fn catalog() -> &'static [ToolInfo] {
    static CATALOG: std::sync::OnceLock<Vec<ToolInfo>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| TOOLS.iter().map(|t| t.info).collect())
}

/// Runs one tool. `args_json` is a JSON object (`{}` or `""` for none).
/// Ok is the JSON result, secrets masked, at most [`MAX_OUTPUT_BYTES`];
/// Err is a one-line message fit to show an operator, secrets masked too.
pub fn call(name: &str, args_json: &str) -> Result<String, String> {
    let Some(tool) = TOOLS.iter().find(|t| t.info.name == name) else {
        let known: Vec<&str> = TOOLS.iter().map(|t| t.info.name).collect();
        return Err(format!(
            "unknown tool \"{name}\" (known: {})",
            known.join(", ")
        ));
    };
    let args = args::Args::parse(name, args_json, &schema_keys(tool.info.params_schema))?;
    let value = (tool.run)(&args).map_err(|e| mask_secrets(&format!("tool {name}: {e}")))?;
    Ok(output::finish(value, tool.drop_from_front))
}

/// Argument names a schema declares.
fn schema_keys(schema: &str) -> Vec<String> {
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
        assert_eq!(
            names,
            [
                "cpu",
                "memory",
                "disk_usage",
                "mounts",
                "top_processes",
                "network_interfaces",
                "tcp_summary",
                "uptime",
                "fd_usage",
                "kernel_log",
                "failed_units"
            ]
        );
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
