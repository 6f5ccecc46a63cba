//! The TOML configuration file.
//!
//! One file (default `conf.d/config.toml`). Every field has a default; a
//! missing default file means "all defaults" (server disabled), while an
//! explicitly named file must exist. Unknown keys and bad values are errors
//! that name the file and the field.
//!
//! Relative paths in the file (`state_dir`, `ca_file`, `tls_cert`,
//! `tls_key`, runner paths) are resolved against the directory that holds
//! the config directory when the file lives in a directory named `conf.d`
//! (the reference layout: `conf.d/` beside `state.d/`), else against the
//! file's own directory.
//!
//! (Over 450 lines on purpose: the `Config` types, `Config::parse` (the
//! rounds that report every problem, which need both the schema's errors
//! and the document's positions) and `from_raw`, which resolves every
//! section of the raw file into the types in one pass, stay together. Each
//! section's own rules already live in the files below: budgets, AI,
//! tools, labels, paths, URLs and units; the file's positions and catpaw's
//! keys in `document.rs` and `upstream.rs`.)
//!
//! - `mod.rs`: the schema (what the rest of the agent reads) and the
//!   load/parse entry
//! - `raw.rs`: the file as TOML sees it
//! - `check.rs`: field checks that turn raw values into typed ones
//! - `budgets.rs`: the one funnel for session budgets (file, per-role
//!   overrides, command-line flags)
//! - `units.rs`: sizes and durations
//! - `url.rs`: the server's WebSocket and LLM gateway URLs
//! - `ai.rs`: `[ai]`, the language models (catpaw's names)
//! - `mcp.rs`: `[ai.mcp]`, the MCP servers the agent starts
//! - `labels.rs`: `[global.labels]` and their expansion
//! - `show.rs`: the effective config as `config check` prints it, and the
//!   commented example (`example.toml`)
//! - `paths.rs`: the state directory's layout
//! - `hygiene.rs`: settings that work but deserve a warning
//! - `document.rs`: the file with the position of every key, so every
//!   problem is reported at its `file:line:col`, all in one run
//! - `upstream.rs`: catpaw's keys that mean nothing here (one warning)
//! - `tools.rs`: `[tools]`, what the diagnostic tools may read and reach
//! - `policy.rs`: `[sandbox.policy.<name>]`, what one runner may reach and
//!   use, narrower than `[sandbox]`
//! - `recorder.rs`: `[recorder]`, the flight recorder's switches and bounds

mod ai;
mod budgets;
mod check;
mod document;
mod hygiene;
pub mod labels;
mod mcp;
mod paths;
mod policy;
mod raw;
mod recorder;
mod show;
mod tools;
mod units;
mod upstream;
mod url;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::session::signing::SigningConfig;
pub use budgets::{BudgetFlag, RoleBudgets};
use check::{Ctx, env_name, expand_env};
use document::Document;
pub(crate) use hygiene::check_agent_token;
pub use hygiene::{UNIT_ENV_FILE, redact_url};
pub use paths::StatePaths;
use raw::RawConfig;
pub use show::{EXAMPLE, REDACTED};
use url::ws_url;

/// Default config file location.
pub const DEFAULT_PATH: &str = "conf.d/config.toml";

/// The file read when `--config` names a directory (`--config conf.d`).
const FILE_NAME: &str = "config.toml";

/// Most `[sandbox] max_concurrent_sessions` may say: each session is an
/// instance with its own memory, and the pool and the limiter count in
/// `u32`; a larger figure is a typo, not a plan.
const MAX_SESSIONS_CAP: i64 = 100_000;

