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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::link::signing::{self, SigningConfig};
mod hygiene;
pub use hygiene::{check_agent_token, redact_url};

/// Default config file location.
pub const DEFAULT_PATH: &str = "conf.d/config.toml";

/// Largest accepted `[server.signing] max_skew`, in seconds (one day).
const MAX_SIGNING_SKEW_SECS: u64 = 24 * 3600;

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named file could not be read.
    #[error("{path}: cannot read config file: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax, unknown key or wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: String,
        /// What toml said.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}: `{field}`: {message}")]
    Invalid {
        /// File.
        path: String,
        /// Field, e.g. `[sandbox] max_memory`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Which runner role limits are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerKind {
    /// inspect and diagnose.
    Diagnose,
    /// chat.
    Chat,
}

/// Budgets of one session (per run / per chat turn for fuel and time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel units.
    pub fuel: u64,
    /// Linear memory cap in bytes.
    pub max_memory: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Total streamed bytes.
    pub max_output: u64,
    /// Tool calls plus shell requests per run / chat turn.
    pub max_tool_calls: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            max_memory: 64 << 20,
            timeout: Duration::from_secs(120),
            max_output: 8 << 20,
            max_tool_calls: 256,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the agent id, audit log and compile cache live.
    pub state_dir: PathBuf,
    /// Labels sent in `register`.
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
    /// The file it came from (for messages), if any.
    pub source: Option<PathBuf>,
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
    /// Default budgets.
    pub limits: Limits,
    /// Overrides for diagnose sessions.
    pub diagnose_overrides: LimitOverride,
    /// Overrides for chat sessions.
    pub chat_overrides: LimitOverride,
    /// Cap on one shell command's run time.
    pub shell_timeout: Duration,
    /// Cap per stream of one shell command's output.
    pub shell_output: u64,
    /// Guest stdout/stderr bytes kept per session for the log.
    pub guest_stdio: u64,
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
            limits: Limits::default(),
            diagnose_overrides: LimitOverride::default(),
            chat_overrides: LimitOverride::default(),
            shell_timeout: Duration::from_secs(30),
            shell_output: 64 * 1024,
            guest_stdio: 16 * 1024,
        }
    }
}

/// Per-role limit overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitOverride {
    /// Fuel.
    pub fuel: Option<u64>,
    /// Memory cap.
    pub max_memory: Option<u64>,
    /// Wall clock.
    pub timeout: Option<Duration>,
    /// Output bytes.
    pub max_output: Option<u64>,
    /// Tool calls plus shell requests.
    pub max_tool_calls: Option<u64>,
}

impl SandboxConfig {
    /// Budgets for sessions of `kind`, overrides applied.
    pub fn limits_for(&self, kind: RunnerKind) -> Limits {
        let o = match kind {
            RunnerKind::Diagnose => &self.diagnose_overrides,
            RunnerKind::Chat => &self.chat_overrides,
        };
        let d = &self.limits;
        Limits {
            fuel: o.fuel.unwrap_or(d.fuel),
            max_memory: o.max_memory.unwrap_or(d.max_memory),
            timeout: o.timeout.unwrap_or(d.timeout),
            max_output: o.max_output.unwrap_or(d.max_output),
            max_tool_calls: o.max_tool_calls.unwrap_or(d.max_tool_calls),
        }
    }
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

// ---- raw file shape ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    plugins: Vec<String>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    audit: RawAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    max_size: Option<toml::Value>,
    keep: Option<i64>,
    append_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    enabled: Option<bool>,
    address: Option<String>,
    agent_token: Option<String>,
    ca_file: Option<String>,
    tls_skip_verify: Option<bool>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    alert_buffer_size: Option<i64>,
    signing: Option<RawSigning>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    #[serde(default)]
    keys: BTreeMap<String, String>,
    require: Option<bool>,
    max_skew: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<i64>,
    max_memory: Option<toml::Value>,
    timeout: Option<toml::Value>,
    max_output: Option<toml::Value>,
    max_tool_calls: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    max_concurrent_sessions: Option<i64>,
    allow_remote_shell: Option<bool>,
    shell_user: Option<String>,
    runner: Option<String>,
    diagnose_runner: Option<String>,
    chat_runner: Option<String>,
    fuel: Option<i64>,
    max_memory: Option<toml::Value>,
    timeout: Option<toml::Value>,
    max_output: Option<toml::Value>,
    max_tool_calls: Option<i64>,
    shell_timeout: Option<toml::Value>,
    shell_output: Option<toml::Value>,
    guest_stdio: Option<toml::Value>,
    diagnose: Option<RawLimits>,
    chat: Option<RawLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

/// Parses a size: bare bytes (`1048576`), or a number with `K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB` (binary, case-insensitive), `KB`/`MB`/`GB` (decimal).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use e.g. 64MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("{s:?} is not a size (use e.g. 64MiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: `500ms`, `30s`, `2m`, `1h`, or a bare number of
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 30s, 500ms, 2m)"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?} is not a duration (use e.g. 30s, 500ms, 2m)")),
    };
    Ok(d)
}

