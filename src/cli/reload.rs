//! Hot reload of the runners while the agent runs: on SIGHUP, and (with
//! `--watch` or `[sandbox] watch_runners = true`) when a runner file
//! changes.
//!
//! A reload re-reads the config file for its runner paths and `[sandbox]`
//! budgets (command-line budget flags still win), loads the runners the
//! same way start-up does, and only when all of that worked hands them to
//! the session table: new sessions get them, running sessions finish on
//! the ones they started with, and the next connection's `register` lists
//! the new plugins. A file that does not load is refused with a log line
//! and the runners in service stay. Other config changes (server address,
//! labels, the session limit) need a restart; the pool's memory slot size
//! is fixed at start, so a larger `max_memory` is refused too.
//!
//! The watcher polls each runner file's size, mtime and content hash once
//! a second: cheap for a handful of files and free of platform quirks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{BudgetFlag, Config};
use crate::sandbox::Sandbox;
use crate::session::SessionTable;

/// How often the watcher looks at the runner files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a reload needs, captured at start.
#[derive(Clone)]
pub struct Reloader {
    /// The sandbox the runners load into (its compile cache included).
    pub sandbox: Arc<Sandbox>,
    /// The config file given at start (`None`: the default path).
    pub config_path: Option<PathBuf>,
    /// `--runner`, which beats the config's runner paths.
    pub runner_override: Option<PathBuf>,
    /// Budget flags from the command line.
    pub flags: Vec<BudgetFlag>,
    /// The largest `max_memory` the instance pool was sized for.
    pub pool_memory: u64,
    /// Where new runners go.
    pub table: SessionTable,
}

impl Reloader {
    /// Reloads the runners; `why` goes to the log. Err: nothing changed;
    /// the text says what was wrong.
    pub fn reload(&self, why: &str) -> anyhow::Result<()> {
        let cfg = Config::load(self.config_path.as_deref())?;
        let budgets = cfg.sandbox.budgets.with_flags(&self.flags)?;
        let wanted = budgets.diagnose.max_memory.max(budgets.chat.max_memory);
        if wanted > self.pool_memory {
            bail!(
                "max_memory {wanted} bytes is above the {} bytes the sandbox was started \
                 with; raising it needs a restart",
                self.pool_memory
            );
        }
        let runners = super::setup::load_runners(
            &self.sandbox,
            &cfg,
            self.runner_override.as_deref(),
            &budgets,
        )?;
        let plugins = runners.plugins.clone();
        self.table.replace_runners(runners);
        tracing::info!(
            reason = why,
            ?plugins,
            "runners reloaded: new sessions use them, running sessions finish on the old ones"
        );
        Ok(())
    }

    /// The runner files the current config (or `--runner`) names.
    fn watched(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.runner_override {
            return vec![p.clone()];
        }
        let Ok(cfg) = Config::load(self.config_path.as_deref()) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = [
            cfg.sandbox.runner,
            cfg.sandbox.diagnose_runner,
            cfg.sandbox.chat_runner,
        ]
        .into_iter()
        .flatten()
        .collect();
        paths.dedup();
        paths
    }

    /// Reloads in a blocking thread (compiling takes a while) and logs
    /// the outcome.
    async fn reload_logged(&self, why: String) {
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || me.reload(&why)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"),
                "runner reload refused; the runners in service stay"),
            Err(e) => tracing::error!(error = %e,
                "runner reload failed; the runners in service stay"),
        }
    }

    /// Serves reloads until `shutdown`: on every SIGHUP `hup` receives
    /// (see [`hangups`]), and when `watch` is set, on every change of a
    /// runner file.
    pub async fn serve(self, mut hup: Option<Signal>, watch: bool, shutdown: CancellationToken) {
        let mut seen = fingerprints(&self.watched());
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.reload_logged("SIGHUP".into()).await;
                    seen = fingerprints(&self.watched());
                }
                _ = tick.tick(), if watch => {
                    let now = fingerprints(&self.watched());
                    if now != seen {
                        let changed: Vec<String> = now
                            .iter()
                            .filter(|f| !seen.contains(f))
                            .map(|f| f.path.display().to_string())
                            .collect();
                        seen = now;
                        self.reload_logged(format!("changed: {}", changed.join(", "))).await;
                    }
                }
            }
        }
    }
}

/// Starts catching SIGHUP (whose default would end the process); call it
/// before anything could send one. `None`, with a warning, when it cannot.
pub fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot catch SIGHUP; runners reload only with --watch");
            None
        }
    }
}

/// What a runner file looks like now; a missing file has no size or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    path: PathBuf,
    size: Option<u64>,
    mtime: Option<std::time::SystemTime>,
    hash: Option<[u8; 32]>,
}

fn fingerprints(paths: &[PathBuf]) -> Vec<Fingerprint> {
    paths.iter().map(|p| fingerprint(p)).collect()
}

fn fingerprint(path: &Path) -> Fingerprint {
    let meta = std::fs::metadata(path).ok();
    // The hash catches a rewrite that keeps size and mtime (coarse
    // timestamps); size and mtime alone would miss it.
    let hash = std::fs::read(path).ok().map(|b| Sha256::digest(&b).into());
    Fingerprint {
        path: path.to_path_buf(),
        size: meta.as_ref().map(|m| m.len()),
        mtime: meta.and_then(|m| m.modified().ok()),
        hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_changes_with_the_content_even_at_the_same_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("r.wasm");
        std::fs::write(&p, b"aaaa").expect("write");
        let a = fingerprint(&p);
        assert_eq!(a, fingerprint(&p));
        std::fs::write(&p, b"bbbb").expect("write");
        let b = fingerprint(&p);
        assert_ne!(a.hash, b.hash);
        assert_ne!(a, b);
        std::fs::remove_file(&p).expect("rm");
        assert_eq!(fingerprint(&p).size, None);
    }
}
