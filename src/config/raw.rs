//! The file as TOML sees it: every key optional, unknown keys refused.
//! `check.rs`, `budgets.rs` and `Config::parse` turn these shapes into the
//! schema.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) state_dir: Option<String>,
    /// Older spelling of `[global.labels]`.
    pub(super) labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) global: RawGlobal,
    #[serde(default)]
    pub(super) plugins: Vec<String>,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) sandbox: RawSandbox,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) audit: RawAudit,
    #[serde(default)]
    pub(super) tools: RawTools,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) ai: RawAi,
    #[serde(default)]
    pub(super) recorder: RawRecorder,
}

/// `[tools]`: what the tools may read and reach.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTools {
    #[serde(default)]
    pub(super) log_files: Vec<String>,
    #[serde(default)]
    pub(super) files: Vec<String>,
    #[serde(default)]
    pub(super) cert_files: Vec<String>,
    #[serde(default)]
    pub(super) sysctl_keys: Vec<String>,
    #[serde(default)]
    pub(super) targets: RawTargets,
}

/// `[tools.targets]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTargets {
    #[serde(default)]
    pub(super) dns: Vec<String>,
    #[serde(default)]
    pub(super) tcp: Vec<String>,
    #[serde(default)]
    pub(super) ping: Vec<String>,
    #[serde(default)]
    pub(super) http: Vec<String>,
    #[serde(default)]
    pub(super) tls: Vec<String>,
    #[serde(default)]
    pub(super) redis: Vec<String>,
    pub(super) redis_password: Option<String>,
    pub(super) docker_socket: Option<String>,
}

/// `[metrics]`: the opt-in Prometheus endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

/// `[global]`, as the reference agent spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub(super) labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecorder {
    pub(super) enabled: Option<bool>,
    pub(super) record_model_content: Option<bool>,
    pub(super) max_size: Option<toml::Value>,
    pub(super) max_total: Option<toml::Value>,
    pub(super) keep_days: Option<i64>,
    pub(super) dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) max_size: Option<toml::Value>,
    pub(super) keep: Option<i64>,
    pub(super) append_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) enabled: Option<bool>,
    pub(super) address: Option<String>,
    pub(super) agent_token: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) tls_skip_verify: Option<bool>,
    pub(super) tls_cert: Option<String>,
    pub(super) tls_key: Option<String>,
    pub(super) alert_buffer_size: Option<i64>,
    pub(super) signing: Option<RawSigning>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    #[serde(default)]
    pub(super) keys: BTreeMap<String, String>,
    pub(super) require: Option<bool>,
    pub(super) max_skew: Option<toml::Value>,
}

/// The budget keys of one section (`[sandbox]`, `[sandbox.diagnose]`,
/// `[sandbox.chat]`), left untyped for the budget funnel (`budgets.rs`),
/// which parses them and refuses unknown keys.
pub(super) type RawBudgets = BTreeMap<String, toml::Value>;

/// `[sandbox]`. Not `deny_unknown_fields` (serde cannot combine it with
/// `flatten`): every key not named here lands in `budgets`, where the
/// funnel refuses what is not a budget.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawSandbox {
    pub(super) max_concurrent_sessions: Option<i64>,
    pub(super) allow_remote_shell: Option<bool>,
    pub(super) shell_user: Option<String>,
    pub(super) runner: Option<String>,
    pub(super) diagnose_runner: Option<String>,
    pub(super) chat_runner: Option<String>,
    pub(super) watch_runners: Option<bool>,
    pub(super) max_runner_size: Option<toml::Value>,
    pub(super) require_declared_capabilities: Option<bool>,
    /// `[sandbox.policy.<name>]`: capability keys and budgets, left
    /// untyped for `policy.rs`.
    #[serde(default)]
    pub(super) policy: BTreeMap<String, RawBudgets>,
    #[serde(default)]
    pub(super) runner_keys: BTreeMap<String, String>,
    pub(super) require_signed_runners: Option<bool>,
    #[serde(default)]
    pub(super) diagnose: RawBudgets,
    #[serde(default)]
    pub(super) chat: RawBudgets,
    #[serde(flatten)]
    pub(super) budgets: RawBudgets,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
    pub(super) format: Option<String>,
}

/// `[ai]`, with catpaw's own key names. The keys catpaw has for features
/// this agent leaves to the server (alert aggregation, diagnosis records,
/// its own concurrency queue) never reach this schema: `upstream.rs`
/// takes them out and names them in one warning line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAi {
    pub(super) enabled: Option<bool>,
    pub(super) model_priority: Option<Vec<String>>,
    pub(super) request_timeout: Option<toml::Value>,
    pub(super) max_retries: Option<i64>,
    pub(super) retry_backoff: Option<toml::Value>,
    pub(super) daily_token_limit: Option<i64>,
    pub(super) max_rounds: Option<i64>,
    pub(super) tool_timeout: Option<toml::Value>,
    pub(super) language: Option<String>,
    #[serde(default)]
    pub(super) models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub(super) gateway: RawGateway,
    #[serde(default)]
    pub(super) mcp: RawMcp,
}

/// `[ai.mcp]`, catpaw's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    pub(super) enabled: Option<bool>,
    pub(super) default_identity: Option<String>,
    #[serde(default)]
    pub(super) servers: Vec<RawMcpServer>,
}

/// One `[[ai.mcp.servers]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcpServer {
    pub(super) name: Option<String>,
    pub(super) command: Option<String>,
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) identity: Option<String>,
    #[serde(default)]
    pub(super) tools_allow: Vec<String>,
}

/// `[ai.models.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) provider: Option<String>,
    pub(super) base_url: Option<String>,
    pub(super) api_key: Option<String>,
    pub(super) model: Option<String>,
    pub(super) max_tokens: Option<i64>,
    pub(super) max_completion_tokens: Option<i64>,
    pub(super) context_window: Option<i64>,
    pub(super) extra_body: Option<toml::Table>,
}

/// `[ai.gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub(super) enabled: Option<bool>,
    pub(super) base_url: Option<String>,
    pub(super) agent_token: Option<String>,
    pub(super) request_timeout: Option<toml::Value>,
    pub(super) max_retries: Option<i64>,
    pub(super) fallback_to_direct: Option<bool>,
}