/// Expands `${NAME}` (the whole value) from the environment.
/// The variable a `${NAME}` value names, if it is one.
fn env_name(value: &str) -> Option<&str> {
    value.trim().strip_prefix("${")?.strip_suffix('}')
}

fn expand_env(value: &str) -> Result<String, String> {
    if let Some(name) = env_name(value) {
        return std::env::var(name).map_err(|_| format!("environment variable {name} is not set"));
    }
    Ok(value.to_string())
}

struct Ctx<'a> {
    path: &'a str,
    base: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn path_of(&self, v: Option<String>) -> Option<PathBuf> {
        v.filter(|s| !s.trim().is_empty()).map(|s| {
            let p = PathBuf::from(s);
            if p.is_absolute() {
                p
            } else {
                self.base.join(p)
            }
        })
    }

    fn size(&self, field: &str, v: Option<toml::Value>, default: u64) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(toml::Value::Integer(i)) if i >= 0 => Ok(i as u64),
            Some(toml::Value::String(s)) => parse_size(&s).map_err(|m| self.err(field, m)),
            Some(other) => {
                Err(self.err(field, format!("{other} is not a size (use e.g. \"64MiB\")")))
            }
        }
    }

    fn duration(
        &self,
        field: &str,
        v: Option<toml::Value>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(toml::Value::Integer(i)) if i >= 0 => Ok(Duration::from_secs(i as u64)),
            Some(toml::Value::String(s)) => parse_duration(&s).map_err(|m| self.err(field, m)),
            Some(other) => Err(self.err(
                field,
                format!("{other} is not a duration (use e.g. \"30s\")"),
            )),
        }
    }

    fn limits(
        &self,
        section: &str,
        raw: RawLimits,
        defaults: &Limits,
    ) -> Result<LimitOverride, ConfigError> {
        let f = |name: &str| format!("[{section}] {name}");
        let o = LimitOverride {
            fuel: raw.fuel.map(|n| self.count(&f("fuel"), n)).transpose()?,
            max_memory: match raw.max_memory {
                None => None,
                v => Some(self.memory(&f("max_memory"), v, defaults.max_memory)?),
            },
            timeout: match raw.timeout {
                None => None,
                v => Some(self.positive(
                    &f("timeout"),
                    self.duration(&f("timeout"), v, defaults.timeout)?,
                )?),
            },
            max_output: match raw.max_output {
                None => None,
                v => Some(self.size(&f("max_output"), v, defaults.max_output)?),
            },
            max_tool_calls: raw
                .max_tool_calls
                .map(|n| self.count(&f("max_tool_calls"), n))
                .transpose()?,
        };
        Ok(o)
    }

    /// A count that must be at least 1.
    fn count(&self, field: &str, n: i64) -> Result<u64, ConfigError> {
        u64::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| self.err(field, format!("{n} must be greater than 0")))
    }

    fn memory(
        &self,
        field: &str,
        v: Option<toml::Value>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let m = self.size(field, v, default)?;
        if !((1 << 20)..=(4u64 << 30)).contains(&m) {
            return Err(self.err(field, format!("{m} bytes is outside 1MiB..4GiB")));
        }
        Ok(m)
    }

    /// `[server.signing]` (PROTOCOL §9).
    fn signing(&self, raw: RawSigning) -> Result<SigningConfig, ConfigError> {
        let mut keys = BTreeMap::new();
        for (id, text) in raw.keys {
            let field = format!("[server.signing] keys.{id}");
            // The id is matched against the payload's `key_id` and written
            // to logs and the audit trail: keep it visible and one line.
            if id.is_empty() || id.chars().any(char::is_control) {
                return Err(self.err(
                    &field,
                    "a key id must be non-empty and free of control characters",
                ));
            }
            let key = signing::parse_public_key(&text).map_err(|m| self.err(&field, m))?;
            keys.insert(id, key);
        }
        let require = raw.require.unwrap_or(!keys.is_empty());
        if require && keys.is_empty() {
            return Err(self.err(
                "[server.signing] require",
                "is true but no keys are configured: add keys = { \"<id>\" = \"<base64 public key>\" } or set require = false",
            ));
        }
        let field = "[server.signing] max_skew";
        let max_skew = self.duration(field, raw.max_skew, signing::DEFAULT_MAX_SKEW)?;
        // Timestamps are whole seconds; more than a day of skew would make
        // the replay window (2 × max_skew) and its cache pointlessly large.
        if max_skew.subsec_nanos() != 0 {
            return Err(self.err(
                field,
                "must be a whole number of seconds, as timestamps are (e.g. \"300s\")",
            ));
        }
        let secs = max_skew.as_secs();
        if !(1..=MAX_SIGNING_SKEW_SECS).contains(&secs) {
            return Err(self.err(field, format!("{secs}s is outside 1s..24h (e.g. \"300s\")")));
        }
        Ok(SigningConfig {
            keys,
            require,
            max_skew,
        })
    }

    fn positive(&self, field: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            return Err(self.err(field, "must be greater than 0"));
        }
        Ok(d)
    }
}

