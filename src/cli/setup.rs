//! Turns configuration into a ready sandbox and the runners sessions use.
//!
//! Runner choice, per session role: the `--runner` file if given, else
//! `[sandbox] diagnose_runner` / `chat_runner`, else `[sandbox] runner`,
//! else the built-in component: the AI runner when `[ai] enabled = true`
//! (with the rule-based one behind it for when the model is out of reach),
//! the rule-based runner otherwise. A file named for every role replaces
//! only the roles it exports; the others keep the built-in runner, with one
//! warning. A runner file that cannot be loaded is an error at start, never
//! a surprise at the first session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::audit::AuditLog;
use crate::config::{BudgetFlag, Config, RoleBudgets};
use crate::link::agent::{Agent, AgentOptions};
use crate::runner::{ChatRunner, DiagnoseRunner, WithFallback};
use crate::sandbox::{EngineOptions, HostServices, LoadedRunner, Sandbox, SandboxOptions};
use crate::session::{RunnerFile, Runners};
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
    /// The `[ai.mcp]` servers, when configured (stop them with
    /// [`McpServers::shutdown`](crate::mcp_client::McpServers::shutdown)).
    pub mcp: Option<Arc<crate::mcp_client::McpServers>>,
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
    let mcp =
        crate::mcp_client::McpServers::start(&cfg.mcp, shell_user.as_ref(), cfg.ai.tool_timeout)
            .context("config `[ai.mcp]`")?;
    let llm = if cfg.ai.enabled {
        let agent_id = state.load_or_create_agent_id()?.to_string();
        crate::ai::Llm::new(&cfg.ai, agent_id, state.llm_daily_tokens()).context("config `[ai]`")?
    } else {
        None
    };
    let opts = SandboxOptions {
        engine: EngineOptions {
            pooling: true,
            // With the model-backed runner in front, a chat whose model
            // failed holds two instances (the model-backed chat and the
            // rule-based one behind it). Plus a little headroom: a
            // cancelled session's slot may still be on its way back.
            slots: slots
                .saturating_mul(if ai_serves(cfg, runner_override) {
                    2
                } else {
                    1
                })
                .saturating_add(2),
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
            mcp: mcp.clone(),
        },
    };
    let sandbox = Sandbox::new(opts)?;
    let runners = load_runners(&sandbox, cfg, runner_override, &budgets)?;
    Ok(Setup {
        sandbox,
        runners,
        budgets,
        audit,
        telemetry,
        mcp,
    })
}

