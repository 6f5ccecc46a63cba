//! kernel_log_search: the kernel log filtered by level and text.

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::{LEVELS, clip_line, kernel_records};

/// Kernel log records scanned.
const SCAN: usize = 5000;

/// The records at `max_level` or more severe that contain `needle`
/// (lowercase), the last `n`, each prefixed with its level name.
pub(crate) fn filter(
    records: &[(u8, String)],
    max_level: u8,
    needle: &str,
    n: usize,
) -> (usize, Vec<String>) {
    let hits: Vec<String> = records
        .iter()
        .filter(|(lvl, line)| {
            *lvl <= max_level && (needle.is_empty() || line.to_lowercase().contains(needle))
        })
        .map(|(lvl, line)| format!("{} {line}", LEVELS[usize::from(*lvl & 7)]))
        .collect();
    let total = hits.len();
    let start = total.saturating_sub(n);
    (total, hits[start..].to_vec())
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let level = args.choice("level", &LEVELS, "warning")?;
    let needle = args
        .string("contains", 200)?
        .unwrap_or_default()
        .to_lowercase();
    let n = args.int("lines", 1, 500, 50)? as usize;
    let max_level = LEVELS.iter().position(|l| *l == level).unwrap_or(4) as u8;
    let (source, records) = kernel_records(SCAN)?;
    let (matched, lines) = filter(&records, max_level, &needle, n);
    let lines: Vec<String> = lines.iter().map(|l| clip_line(l)).collect();
    Ok(json!({
        "source": source,
        "level": level,
        "scanned": records.len(),
        "matched": matched,
        "lines": lines,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::logs::parse_dmesg_raw;

    #[test]
    fn records_are_filtered_by_level_and_text() {
        let recs: Vec<(u8, String)> = include_str!("../fixtures/dmesg_raw")
            .lines()
            .filter_map(parse_dmesg_raw)
            .collect();
        assert_eq!(recs.len(), 6);
        let (n, lines) = filter(&recs, 3, "", 50);
        assert_eq!(n, 2, "{lines:?}");
        assert!(
            lines[0].starts_with("err [    5.000000] blk_update_request: I/O error"),
            "{lines:?}"
        );
        let (n, lines) = filter(&recs, 4, "eth0", 50);
        assert_eq!((n, lines.len()), (1, 1));
        assert!(lines[0].starts_with("warning "));
        let (n, lines) = filter(&recs, 7, "", 2);
        assert_eq!((n, lines.len()), (6, 2), "the newest two");
        assert!(lines[1].contains("segfault"));
    }

    #[test]
    fn live_search_answers_or_explains() {
        let a = Args::of(
            r#"{"level":"debug","lines":3}"#,
            &["level", "contains", "lines"],
        );
        match run(&a) {
            Ok(v) => assert!(v["lines"].as_array().is_some_and(|l| l.len() <= 3), "{v}"),
            Err(e) => assert!(e.contains("not readable"), "{e}"),
        }
    }
}
