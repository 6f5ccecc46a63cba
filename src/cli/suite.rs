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
