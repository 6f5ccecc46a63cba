//! Turns configuration into a ready sandbox and the runners sessions use.
//!
//! Runner choice, per session role: the `--runner` file if given (it serves
//! whatever it exports), else `[sandbox] diagnose_runner` / `chat_runner`,
//! else `[sandbox] runner`, else the built-in component. A runner file that
//! cannot be loaded is an error at start, never a surprise at the first
//! session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::audit::AuditLog;
use crate::config::{Config, Limits, RunnerKind};
use crate::sandbox::{
    EngineOptions, HostServices, LoadedRunner, Sandbox, SandboxOptions, SessionLimits,
};
use crate::session::Runners;
use crate::shell::ShellLimits;

/// Limit overrides from the command line (they beat the config file).
#[derive(Debug, Clone, Default)]
pub struct LimitOverrides {
    /// `--fuel`.
    pub fuel: Option<u64>,
    /// `--max-memory`.
    pub max_memory: Option<u64>,
    /// `--timeout`.
    pub timeout: Option<std::time::Duration>,
}

impl LimitOverrides {
    fn apply(&self, mut l: Limits) -> Limits {
        if let Some(f) = self.fuel {
            l.fuel = f;
        }
        if let Some(m) = self.max_memory {
            l.max_memory = m;
        }
        if let Some(t) = self.timeout {
            l.timeout = t;
        }
        l
    }
}

/// What start-up produced.
#[derive(Clone)]
pub struct Setup {
    /// The process sandbox.
    pub sandbox: Arc<Sandbox>,
    /// Runners by role.
    pub runners: Runners,
    /// Budgets of diagnose sessions.
    pub diagnose_limits: SessionLimits,
    /// Budgets of chat sessions.
    pub chat_limits: SessionLimits,
    /// The audit log.
    pub audit: AuditLog,
}

/// Builds the sandbox and loads the runners.
///
/// `slots` is how many sessions may run at once; the instance pool is sized
/// from it.
pub fn build(
    cfg: &Config,
    runner_override: Option<&Path>,
    overrides: &LimitOverrides,
    slots: u32,
) -> anyhow::Result<Setup> {
    let diagnose_limits =
        SessionLimits::from(&overrides.apply(cfg.sandbox.limits_for(RunnerKind::Diagnose)));
    let chat_limits =
        SessionLimits::from(&overrides.apply(cfg.sandbox.limits_for(RunnerKind::Chat)));
    for (what, l) in [("diagnose", &diagnose_limits), ("chat", &chat_limits)] {
        if l.fuel == 0 {
            bail!("{what} fuel budget must be greater than 0");
        }
        if l.max_memory < (1 << 20) {
            bail!(
                "{what} memory cap must be at least 1MiB (got {} bytes)",
                l.max_memory
            );
        }
        if l.timeout.is_zero() {
            bail!("{what} timeout must be greater than 0");
        }
    }
    let state = cfg.paths();
    let audit = AuditLog::open_with(&state.audit_trail(), cfg.audit.clone())?;
    let shell_user = match &cfg.sandbox.shell_user {
        None => None,
        Some(name) => Some(
            crate::shell::Identity::lookup(name)
                .map_err(|e| anyhow::anyhow!("config `[sandbox] shell_user`: {e}"))?,
        ),
    };
    let opts = SandboxOptions {
        engine: EngineOptions {
            pooling: true,
            // A little headroom over the session limit: a cancelled
            // session's slot may still be on its way back to the pool.
            slots: slots.saturating_add(2),
            max_memory: diagnose_limits.max_memory.max(chat_limits.max_memory),
        },
        cache_dir: Some(state.compile_cache()),
        services: HostServices {
            audit: Some(audit.clone()),
            shell: ShellLimits {
                max_timeout: cfg.sandbox.shell_timeout,
                output_cap: usize::try_from(cfg.sandbox.shell_output).unwrap_or(usize::MAX),
                user: shell_user,
            },
        },
        stdio_cap: usize::try_from(cfg.sandbox.guest_stdio).unwrap_or(usize::MAX),
    };
    let sandbox = Sandbox::new(opts)?;
    let (diagnose, chat) = load_runners(&sandbox, cfg, runner_override)?;
    let runners = Runners {
        diagnose: diagnose
            .and_then(|r| r.diagnose_runner(diagnose_limits.clone()))
            .map(|r| Arc::new(r) as _),
        chat: chat
            .and_then(|r| r.chat_runner(chat_limits.clone()))
            .map(|r| Arc::new(r) as _),
    };
    Ok(Setup {
        sandbox,
        runners,
        diagnose_limits,
        chat_limits,
        audit,
    })
}

fn load_runners(
    sandbox: &Arc<Sandbox>,
    cfg: &Config,
    runner_override: Option<&Path>,
) -> anyhow::Result<(Option<LoadedRunner>, Option<LoadedRunner>)> {
    if let Some(path) = runner_override {
        let r = sandbox
            .load_file(path)
            .with_context(|| format!("loading --runner {}", path.display()))?;
        return Ok((Some(r.clone()), Some(r)));
    }
    let pick = |specific: &Option<PathBuf>| specific.clone().or_else(|| cfg.sandbox.runner.clone());
    let load = |path: Option<PathBuf>,
                builtin: &'static [u8],
                name: &str,
                field: &str|
     -> anyhow::Result<LoadedRunner> {
        match path {
            Some(p) => sandbox
                .load_file(&p)
                .with_context(|| format!("config `[sandbox] {field}`")),
            None => sandbox.load(name, builtin),
        }
    };
    let diagnose = load(
        pick(&cfg.sandbox.diagnose_runner),
        crate::embedded::DIAGNOSE,
        "built-in diagnose runner",
        "diagnose_runner",
    )?;
    let chat = load(
        pick(&cfg.sandbox.chat_runner),
        crate::embedded::CHAT,
        "built-in chat runner",
        "chat_runner",
    )?;
    // A runner configured for one role must serve it; one configured as
    // `runner` (all types) serves whatever it exports.
    if cfg.sandbox.diagnose_runner.is_some() && !diagnose.serves_diagnose() {
        bail!(
            "config `[sandbox] diagnose_runner`: {} does not export catpaw:runner/diagnose",
            diagnose.name()
        );
    }
    if cfg.sandbox.chat_runner.is_some() && !chat.serves_chat() {
        bail!(
            "config `[sandbox] chat_runner`: {} does not export catpaw:runner/chat",
            chat.name()
        );
    }
    Ok((Some(diagnose), Some(chat)))
}