/// The built-in AI runner for both roles, each with `rules` (the
/// rule-based runners) behind it.
fn with_ai(
    sandbox: &Arc<Sandbox>,
    cfg: &Config,
    rules: Runners,
    budgets: &RoleBudgets,
) -> anyhow::Result<Runners> {
    let ai = sandbox.load("built-in AI runner", crate::embedded::AI)?;
    let policies = &cfg.sandbox.policies;
    let (ai, diagnose_budgets) = policies.apply(&ai, "ai", &budgets.diagnose);
    let (_, chat_budgets) = policies.apply(&ai, "ai", &budgets.chat);
    let mut files = vec![RunnerFile {
        role: "ai".into(),
        source: BUILT_IN.into(),
        sha256: ai.sha256().to_string(),
        capabilities: ai.grant().granted.to_string(),
        signer: ai.provenance().to_string(),
    }];
    files.extend(rules.files);
    let diagnose = match (ai.diagnose_runner(diagnose_budgets), rules.diagnose) {
        (Some(primary), Some(fallback)) => Some(Arc::new(WithFallback {
            primary: Arc::new(primary) as Arc<dyn DiagnoseRunner>,
            fallback,
        }) as Arc<dyn DiagnoseRunner>),
        (_, rules) => rules,
    };
    let chat = match (ai.chat_runner(chat_budgets), rules.chat) {
        (Some(primary), Some(fallback)) => Some(Arc::new(WithFallback {
            primary: Arc::new(primary) as Arc<dyn ChatRunner>,
            fallback,
        }) as Arc<dyn ChatRunner>),
        (_, rules) => rules,
    };
    Ok(Runners {
        diagnose,
        chat,
        plugins: rules.plugins,
        files,
    })
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

/// Where one role's runner comes from.
struct Source {
    /// The file, or `None` for the built-in runner.
    path: Option<PathBuf>,
    /// What named it, for messages: `--runner`, a config key.
    origin: &'static str,
    /// Whether it was named for this role alone (then it must serve it).
    specific: bool,
}

fn source_of(
    cfg: &Config,
    runner_override: Option<&Path>,
    specific: &Option<PathBuf>,
    key: &'static str,
) -> Source {
    if let Some(p) = runner_override {
        return Source {
            path: Some(p.to_path_buf()),
            origin: "--runner",
            specific: false,
        };
    }
    if let Some(p) = specific {
        return Source {
            path: Some(p.clone()),
            origin: key,
            specific: true,
        };
    }
    Source {
        path: cfg.sandbox.runner.clone(),
        origin: "[sandbox] runner",
        specific: false,
    }
}

/// The runners sessions are served by (at start and on every reload):
/// each role's file or built-in runner (see [`load_roles`]), with the AI
/// runner in front when `[ai]` serves; each narrowed by the
/// `[sandbox.policy.<name>]` tables that match it.
pub fn load_runners(
    sandbox: &Arc<Sandbox>,
    cfg: &Config,
    runner_override: Option<&Path>,
    budgets: &RoleBudgets,
) -> anyhow::Result<Runners> {
    let runners = load_roles(sandbox, cfg, runner_override, budgets)?;
    if ai_serves(cfg, runner_override) {
        return with_ai(sandbox, cfg, runners, budgets);
    }
    Ok(runners)
}

/// Loads the runner of each role (see the module doc), each file once.
/// A file named for every role (`--runner`, `[sandbox] runner`) replaces
/// only the roles it serves; the others keep the built-in runner, with one
/// warning naming what was kept. A file that serves no role at all, or a
/// role-specific file that does not serve its role, is refused.
fn load_roles(
    sandbox: &Arc<Sandbox>,
    cfg: &Config,
    runner_override: Option<&Path>,
    budgets: &RoleBudgets,
) -> anyhow::Result<Runners> {
    let diagnose_src = source_of(
        cfg,
        runner_override,
        &cfg.sandbox.diagnose_runner,
        "[sandbox] diagnose_runner",
    );
    let chat_src = source_of(
        cfg,
        runner_override,
        &cfg.sandbox.chat_runner,
        "[sandbox] chat_runner",
    );
    let mut loaded: Vec<(PathBuf, LoadedRunner)> = Vec::new();
    let mut load = |src: &Source| -> anyhow::Result<Option<LoadedRunner>> {
        let Some(path) = &src.path else {
            return Ok(None);
        };
        if let Some((_, r)) = loaded.iter().find(|(p, _)| p == path) {
            return Ok(Some(r.clone()));
        }
        let r = sandbox
            .load_file_trusting(path, cfg.sandbox.max_runner_size, &cfg.sandbox.runner_trust)
            .and_then(|r| {
                r.check_declared(cfg.sandbox.require_declared_capabilities)?;
                Ok(r)
            })
            .with_context(|| format!("loading {} {}", src.origin, path.display()))?;
        loaded.push((path.clone(), r.clone()));
        Ok(Some(r))
    };
    let from_diagnose_src = load(&diagnose_src)?;
    let from_chat_src = load(&chat_src)?;
    let policies = &cfg.sandbox.policies;
    let (diagnose, mut diagnose_file) =
        pick(sandbox, from_diagnose_src, &diagnose_src, Role::Diagnose)?;
    let (diagnose, diagnose_budgets) = policies.apply(&diagnose, "diagnose", &budgets.diagnose);
    diagnose_file.capabilities = diagnose.grant().granted.to_string();
    let (chat, mut chat_file) = pick(sandbox, from_chat_src, &chat_src, Role::Chat)?;
    let (chat, chat_budgets) = policies.apply(&chat, "chat", &budgets.chat);
    chat_file.capabilities = chat.grant().granted.to_string();
    tracing::info!(diagnose = %diagnose.name(), chat = %chat.name(),
        plugins = %diagnose.plugin_names().join(", "),
        diagnose_capabilities = %diagnose_file.capabilities,
        chat_capabilities = %chat_file.capabilities, "runners ready");
    tracing::info!(diagnose = %diagnose.provenance(), chat = %chat.provenance(),
        "runner signers");
    Ok(Runners {
        files: vec![diagnose_file, chat_file],
        plugins: diagnose.plugin_names(),
        diagnose: diagnose
            .diagnose_runner(diagnose_budgets)
            .map(|r| Arc::new(r) as _),
        chat: chat.chat_runner(chat_budgets).map(|r| Arc::new(r) as _),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Diagnose,
    Chat,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Diagnose => "inspect/diagnose",
            Role::Chat => "chat",
        }
    }

    /// The role as `status` names it.
    fn status_name(self) -> &'static str {
        match self {
            Role::Diagnose => "diagnose",
            Role::Chat => "chat",
        }
    }

    fn serves(self, r: &LoadedRunner) -> bool {
        match self {
            Role::Diagnose => r.serves_diagnose(),
            Role::Chat => r.serves_chat(),
        }
    }

    fn export(self) -> &'static str {
        match self {
            Role::Diagnose => "catpaw:runner/diagnose",
            Role::Chat => "catpaw:runner/chat",
        }
    }

    fn builtin(self, sandbox: &Arc<Sandbox>) -> anyhow::Result<LoadedRunner> {
        match self {
            Role::Diagnose => sandbox.load("built-in diagnose runner", crate::embedded::DIAGNOSE),
            Role::Chat => sandbox.load("built-in chat runner", crate::embedded::CHAT),
        }
    }
}

