//! The state directory's layout: every file the agent keeps under
//! `state_dir`, named in one place.
//!
//! ```text
//! <state_dir>/
//!   agent_id      this agent's UUID, created at first start
//!   audit.jsonl   the audit trail (rotated to audit.jsonl.1, …; its chain
//!                 head in audit.head)
//!   cache/        precompiled runner components
//!   agent.sock    the local alert ingest socket
//!   status.sock   `catpaw-agent status` asks the running agent here
//!   llm_tokens.json  LLM tokens used today, for [ai] daily_token_limit
//!   replay_nonces    signed messages accepted within the replay window
//!                 (PROTOCOL §9), so the window holds across restarts
//!   agent.lock    held (flock) by the one agent serving this state dir
//! ```
//!
//! The modules that use these files take their paths from here; none of
//! them knows the directory's layout.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Paths inside one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    root: PathBuf,
}

impl StatePaths {
    /// The layout under `root` (`[state_dir]`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StatePaths { root: root.into() }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding this agent's id.
    pub fn agent_id(&self) -> PathBuf {
        self.root.join("agent_id")
    }

    /// The audit trail's current file.
    pub fn audit_trail(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }

    /// The compile cache directory.
    pub(crate) fn compile_cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The local alert ingest socket.
    pub fn ingest_socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }

    /// The socket `catpaw-agent status` asks (mode 0600).
    pub fn status_socket(&self) -> PathBuf {
        self.root.join("status.sock")
    }

    /// Today's LLM token count (`[ai] daily_token_limit`).
    pub fn llm_daily_tokens(&self) -> PathBuf {
        self.root.join("llm_tokens.json")
    }

    /// The signed-session replay journal (`[server.signing]`).
    pub fn replay_nonces(&self) -> PathBuf {
        self.root.join("replay_nonces")
    }

    /// The lock file one agent holds while it serves this state dir.
    pub fn agent_lock(&self) -> PathBuf {
        self.root.join("agent.lock")
    }

    /// Reads the agent id, or creates one (replacing a file that does not
    /// hold a UUID).
    pub(crate) fn load_or_create_agent_id(&self) -> anyhow::Result<uuid::Uuid> {
        let path = self.agent_id();
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(id) = uuid::Uuid::parse_str(text.trim()) {
                return Ok(id);
            }
            tracing::warn!(path = %path.display(), "agent id file does not hold a UUID; replacing it");
        }
        let id = uuid::Uuid::new_v4();
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating state dir {}", self.root.display()))?;
        std::fs::write(&path, format!("{id}\n"))
            .with_context(|| format!("writing agent id to {}", path.display()))?;
        Ok(id)
    }
}
