//! Hot reload of the runners while the agent runs: on SIGHUP, and (with
//! `--watch` or `[sandbox] watch_runners = true`) when a runner file
//! changes.
//!
//! A reload re-reads the config file for its runner paths, `[sandbox]`
//! budgets and trusted runner keys (command-line budget flags still win), loads the runners the
//! same way start-up does, and only when all of that worked hands them to
//! the session table: new sessions get them, running sessions finish on
//! the ones they started with, and the next connection's `register` lists
//! the new plugins. A file that does not load is refused with a log line
//! and the runners in service stay. Other config changes (server address,
//! labels, the session limit) need a restart; the pool's memory slot size
//! is fixed at start, so a larger `max_memory` is refused too.
//!
//! The watcher polls the runner files and their signature files
//! (`FILE.minisig`) once a second (cheap for a handful
//! of files and free of platform quirks), on a blocking thread, never on
//! the runtime the connection runs on: each file is opened without
//! blocking and judged by `fstat` on the descriptor (device, inode, size,
//! mtime, ctime, kind), so a FIFO, a device or a huge file put in a
//! runner's place costs a stat a second and is refused by the reload it
//! triggers. The content is hashed only when that stat changed, or while
//! the file is younger than [`RACY`] (git's "racily clean" rule: a
//! rewrite within one timestamp tick keeps size and times the same), and
//! only for a regular file within `[sandbox] max_runner_size`, read no
//! further than that: a big file costs nothing while it sits there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{BudgetFlag, Config, DEFAULT_MAX_RUNNER_SIZE};
use crate::fsafe::Kind;
use crate::ops::reloads::LastReload;
use crate::sandbox::Sandbox;
use crate::session::SessionTable;

/// How often the watcher looks at the runner files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long after its last change a file's stat may hide a rewrite: the
/// coarsest timestamps in use (FAT: 2 s), with a margin.
pub const RACY: Duration = Duration::from_secs(3);

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
    /// Where each reload's outcome is recorded for `status`.
    pub last: LastReload,
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
            plugins = %plugins.join(", "),
            "runners reloaded: new sessions use them, running sessions finish on the old ones"
        );
        Ok(())
    }

    /// The runner files the current config (or `--runner`) names, and the
    /// largest one it loads.
    fn watched(&self) -> (Vec<PathBuf>, u64) {
        watched(self.config_path.as_deref(), self.runner_override.as_deref())
    }

    /// Looks at the watched files on a blocking thread, `before` being
    /// the last look; `None` when shutdown comes first.
    async fn look(
        &self,
        before: Vec<Fingerprint>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Fingerprint>> {
        let me = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let (paths, cap) = me.watched();
            fingerprints(&paths, &before, cap, SystemTime::now())
        });
        tokio::select! {
            _ = shutdown.cancelled() => None,
            r = task => match r {
                Ok(now) => Some(now),
                Err(e) => {
                    tracing::error!(error = %e, "looking at the runner files failed");
                    Some(Vec::new())
                }
            },
        }
    }

    /// Reloads in a blocking thread (compiling takes a while) and logs
    /// the outcome.
    async fn reload_logged(&self, why: String) {
        let me = self.clone();
        let trigger = why.clone();
        let result = tokio::task::spawn_blocking(move || me.reload(&why)).await;
        // Recorded before the log line: whoever reads the line and asks
        // `status` sees this outcome.
        match result {
            Ok(Ok(())) => self.last.record(&trigger, Ok(())),
            Ok(Err(e)) => {
                let why = format!("{e:#}");
                self.last.record(&trigger, Err(why.clone()));
                tracing::warn!(error = %why, "runner reload refused; the runners in service stay");
            }
            Err(e) => {
                self.last
                    .record(&trigger, Err(format!("the reload task failed: {e}")));
                tracing::error!(error = %e, "runner reload failed; the runners in service stay");
            }
        }
    }

    /// Serves reloads until `shutdown`: on every SIGHUP `hup` receives
    /// (see [`hangups`]), and when `watch` is set, on every change of a
    /// runner file.
    /// With `watch`, the watcher starts from that [`Baseline`].
    pub async fn serve(
        self,
        mut hup: Option<Signal>,
        watch: Option<Baseline>,
        shutdown: CancellationToken,
    ) {
        let mut seen = Vec::new();
        if let Some(Baseline(before)) = &watch {
            match self.look(before.clone(), &shutdown).await {
                Some(now) => {
                    if now.iter().any(|f| !before.contains(f)) || now.len() != before.len() {
                        self.reload_logged("changed since they were loaded".into())
                            .await;
                    }
                    seen = now;
                }
                None => return,
            }
        }
        let watch = watch.is_some();
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.reload_logged("SIGHUP".into()).await;
                    if watch {
                        match self.look(std::mem::take(&mut seen), &shutdown).await {
                            Some(now) => seen = now,
                            None => return,
                        }
                    }
                }
                _ = tick.tick(), if watch => {
                    let Some(now) = self.look(seen.clone(), &shutdown).await else {
                        return;
                    };
                    let changed: Vec<String> = now
                        .iter()
                        .filter(|f| !seen.contains(f))
                        .map(|f| f.path.display().to_string())
                        .collect();
                    let gone = seen.len() != now.len();
                    // Kept even when nothing changed: it carries the hashes
                    // the next look may reuse.
                    seen = now;
                    if !changed.is_empty() || gone {
                        self.reload_logged(format!("changed: {}", changed.join(", "))).await;
                    }
                }
            }
        }
    }
}

