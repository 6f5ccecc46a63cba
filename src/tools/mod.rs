//! Read-only, structured diagnostic tools: everything a guest may learn
//! about the host comes from here.
//!
//! Each tool reads /proc and /sys directly (a subprocess only where the
//! kernel offers no file: `dmesg`, `systemctl`), returns JSON with fixed
//! field names (guests parse it), and is bounded: at most
//! [`MAX_OUTPUT_BYTES`], cut with a marker. Secrets in command lines and log
//! lines are masked. Tools are synchronous; the sandbox runs them on a
//! blocking thread.
//!
//! - `args.rs`: argument parsing with errors that name the arg
//! - `procfs.rs`: pure parsers over /proc text (tested on fixtures)
//! - `system.rs`: cpu, memory, uptime, fd_usage
//! - `storage.rs`: disk_usage, mounts
//! - `net.rs`: network_interfaces, tcp_summary
//! - `procs.rs`: top_processes
//! - `logs.rs`: kernel_log, failed_units
//! - `mask.rs`: secret masking

mod args;
mod logs;
mod mask;
mod net;
mod procfs;
mod procs;
mod storage;
mod system;

pub use mask::mask_secrets;
pub use system::{cpu_busy_pct_since_last, mem_used_pct};

use serde_json::Value;

/// One tool in the catalog.
#[derive(Debug, Clone, Copy)]
pub struct ToolInfo {
    /// Name passed to [`call`].
    pub name: &'static str,
    /// One line saying what it returns.
    pub description: &'static str,
    /// JSON Schema of its arguments.
    pub params_schema: &'static str,
}

/// Largest tool output in bytes.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024;

const NO_ARGS: &str = r#"{"type":"object","properties":{},"additionalProperties":false}"#;

type ToolFn = fn(&args::Args) -> Result<Value, String>;

const TOOLS: [(ToolInfo, ToolFn); 11] = [
    (
        ToolInfo {
            name: "cpu",
            description: "CPU busy/iowait/steal percent (sampled over 200 ms), core count, load averages",
            params_schema: NO_ARGS,
        },
        system::cpu,
    ),
    (
        ToolInfo {
            name: "memory",
            description: "memory and swap totals, use and percentages from /proc/meminfo",
            params_schema: NO_ARGS,
        },
        system::memory,
    ),
    (
        ToolInfo {
            name: "disk_usage",
            description: "space and inode use of every real filesystem",
            params_schema: NO_ARGS,
        },
        storage::disk_usage,
    ),
    (
        ToolInfo {
            name: "mounts",
            description: "every mount: device, mount point, type, read-only flag, options",
            params_schema: NO_ARGS,
        },
        storage::mounts,
    ),
    (
        ToolInfo {
            name: "top_processes",
            description: "top processes by cpu (sampled over 200 ms) or by memory",
            params_schema: r#"{"type":"object","properties":{"by":{"type":"string","enum":["cpu","memory"],"default":"cpu"},"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        },
        procs::top_processes,
    ),
    (
        ToolInfo {
            name: "network_interfaces",
            description: "network interfaces with state, MTU, MAC and traffic/error counters",
            params_schema: NO_ARGS,
        },
        net::interfaces,
    ),
    (
        ToolInfo {
            name: "tcp_summary",
            description: "TCP sockets by state and the listening ports (IPv4 and IPv6)",
            params_schema: NO_ARGS,
        },
        net::tcp_summary,
    ),
    (
        ToolInfo {
            name: "uptime",
            description: "uptime, boot time, hostname, kernel release, OS name",
            params_schema: NO_ARGS,
        },
        system::uptime,
    ),
    (
        ToolInfo {
            name: "fd_usage",
            description: "system-wide file descriptor use and the processes holding the most",
            params_schema: r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":50,"default":10}},"additionalProperties":false}"#,
        },
        system::fd_usage,
    ),
    (
        ToolInfo {
            name: "kernel_log",
            description: "the last lines of the kernel log (when readable)",
            params_schema: r#"{"type":"object","properties":{"lines":{"type":"integer","minimum":1,"maximum":500,"default":50}},"additionalProperties":false}"#,
        },
        logs::kernel_log,
    ),
    (
        ToolInfo {
            name: "failed_units",
            description: "failed systemd units (when systemd runs)",
            params_schema: NO_ARGS,
        },
        logs::failed_units,
    ),
];

/// Every tool, in a stable order.
pub fn catalog() -> &'static [ToolInfo] {
    static CATALOG: std::sync::OnceLock<Vec<ToolInfo>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| TOOLS.iter().map(|(i, _)| *i).collect())
}

