//! The effective configuration as `catpaw-agent config check` prints it:
//! every key with the value the agent will use (defaults included), secrets
//! redacted, in the file's own syntax; and the commented example config
//! `catpaw-agent config example` prints.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::Config;
use super::units::format_size;
use crate::sandbox::{Budgets, Slot};

/// The commented example config (every key, at its default).
pub const EXAMPLE: &str = include_str!("example.toml");

/// What a secret is replaced by.
pub const REDACTED: &str = "<redacted>";

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A table key: bare when TOML allows it, quoted otherwise.
fn table_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { k.to_string() } else { q(k) }
}

fn path(p: &Path) -> String {
    q(&p.display().to_string())
}

fn opt_path(p: &Option<std::path::PathBuf>) -> String {
    p.as_deref().map_or_else(|| q(""), path)
}

fn duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        q(&format!("{}s", d.as_secs()))
    } else {
        q(&format!("{}ms", d.as_millis()))
    }
}

/// `key = value` lines of every budget in `b`.
fn budgets(out: &mut String, b: &Budgets) {
    let mut copy = b.clone();
    for key in Budgets::KEYS {
        let value = match key.slot(&mut copy) {
            Slot::Count(n) => n.to_string(),
            Slot::Bytes(n, _) => q(&format_size(*n)),
            Slot::Time(d) => duration(*d),
        };
        let _ = writeln!(out, "{} = {value}", key.name);
    }
}

/// One `[sandbox.policy.<name>]` table: what it leaves, what it lowers.
fn policy(out: &mut String, name: &str, p: &crate::sandbox::RunnerPolicy) {
    let _ = writeln!(out, "\n[sandbox.policy.{}]", table_key(name));
    if let crate::sandbox::ToolSet::Only(names) = &p.capabilities.tools {
        let names: Vec<String> = names.iter().map(|n| q(n)).collect();
        let _ = writeln!(out, "tools = [{}]", names.join(", "));
    }
    let _ = writeln!(out, "shell = {}", p.capabilities.shell);
    let _ = writeln!(out, "llm = {}", p.capabilities.llm);
    // Every server is the default: said only when narrower.
    match &p.capabilities.mcp {
        crate::sandbox::McpSet::All => {}
        crate::sandbox::McpSet::Only(names) if names.is_empty() => {
            let _ = writeln!(out, "mcp = false");
        }
        crate::sandbox::McpSet::Only(names) => {
            let names: Vec<String> = names.iter().map(|n| q(n)).collect();
            let _ = writeln!(out, "mcp = [{}]", names.join(", "));
        }
    }
    for (key, b) in &p.budgets {
        let mut b = b.clone();
        let value = match key.slot(&mut b) {
            Slot::Count(n) => n.to_string(),
            Slot::Bytes(n, _) => q(&format_size(*n)),
            Slot::Time(d) => duration(*d),
        };
        let _ = writeln!(out, "{} = {value}", key.name);
    }
}

