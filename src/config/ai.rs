//! `[ai]`: the language models the AI runner asks, with catpaw's own key
//! names and defaults, so a catpaw `[ai]` section works here unchanged.
//!
//! ```toml
//! [ai]
//! enabled = true
//! model_priority = ["local", "deepseek"]   # failover order
//! request_timeout = "60s"
//! max_retries = 2                           # on 429, 5xx, timeouts; never on other 4xx
//! retry_backoff = "2s"
//! daily_token_limit = 500000                # 0: no limit
//! max_rounds = 15
//! language = "en"
//!
//! [ai.models.local]
//! provider = "openai"                       # any OpenAI-compatible endpoint
//! base_url = "http://127.0.0.1:11434/v1"
//! api_key = "${OLLAMA_KEY}"
//! model = "qwen2.5"
//!
//! [ai.gateway]                              # or: catpaw-server's LLM gateway
//! enabled = true                            # base_url from [server] address
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;
use super::check::{Ctx, expand_env};
use super::raw::{RawAi, RawGateway, RawModel};
use super::units::duration_value;
use crate::ai::{AiConfig, GatewayConfig, ModelConfig, Secret};

/// Parses `[ai]`. `server_address` and `server_token` are `[server]`'s,
/// from which the gateway's URL and token are derived when not given.
pub(super) fn parse(
    cx: &Ctx<'_>,
    raw: RawAi,
    server_address: &str,
    server_token: &str,
) -> Result<AiConfig, ConfigError> {
    let d = AiConfig::default();
    let time = |field: &str, v: Option<toml::Value>, default: Duration| match v {
        None => Ok(default),
        Some(v) => match duration_value(&v) {
            Ok(t) if t.is_zero() => Err(cx.err(field, "must be greater than 0")),
            Ok(t) => Ok(t),
            Err(m) => Err(cx.err(field, m)),
        },
    };
    let enabled = raw.enabled.unwrap_or(false);
    let mut models = BTreeMap::new();
    for (name, m) in raw.models {
        models.insert(name.clone(), model(cx, &name, m)?);
    }
    let gateway = gateway(cx, raw.gateway, server_address, server_token)?;
    let model_priority = raw.model_priority.unwrap_or_default();
    for name in &model_priority {
        if !models.contains_key(name) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return Err(cx.err(
                "[ai] model_priority",
                format!(
                    "names {name:?}, which has no [ai.models.{name}] section (configured: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let needs_models = !gateway.enabled || gateway.fallback_to_direct;
    if enabled && needs_models && model_priority.is_empty() {
        return Err(cx.err(
            "[ai] model_priority",
            "is required when enabled = true (list [ai.models.<name>] names in failover order, \
             or enable [ai.gateway])",
        ));
    }
    let max_retries = match raw.max_retries {
        None => d.max_retries,
        Some(n) if (0..=10).contains(&n) => n as u32,
        Some(n) => return Err(cx.err("[ai] max_retries", format!("{n} is outside 0..10"))),
    };
    let daily_token_limit = match raw.daily_token_limit {
        None => 0,
        Some(n) if n >= 0 => n as u64,
        Some(n) => {
            return Err(cx.err(
                "[ai] daily_token_limit",
                format!("{n} is negative (0 means no limit)"),
            ));
        }
    };
    let max_rounds = match raw.max_rounds {
        None => d.max_rounds,
        Some(n) if (1..=100).contains(&n) => n as u32,
        Some(n) => return Err(cx.err("[ai] max_rounds", format!("{n} is outside 1..100"))),
    };
    let language = raw
        .language
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .unwrap_or(d.language);
    Ok(AiConfig {
        enabled,
        model_priority,
        models,
        gateway,
        request_timeout: time(
            "[ai] request_timeout",
            raw.request_timeout,
            d.request_timeout,
        )?,
        max_retries,
        retry_backoff: time("[ai] retry_backoff", raw.retry_backoff, d.retry_backoff)?,
        daily_token_limit,
        max_rounds,
        tool_timeout: time("[ai] tool_timeout", raw.tool_timeout, d.tool_timeout)?,
        language,
    })
}

fn model(cx: &Ctx<'_>, name: &str, m: RawModel) -> Result<ModelConfig, ConfigError> {
    let field = |k: &str| format!("[ai.models.{name}] {k}");
    let provider = m.provider.unwrap_or_default();
    if !(provider.is_empty() || provider == "openai") {
        return Err(cx.err(
            &field("provider"),
            format!(
                "{provider:?} is not supported by this agent (use \"openai\" for any \
                 OpenAI-compatible endpoint, or [ai.gateway])"
            ),
        ));
    }
    let base_url = expand_env(&m.base_url.unwrap_or_default())
        .map_err(|e| cx.err(&field("base_url"), e))?
        .trim()
        .trim_end_matches('/')
        .to_string();
    if base_url.is_empty() {
        return Err(cx.err(
            &field("base_url"),
            "is required (e.g. https://api.openai.com/v1)",
        ));
    }
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(cx.err(&field("base_url"), "must start with http:// or https://"));
    }
    let raw_key = m.api_key.unwrap_or_default();
    let api_key_from_env = super::check::env_name(&raw_key).is_some();
    let api_key = expand_env(&raw_key).map_err(|e| cx.err(&field("api_key"), e))?;
    if api_key.is_empty() {
        return Err(cx.err(
            &field("api_key"),
            "is required (write api_key = \"${ENV_VAR}\" to keep it out of the file; any \
             non-empty value for a server that checks none)",
        ));
    }
    let model = m.model.unwrap_or_default();
    if model.trim().is_empty() {
        return Err(cx.err(&field("model"), "is required (the provider's model id)"));
    }
    let tokens = |k: &str, v: Option<i64>| match v {
        None => Ok(0),
        Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => Ok(n as u32),
        Some(n) => Err(cx.err(&field(k), format!("{n} is outside 0..{}", u32::MAX))),
    };
    let mut max_tokens = tokens("max_tokens", m.max_tokens)?;
    let max_completion_tokens = tokens("max_completion_tokens", m.max_completion_tokens)?;
    if max_tokens == 0 && max_completion_tokens == 0 {
        max_tokens = 4000;
    }
    let context_window = match tokens("context_window", m.context_window)? {
        0 => 128_000,
        n => n,
    };
    let mut extra_body = serde_json::Map::new();
    for (k, v) in m.extra_body.unwrap_or_default() {
        let v = match v {
            toml::Value::String(s) => {
                toml::Value::String(expand_env(&s).map_err(|e| cx.err(&field("extra_body"), e))?)
            }
            other => other,
        };
        let json = serde_json::to_value(&v).map_err(|e| {
            cx.err(
                &field(&format!("extra_body.{k}")),
                format!("cannot be sent as JSON: {e}"),
            )
        })?;
        extra_body.insert(k, json);
    }
    Ok(ModelConfig {
        provider: "openai".into(),
        base_url,
        api_key: Secret::new(api_key),
        api_key_from_env,
        model,
        max_tokens,
        max_completion_tokens,
        context_window,
        extra_body,
    })
}

fn gateway(
    cx: &Ctx<'_>,
    g: RawGateway,
    server_address: &str,
    server_token: &str,
) -> Result<GatewayConfig, ConfigError> {
    let d = GatewayConfig::default();
    let enabled = g.enabled.unwrap_or(false);
    let mut base_url = expand_env(&g.base_url.unwrap_or_default())
        .map_err(|e| cx.err("[ai.gateway] base_url", e))?
        .trim()
        .trim_end_matches('/')
        .to_string();
    if enabled && base_url.is_empty() {
        base_url = super::url::gateway_url(server_address).map_err(|m| {
            cx.err(
                "[ai.gateway] base_url",
                format!("is empty and cannot be derived from [server] address, which {m}"),
            )
        })?;
    }
    let token = match g.agent_token {
        Some(t) if !t.trim().is_empty() => {
            expand_env(&t).map_err(|e| cx.err("[ai.gateway] agent_token", e))?
        }
        _ => server_token.to_string(),
    };
    let request_timeout = match g.request_timeout {
        None => d.request_timeout,
        Some(v) => match duration_value(&v) {
            Ok(t) if !t.is_zero() => t,
            Ok(_) => return Err(cx.err("[ai.gateway] request_timeout", "must be greater than 0")),
            Err(m) => return Err(cx.err("[ai.gateway] request_timeout", m)),
        },
    };
    let max_retries = match g.max_retries {
        None => d.max_retries,
        Some(n) if (0..=2).contains(&n) => n as u32,
        Some(n) => {
            return Err(cx.err("[ai.gateway] max_retries", format!("{n} is outside 0..2")));
        }
    };
    Ok(GatewayConfig {
        enabled,
        base_url,
        agent_token: Secret::new(token),
        request_timeout,
        max_retries,
        fallback_to_direct: g.fallback_to_direct.unwrap_or(false),
    })
}

#[cfg(test)]
#[path = "ai_tests.rs"]
mod tests;