/// Runs one tool. `args_json` is a JSON object (`{}` or `""` for none).
/// Ok is the JSON result, at most [`MAX_OUTPUT_BYTES`]; Err is a one-line
/// message fit to show an operator.
pub fn call(name: &str, args_json: &str) -> Result<String, String> {
    let Some((info, f)) = TOOLS.iter().find(|(i, _)| i.name == name) else {
        let known: Vec<&str> = TOOLS.iter().map(|(i, _)| i.name).collect();
        return Err(format!(
            "unknown tool \"{name}\" (known: {})",
            known.join(", ")
        ));
    };
    let args = args::Args::parse(name, args_json, &schema_keys(info.params_schema))?;
    let value = f(&args).map_err(|e| format!("tool {name}: {e}"))?;
    Ok(cap_output(value.to_string()))
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

/// Cuts `text` so that text + marker fit in [`MAX_OUTPUT_BYTES`].
fn cap_output(text: String) -> String {
    if text.len() <= MAX_OUTPUT_BYTES {
        return text;
    }
    let marker = format!("\n…[truncated: output exceeded {MAX_OUTPUT_BYTES} bytes]");
    let keep = crate::util::truncate_utf8(&text, MAX_OUTPUT_BYTES - marker.len());
    format!("{keep}{marker}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, args: &str) -> Value {
        let out = call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.len() <= MAX_OUTPUT_BYTES);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name} gave invalid JSON: {e}"))
    }

    #[test]
    fn every_tool_in_the_catalog_has_a_schema_and_a_description() {
        assert_eq!(catalog().len(), TOOLS.len());
        for t in catalog() {
            let schema: Value = serde_json::from_str(t.params_schema).expect("schema is JSON");
            assert_eq!(schema["type"], "object", "{}", t.name);
            assert!(!t.description.is_empty());
        }
    }

    #[test]
    fn tools_return_their_documented_fields_on_this_host() {
        let cpu = run("cpu", "{}");
        for k in [
            "cores",
            "usage_pct",
            "iowait_pct",
            "steal_pct",
            "load1",
            "load5",
            "load15",
            "runnable",
            "total_tasks",
        ] {
            assert!(cpu.get(k).is_some(), "cpu.{k}: {cpu}");
        }
        assert!(cpu["cores"].as_u64().unwrap_or(0) >= 1);
        let mem = run("memory", "");
        for k in [
            "total_bytes",
            "available_bytes",
            "used_bytes",
            "used_pct",
            "free_bytes",
            "buffers_bytes",
            "cached_bytes",
            "swap_total_bytes",
            "swap_used_bytes",
            "swap_used_pct",
        ] {
            assert!(mem.get(k).is_some(), "memory.{k}: {mem}");
        }
        assert!(mem["total_bytes"].as_u64().unwrap_or(0) > 0);
        let disk = run("disk_usage", "{}");
        let fs = disk["filesystems"].as_array().expect("filesystems");
        assert!(!fs.is_empty(), "{disk}");
        assert!(fs.iter().any(|f| f["mount_point"] == "/"), "{disk}");
        let mounts = run("mounts", "{}");
        assert!(mounts["mounts"].as_array().is_some_and(|m| !m.is_empty()));
        let top = run("top_processes", r#"{"by":"memory","limit":3}"#);
        let procs = top["processes"].as_array().expect("processes");
        assert!(!procs.is_empty() && procs.len() <= 3, "{top}");
        assert!(
            procs[0]["rss_bytes"].as_u64().unwrap_or(0)
                >= procs[procs.len() - 1]["rss_bytes"].as_u64().unwrap_or(0)
        );
        let net = run("network_interfaces", "{}");
        assert!(
            net["interfaces"]
                .as_array()
                .is_some_and(|i| i.iter().any(|x| x["name"] == "lo")),
            "{net}"
        );
        let tcp = run("tcp_summary", "{}");
        assert!(tcp["total"].is_u64() && tcp["states"].is_object(), "{tcp}");
        let up = run("uptime", "{}");
        assert!(up["uptime_sec"].as_f64().unwrap_or(0.0) > 0.0);
        assert!(!up["kernel_release"].as_str().unwrap_or("").is_empty());
        let fd = run("fd_usage", r#"{"limit":2}"#);
        assert!(fd["max"].as_u64().unwrap_or(0) > 0, "{fd}");
        let units = run("failed_units", "{}");
        assert!(units["available"].is_boolean(), "{units}");
        // kernel_log may legitimately be unreadable; when it is, it says why.
        match call("kernel_log", r#"{"lines":5}"#) {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).expect("json");
                assert!(v["lines"].as_array().is_some_and(|l| l.len() <= 5));
            }
            Err(e) => assert!(e.contains("kernel_log"), "{e}"),
        }
    }

    #[test]
    fn bad_arguments_are_refused_with_the_arg_named() {
        let e = call("top_processes", r#"{"limit":0}"#).unwrap_err();
        assert!(
            e.contains("\"limit\"") && e.contains("between 1 and 50"),
            "{e}"
        );
        let e = call("top_processes", r#"{"by":"disk"}"#).unwrap_err();
        assert!(e.contains("\"by\""), "{e}");
        let e = call("top_processes", r#"{"limit":"5"}"#).unwrap_err();
        assert!(e.contains("integer"), "{e}");
        let e = call("cpu", r#"{"bogus":1}"#).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = call("cpu", "[1]").unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
        let e = call("cpu", "{not json").unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
    }

    #[test]
    fn unknown_tools_list_the_known_ones() {
        let e = call("rm_rf", "{}").unwrap_err();
        assert!(e.contains("unknown tool \"rm_rf\""), "{e}");
        assert!(e.contains("cpu, memory"), "{e}");
    }

    #[test]
    fn oversized_output_is_cut_with_a_marker() {
        let big = "é".repeat(MAX_OUTPUT_BYTES);
        let out = cap_output(big);
        assert!(out.len() <= MAX_OUTPUT_BYTES);
        assert!(out.ends_with(&format!(
            "…[truncated: output exceeded {MAX_OUTPUT_BYTES} bytes]"
        )));
        assert_eq!(cap_output("small".into()), "small");
    }
}
