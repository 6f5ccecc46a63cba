//! md_raid: Linux software RAID arrays from /proc/mdstat.

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::unavailable;

/// /proc/mdstat → one row per array.
pub(crate) fn parse(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((name, rest)) = line.split_once(" : ") else {
            continue;
        };
        let name = name.trim();
        if !name.starts_with("md") {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        let state = f.first().copied().unwrap_or("");
        let mut i = 1;
        let mut flags = Vec::new();
        while f.get(i).is_some_and(|w| w.starts_with('(')) {
            flags.push(f[i].trim_matches(['(', ')']).to_string());
            i += 1;
        }
        let level = f
            .get(i)
            .filter(|w| w.starts_with("raid") || **w == "linear")
            .map(|w| w.to_string());
        let members: Vec<&str> = f
            .iter()
            .skip(i + usize::from(level.is_some()))
            .copied()
            .collect();
        let failed: Vec<String> = members
            .iter()
            .filter(|m| m.contains("(F)"))
            .map(|m| m.split('[').next().unwrap_or(m).to_string())
            .collect();
        let mut status = String::new();
        let mut progress = None;
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.contains(" : ") {
                break;
            }
            let l = lines.next().unwrap_or_default().trim();
            if let Some(s) = l.split_whitespace().find(|w| {
                w.starts_with('[') && w.ends_with(']') && w.chars().all(|c| "[U_]".contains(c))
            }) {
                status = s.trim_matches(['[', ']']).to_string();
            }
            for op in ["recovery", "resync", "reshape", "check"] {
                if let Some(p) = l.find(&format!("{op} =")) {
                    let pct = l[p..]
                        .split('=')
                        .nth(1)
                        .and_then(|s| s.split('%').next())
                        .and_then(|s| s.trim().parse::<f64>().ok());
                    progress = Some(json!({ "operation": op, "pct": pct }));
                }
            }
        }
        let missing = status.chars().filter(|c| *c == '_').count();
        out.push(json!({
            "array": name,
            "state": state,
            "flags": flags,
            "level": level,
            "members": members.iter().map(|m| m.split('[').next().unwrap_or(m)).collect::<Vec<_>>(),
            "failed": failed,
            "status": status,
            "missing_members": missing,
            "degraded": missing > 0 || !failed.is_empty(),
            "progress": progress,
        }));
    }
    out
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    match std::fs::read_to_string("/proc/mdstat") {
        Ok(t) => Ok(json!({ "available": true, "arrays": parse(&t) })),
        Err(_) => Ok(unavailable(
            "/proc/mdstat is missing: the md driver is not loaded (no software RAID)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_degraded_and_resyncing() {
        let v = parse(include_str!("../fixtures/mdstat"));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["array"], "md0");
        assert_eq!(v[0]["level"], "raid1");
        assert_eq!(v[0]["members"], json!(["sdb1", "sda1"]));
        assert_eq!(v[0]["failed"], json!(["sda1"]));
        assert_eq!(v[0]["status"], "U_");
        assert_eq!(v[0]["degraded"], true);
        assert_eq!(v[0]["progress"]["operation"], "recovery");
        assert_eq!(v[0]["progress"]["pct"], 15.0);
        assert_eq!(v[1]["array"], "md1");
        assert_eq!(v[1]["degraded"], false);
        assert_eq!(v[1]["flags"], json!(["auto-read-only"]));
        assert!(parse("Personalities : \nunused devices: <none>\n").is_empty());
    }

    #[test]
    fn live_md_raid() {
        let v = run(&Args::empty()).expect("md_raid");
        assert!(v["available"].is_boolean(), "{v}");
    }
}
