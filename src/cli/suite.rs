//! `catpaw-agent replay --suite DIR [--runner X.wasm] [--junit FILE]`:
//! the regression harness a runner author runs before a release. Every
//! recording in DIR is replayed against the runner (or, without
//! `--runner`, the built-in runner it recorded), one after the other; the
//! table says which replayed identical and how the others differ, the
//! JUnit file says the same to a CI system. Exit 0 when all are
//! identical, 1 when some differ, 2 when some could not be replayed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::recorder::suite::{self, Suite};

/// Runs the suite in `dir` against `runner`, prints the table on stdout
/// and writes the JUnit XML to `junit` when given.
pub async fn run(
    dir: &Path,
    runner: Option<&Path>,
    junit: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let suite = replay_dir(dir, runner).await?;
    print!("{}", suite.render());
    if let Some(file) = junit {
        std::fs::write(file, crate::recorder::junit::render(&suite))
            .with_context(|| format!("writing the JUnit report to {}", file.display()))?;
    }
    Ok(ExitCode::from(suite.exit_code() as u8))
}

/// Every recording in `dir` replayed against `runner`.
pub async fn replay_dir(dir: &Path, runner: Option<&Path>) -> anyhow::Result<Suite> {
    suite::run(dir, |path| async move {
        super::replay::replay_file(&path, runner).await
    })
    .await
}

/// `check-runner --recordings DIR`: the suite as part of the check.
#[derive(Debug, Serialize)]
pub struct SuiteCheck {
    /// The directory.
    pub dir: String,
    /// True when every recording replayed identical.
    pub ok: bool,
    /// One row per recording: file, session type, verdict, detail.
    pub rows: Vec<SuiteRow>,
    /// The summary line, or why the suite could not run.
    pub summary: String,
}

/// One recording in [`SuiteCheck`].
#[derive(Debug, Serialize)]
pub struct SuiteRow {
    /// The recording's file name.
    pub recording: String,
    /// inspect, diagnose, chat.
    pub session_type: String,
    /// identical, output differs, calls diverged, trapped, budget, could
    /// not replay.
    pub verdict: String,
    /// The fuel, the first diverging call, the reason.
    pub detail: String,
}

/// Replays every recording in `dir` against `runner` for the check.
pub async fn check(dir: &Path, runner: &Path) -> SuiteCheck {
    match replay_dir(dir, Some(runner)).await {
        Ok(s) => SuiteCheck {
            dir: dir.display().to_string(),
            ok: s.exit_code() == 0,
            rows: s
                .rows
                .iter()
                .map(|r| SuiteRow {
                    recording: r.recording.clone(),
                    session_type: r.session_type.clone(),
                    verdict: r.verdict.label().to_string(),
                    detail: suite::detail(&r.verdict),
                })
                .collect(),
            summary: s.summary(),
        },
        Err(e) => SuiteCheck {
            dir: dir.display().to_string(),
            ok: false,
            rows: Vec::new(),
            summary: format!("{e:#}"),
        },
    }
}