/// Most problems reported from one file: past that, the file is likely not
/// a config at all.
const MAX_PROBLEMS: usize = 50;

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named file could not be read. (The cause is shown in the
    /// message, not chained as a source: `{:#}` would print it twice.)
    #[error("{path}: cannot read config file: {cause}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// One problem in the file (TOML syntax, unknown key, wrong type or a
    /// bad value), already written out with its `file:line:col`.
    #[error("{message}")]
    Parse {
        /// File.
        path: String,
        /// The problem, starting with `file:line:col`.
        message: String,
    },
    /// Several problems in the file, one line each, all reported in one run.
    #[error("{} problems in {path}:\n  {}", problems.len(), problems.join("\n  "))]
    Problems {
        /// File.
        path: String,
        /// One line each, starting with `file:line:col`.
        problems: Vec<String>,
    },
    /// A value in the file that parses but is not acceptable.
    #[error("config {path} `{field}`: {message}")]
    Invalid {
        /// File.
        path: String,
        /// Field, e.g. `[sandbox] max_memory`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A command-line value that is not acceptable (budgets: the same
    /// rules and words as in the file).
    #[error("command line `{flag}`: {message}")]
    Flag {
        /// The flag, e.g. `--max-memory`.
        flag: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the agent id, audit log and compile cache live.
    pub state_dir: PathBuf,
    /// `[global.labels]`: label templates, resolved at each `register`
    /// (see `labels.rs`).
    pub labels: BTreeMap<String, String>,
    /// Plugin names sent in `register`.
    pub plugins: Vec<String>,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[sandbox]`.
    pub sandbox: SandboxConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[audit]`.
    pub audit: crate::audit::AuditOptions,
    /// `[tools]`: the files and endpoints tools may read and reach.
    pub tools: crate::tools::ToolConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[ai]`.
    pub ai: crate::ai::AiConfig,
    /// `[ai.mcp]`: the MCP servers the agent starts.
    pub mcp: crate::mcp_client::McpConfig,
    /// `[recorder]`: the flight recorder.
    pub recorder: crate::recorder::RecorderOptions,
    /// The file it came from (for messages), if any.
    pub source: Option<PathBuf>,
    /// One warning line per renamed key the file still uses, and per
    /// catpaw key accepted without effect.
    pub deprecated: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Connect at all.
    pub enabled: bool,
    /// `host[:port]` or `http(s)://` / `ws(s)://` URL without a path.
    pub address: String,
    /// Sent as `X-Agent-Token` when not empty.
    pub agent_token: String,
    /// The token came from `${ENV}`: the file itself holds no secret.
    pub agent_token_from_env: bool,
    /// PEM bundle that replaces the system roots.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (explicit opt-in).
    pub tls_skip_verify: bool,
    /// Client certificate (mTLS).
    pub tls_cert: Option<PathBuf>,
    /// Client key (mTLS).
    pub tls_key: Option<PathBuf>,
    /// Alert ring buffer capacity.
    pub alert_buffer_size: usize,
    /// `[server.signing]`: pinned keys for signed sessions (PROTOCOL §9).
    pub signing: SigningConfig,
}

/// `[sandbox] max_runner_size` when unset: room three times over for the
/// largest runner measured (a Python component, its interpreter included:
/// 17.6 MiB, BENCHMARKS.md).
pub const DEFAULT_MAX_RUNNER_SIZE: u64 = 64 << 20;

/// What `[sandbox] max_runner_size` may be.
const RUNNER_SIZE_RANGE: std::ops::RangeInclusive<u64> = (1 << 20)..=(1 << 30);

/// `[sandbox]`.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Sessions that may run at once.
    pub max_concurrent_sessions: usize,
    /// Whether a remote session may ever get a shell.
    pub allow_remote_shell: bool,
    /// Unprivileged user that granted shell commands run as; required when
    /// remote shells are allowed and the agent runs as root.
    pub shell_user: Option<String>,
    /// Runner for all session types.
    pub runner: Option<PathBuf>,
    /// Runner for inspect and diagnose.
    pub diagnose_runner: Option<PathBuf>,
    /// Runner for chat.
    pub chat_runner: Option<PathBuf>,
    /// Reload a runner file when it changes (as on SIGHUP).
    pub watch_runners: bool,
    /// The largest runner file loaded or watched, in bytes: a larger one
    /// (or anything but a regular file) is refused without being read.
    pub max_runner_size: u64,
    /// `runner_keys` and `require_signed_runners`: the keys a runner
    /// file's signature is checked against at every load, and whether an
    /// unsigned file is refused.
    pub runner_trust: crate::runner::RunnerTrust,
    /// Budgets of each role's sessions: `[sandbox]`, then
    /// `[sandbox.diagnose]` / `[sandbox.chat]` (see `budgets.rs`).
    pub budgets: RoleBudgets,
    /// Refuse a runner that declares no capabilities (at start, on reload
    /// and in `check-runner`) instead of warning and granting it what the
    /// operator allows.
    pub require_declared_capabilities: bool,
    /// `[sandbox.policy.<name>]`: per-runner narrowing (see `policy.rs`).
    pub policies: crate::sandbox::Policies,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_concurrent_sessions: 3,
            allow_remote_shell: false,
            shell_user: None,
            runner: None,
            diagnose_runner: None,
            chat_runner: None,
            watch_runners: false,
            max_runner_size: DEFAULT_MAX_RUNNER_SIZE,
            runner_trust: crate::runner::RunnerTrust::default(),
            budgets: RoleBudgets::default(),
            require_declared_capabilities: false,
            policies: crate::sandbox::Policies::default(),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint, off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address to serve `/metrics` on, e.g. `127.0.0.1:9464`.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// trace, debug, info, warn or error.
    pub level: String,
    /// text or json.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("state.d"),
            labels: BTreeMap::new(),
            plugins: Vec::new(),
            server: ServerConfig {
                alert_buffer_size: 1000,
                ..ServerConfig::default()
            },
            sandbox: SandboxConfig::default(),
            log: LogConfig::default(),
            audit: default_audit(),
            tools: crate::tools::ToolConfig::default(),
            metrics: MetricsConfig::default(),
            ai: crate::ai::AiConfig::default(),
            mcp: crate::mcp_client::McpConfig::default(),
            recorder: crate::recorder::RecorderOptions::default(),
            source: None,
            deprecated: Vec::new(),
        }
    }
}

