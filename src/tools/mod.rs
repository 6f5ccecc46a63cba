//! Read-only, structured diagnostic tools: everything a guest may learn
//! about the host comes from here, so this is the whole of what a session
//! can see, and none of it can change the host.
//!
//! Each tool reads /proc and /sys directly (a helper command only where
//! the kernel offers no file: `dmesg`, `systemctl`) and returns JSON with
//! fixed field names, because guest runners parse it. Output is bounded to
//! [`MAX_OUTPUT_BYTES`]: lists are first shortened (rows dropped, counted
//! in `"omitted": {"<list>": n}`) so the result stays valid JSON, and only
//! then is the text cut with a marker. Secrets in command lines and log
//! lines are masked. Tools are synchronous; the sandbox host runs them on
//! a blocking thread.
//!
//! - `args.rs`: argument parsing with errors that name the arg
//! - `cmd.rs`: helper commands: no stdin, timeout, bounded output
//! - `procfs.rs`: pure parsers over /proc text (tested on fixtures)
//! - `system.rs`: cpu, memory, uptime, fd_usage, heartbeat figures
//! - `storage.rs`: disk_usage, mounts
//! - `net.rs`: network_interfaces, tcp_summary
//! - `procs.rs`: top_processes
//! - `logs.rs`: kernel_log, failed_units
//! - `mask.rs`: secret masking
//! - `tests_host.rs`: every tool run for real on this host

mod args;
mod cmd;
mod logs;
mod mask;
mod net;
mod procfs;
mod procs;
mod storage;
mod system;

pub use mask::mask_secrets;
pub use system::{cpu_busy_pct_since_last, mem_used_pct};

#[cfg(test)]
mod tests_host;

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
pub fn catalog() -> &'static [ToolInfo] {
    static CATALOG: std::sync::OnceLock<Vec<ToolInfo>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| TOOLS.iter().map(|t| t.info).collect())
}

/// Runs one tool. `args_json` is a JSON object (`{}` or `""` for none).
/// Ok is the JSON result, at most [`MAX_OUTPUT_BYTES`]; Err is a one-line
/// message fit to show an operator.
pub fn call(name: &str, args_json: &str) -> Result<String, String> {
    let Some(tool) = TOOLS.iter().find(|t| t.info.name == name) else {
        let known: Vec<&str> = TOOLS.iter().map(|t| t.info.name).collect();
        return Err(format!(
            "unknown tool \"{name}\" (known: {})",
            known.join(", ")
        ));
    };
    let args = args::Args::parse(name, args_json, &schema_keys(tool.info.params_schema))?;
    let mut value = (tool.run)(&args).map_err(|e| format!("tool {name}: {e}"))?;
    shrink_lists(&mut value, tool.drop_from_front);
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

/// Room kept for the `omitted` note that [`shrink_lists`] adds.
const OMITTED_NOTE_ROOM: usize = 128;

/// Drops rows from the largest top-level lists until the JSON text fits
/// in [`MAX_OUTPUT_BYTES`], so the result stays valid JSON; records how
/// many rows each list lost in `"omitted": {"<list>": n}`. Rows go from
/// the end (lists are ordered most-important first) or, for logs, from
/// the front (the oldest lines).
fn shrink_lists(value: &mut Value, from_front: bool) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let mut omitted = serde_json::Map::new();
    loop {
        let len = serde_json::to_string(&*obj).map(|s| s.len()).unwrap_or(0);
        if len + OMITTED_NOTE_ROOM <= MAX_OUTPUT_BYTES {
            break;
        }
        let biggest = obj
            .iter()
            .filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty()))
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::to_string(v).map(|s| s.len()).unwrap_or(0),
                )
            })
            .max_by_key(|(_, size)| *size);
        let Some((key, _)) = biggest else {
            break;
        };
        let Some(rows) = obj.get_mut(&key).and_then(Value::as_array_mut) else {
            break;
        };
        // Drop whole rows until their text covers the excess (+1 per comma).
        let mut excess = len + OMITTED_NOTE_ROOM - MAX_OUTPUT_BYTES;
        let mut dropped = 0u64;
        while excess > 0 && !rows.is_empty() {
            let row = if from_front {
                rows.remove(0)
            } else {
                rows.pop().unwrap_or(Value::Null)
            };
            let size = serde_json::to_string(&row).map(|s| s.len()).unwrap_or(0) + 1;
            excess = excess.saturating_sub(size);
            dropped += 1;
        }
        let before = omitted.get(&key).and_then(Value::as_u64).unwrap_or(0);
        omitted.insert(key, Value::from(before + dropped));
    }
    if !omitted.is_empty() {
        obj.insert("omitted".into(), Value::Object(omitted));
    }
}