impl Config {
    /// The effective configuration, in TOML: every key the file may hold
    /// with the value in force, the agent token and any password in the
    /// server address replaced by [`REDACTED`].
    pub fn effective(&self) -> String {
        let mut o = String::new();
        let w = &mut o;
        let _ = writeln!(w, "state_dir = {}", path(&self.state_dir));
        let _ = writeln!(w, "\n[global.labels]");
        for (k, v) in &self.labels {
            let _ = writeln!(w, "{} = {}", table_key(k), q(v));
        }
        let s = &self.server;
        let _ = writeln!(w, "\n[server]");
        let _ = writeln!(w, "enabled = {}", s.enabled);
        let address = super::redact_url(&s.address).replace("***@", &format!("{REDACTED}@"));
        let _ = writeln!(w, "address = {}", q(&address));
        let token = if s.agent_token.is_empty() {
            ""
        } else {
            REDACTED
        };
        let _ = writeln!(w, "agent_token = {}", q(token));
        let _ = writeln!(w, "ca_file = {}", opt_path(&s.ca_file));
        let _ = writeln!(w, "tls_skip_verify = {}", s.tls_skip_verify);
        let _ = writeln!(w, "tls_cert = {}", opt_path(&s.tls_cert));
        let _ = writeln!(w, "tls_key = {}", opt_path(&s.tls_key));
        let _ = writeln!(w, "alert_buffer_size = {}", s.alert_buffer_size);
        let _ = writeln!(w, "\n[server.signing]");
        let _ = writeln!(w, "require = {}", s.signing.require);
        let _ = writeln!(w, "max_skew = {}", duration(s.signing.max_skew));
        let _ = writeln!(w, "\n[server.signing.keys]");
        for (id, key) in &s.signing.keys {
            let b64 =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_bytes());
            let _ = writeln!(w, "{} = {}", table_key(id), q(&b64));
        }
        let sb = &self.sandbox;
        let _ = writeln!(w, "\n[sandbox]");
        let _ = writeln!(
            w,
            "max_concurrent_sessions = {}",
            sb.max_concurrent_sessions
        );
        let _ = writeln!(w, "allow_remote_shell = {}", sb.allow_remote_shell);
        let _ = writeln!(
            w,
            "shell_user = {}",
            q(sb.shell_user.as_deref().unwrap_or(""))
        );
        let _ = writeln!(w, "runner = {}", opt_path(&sb.runner));
        let _ = writeln!(w, "diagnose_runner = {}", opt_path(&sb.diagnose_runner));
        let _ = writeln!(w, "chat_runner = {}", opt_path(&sb.chat_runner));
        let _ = writeln!(w, "watch_runners = {}", sb.watch_runners);
        let _ = writeln!(
            w,
            "max_runner_size = {}",
            q(&format_size(sb.max_runner_size))
        );
        let _ = writeln!(
            w,
            "require_declared_capabilities = {}",
            sb.require_declared_capabilities
        );
        let _ = writeln!(w, "require_signed_runners = {}", sb.runner_trust.require());
        let keys = sb.runner_trust.public_keys();
        if !keys.is_empty() {
            let _ = writeln!(w, "\n[sandbox.runner_keys]");
            for (name, line) in keys {
                let _ = writeln!(w, "{} = {}", table_key(&name), q(&line));
            }
        }
        let _ = writeln!(w, "\n[sandbox.diagnose]");
        budgets(w, &sb.budgets.diagnose);
        let _ = writeln!(w, "\n[sandbox.chat]");
        budgets(w, &sb.budgets.chat);
        for (name, p) in &sb.policies.by_name {
            policy(w, name, p);
        }
        let _ = writeln!(w, "\n[log]");
        let _ = writeln!(w, "level = {}", q(&self.log.level));
        let _ = writeln!(w, "format = {}", q(&self.log.format));
        let _ = writeln!(w, "\n[audit]");
        let _ = writeln!(w, "max_size = {}", q(&format_size(self.audit.max_size)));
        let _ = writeln!(w, "keep = {}", self.audit.keep);
        let _ = writeln!(w, "append_only = {}", self.audit.append_only);
        let r = &self.recorder;
        let _ = writeln!(w, "\n[recorder]");
        let _ = writeln!(w, "enabled = {}", r.enabled);
        let _ = writeln!(w, "record_model_content = {}", r.record_model_content);
        let _ = writeln!(w, "max_size = {}", q(&format_size(r.max_size)));
        let _ = writeln!(w, "max_total = {}", q(&format_size(r.max_total)));
        let _ = writeln!(w, "keep_days = {}", r.keep_days);
        let dir = r.dir_under(&self.state_dir);
        let _ = writeln!(w, "dir = {}", q(&dir.display().to_string()));
        let _ = writeln!(w, "\n[metrics]");
        let listen = self
            .metrics
            .listen
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = writeln!(w, "listen = {}", q(&listen));
        let t = &self.tools;
        let list = |v: &[String]| {
            format!(
                "[{}]",
                v.iter().map(|x| q(x)).collect::<Vec<_>>().join(", ")
            )
        };
        let _ = writeln!(w, "\n[tools]");
        let _ = writeln!(w, "log_files = {}", list(&t.log_files));
        let _ = writeln!(w, "files = {}", list(&t.files));
        let _ = writeln!(w, "cert_files = {}", list(&t.cert_files));
        let _ = writeln!(w, "sysctl_keys = {}", list(&t.sysctl_keys));
        let tt = &t.targets;
        let _ = writeln!(w, "\n[tools.targets]");
        let _ = writeln!(w, "dns = {}", list(&tt.dns));
        let _ = writeln!(w, "tcp = {}", list(&tt.tcp));
        let _ = writeln!(w, "ping = {}", list(&tt.ping));
        let _ = writeln!(w, "http = {}", list(&tt.http));
        let _ = writeln!(w, "tls = {}", list(&tt.tls));
        let _ = writeln!(w, "redis = {}", list(&tt.redis));
        let pw = if tt.redis_password.as_deref().unwrap_or("").is_empty() {
            ""
        } else {
            REDACTED
        };
        let _ = writeln!(w, "redis_password = {}", q(pw));
        let _ = writeln!(
            w,
            "docker_socket = {}",
            q(&tt
                .docker_socket
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default())
        );
        ai(w, &self.ai);
        mcp(w, &self.mcp);
        o
    }
}