impl Config {
    /// Loads `path`, or the default path (all defaults when it is missing).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            // catpaw's habit: `--config conf.d` names the directory.
            Some(p) if p.is_dir() => (p.join(FILE_NAME), true),
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(cause) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    cause,
                });
            }
        };
        Config::parse(&text, &path)
    }

    /// Parses config text that came from `path`. Every problem is
    /// reported, each at its `file:line:col` (see `document.rs`); catpaw's
    /// keys without effect here are one warning line.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let many = |problems: Vec<String>| ConfigError::Problems {
            path: shown.clone(),
            problems,
        };
        let mut doc = Document::parse(text).map_err(|errors| {
            many(
                errors
                    .iter()
                    .map(|e| format!("config {shown}{e}"))
                    .collect(),
            )
        })?;
        let ignored = doc.strip_upstream();
        // (where in the file, the line), sorted by position at the end.
        let mut problems: Vec<(usize, String)> = Vec::new();
        let mut reported: Vec<String> = Vec::new();
        // Each round removes the key of the problem it found; a problem
        // that names no removable key ends the rounds.
        for _ in 0..MAX_PROBLEMS {
            // (span, key to remove, the field as shown, what is wrong)
            let (at, key, field, problem) = match doc.raw() {
                Err(e) => {
                    let key = e.span().and_then(|s| doc.path_at(&s));
                    let mut message = e.message().to_string();
                    if let Some(hint) = key.as_deref().and_then(document::hint) {
                        message = format!("{message}; {hint}");
                    }
                    let field = key.as_deref().map(document::show_path);
                    (e.span(), key, field, message)
                }
                Ok(raw) => match Config::from_raw(raw, path) {
                    Ok(mut cfg) if problems.is_empty() => {
                        cfg.deprecated
                            .splice(0..0, upstream::warning(&shown, &ignored));
                        return Ok(cfg);
                    }
                    Ok(_) => break,
                    Err(ConfigError::Invalid { field, message, .. }) => {
                        let key = document::field_path(&field);
                        let at = doc.key_span(&key);
                        (at.clone(), at.map(|_| key), Some(field), message)
                    }
                    Err(other) => (None, None, None, other.to_string()),
                },
            };
            // A field already reported, now missing because its key was
            // removed, says nothing new ("is empty" after "has a path").
            if at.is_none() && field.as_ref().is_some_and(|f| reported.contains(f)) {
                break;
            }
            reported.extend(field.clone());
            let loc = doc.loc(at.clone());
            let line = match &field {
                Some(f) => format!("config {shown}{loc} `{f}`: {problem}"),
                None => format!("config {shown}{loc}: {problem}"),
            };
            problems.push((at.map_or(usize::MAX, |a| a.start), line));
            match key {
                Some(key) if doc.remove(&key) => {}
                _ => break,
            }
        }
        problems.sort_by_key(|(at, _)| *at);
        let mut problems: Vec<String> = problems.into_iter().map(|(_, line)| line).collect();
        Err(if problems.len() == 1 {
            ConfigError::Parse {
                path: shown,
                message: problems.remove(0),
            }
        } else {
            many(problems)
        })
    }

    /// The typed config from the strict schema's view of the file.
    fn from_raw(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if dir.file_name().is_some_and(|n| n == "conf.d") {
            dir.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            dir
        };
        let cx = Ctx { path: &shown, base };

        let s = raw.server;
        let enabled = s.enabled.unwrap_or(false);
        let address = expand_env(&s.address.unwrap_or_default())
            .map_err(|m| cx.err("[server] address", m))?;
        if enabled {
            ws_url(&address).map_err(|m| cx.err("[server] address", m))?;
        }
        let raw_token = s.agent_token.unwrap_or_default();
        let agent_token_from_env = env_name(&raw_token).is_some();
        let agent_token = expand_env(&raw_token)
            .and_then(|t| check_agent_token(&t).map(|()| t))
            .map_err(|m| cx.err("[server] agent_token", m))?;
        let tls_cert = cx.path_of(s.tls_cert);
        let tls_key = cx.path_of(s.tls_key);
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(cx.err(
                "[server] tls_cert",
                "tls_cert and tls_key must be given together",
            ));
        }
        let alert_buffer_size = match s.alert_buffer_size {
            Some(n) if n > 0 => n as usize,
            _ => 1000,
        };
        let server = ServerConfig {
            enabled,
            address,
            agent_token,
            agent_token_from_env,
            ca_file: cx.path_of(s.ca_file),
            tls_skip_verify: s.tls_skip_verify.unwrap_or(false),
            tls_cert,
            tls_key,
            alert_buffer_size,
            signing: cx.signing(s.signing.unwrap_or_default())?,
        };

        let sb = raw.sandbox;
        let d = SandboxConfig::default();
        let max_concurrent_sessions = match sb.max_concurrent_sessions {
            None => d.max_concurrent_sessions,
            Some(n) if (1..=MAX_SESSIONS_CAP).contains(&n) => n as usize,
            Some(n) if n < 1 => {
                return Err(cx.err(
                    "[sandbox] max_concurrent_sessions",
                    format!("{n} must be at least 1"),
                ));
            }
            Some(n) => {
                return Err(cx.err(
                    "[sandbox] max_concurrent_sessions",
                    format!("{n} is more than {MAX_SESSIONS_CAP}"),
                ));
            }
        };
        let max_runner_size = cx.size(
            "[sandbox] max_runner_size",
            sb.max_runner_size,
            DEFAULT_MAX_RUNNER_SIZE,
        )?;
        if !RUNNER_SIZE_RANGE.contains(&max_runner_size) {
            return Err(cx.err(
                "[sandbox] max_runner_size",
                format!("{max_runner_size} bytes is outside 1MiB..1GiB"),
            ));
        }
        let mut deprecated = Vec::new();
        let budgets =
            RoleBudgets::from_file(&shown, &sb.budgets, &sb.diagnose, &sb.chat, &mut deprecated)?;
        let policies = cx.policies(&sb.budgets, &sb.policy)?;
        let allow_remote_shell = sb.allow_remote_shell.unwrap_or(false);
        let shell_user = sb.shell_user.filter(|u| !u.trim().is_empty());
        // SAFETY: geteuid has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        shell_user_rule(allow_remote_shell, shell_user.as_deref(), is_root)
            .map_err(|m| cx.err("[sandbox] shell_user", m))?;
        let sandbox = SandboxConfig {
            max_concurrent_sessions,
            allow_remote_shell,
            shell_user,
            runner: cx.path_of(sb.runner),
            diagnose_runner: cx.path_of(sb.diagnose_runner),
            chat_runner: cx.path_of(sb.chat_runner),
            watch_runners: sb.watch_runners.unwrap_or(false),
            max_runner_size,
            runner_trust: cx.runner_trust(sb.runner_keys, sb.require_signed_runners)?,
            budgets,
            require_declared_capabilities: sb.require_declared_capabilities.unwrap_or(false),
            policies,
        };

        let level = raw.log.level.unwrap_or_else(|| "info".into());
        if !["trace", "debug", "info", "warn", "error"].contains(&level.as_str()) {
            return Err(cx.err(
                "[log] level",
                format!("{level:?} is not one of trace, debug, info, warn, error"),
            ));
        }
        let format = raw.log.format.unwrap_or_else(|| "text".into());
        if !["text", "json"].contains(&format.as_str()) {
            return Err(cx.err("[log] format", format!("{format:?} is not text or json")));
        }
        let labels = cx.labels(raw.global.labels, raw.labels, &mut deprecated)?;
        let da = default_audit();
        let max_size = cx.size("[audit] max_size", raw.audit.max_size, da.max_size)?;
        if max_size < 64 * 1024 {
            return Err(cx.err(
                "[audit] max_size",
                format!("{max_size} bytes is too small (at least 64KiB)"),
            ));
        }
        let keep = match raw.audit.keep {
            None => da.keep,
            Some(n) if (1..=1000).contains(&n) => n as u32,
            Some(n) => return Err(cx.err("[audit] keep", format!("{n} is outside 1..1000"))),
        };
        let audit = crate::audit::AuditOptions {
            max_size,
            keep,
            append_only: raw.audit.append_only.unwrap_or(da.append_only),
        };
        let metrics = MetricsConfig {
            listen: match raw.metrics.listen.filter(|l| !l.trim().is_empty()) {
                None => None,
                Some(l) => Some(l.trim().parse().map_err(|_| {
                    cx.err(
                        "[metrics] listen",
                        format!("{l:?} is not an address and port, e.g. \"127.0.0.1:9464\""),
                    )
                })?),
            },
        };
        let mut raw_ai = raw.ai;
        let mcp = mcp::parse(&cx, std::mem::take(&mut raw_ai.mcp))?;
        let ai = ai::parse(&cx, raw_ai, &server.address, &server.agent_token)?;
        let tools = cx.tools(raw.tools)?;
        let recorder = recorder::parse(&cx, raw.recorder)?;
        Ok(Config {
            recorder,
            audit,
            metrics,
            tools,
            ai,
            mcp,
            state_dir: cx
                .path_of(raw.state_dir)
                .unwrap_or_else(|| cx.base.join("state.d")),
            labels,
            plugins: raw.plugins,
            server,
            sandbox,
            log: LogConfig { level, format },
            source: Some(path.to_path_buf()),
            deprecated,
        })
    }

    /// The WebSocket URL of the server.
    pub fn server_ws_url(&self) -> Result<String, String> {
        ws_url(&self.server.address)
    }

    /// The files under `state_dir`.
    pub fn paths(&self) -> StatePaths {
        StatePaths::new(&self.state_dir)
    }
}

/// A root agent that grants remote shells must hand them to an
/// unprivileged user: a root shell could rewrite the audit trail and the
/// agent itself.
fn shell_user_rule(
    allow_remote_shell: bool,
    user: Option<&str>,
    is_root: bool,
) -> Result<(), String> {
    if allow_remote_shell && is_root && user.is_none() {
        return Err(
            "must name an unprivileged user when allow_remote_shell = true and the agent \
                    runs as root (remote shell commands would otherwise run as root)"
                .into(),
        );
    }
    if user == Some("root") {
        return Err("must not be root".into());
    }
    Ok(())
}

/// `[audit]` defaults: 64 MiB files, 5 rotated kept, append-only
/// attribute on (it only takes effect when the agent runs as root).
fn default_audit() -> crate::audit::AuditOptions {
    crate::audit::AuditOptions {
        append_only: true,
        ..crate::audit::AuditOptions::default()
    }
}

#[cfg(test)]
mod tests;
