//! unit_status: `systemctl show` of one unit, or service counts by state.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::check_unit;
use crate::tools::args::Args;
use crate::tools::cmd::{Keep, run as run_cmd};
use crate::tools::logs::{CMD_TIMEOUT, NO_SYSTEMD, systemd_missing, unavailable};

/// Properties asked for.
const PROPS: &str = "Id,Description,LoadState,ActiveState,SubState,UnitFileState,Result,MainPID,ExecMainStatus,ExecMainStartTimestamp,ActiveEnterTimestamp,NRestarts,MemoryCurrent,CPUUsageNSec,TasksCurrent,FragmentPath,Environment,User";

/// `Key=value` lines; systemd's "not set" marker for numbers
/// (`[not set]`, 2^64-1) becomes null.
pub(crate) fn parse_show(text: &str) -> Map<String, Value> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = match v {
                "" | "[not set]" | "18446744073709551615" => Value::Null,
                v if v.bytes().all(|b| b.is_ascii_digit()) && v.len() < 19 => {
                    json!(v.parse::<u64>().unwrap_or(0))
                }
                v => json!(v),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// `systemctl list-units` rows → count per active state and the failed.
pub(crate) fn count_units(text: &str) -> (BTreeMap<String, u64>, Vec<String>) {
    let mut states = BTreeMap::new();
    let mut failed = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l
            .split_whitespace()
            .skip_while(|w| ["●", "*", "×"].contains(w))
            .collect();
        let (Some(unit), Some(active)) = (f.first(), f.get(2)) else {
            continue;
        };
        *states.entry(active.to_string()).or_insert(0) += 1;
        if *active == "failed" {
            failed.push(unit.to_string());
        }
    }
    (states, failed)
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let unit = args.string("unit", 256)?;
    if let Some(u) = &unit {
        check_unit(u)?;
    }
    if let Some(why) = systemd_missing("systemctl") {
        return Ok(unavailable(why));
    }
    let result = match &unit {
        Some(u) => run_cmd(
            "systemctl",
            &["show", "--no-pager", "-p", PROPS, "--", u],
            CMD_TIMEOUT,
            Keep::Head,
        )
        .map(|t| {
            let props = parse_show(&t);
            let found = props.get("LoadState").and_then(Value::as_str) != Some("not-found");
            json!({ "available": true, "unit": u, "found": found, "properties": props })
        }),
        None => run_cmd(
            "systemctl",
            &[
                "list-units",
                "--type=service",
                "--all",
                "--plain",
                "--no-legend",
                "--no-pager",
            ],
            CMD_TIMEOUT,
            Keep::Head,
        )
        .map(|t| {
            let (states, failed) = count_units(&t);
            json!({ "available": true, "services_by_state": states, "failed": failed })
        }),
    };
    match result {
        Err(e) if NO_SYSTEMD.iter().any(|s| e.contains(s)) => Ok(unavailable(e)),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_output_is_parsed_and_environment_masked() {
        let p = parse_show(include_str!("../fixtures/systemctl_show"));
        assert_eq!(p["ActiveState"], "failed");
        assert_eq!(p["NRestarts"], 5);
        assert_eq!(p["MainPID"], 0);
        assert_eq!(p["MemoryCurrent"], Value::Null);
        assert_eq!(p["Result"], "exit-code");
        let out = crate::tools::output::finish(json!({ "properties": p }), false);
        for secret in ["S3cretDbPass", "sk_live_abcdefghijklmnop1234"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("LOG_LEVEL=info"), "{out}");
    }

    #[test]
    fn unit_lists_are_counted() {
        let text = "nginx.service loaded active running nginx\n● app.service loaded failed failed App\ncron.service loaded active running cron\n";
        let (s, failed) = count_units(text);
        assert_eq!(s["active"], 2);
        assert_eq!(failed, ["app.service"]);
    }

    #[test]
    fn unit_names_are_checked_and_systemd_absence_is_plain() {
        let a = Args::of(r#"{"unit":"--root=/"}"#, &["unit"]);
        assert!(run(&a).unwrap_err().contains("not a systemd unit name"));
        let v = run(&Args::of(r#"{"unit":"sshd.service"}"#, &["unit"])).expect("unit_status");
        assert!(v["available"].is_boolean(), "{v}");
    }
}