/// `[ai]`, its gateway and its models, keys redacted.
fn ai(w: &mut String, ai: &crate::ai::AiConfig) {
    let secret = |s: &crate::ai::Secret| q(if s.is_empty() { "" } else { REDACTED });
    let _ = writeln!(w, "\n[ai]");
    let _ = writeln!(w, "enabled = {}", ai.enabled);
    let names: Vec<String> = ai.model_priority.iter().map(|n| q(n)).collect();
    let _ = writeln!(w, "model_priority = [{}]", names.join(", "));
    let _ = writeln!(w, "request_timeout = {}", duration(ai.request_timeout));
    let _ = writeln!(w, "max_retries = {}", ai.max_retries);
    let _ = writeln!(w, "retry_backoff = {}", duration(ai.retry_backoff));
    let _ = writeln!(w, "daily_token_limit = {}", ai.daily_token_limit);
    let _ = writeln!(w, "max_rounds = {}", ai.max_rounds);
    let _ = writeln!(w, "tool_timeout = {}", duration(ai.tool_timeout));
    let _ = writeln!(w, "language = {}", q(&ai.language));
    let g = &ai.gateway;
    let _ = writeln!(w, "\n[ai.gateway]");
    let _ = writeln!(w, "enabled = {}", g.enabled);
    let _ = writeln!(w, "base_url = {}", q(&g.base_url));
    let _ = writeln!(w, "agent_token = {}", secret(&g.agent_token));
    let _ = writeln!(w, "request_timeout = {}", duration(g.request_timeout));
    let _ = writeln!(w, "max_retries = {}", g.max_retries);
    let _ = writeln!(w, "fallback_to_direct = {}", g.fallback_to_direct);
    for (name, m) in &ai.models {
        let _ = writeln!(w, "\n[ai.models.{}]", table_key(name));
        let _ = writeln!(w, "provider = {}", q(&m.provider));
        let _ = writeln!(w, "base_url = {}", q(&m.base_url));
        let _ = writeln!(w, "api_key = {}", secret(&m.api_key));
        let _ = writeln!(w, "model = {}", q(&m.model));
        let _ = writeln!(w, "max_tokens = {}", m.max_tokens);
        let _ = writeln!(w, "max_completion_tokens = {}", m.max_completion_tokens);
        let _ = writeln!(w, "context_window = {}", m.context_window);
        if !m.extra_body.is_empty() {
            let _ = writeln!(w, "\n[ai.models.{}.extra_body]", table_key(name));
            for (k, v) in &m.extra_body {
                // JSON scalars and arrays read back as the same TOML.
                let _ = writeln!(w, "{} = {v}", table_key(k));
            }
        }
    }
}

