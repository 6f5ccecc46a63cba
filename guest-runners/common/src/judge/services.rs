//! Judges of the service, file, certificate, time and identity tools.

use serde_json::Value;

use super::network::cert_level;
use crate::{Finding, Severity, int, list, num, text};

/// What catpaw's log filters look for by default.
const BAD_WORDS: [&str; 4] = ["error", "fatal", "panic", "exception"];

pub(super) fn judge(tool: &str, v: &Value) -> Option<Vec<Finding>> {
    Some(match tool {
        "unit_status" => unit(v),
        "journal_tail" | "log_tail" => logs(tool, v),
        "file_check" => list(v, "files")
            .iter()
            .map(|f| {
                let path = text(f, "path");
                if f["exists"] == false {
                    Finding::new(Severity::Warning, "files", format!("{path} is missing"))
                } else if f.get("error").is_some() {
                    Finding::new(
                        Severity::Warning,
                        "files",
                        format!("{path}: {}", text(f, "error")),
                    )
                } else {
                    Finding::new(
                        Severity::Ok,
                        "files",
                        format!(
                            "{path}: {} mode {} uid {} size {} mtime {}",
                            text(f, "type"),
                            text(f, "mode"),
                            int(f, "uid"),
                            int(f, "size_bytes"),
                            int(f, "mtime_unix")
                        ),
                    )
                }
            })
            .collect(),
        "cert_files" => list(v, "files")
            .iter()
            .map(|f| match f.get("days_left").and_then(Value::as_i64) {
                Some(days) => Finding::new(
                    cert_level(days),
                    "cert",
                    format!(
                        "{} ({}) expires in {days} days",
                        text(f, "path"),
                        text(&f["certs"][0], "subject_cn")
                    ),
                ),
                None => Finding::new(
                    Severity::Warning,
                    "cert",
                    format!("{}: {}", text(f, "path"), text(f, "error")),
                ),
            })
            .collect(),
        "ntp" => {
            let synced = v["synchronized"] == true;
            let off = num(v, "offset_ms").abs();
            let sev = if !synced {
                Severity::Critical
            } else {
                super::level(off, 100.0, 500.0)
            };
            let daemons: Vec<&str> = list(v, "time_daemons")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            vec![Finding::new(
                sev,
                "ntp",
                format!(
                    "clock {}synchronised, offset {:.3} ms, max error {:.1} ms; time daemon: {}",
                    if synced { "" } else { "NOT " },
                    num(v, "offset_ms"),
                    num(v, "max_error_ms"),
                    if daemons.is_empty() {
                        "none found".to_string()
                    } else {
                        daemons.join(", ")
                    }
                ),
            )]
        }
        "host_identity" => vec![Finding::new(
            Severity::Ok,
            "host",
            format!(
                "{} ({}), {} on {}, kernel {}, {}{}",
                text(v, "hostname"),
                text(v, "primary_address"),
                text(v, "os"),
                text(v, "architecture"),
                text(v, "kernel"),
                if v["virtualized"] == true {
                    "virtual machine"
                } else {
                    "no hypervisor flag"
                },
                v.get("container")
                    .and_then(Value::as_str)
                    .map(|c| format!(", in a {c} container"))
                    .unwrap_or_default()
            ),
        )],
        "firewall" => vec![Finding::new(
            Severity::Ok,
            "firewall",
            format!(
                "{}: {} rules, {} drop or reject",
                text(v, "backend"),
                int(v, "rules"),
                int(v, "drop_or_reject")
            ),
        )],
        _ => return None,
    })
}

fn unit(v: &Value) -> Vec<Finding> {
    if let Some(p) = v.get("properties") {
        let active = text(p, "ActiveState");
        let sev = if active == "active" {
            Severity::Ok
        } else {
            Severity::Critical
        };
        return vec![Finding::new(
            sev,
            "systemd",
            format!(
                "{} {active}/{} (result {}), {} restarts, main pid {}",
                text(v, "unit"),
                text(p, "SubState"),
                text(p, "Result"),
                int(p, "NRestarts"),
                int(p, "MainPID")
            ),
        )];
    }
    let failed: Vec<&str> = list(v, "failed").iter().filter_map(Value::as_str).collect();
    let states: Vec<String> = v["services_by_state"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    vec![Finding::new(
        if failed.is_empty() {
            Severity::Ok
        } else {
            Severity::Warning
        },
        "systemd",
        format!(
            "services: {}{}",
            states.join(", "),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", failed.join(", "))
            }
        ),
    )]
}

fn logs(tool: &str, v: &Value) -> Vec<Finding> {
    if let Some(files) = v.get("allowed_files") {
        return vec![Finding::new(
            Severity::Ok,
            "logs",
            format!(
                "{} allow-listed log files",
                files.as_array().map_or(0, Vec::len)
            ),
        )];
    }
    let lines: Vec<&str> = list(v, "lines").iter().filter_map(Value::as_str).collect();
    let bad: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            let l = l.to_lowercase();
            BAD_WORDS.iter().any(|w| l.contains(w))
        })
        .collect();
    let what = if tool == "log_tail" {
        text(v, "path")
    } else {
        v.get("unit").and_then(Value::as_str).unwrap_or("journal")
    };
    match bad.last() {
        Some(last) => vec![Finding::new(
            Severity::Warning,
            "logs",
            format!(
                "{what}: {} alarming lines of {}, latest: {last}",
                bad.len(),
                lines.len()
            ),
        )],
        None => vec![Finding::new(
            Severity::Ok,
            "logs",
            format!("{what}: {} lines, nothing alarming", lines.len()),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::super::judge;
    use crate::Severity;
    use serde_json::json;

    fn worst(tool: &str, v: serde_json::Value) -> Severity {
        judge(tool, &v)
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    #[test]
    fn reference_thresholds() {
        let ntp = |synced: bool, off: f64| json!({"synchronized": synced, "offset_ms": off});
        assert_eq!(worst("ntp", ntp(true, 5.0)), Severity::Ok);
        assert_eq!(worst("ntp", ntp(true, -150.0)), Severity::Warning);
        assert_eq!(worst("ntp", ntp(true, 600.0)), Severity::Critical);
        assert_eq!(worst("ntp", ntp(false, 0.0)), Severity::Critical);
        let u = json!({"unit": "nginx.service", "properties": {"ActiveState": "failed"}});
        assert_eq!(worst("unit_status", u), Severity::Critical);
        let j = json!({"lines": ["ok", "app: FATAL cannot bind"]});
        assert_eq!(worst("journal_tail", j), Severity::Warning);
        let fc = json!({"files": [{"path": "/etc/app.conf", "exists": false}]});
        assert_eq!(worst("file_check", fc), Severity::Warning);
        let cf = json!({"files": [{"path": "/etc/ssl/a.pem", "days_left": 3, "certs": [{"subject_cn": "a"}]}]});
        assert_eq!(worst("cert_files", cf), Severity::Critical);
    }
}
