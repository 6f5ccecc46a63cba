//! One-line summaries of tool results, for `tool_result` deltas and chat
//! replies.

use serde_json::Value;

use crate::{fmt_bytes, int, list, num, text};

/// A short human summary of one tool's parsed output.
pub fn summarize(tool: &str, v: &Value) -> String {
    match tool {
        "cpu" => format!(
            "CPU {:.1} % busy on {} cores, load {:.2} {:.2} {:.2}",
            num(v, "usage_pct"),
            int(v, "cores"),
            num(v, "load1"),
            num(v, "load5"),
            num(v, "load15")
        ),
        "memory" => format!(
            "memory {:.1} % used ({} of {}), swap {:.1} %",
            num(v, "used_pct"),
            fmt_bytes(int(v, "used_bytes")),
            fmt_bytes(int(v, "total_bytes")),
            num(v, "swap_used_pct")
        ),
        "disk_usage" => {
            let fs = list(v, "filesystems");
            let fullest = fs
                .iter()
                .max_by(|a, b| num(a, "used_pct").total_cmp(&num(b, "used_pct")));
            match fullest {
                Some(f) => format!(
                    "{} filesystems; fullest {} at {:.1} %",
                    fs.len(),
                    text(f, "mount_point"),
                    num(f, "used_pct")
                ),
                None => "no filesystems".to_string(),
            }
        }
        "mounts" => format!("{} mounts", list(v, "mounts").len()),
        "top_processes" => {
            let names: Vec<String> = list(v, "processes")
                .iter()
                .take(3)
                .map(|p| {
                    format!(
                        "{} ({:.1} % cpu, {})",
                        text(p, "name"),
                        num(p, "cpu_pct"),
                        fmt_bytes(int(p, "rss_bytes"))
                    )
                })
                .collect();
            format!("top by {}: {}", text(v, "by"), names.join(", "))
        }
        "network_interfaces" => {
            let names: Vec<&str> = list(v, "interfaces")
                .iter()
                .map(|i| text(i, "name"))
                .collect();
            format!("{} interfaces: {}", names.len(), names.join(", "))
        }
        "tcp_summary" => format!(
            "{} TCP sockets, {} listening ports",
            int(v, "total"),
            list(v, "listening_ports").len()
        ),
        "uptime" => format!(
            "{} up {:.1} h",
            text(v, "hostname"),
            num(v, "uptime_sec") / 3600.0
        ),
        "fd_usage" => format!(
            "{} of {} file descriptors in use",
            int(v, "allocated"),
            int(v, "max")
        ),
        "failed_units" => {
            if v.get("available").and_then(Value::as_bool) == Some(true) {
                format!("{} failed systemd units", list(v, "units").len())
            } else {
                "systemd not available".to_string()
            }
        }
        "kernel_log" => format!(
            "{} kernel log lines from {}",
            list(v, "lines").len(),
            text(v, "source")
        ),
        other => match crate::judge::judge_only(other, v).first() {
            Some(f) => f.text.clone(),
            None => format!("{other} returned {} bytes", v.to_string().len()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summaries_carry_the_numbers() {
        let m = json!({"used_pct": 42.5, "used_bytes": 1073741824u64, "total_bytes": 2147483648u64, "swap_used_pct": 0.0});
        assert_eq!(
            summarize("memory", &m),
            "memory 42.5 % used (1.0 GiB of 2.0 GiB), swap 0.0 %"
        );
        let d = json!({"filesystems": [{"mount_point": "/", "used_pct": 10.0}, {"mount_point": "/data", "used_pct": 70.0}]});
        assert_eq!(
            summarize("disk_usage", &d),
            "2 filesystems; fullest /data at 70.0 %"
        );
    }
}