/// `[ai.mcp]` and its servers; `env` values redacted (they often hold a
/// token).
fn mcp(w: &mut String, m: &crate::mcp_client::McpConfig) {
    let list = |items: &[String]| {
        let items: Vec<String> = items.iter().map(|i| q(i)).collect();
        format!("[{}]", items.join(", "))
    };
    let _ = writeln!(w, "\n[ai.mcp]");
    let _ = writeln!(w, "enabled = {}", m.enabled);
    let _ = writeln!(w, "default_identity = {}", q(&m.default_identity));
    for s in &m.servers {
        let _ = writeln!(w, "\n[[ai.mcp.servers]]");
        let _ = writeln!(w, "name = {}", q(&s.name));
        let _ = writeln!(w, "command = {}", q(&s.command));
        let _ = writeln!(w, "args = {}", list(&s.args));
        let env: Vec<String> = s
            .env
            .keys()
            .map(|k| format!("{} = {}", table_key(k), q(REDACTED)))
            .collect();
        let _ = writeln!(w, "env = {{ {} }}", env.join(", "));
        let _ = writeln!(w, "identity = {}", q(&s.identity));
        let _ = writeln!(w, "tools_allow = {}", list(&s.tools_allow));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml")).expect("parses")
    }

    #[test]
    fn the_example_parses_with_the_loader_and_says_the_defaults() {
        let example = parse(EXAMPLE);
        let empty = parse("");
        // The example states the defaults: beside its labels and its
        // server section, the agent it configures is the default one.
        assert_eq!(example.sandbox.budgets, empty.sandbox.budgets);
        assert_eq!(
            example.sandbox.max_concurrent_sessions,
            empty.sandbox.max_concurrent_sessions
        );
        assert_eq!(
            example.sandbox.max_runner_size,
            empty.sandbox.max_runner_size
        );
        assert_eq!(example.audit, empty.audit);
        assert_eq!(example.recorder, empty.recorder);
        assert_eq!(example.metrics, empty.metrics);
        assert_eq!(example.tools, empty.tools);
        assert_eq!(example.ai, empty.ai);
        assert_eq!(example.log.level, empty.log.level);
        assert_eq!(example.labels["from_hostname"], "${HOSTNAME}");
        // Every key of the effective config appears in the example.
        for line in empty.effective().lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    EXAMPLE.lines().any(|l| {
                        let l = l.trim_start_matches(['#', ' ']);
                        l.starts_with(&format!("{key} ="))
                    }),
                    "the example does not mention `{key}`"
                );
            }
        }
    }

    #[test]
    fn the_effective_config_parses_back_to_the_same_config() {
        let text = "[server]\nenabled = true\naddress = \"https://catpaw.example.com\"\n\
                    [sandbox]\nfuel = 5000000\nrequire_signed_runners = true\n\
                    runner_keys = { ci = \"RWRoKG0rba9qx6xPRN8R+vrD22rLWiO4VNa+Z1bGPpy7lUM7Bqz1dVoU\" }\n\
                    [sandbox.chat]\nmax_memory = \"128MiB\"\n\
                    [metrics]\nlisten = \"127.0.0.1:9464\"\n\
                    [tools]\nlog_files = [\"/var/log/*.log\"]\n\
                    [tools.targets]\ntcp = [\"db:5432\", \"[::1]:6379\"]\n\
                    docker_socket = \"/run/docker.sock\"\n";
        let c = parse(text);
        let again = parse(&c.effective());
        assert_eq!(again.sandbox.budgets, c.sandbox.budgets);
        assert_eq!(again.sandbox.runner_trust, c.sandbox.runner_trust);
        assert!(c.sandbox.runner_trust.require());
        assert_eq!(again.metrics, c.metrics);
        assert_eq!(again.tools, c.tools);
        assert_eq!(again.server.address, c.server.address);
        assert_eq!(again.effective(), c.effective());
    }

    #[test]
    fn the_ai_section_shows_with_its_keys_redacted_and_parses_back() {
        let c = parse(
            "[ai]\nenabled = true\nmodel_priority = [\"local\"]\nlanguage = \"en\"\n\
             [ai.models.local]\nbase_url = \"http://127.0.0.1:11434/v1\"\n\
             api_key = \"key-s3cret\"\nmodel = \"qwen\"\n[ai.models.local.extra_body]\n\
             enable_thinking = true\nthinking_budget = 1000\n",
        );
        let shown = c.effective();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("api_key = \"<redacted>\""), "{shown}");
        let again = parse(&shown);
        assert_eq!(
            again.ai.models["local"].extra_body,
            c.ai.models["local"].extra_body
        );
        assert_eq!(again.ai.model_priority, c.ai.model_priority);
        assert_eq!(again.effective(), shown);
    }

    #[test]
    fn the_mcp_section_shows_with_its_env_redacted_and_parses_back() {
        let c = parse(
            "[ai.mcp]\nenabled = true\ndefault_identity = \"host=${SHORT_HOSTNAME}\"\n\
             [[ai.mcp.servers]]\nname = \"prom\"\ncommand = \"/usr/bin/prom-mcp\"\n\
             args = [\"--ro\"]\nenv = { TOKEN = \"tok-s3cret\" }\ntools_allow = [\"query\"]\n",
        );
        let shown = c.effective();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("env = { TOKEN = \"<redacted>\" }"),
            "{shown}"
        );
        let again = parse(&shown);
        assert_eq!(again.mcp.servers[0].args, c.mcp.servers[0].args);
        assert_eq!(again.mcp.servers[0].tools_allow, ["query"]);
        assert_eq!(again.mcp.default_identity, c.mcp.default_identity);
        assert_eq!(again.effective(), shown);
    }

    #[test]
    fn secrets_are_redacted() {
        let c = parse(
            "[server]\nenabled = true\naddress = \"https://u:pw-s3cret@catpaw.example.com\"\n\
             agent_token = \"tok-s3cret\"\n[tools.targets]\nredis_password = \"redis-s3cret\"\n",
        );
        let shown = c.effective();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("agent_token = \"<redacted>\""), "{shown}");
        assert!(shown.contains("redis_password = \"<redacted>\""), "{shown}");
        assert!(
            shown.contains("https://<redacted>@catpaw.example.com"),
            "{shown}"
        );
    }
}