/// The runner files `config_path` (or `runner_override`) names, and the
/// largest one the config lets load.
fn watched(config_path: Option<&Path>, runner_override: Option<&Path>) -> (Vec<PathBuf>, u64) {
    let cfg = Config::load(config_path).ok();
    let cap = cfg
        .as_ref()
        .map_or(DEFAULT_MAX_RUNNER_SIZE, |c| c.sandbox.max_runner_size);
    if let Some(p) = runner_override {
        return (with_signatures(vec![p.to_path_buf()]), cap);
    }
    let Some(cfg) = cfg else {
        return (Vec::new(), cap);
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
    (with_signatures(paths), cap)
}

/// The runner files and, after them, their signature files: a runner
/// signed again (a new `.minisig`, the same bytes) reloads too.
fn with_signatures(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let sigs: Vec<PathBuf> = paths
        .iter()
        .map(|p| crate::runner::signature::signature_path(p))
        .collect();
    paths.extend(sigs);
    paths
}

/// What the watched runner files were before the runners were loaded.
/// The watcher compares its first look with this, so a file replaced
/// between the load and the watcher's start is seen as the change it is.
pub struct Baseline(Vec<Fingerprint>);

/// Takes the [`Baseline`]: call it before the runners are loaded.
pub fn baseline(config_path: Option<&Path>, runner_override: Option<&Path>) -> Baseline {
    let (paths, cap) = watched(config_path, runner_override);
    Baseline(fingerprints(&paths, &[], cap, SystemTime::now()))
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

/// What a runner file looked like at one look.
#[derive(Debug, Clone)]
struct Fingerprint {
    path: PathBuf,
    seen: Seen,
    /// The file had not changed for [`RACY`] when it was hashed, so its
    /// hash holds for as long as its stat does.
    settled: bool,
}

/// Equal when the file is the same; `settled` is bookkeeping.
impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.seen == other.seen
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// It could not be opened: why.
    Absent(String),
    /// `fstat` on the opened descriptor, and the content hash of a
    /// regular file within the cap.
    Present { stat: Stat, hash: Option<[u8; 32]> },
}

/// What `fstat` says of a file, as far as a change shows in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    kind: Kind,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            dev: meta.dev(),
            ino: meta.ino(),
            kind: Kind::of(meta),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether its last change is at least [`RACY`] before `now`.
    fn settled_at(&self, now: SystemTime) -> bool {
        let last = self.mtime.max(self.ctime).0;
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        now.saturating_sub(last) > RACY.as_secs() as i64
    }
}

fn fingerprints(
    paths: &[PathBuf],
    before: &[Fingerprint],
    cap: u64,
    now: SystemTime,
) -> Vec<Fingerprint> {
    paths
        .iter()
        .map(|p| fingerprint(p, before.iter().find(|f| &f.path == p), cap, now))
        .collect()
}

/// `path` now: opened without blocking and judged on the descriptor; the
/// hash of `before` reused when it still holds (see the module doc).
fn fingerprint(
    path: &Path,
    before: Option<&Fingerprint>,
    cap: u64,
    now: SystemTime,
) -> Fingerprint {
    let absent = |why: String| Fingerprint {
        path: path.to_path_buf(),
        seen: Seen::Absent(why),
        settled: false,
    };
    let peeked = match crate::fsafe::peek(path) {
        Ok(p) => p,
        Err(e) => return absent(e.to_string()),
    };
    let stat = Stat::of(peeked.metadata());
    let settled = stat.settled_at(now);
    let kept = before.and_then(|b| match &b.seen {
        Seen::Present { stat: s, hash } if b.settled && *s == stat => Some(*hash),
        _ => None,
    });
    let hash = match kept {
        Some(hash) => hash,
        // Not a regular file within the cap: the stat says it all, and the
        // reload it triggers refuses it.
        None => peeked.into_regular(cap).ok().and_then(|mut f| {
            let mut h = Sha256::new();
            std::io::copy(&mut f.bounded(), &mut h).ok()?;
            Some(h.finalize().into())
        }),
    };
    Fingerprint {
        path: path.to_path_buf(),
        seen: Seen::Present { stat, hash },
        settled,
    }
}

#[cfg(test)]
mod tests;