/// What `status` shows for a built-in runner's source.
const BUILT_IN: &str = "built-in";

/// The runner of `role`: the loaded file when it serves the role, else
/// the built-in one (refused instead when the file was named for this role
/// alone); with the entry `status` shows for it.
fn pick(
    sandbox: &Arc<Sandbox>,
    loaded: Option<LoadedRunner>,
    src: &Source,
    role: Role,
) -> anyhow::Result<(LoadedRunner, RunnerFile)> {
    let entry = |r: &LoadedRunner, source: String| RunnerFile {
        role: role.status_name().into(),
        source,
        sha256: r.sha256().to_string(),
        capabilities: r.grant().granted.to_string(),
        signer: r.provenance().to_string(),
    };
    let builtin = || -> anyhow::Result<(LoadedRunner, RunnerFile)> {
        let r = role.builtin(sandbox)?;
        let file = entry(&r, BUILT_IN.into());
        Ok((r, file))
    };
    match loaded {
        Some(r) if role.serves(&r) => {
            let file = entry(&r, r.name().to_string());
            Ok((r, file))
        }
        Some(r) if src.specific => bail!(
            "config `{}`: {} does not export {} (build it against the diagnose-runner, \
             chat-runner or runner world of wit/runner.wit)",
            src.origin,
            r.name(),
            role.export()
        ),
        Some(r) => {
            tracing::warn!(
                "{} {} does not serve {} sessions; the built-in {} runner is kept for them",
                src.origin,
                r.name(),
                role.name(),
                role.name()
            );
            builtin()
        }
        None => builtin(),
    }
}

/// Logs, once at start, which audit trail files carry the append-only
/// attribute: even root cannot delete them (`rm -rf` of the state dir
/// fails with "Operation not permitted") until it is lifted, and nothing
/// else would say why.
pub fn note_append_only(trail: &Path) {
    let (Some(dir), Some(stem)) = (trail.parent(), trail.file_name()) else {
        return;
    };
    let stem = stem.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut marked: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
        // The trail and its rotated files, as many as rotation keeps.
        .take(64)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| std::fs::File::open(e.path()).is_ok_and(|f| append_only(&f) == Some(true)))
        .map(|e| e.path().display().to_string())
        .collect();
    if marked.is_empty() {
        return;
    }
    marked.sort();
    tracing::info!(
        files = %marked.join(", "),
        "the audit trail is append-only: these files cannot be deleted or truncated, even by \
         root (`rm -rf` of the state dir says \"Operation not permitted\"); lift it with \
         `chattr -a FILE`, or set `[audit] append_only = false` so the agent stops setting it"
    );
}

/// Whether `f` carries the append-only attribute (None: cannot tell).
fn append_only(f: &std::fs::File) -> Option<bool> {
    use std::os::fd::AsRawFd;
    /// `FS_APPEND_FL` of linux/fs.h.
    const FS_APPEND_FL: libc::c_long = 0x20;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into a live local.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    (rc == 0).then_some(flags & FS_APPEND_FL != 0)
}
