//! journal_tail: `journalctl` for one unit or the whole journal.

use serde_json::{Value, json};

use super::check_unit;
use crate::tools::args::Args;
use crate::tools::cmd::{Keep, MAX_CMD_OUTPUT, run as run_cmd};
use crate::tools::logs::{CMD_TIMEOUT, LEVELS, clip_line, systemd_missing, unavailable};

/// Lines asked of journalctl when filtering by text (the filter runs
/// here, so more are read than returned).
const SCAN: u64 = 5000;

/// The last `n` lines containing `needle` (lowercase; "" for all).
pub(crate) fn tail(text: &str, needle: &str, n: usize, cut_first: bool) -> (usize, Vec<String>) {
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("-- ")).collect();
    if cut_first && !lines.is_empty() {
        // Only the tail of the output was kept: its first line may be cut.
        lines.remove(0);
    }
    let hits: Vec<&str> = lines
        .into_iter()
        .filter(|l| needle.is_empty() || l.to_lowercase().contains(needle))
        .collect();
    let start = hits.len().saturating_sub(n);
    (
        hits.len(),
        hits[start..].iter().map(|l| clip_line(l)).collect(),
    )
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let unit = args.string("unit", 256)?;
    if let Some(u) = &unit {
        check_unit(u)?;
    }
    let n = args.int("lines", 1, 500, 50)?;
    let priority = match args.string("priority", 16)? {
        None => None,
        Some(p) if LEVELS.contains(&p.as_str()) => Some(p),
        Some(p) => {
            return Err(format!(
                "\"priority\" must be one of {}, not {p:?}",
                LEVELS.join(", ")
            ));
        }
    };
    let needle = args
        .string("contains", 200)?
        .unwrap_or_default()
        .to_lowercase();
    if let Some(why) = systemd_missing("journalctl") {
        return Ok(unavailable(why));
    }
    let count = if needle.is_empty() { n } else { SCAN }.to_string();
    let mut argv = vec!["--no-pager", "-q", "-o", "short-iso", "-n", count.as_str()];
    if let Some(p) = &priority {
        argv.extend(["-p", p.as_str()]);
    }
    if let Some(u) = &unit {
        argv.extend(["-u", u.as_str()]);
    }
    let text = match run_cmd("journalctl", &argv, CMD_TIMEOUT, Keep::Tail) {
        Ok(t) => t,
        Err(e) if e.contains("No journal files") || e.contains("ermission") => {
            return Ok(unavailable(format!(
                "{e} (reading the system journal needs root or the systemd-journal group)"
            )));
        }
        Err(e) => return Err(e),
    };
    let (matched, lines) = tail(&text, &needle, n as usize, text.len() >= MAX_CMD_OUTPUT);
    Ok(json!({ "available": true, "unit": unit, "matched": matched, "lines": lines }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_are_filtered_and_masked() {
        let text = include_str!("../fixtures/journal");
        let (n, lines) = tail(text, "", 2, false);
        assert_eq!(n, 4, "the `-- Boot` marker is not a line");
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("Stopped"), "{lines:?}");
        let (n, lines) = tail(text, "password", 10, false);
        assert_eq!(n, 1);
        assert!(!lines[0].contains("Sup3rS3cret"), "{lines:?}");
        let (n, _) = tail(text, "", 10, true);
        assert_eq!(n, 3, "a cut first line is dropped");
    }

    #[test]
    fn live_journal_answers() {
        let v = run(&Args::of(
            r#"{"unit":"sshd.service","lines":3}"#,
            &["unit", "lines", "priority", "contains"],
        ));
        let v = v.expect("journal_tail");
        assert!(v["available"].is_boolean(), "{v}");
        let e = run(&Args::of(
            r#"{"priority":"loud"}"#,
            &["unit", "lines", "priority", "contains"],
        ))
        .unwrap_err();
        assert!(e.contains("\"priority\" must be one of"), "{e}");
    }
}