/// Derives the WebSocket URL from `[server] address` (PROTOCOL §1).
pub fn ws_url(address: &str) -> Result<String, String> {
    let a = address.trim();
    if a.is_empty() {
        return Err("is empty (use host:port, http(s):// or ws(s)://)".into());
    }
    let (scheme, rest) = match a.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), a),
    };
    let ws = match scheme.as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(format!(
                "scheme `{other}` is not supported (use host:port, http(s):// or ws(s)://)"
            ));
        }
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        return Err(format!(
            "has a path `{path}`; give only the server's base address (the agent adds /api/v1/agent/ws)"
        ));
    }
    if authority.is_empty() {
        return Err("has no host".into());
    }
    Ok(format!("{ws}://{authority}/api/v1/agent/ws"))
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
            source: None,
        }
    }
}

impl Config {
    /// Loads `path`, or the default path (all defaults when it is missing).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Config::parse(&text, &path)
    }

    /// Parses config text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: e.message().to_string(),
        })?;
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
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                return Err(cx.err(
                    "[sandbox] max_concurrent_sessions",
                    format!("{n} must be at least 1"),
                ));
            }
        };
        let count = |field: &str, v: Option<i64>, default: u64| match v {
            None => Ok(default),
            Some(n) => cx.count(field, n),
        };
        let fuel = count("[sandbox] fuel", sb.fuel, d.limits.fuel)?;
        let limits = Limits {
            fuel,
            max_memory: cx.memory("[sandbox] max_memory", sb.max_memory, d.limits.max_memory)?,
            timeout: cx.positive(
                "[sandbox] timeout",
                cx.duration("[sandbox] timeout", sb.timeout, d.limits.timeout)?,
            )?,
            max_output: cx.size("[sandbox] max_output", sb.max_output, d.limits.max_output)?,
            max_tool_calls: count(
                "[sandbox] max_tool_calls",
                sb.max_tool_calls,
                d.limits.max_tool_calls,
            )?,
        };
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
            diagnose_overrides: cx.limits(
                "sandbox.diagnose",
                sb.diagnose.unwrap_or_default(),
                &limits,
            )?,
            chat_overrides: cx.limits("sandbox.chat", sb.chat.unwrap_or_default(), &limits)?,
            limits,
            shell_timeout: cx.positive(
                "[sandbox] shell_timeout",
                cx.duration("[sandbox] shell_timeout", sb.shell_timeout, d.shell_timeout)?,
            )?,
            shell_output: cx.size("[sandbox] shell_output", sb.shell_output, d.shell_output)?,
            guest_stdio: cx.size("[sandbox] guest_stdio", sb.guest_stdio, d.guest_stdio)?,
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
        Ok(Config {
            audit,
            state_dir: cx
                .path_of(raw.state_dir)
                .unwrap_or_else(|| cx.base.join("state.d")),
            labels: raw.labels,
            plugins: raw.plugins,
            server,
            sandbox,
            log: LogConfig { level, format },
            source: Some(path.to_path_buf()),
        })
    }

    /// The WebSocket URL of the server.
    pub fn server_ws_url(&self) -> Result<String, String> {
        ws_url(&self.server.address)
    }

    /// `<state_dir>/agent_id`.
    pub fn agent_id_path(&self) -> PathBuf {
        self.state_dir.join("agent_id")
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

/// Reads the agent id from `<state_dir>/agent_id`, or creates one.
pub fn load_or_create_agent_id(state_dir: &Path) -> anyhow::Result<uuid::Uuid> {
    use anyhow::Context;
    let path = state_dir.join("agent_id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(id) = uuid::Uuid::parse_str(text.trim()) {
            return Ok(id);
        }
        tracing::warn!(path = %path.display(), "agent id file does not hold a UUID; replacing it");
    }
    let id = uuid::Uuid::new_v4();
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("writing agent id to {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml"))
    }

    #[test]
    fn defaults_when_the_file_is_empty() {
        let c = parse("").expect("ok");
        assert_eq!(c.state_dir, PathBuf::from("/etc/catpaw/state.d"));
        assert!(!c.server.enabled);
        assert_eq!(c.server.alert_buffer_size, 1000);
        assert_eq!(c.sandbox.max_concurrent_sessions, 3);
        assert!(!c.sandbox.allow_remote_shell);
        assert_eq!(c.sandbox.limits, Limits::default());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("64XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn ws_urls_follow_the_protocol() {
        let ok = [
            ("example.com:8080", "ws://example.com:8080/api/v1/agent/ws"),
            ("http://h", "ws://h/api/v1/agent/ws"),
            ("https://h:443/", "wss://h:443/api/v1/agent/ws"),
            ("ws://h?x=1#f", "ws://h/api/v1/agent/ws"),
            ("wss://[::1]:9000", "wss://[::1]:9000/api/v1/agent/ws"),
        ];
        for (a, want) in ok {
            assert_eq!(ws_url(a).as_deref(), Ok(want), "{a}");
        }
        for bad in ["ftp://h", "http://h/api", "", "http://"] {
            assert!(ws_url(bad).is_err(), "{bad}");
        }
        assert!(ws_url("ftp://h").unwrap_err().contains("scheme `ftp`"));
    }

    #[test]
    fn bad_values_name_the_file_and_field() {
        let e = parse("[sandbox]\nmax_memory = \"64XB\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.toml") && e.contains("[sandbox] max_memory") && e.contains("64XB"),
            "{e}"
        );
        let e = parse("[server]\nenabled = true\naddress = \"ftp://x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[server] address") && e.contains("ftp"), "{e}");
        let e = parse("[sandbox]\nbogus = 1").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[sandbox]\nmax_concurrent_sessions = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_concurrent_sessions"), "{e}");
        let e = parse("[log]\nlevel = \"loud\"").unwrap_err().to_string();
        assert!(e.contains("[log] level"), "{e}");
    }

    #[test]
    fn per_role_overrides_apply() {
        let c = parse("[sandbox]\nfuel = 5\ntimeout = \"10s\"\n[sandbox.chat]\nfuel = 7\nmax_memory = \"32MiB\"").expect("ok");
        assert_eq!(c.sandbox.limits_for(RunnerKind::Diagnose).fuel, 5);
        let chat = c.sandbox.limits_for(RunnerKind::Chat);
        assert_eq!(chat.fuel, 7);
        assert_eq!(chat.max_memory, 32 << 20);
        assert_eq!(chat.timeout, Duration::from_secs(10));
    }

    #[test]
    fn tool_call_budget_defaults_overrides_and_validation() {
        let c = parse("").expect("ok");
        assert_eq!(
            c.sandbox.limits_for(RunnerKind::Diagnose).max_tool_calls,
            256
        );
        let c = parse("[sandbox]\nmax_tool_calls = 40\n[sandbox.chat]\nmax_tool_calls = 8")
            .expect("ok");
        assert_eq!(
            c.sandbox.limits_for(RunnerKind::Diagnose).max_tool_calls,
            40
        );
        assert_eq!(c.sandbox.limits_for(RunnerKind::Chat).max_tool_calls, 8);
        for bad in [
            "[sandbox]\nmax_tool_calls = 0",
            "[sandbox.chat]\nmax_tool_calls = -3",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("max_tool_calls") && e.contains("greater than 0"),
                "{e}"
            );
        }
        let e = parse("[sandbox]\nfuel = -1").unwrap_err().to_string();
        assert!(e.contains("[sandbox] fuel"), "{e}");
    }

    #[test]
    fn a_root_agent_with_remote_shells_needs_a_shell_user() {
        assert!(shell_user_rule(true, None, true).is_err());
        assert!(shell_user_rule(true, Some("nobody"), true).is_ok());
        assert!(shell_user_rule(true, None, false).is_ok());
        assert!(shell_user_rule(false, None, true).is_ok());
        assert!(shell_user_rule(true, Some("root"), true).is_err());
        if unsafe { libc::geteuid() } == 0 {
            let e =
                parse("[sandbox]\nallow_remote_shell = true\n").expect_err("root needs shell_user");
            assert!(e.to_string().contains("[sandbox] shell_user"), "{e}");
        }
        let c =
            parse("[sandbox]\nallow_remote_shell = true\nshell_user = \"nobody\"\n").expect("ok");
        assert_eq!(c.sandbox.shell_user.as_deref(), Some("nobody"));
    }

    #[test]
    fn audit_rotation_settings() {
        let c = parse("").expect("defaults");
        assert_eq!(c.audit.max_size, 64 << 20);
        assert_eq!(c.audit.keep, 5);
        assert!(c.audit.append_only);
        let c = parse("[audit]\nmax_size = \"1MiB\"\nkeep = 2\nappend_only = false\n").expect("ok");
        assert_eq!(
            (c.audit.max_size, c.audit.keep, c.audit.append_only),
            (1 << 20, 2, false)
        );
        assert!(parse("[audit]\nkeep = 0\n").is_err());
        assert!(parse("[audit]\nmax_size = 100\n").is_err());
    }

    #[test]
    fn env_values_are_expanded() {
        // SAFETY: test-only env mutation with a name unique to this test.
        unsafe { std::env::set_var("CATPAW_TEST_TOKEN_7731", "s3cret") };
        let c = parse("[server]\nagent_token = \"${CATPAW_TEST_TOKEN_7731}\"").expect("ok");
        assert_eq!(c.server.agent_token, "s3cret");
        let e = parse("[server]\nagent_token = \"${CATPAW_TEST_UNSET_7731}\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("CATPAW_TEST_UNSET_7731"), "{e}");
    }

    #[test]
    fn signing_section_defaults() {
        let vector_key = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";
        let keys = format!("keys = {{ \"ops-1\" = \"{vector_key}\" }}");
        // (section body, require, max_skew seconds, key ids)
        let cases = [
            (String::new(), false, 300, vec![]),
            (keys.clone(), true, 300, vec!["ops-1"]),
            (
                format!("{keys}\nrequire = false"),
                false,
                300,
                vec!["ops-1"],
            ),
            (
                format!("{keys}\nmax_skew = \"2m\""),
                true,
                120,
                vec!["ops-1"],
            ),
            (format!("{keys}\nmax_skew = 60"), true, 60, vec!["ops-1"]),
            ("max_skew = \"24h\"".into(), false, 86400, vec![]),
        ];
        for (body, require, skew, ids) in cases {
            let c = parse(&format!("[server.signing]\n{body}")).expect(&body);
            let s = &c.server.signing;
            assert_eq!(s.require, require, "{body}");
            assert_eq!(s.max_skew, Duration::from_secs(skew), "{body}");
            assert_eq!(s.keys.keys().collect::<Vec<_>>(), ids, "{body}");
        }
        let c = parse(&format!("[server.signing]\n{keys}")).expect("ok");
        assert_eq!(
            c.server.signing.keys["ops-1"],
            signing::parse_public_key(vector_key).expect("vector key")
        );
        assert_eq!(
            parse("").expect("ok").server.signing,
            SigningConfig::default()
        );
    }

    #[test]
    fn signing_section_errors_name_the_field() {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = |v: &str| format!("keys = {{ \"ops-1\" = \"{v}\" }}");
        let good = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";
        // (section body, field named, words in the message)
        let cases = [
            (key("not base64!"), "[server.signing] keys.ops-1", "base64"),
            (
                key(good.trim_end_matches('=')),
                "[server.signing] keys.ops-1",
                "base64",
            ),
            (
                key(&b64(&[9; 31])),
                "[server.signing] keys.ops-1",
                "31 bytes",
            ),
            (key(&b64(&identity)), "[server.signing] keys.ops-1", "weak"),
            (
                format!("keys = {{ \"\" = \"{good}\" }}"),
                "[server.signing] keys.",
                "non-empty",
            ),
            (
                "require = true".into(),
                "[server.signing] require",
                "no keys",
            ),
            (
                format!("{}\nmax_skew = \"0s\"", key(good)),
                "[server.signing] max_skew",
                "1s..24h",
            ),
            (
                format!("{}\nmax_skew = \"25h\"", key(good)),
                "[server.signing] max_skew",
                "1s..24h",
            ),
            (
                format!("{}\nmax_skew = \"1500ms\"", key(good)),
                "[server.signing] max_skew",
                "whole number",
            ),
            (
                format!("{}\nmax_skew = \"soon\"", key(good)),
                "[server.signing] max_skew",
                "soon",
            ),
            ("bogus = 1".into(), "", "bogus"),
        ];
        for (body, field, words) in cases {
            let e = parse(&format!("[server.signing]\n{body}"))
                .expect_err(&body)
                .to_string();
            assert!(
                e.contains("config.toml") && e.contains(field) && e.contains(words),
                "{body}: {e}"
            );
        }
    }

    #[test]
    fn agent_id_is_created_kept_and_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_agent_id(dir.path()).expect("create");
        let b = load_or_create_agent_id(dir.path()).expect("reuse");
        assert_eq!(a, b);
        std::fs::write(dir.path().join("agent_id"), "garbage").expect("write");
        let c = load_or_create_agent_id(dir.path()).expect("repair");
        assert_ne!(a, c);
        let text = std::fs::read_to_string(dir.path().join("agent_id")).expect("read");
        assert_eq!(text, format!("{c}\n"));
    }
}
