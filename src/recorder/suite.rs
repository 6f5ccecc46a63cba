//! `replay --suite DIR`: every recording in a directory replayed, one
//! verdict each, as a table for a person and JUnit XML for a CI system.
//!
//! Why the replay is a parameter: the suite decides which files, in which
//! order, what the table and the summary say and what the exit code is;
//! how one recording is re-executed is [`replay`](super)'s business. Taking
//! it as a function keeps those apart, and lets the suite be tested on
//! verdicts of any kind without building a runner that earns each one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Verdict;
use super::read;

/// One recording's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The recording's file name.
    pub recording: String,
    /// inspect, diagnose, chat; `?` when the recording does not say.
    pub session_type: String,
    /// The verdict.
    pub verdict: Verdict,
    /// How long its replay took.
    pub took: Duration,
}

/// The whole suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The directory run.
    pub dir: PathBuf,
    /// One row per recording, by file name.
    pub rows: Vec<Row>,
}

/// Lists the recordings in `dir` (regular files ending in `.jsonl`, by
/// name; no subdirectories), or says why it cannot.
pub fn recordings(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    let read = std::fs::read_dir(dir)
        .with_context(|| format!("replay --suite {}: cannot list it", dir.display()))?;
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!(
            "replay --suite {}: no recordings (*.jsonl) there; copy some from the agent's \
             recordings dir (<state_dir>/recordings)",
            dir.display()
        );
    }
    Ok(files)
}

/// Replays every recording in `dir` with `replay`, in name order, one
/// after the other.
pub async fn run<F, Fut>(dir: &Path, mut replay: F) -> anyhow::Result<Suite>
where
    F: FnMut(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Verdict>,
{
    let mut rows = Vec::new();
    for path in recordings(dir)? {
        let session_type = read::read_scan(&path)
            .ok()
            .and_then(|s| s.session_type().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        let began = Instant::now();
        let verdict = replay(path.clone()).await;
        rows.push(Row {
            recording: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            session_type,
            verdict,
            took: began.elapsed(),
        });
    }
    Ok(Suite {
        dir: dir.to_path_buf(),
        rows,
    })
}

/// The one-line detail of a verdict for the table: the fuel, the first
/// diverging call, the first line of a diff, the trap, the reason.
pub fn detail(v: &Verdict) -> String {
    let full = match v {
        Verdict::Identical { fuel } => return format!("fuel {fuel}"),
        Verdict::OutputDiffers { diff } => diff,
        Verdict::CallsDiverged { first, .. } => first,
        Verdict::Trapped { detail } | Verdict::Budget { detail } => detail,
        Verdict::CouldNotReplay { reason } => reason,
    };
    let first = full.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    crate::util::truncate_utf8(first, 100).to_string()
}

/// The full text of a verdict (JUnit's failure body): the diff with the
/// first diverging call above it.
pub fn full(v: &Verdict) -> String {
    match v {
        Verdict::Identical { fuel } => format!("fuel {fuel}"),
        Verdict::OutputDiffers { diff } => diff.clone(),
        Verdict::CallsDiverged { first, diff } => format!("{first}\n{diff}"),
        Verdict::Trapped { detail } | Verdict::Budget { detail } => detail.clone(),
        Verdict::CouldNotReplay { reason } => reason.clone(),
    }
}

impl Suite {
    /// 0 when every recording replayed identical, 2 when any could not be
    /// replayed, else 1.
    pub fn exit_code(&self) -> i32 {
        self.rows
            .iter()
            .map(|r| r.verdict.exit_code())
            .max()
            .unwrap_or(0)
    }

    /// The table and the summary line.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let headings = ["RECORDING", "TYPE", "VERDICT", "DETAIL"];
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.recording.clone(),
                    r.session_type.clone(),
                    r.verdict.label().to_string(),
                    detail(&r.verdict),
                ]
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([headings[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            headings[0], headings[1], headings[2], headings[3]
        );
        for [a, b, c, d] in &cells {
            let _ = writeln!(o, "{a:w0$}  {b:w1$}  {c:w2$}  {d}");
        }
        let _ = writeln!(o, "{}", self.summary());
        o
    }

    /// `7 recordings in DIR: 5 identical, 1 different, 1 could not replay`.
    pub fn summary(&self) -> String {
        let count = |code| {
            self.rows
                .iter()
                .filter(|r| r.verdict.exit_code() == code)
                .count()
        };
        format!(
            "{} recordings in {}: {} identical, {} different, {} could not replay",
            self.rows.len(),
            self.dir.display(),
            count(0),
            count(1),
            count(2)
        )
    }
}

#[cfg(test)]
#[path = "suite_tests.rs"]
mod tests;
