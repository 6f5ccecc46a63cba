//! The operator's `[recorder]` switches and bounds, as the config file
//! resolved them (see `config/recorder.rs` for the parsing and
//! `docs/recordings.md` for what each one means).

use std::path::PathBuf;

/// `[recorder] max_size` when unset: one recording stops growing here.
pub const DEFAULT_MAX_SIZE: u64 = 16 << 20;
/// `[recorder] max_total` when unset: all recordings together.
pub const DEFAULT_MAX_TOTAL: u64 = 1 << 30;
/// `[recorder] keep_days` when unset.
pub const DEFAULT_KEEP_DAYS: u32 = 30;

/// `[recorder]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderOptions {
    /// Record every accepted session (`enabled`, default true).
    pub enabled: bool,
    /// Write what the model was asked and answered (`record_model_content`,
    /// default true); without it `llm.complete` lines hold only sizes and
    /// the session is not replayable past its first model call.
    pub record_model_content: bool,
    /// Most bytes one recording holds before its `truncated` line.
    pub max_size: u64,
    /// Most bytes all recordings hold together (oldest removed first).
    pub max_total: u64,
    /// Days a recording is kept.
    pub keep_days: u32,
    /// Where recordings go (`None`: `<state_dir>/recordings`).
    pub dir: Option<PathBuf>,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            enabled: true,
            record_model_content: true,
            max_size: DEFAULT_MAX_SIZE,
            max_total: DEFAULT_MAX_TOTAL,
            keep_days: DEFAULT_KEEP_DAYS,
            dir: None,
        }
    }
}

impl RecorderOptions {
    /// The directory recordings go to, under `state_dir` unless `dir` says.
    pub fn dir_under(&self, state_dir: &std::path::Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| state_dir.join("recordings"))
    }
}