/// The marker ending a cut output.
fn truncation_marker() -> String {
    format!("\n…[truncated: output exceeded {MAX_OUTPUT_BYTES} bytes]")
}

/// Last resort for every tool: cuts `text` on a char boundary so that
/// text + marker fit in [`MAX_OUTPUT_BYTES`].
fn cap_output(text: String) -> String {
    if text.len() <= MAX_OUTPUT_BYTES {
        return text;
    }
    let marker = truncation_marker();
    let keep = crate::util::truncate_utf8(&text, MAX_OUTPUT_BYTES - marker.len());
    format!("{keep}{marker}")
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

    #[test]
    fn oversized_output_is_cut_with_a_marker() {
        for big in [
            "é".repeat(MAX_OUTPUT_BYTES),
            "x".repeat(3 * MAX_OUTPUT_BYTES),
        ] {
            let out = cap_output(big);
            assert!(out.len() <= MAX_OUTPUT_BYTES);
            assert!(out.len() > MAX_OUTPUT_BYTES - 8, "cut no more than needed");
            assert!(
                out.ends_with("\n…[truncated: output exceeded 32768 bytes]"),
                "{out}"
            );
        }
        let exact = "y".repeat(MAX_OUTPUT_BYTES);
        assert_eq!(cap_output(exact.clone()), exact);
        assert_eq!(cap_output("small".into()), "small");
    }

    #[test]
    fn oversized_lists_lose_rows_and_stay_valid_json() {
        let rows: Vec<Value> = (0..5000)
            .map(|i| serde_json::json!({"n": i, "pad": "x".repeat(20)}))
            .collect();
        let mut v = serde_json::json!({"total": 5000, "rows": rows, "small": [1, 2]});
        shrink_lists(&mut v, false);
        let text = v.to_string();
        assert!(text.len() <= MAX_OUTPUT_BYTES, "{}", text.len());
        let kept = v["rows"].as_array().expect("rows");
        assert!(kept.len() > 500, "keeps as much as fits: {}", kept.len());
        assert_eq!(kept[0]["n"], 0, "keeps the first rows");
        assert_eq!(
            v["omitted"]["rows"].as_u64(),
            Some(5000 - kept.len() as u64)
        );
        assert_eq!(v["small"], serde_json::json!([1, 2]));
        assert_eq!(cap_output(text.clone()), text, "no text cut needed");

        let lines: Vec<Value> = (0..2000)
            .map(|i| Value::from(format!("line {i} {}", "y".repeat(40))))
            .collect();
        let mut log = serde_json::json!({"source": "dmesg", "lines": lines});
        shrink_lists(&mut log, true);
        let kept = log["lines"].as_array().expect("lines");
        assert!(log.to_string().len() <= MAX_OUTPUT_BYTES);
        assert!(
            kept.last()
                .and_then(Value::as_str)
                .is_some_and(|l| l.starts_with("line 1999 ")),
            "keeps the newest"
        );

        let mut fits = serde_json::json!({"rows": [1, 2, 3]});
        shrink_lists(&mut fits, false);
        assert_eq!(
            fits,
            serde_json::json!({"rows": [1, 2, 3]}),
            "small output untouched"
        );
    }
}
