//! One call to catpaw-server's LLM gateway: `POST {base_url}/chat` with
//! `X-Agent-Token`, `X-Agent-ID` and `X-Agent-Scene`, the request
//! `{messages, tools, max_tokens, timeout_ms, metadata}`, and the answer in
//! an envelope `{request_id, data: {id, model, message, finish_reason,
//! usage, …}, error: {code, message}}` (as the reference agent speaks it).
//! The gateway does not stream, and its redirects are not followed.

use serde::Deserialize;
use serde_json::json;

use super::GatewayConfig;
use super::openai::{read_limited, redirect, transport};
use super::wire::{self, WireMessage, WireUsage};
use super::{CallContext, Failure, Message, Reply, ToolSpec};

/// Largest envelope read (the reference's cap).
const MAX_BODY: usize = 10 << 20;

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(default)]
    model: String,
    #[serde(default)]
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The reply and the model the gateway says answered.
pub(super) async fn chat(
    http: &reqwest::Client,
    g: &GatewayConfig,
    agent_id: &str,
    cx: &CallContext,
    messages: &[Message],
    tools: &[ToolSpec],
    max_tokens: u64,
) -> Result<(Reply, Option<String>), Failure> {
    let body = body(g, cx, messages, tools, max_tokens);
    let mut req = http
        .post(format!("{}/chat", g.base_url))
        .header("X-Agent-ID", agent_id)
        .header("X-Agent-Scene", cx.scene)
        .json(&body);
    if !g.agent_token.is_empty() {
        req = req.header("X-Agent-Token", g.agent_token.expose());
    }
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(redirect(&resp));
    }
    let (bytes, over) = read_limited(resp, MAX_BODY).await.map_err(transport)?;
    if over {
        return Err(Failure::Malformed(format!(
            "the gateway's answer is more than {MAX_BODY} bytes"
        )));
    }
    let (mut reply, model) = answer(status, &bytes)?;
    if reply.usage.total() == 0 {
        reply.usage = wire::estimate(messages, &reply);
    }
    Ok((reply, model))
}

/// The request body: `{messages, tools, max_tokens, timeout_ms, metadata}`.
pub(crate) fn body(
    g: &GatewayConfig,
    cx: &CallContext,
    messages: &[Message],
    tools: &[ToolSpec],
    max_tokens: u64,
) -> serde_json::Value {
    let mut body = json!({
        "messages": wire::messages(messages),
        "max_tokens": max_tokens,
        "timeout_ms": g.request_timeout.as_millis() as u64,
        "metadata": { "session_id": cx.session_id },
    });
    if !tools.is_empty() {
        body["tools"] = wire::tools(tools);
    }
    body
}

/// The reply in the gateway's answer of `status` (not a redirect), and
/// the model it says answered; the error the envelope carries otherwise.
pub(crate) fn answer(
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<(Reply, Option<String>), Failure> {
    let env: Result<Envelope, _> = serde_json::from_slice(bytes);
    if !status.is_success() {
        let text = match env {
            Ok(Envelope { error: Some(e), .. }) if !e.message.is_empty() => {
                if e.code.is_empty() {
                    e.message
                } else {
                    format!("{} ({})", e.message, e.code)
                }
            }
            _ => String::from_utf8_lossy(bytes).trim().to_string(),
        };
        let text = crate::util::truncate_utf8(&text, 300).to_string();
        return Err(Failure::Status(status.as_u16(), text));
    }
    let env = env.map_err(|e| {
        Failure::Malformed(format!("the gateway's answer is not its envelope: {e}"))
    })?;
    let Some(data) = env.data else {
        return Err(Failure::Malformed(
            "the gateway's envelope has no data".into(),
        ));
    };
    let model = (!data.model.is_empty()).then_some(data.model);
    Ok((
        wire::reply(data.message, data.finish_reason, data.usage.into()),
        model,
    ))
}
