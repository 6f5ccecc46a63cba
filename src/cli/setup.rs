//! Turns configuration into a ready sandbox and the runners sessions use.
//!
//! Runner choice, per session role: the `--runner` file if given (it serves
//! whatever it exports), else `[sandbox] diagnose_runner` / `chat_runner`,
//! else `[sandbox] runner`, else the built-in component: the AI runner when
//! `[ai] enabled = true` (with the rule-based one behind it for when the
//! model is out of reach), the rule-based runner otherwise. A runner file
//! that cannot be loaded is an error at start, never a surprise at the
//! first session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::audit::AuditLog;
use crate::config::{BudgetFlag, Config, RoleBudgets};
use crate::link::agent::{Agent, AgentOptions};
use crate::runner::{ChatRunner, DiagnoseRunner, WithFallback};
use crate::sandbox::{EngineOptions, HostServices, LoadedRunner, Sandbox, SandboxOptions};
use crate::session::Runners;
use crate::telemetry::Telemetry;

/// What start-up produced.
#[derive(Clone)]
pub struct Setup {
    /// The process sandbox.
    pub sandbox: Arc<Sandbox>,
    /// Runners by role.
    pub runners: Runners,
    /// Budgets of each role's sessions, command-line flags applied.
    pub budgets: RoleBudgets,
    /// The audit log.
    pub audit: AuditLog,
    /// The counters the sandbox counts into; the agent counts into them too.
    pub telemetry: Telemetry,
}

impl Setup {
    /// The agent for `cfg`, serving sessions with these runners and
    /// recording them in this audit trail.
    pub fn agent(&self, cfg: &Config, opts: AgentOptions) -> anyhow::Result<Agent> {
        let opts = AgentOptions {
            audit: Some(self.audit.clone()),
            telemetry: opts.telemetry.or_else(|| Some(self.telemetry.clone())),
            ..opts
        };
        Agent::new(cfg, self.runners.clone(), opts)
    }
}

/// Builds the sandbox and loads the runners.
///
/// `slots` is how many sessions may run at once; the instance pool is sized
/// from it.
///
/// `flags` are the command line's budgets; they beat the config file's and
/// pass the same checks.
pub fn build(
    cfg: &Config,
    runner_override: Option<&Path>,
    flags: &[BudgetFlag],
    slots: u32,
) -> anyhow::Result<Setup> {
    let budgets = cfg.sandbox.budgets.with_flags(flags)?;
    let state = cfg.paths();
    let audit = AuditLog::open_with(&state.audit_trail(), cfg.audit.clone())?;
    let telemetry = Telemetry::new();
    let shell_user = match &cfg.sandbox.shell_user {
        None => None,
        Some(name) => Some(
            crate::shell::Identity::lookup(name)
                .map_err(|e| anyhow::anyhow!("config `[sandbox] shell_user`: {e}"))?,
        ),
    };
    let llm = if cfg.ai.enabled {
        let agent_id = state.load_or_create_agent_id()?.to_string();
        crate::ai::Llm::new(&cfg.ai, agent_id, state.llm_daily_tokens()).context("config `[ai]`")?
    } else {
        None
    };
    let opts = SandboxOptions {
        engine: EngineOptions {
            pooling: true,
            // A little headroom over the session limit: a cancelled
            // session's slot may still be on its way back to the pool.
            slots: slots.saturating_add(2),
            max_memory: budgets.diagnose.max_memory.max(budgets.chat.max_memory),
        },
        cache_dir: Some(state.compile_cache()),
        services: HostServices {
            audit: Some(audit.clone()),
            shell_user,
            llm: llm.map(Arc::new),
            tool_timeout: cfg.ai.enabled.then_some(cfg.ai.tool_timeout),
            tools: std::sync::Arc::new(cfg.tools.clone()),
            telemetry: Some(telemetry.clone()),
        },
    };
    let sandbox = Sandbox::new(opts)?;
    let (diagnose, chat) = load_runners(&sandbox, cfg, runner_override)?;
    let mut runners = Runners {
        diagnose: diagnose
            .and_then(|r| r.diagnose_runner(budgets.diagnose.clone()))
            .map(|r| Arc::new(r) as _),
        chat: chat
            .and_then(|r| r.chat_runner(budgets.chat.clone()))
            .map(|r| Arc::new(r) as _),
    };
    if ai_serves(cfg, runner_override) {
        runners = with_ai(&sandbox, runners, &budgets)?;
    }
    Ok(Setup {
        sandbox,
        runners,
        budgets,
        audit,
        telemetry,
    })
}

/// The built-in AI runner for both roles, each with `rules` (the
/// rule-based runners) behind it.
fn with_ai(
    sandbox: &Arc<Sandbox>,
    rules: Runners,
    budgets: &RoleBudgets,
) -> anyhow::Result<Runners> {
    let ai = sandbox.load("built-in AI runner", crate::embedded::AI)?;
    let diagnose = match (ai.diagnose_runner(budgets.diagnose.clone()), rules.diagnose) {
        (Some(primary), Some(fallback)) => Some(Arc::new(WithFallback {
            primary: Arc::new(primary) as Arc<dyn DiagnoseRunner>,
            fallback,
        }) as Arc<dyn DiagnoseRunner>),
        (_, rules) => rules,
    };
    let chat = match (ai.chat_runner(budgets.chat.clone()), rules.chat) {
        (Some(primary), Some(fallback)) => Some(Arc::new(WithFallback {
            primary: Arc::new(primary) as Arc<dyn ChatRunner>,
            fallback,
        }) as Arc<dyn ChatRunner>),
        (_, rules) => rules,
    };
    Ok(Runners { diagnose, chat })
}

/// The runner components `build` loads for `cfg`, each with the SHA-256 of
/// its bytes as they are on disk now (the built-in ones: as compiled in),
/// for `status`.
pub fn runner_files(
    cfg: &Config,
    runner_override: Option<&Path>,
) -> anyhow::Result<Vec<crate::ops::status::RunnerFile>> {
    use crate::ops::status::RunnerFile;
    let pick = |specific: &Option<PathBuf>| {
        runner_override
            .map(Path::to_path_buf)
            .or_else(|| specific.clone())
            .or_else(|| cfg.sandbox.runner.clone())
    };
    let entry = |role: &str, path: Option<PathBuf>, builtin: &[u8]| match path {
        Some(p) => {
            let bytes =
                std::fs::read(&p).with_context(|| format!("reading runner {}", p.display()))?;
            Ok(RunnerFile::new(role, &p.display().to_string(), &bytes))
        }
        None => Ok::<_, anyhow::Error>(RunnerFile::new(role, "built-in", builtin)),
    };
    let mut files = vec![
        entry(
            "diagnose",
            pick(&cfg.sandbox.diagnose_runner),
            crate::embedded::DIAGNOSE,
        )?,
        entry(
            "chat",
            pick(&cfg.sandbox.chat_runner),
            crate::embedded::CHAT,
        )?,
    ];
    if ai_serves(cfg, runner_override) {
        files.insert(0, entry("ai", None, crate::embedded::AI)?);
    }
    Ok(files)
}

/// Whether the built-in AI runner serves sessions: `[ai]` is on and no
/// runner file is configured (a configured runner is the operator's
/// explicit choice and wins).
fn ai_serves(cfg: &Config, runner_override: Option<&Path>) -> bool {
    cfg.ai.enabled
        && runner_override.is_none()
        && cfg.sandbox.runner.is_none()
        && cfg.sandbox.diagnose_runner.is_none()
        && cfg.sandbox.chat_runner.is_none()
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
