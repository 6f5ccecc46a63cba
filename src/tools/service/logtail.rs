//! log_tail: the end of an operator allow-listed log file. Only the last
//! bytes are read, so a huge log costs no more than a small one.

use std::io::{Read, Seek, SeekFrom};

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::{clip_line, not_configured};
use crate::tools::targets::{expand, locate_allowed};

/// Bytes read from the end of the file.
const TAIL_BYTES: u64 = 256 * 1024;

/// The last `n` lines of `text` containing `needle` (lowercase; "" for
/// all). `cut_first`: the text starts mid-file, so its first line is
/// partial and dropped.
pub(crate) fn last_lines(
    text: &str,
    needle: &str,
    n: usize,
    cut_first: bool,
) -> (usize, Vec<String>) {
    let mut lines: Vec<&str> = text.lines().collect();
    if cut_first && !lines.is_empty() {
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
    let allowed = &args.config().log_files;
    let n = args.int("lines", 1, 500, 50)? as usize;
    let needle = args
        .string("contains", 200)?
        .unwrap_or_default()
        .to_lowercase();
    let Some(path) = args.string("path", 4096)? else {
        if allowed.is_empty() {
            return Ok(not_configured(
                "no log files are allow-listed: the operator lists them in [tools] log_files",
                "[tools] log_files",
            ));
        }
        let files: Vec<Value> = expand(allowed, 200)
            .into_iter()
            .map(|p| {
                // The size of what the path leads to, if that is allowed.
                let size = locate_allowed(&p, allowed, "log_files")
                    .ok()
                    .map(|f| f.metadata().len());
                json!({ "path": p, "size_bytes": size })
            })
            .collect();
        return Ok(
            json!({ "available": true, "allowed_files": files, "hint": "pass \"path\" to read one" }),
        );
    };
    // No size cap: only the tail is read, however long the file.
    let mut opened = locate_allowed(&path, allowed, "log_files")?
        .open_regular(u64::MAX)
        .map_err(|e| e.to_string())?;
    let len = opened.metadata().len();
    let start = len.saturating_sub(TAIL_BYTES);
    let f = opened.file();
    f.seek(SeekFrom::Start(start))
        .map_err(|e| format!("{path}: {e}"))?;
    let mut buf = Vec::new();
    f.take(TAIL_BYTES)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (matched, lines) = last_lines(&text, &needle, n, start > 0);
    Ok(
        json!({ "available": true, "path": path, "size_bytes": len, "matched": matched, "lines": lines }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::ToolConfig;

    fn args(text: &str, allowed: Vec<String>) -> Args {
        Args::of(text, &["path", "lines", "contains"]).with_config(
            ToolConfig {
                log_files: allowed,
                ..ToolConfig::default()
            }
            .into(),
        )
    }

    #[test]
    fn lines_from_the_end() {
        let (n, l) = last_lines("a\nERROR b\nc\nerror d\n", "error", 1, false);
        assert_eq!((n, l), (2, vec!["error d".to_string()]));
        let (n, _) = last_lines("partial\nwhole\n", "", 5, true);
        assert_eq!(n, 1);
    }

    #[test]
    fn allow_listed_files_are_read_and_others_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = std::fs::canonicalize(d.path()).expect("canon");
        let log = dir.join("app.log");
        let mut text = String::new();
        for i in 0..20000 {
            text.push_str(&format!("line {i} token=Abc{i}Secret\n"));
        }
        std::fs::write(&log, &text).expect("write");
        std::fs::write(dir.join("other.txt"), "x").expect("write");
        let allowed = vec![format!("{}/*.log", dir.display())];
        let v = run(&args(
            &format!(r#"{{"path":"{}","lines":3}}"#, log.display()),
            allowed.clone(),
        ))
        .expect("tail");
        let lines = v["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 3);
        assert!(
            lines[2]
                .as_str()
                .unwrap_or("")
                .starts_with("line 19999 token="),
            "{v}"
        );
        assert!(!v.to_string().contains("Abc19999Secret"), "{v}");
        let e = run(&args(
            &format!(r#"{{"path":"{}/other.txt"}}"#, dir.display()),
            allowed.clone(),
        ))
        .unwrap_err();
        assert!(e.contains("[tools] log_files"), "{e}");
        let e = run(&args(r#"{"path":"/etc/shadow"}"#, Vec::new())).unwrap_err();
        assert!(e.contains("[tools] log_files is empty"), "{e}");
        let listed = run(&args("{}", allowed)).expect("list");
        assert_eq!(
            listed["allowed_files"][0]["path"],
            log.display().to_string()
        );
        let none = run(&args("{}", Vec::new())).expect("none");
        assert_eq!(none["available"], false);
    }
}
