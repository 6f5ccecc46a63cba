//! `llm`: a guest asks the configured language model through the host.
//!
//! The key, the provider, retries and failover stay in [`crate::ai`]; this
//! file adds what the sandbox owns: the session's and the run's token and
//! call budgets (a call that could cost more tokens than either has left
//! is refused before anything is sent, with an error the guest can act
//! on; one call past `max_llm_calls`, or with no token left, ends the
//! session with `resource_exhausted`),
//! the audit record of every call that reaches a provider (provider, model,
//! tokens, duration, outcome; never the content; with `[ai]` off a call is
//! refused before any of that), masking of tool results before they
//! reach a provider, and streaming the model's text to the session while
//! the call runs. Nothing a guest receives carries a credential: error
//! texts come scrubbed from `ai`. A runner whose grant lacks `llm`
//! (undeclared, or taken away by the operator's policy) sees the model as
//! off in `settings`, and each `complete` is refused as `not-configured`
//! with a `refused` record, counted against `max_llm_calls`.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::HostContext;
use crate::ai::{self, CallContext, LlmError, Streamed, TokenLimit};
use crate::audit::{kind, outcome};
use crate::proto::META_LLM_STREAM;
use crate::recorder::tape::Answer;
use crate::recorder::writer::json_str;
use crate::runner::{Budget, Output};
use crate::sandbox::bindings::host::{Stage, ToolInfo};
use crate::sandbox::bindings::llm as wit;
use crate::sandbox::limits::BudgetExceeded;
use crate::sandbox::tape;
use crate::tools::mask_secrets;

/// Most bytes of conversation (all message texts and call arguments) one
/// call may send: a guest must not make the host build an outsized request.
const MAX_CONVERSATION: usize = 4 << 20;
/// Most messages one call may send.
const MAX_MESSAGES: usize = 1024;

/// Token and call use of the session (the run's part is in `RunState`).
pub(crate) struct LlmBudget {
    /// `llm_tokens`: per session.
    pub(crate) session_limit: u64,
    /// `llm_turn_tokens`: per run or chat turn.
    pub(crate) run_limit: u64,
    /// `max_llm_calls`: per run or chat turn.
    pub(crate) max_calls: u64,
    /// Tokens the session used so far.
    pub(crate) session_used: u64,
}

/// The model settings a guest sees; a runner whose grant lacks `llm` sees
/// the model as off.
pub(crate) fn settings(ctx: &HostContext) -> wit::AiSettings {
    match ctx
        .services
        .llm
        .as_ref()
        .filter(|_| ctx.grant.llm().is_ok())
    {
        Some(l) => {
            let c = l.config();
            wit::AiSettings {
                enabled: true,
                max_rounds: c.max_rounds,
                language: c.language.clone(),
            }
        }
        None => wit::AiSettings {
            enabled: false,
            max_rounds: 0,
            language: String::new(),
        },
    }
}

/// The `run` or `turn` this session's budgets speak of.
fn unit(ctx: &HostContext) -> &'static str {
    if ctx.info.kind() == crate::proto::SessionType::Chat {
        "turn"
    } else {
        "run"
    }
}

/// Counts one call and checks that tokens are left; past a budget the
/// call is refused, audited, and the session ends.
fn charge_call(ctx: &mut HostContext) -> Result<(), BudgetExceeded> {
    ctx.run.llm_calls += 1;
    let b = &ctx.llm;
    let refuse = |ctx: &HostContext, budget: Budget, detail: String| {
        ctx.note(kind::LLM, "complete", "", outcome::REFUSED, &detail);
        tracing::warn!(session_id = %ctx.info.session_id, %detail, "llm budget exhausted");
        Err(BudgetExceeded { budget, detail })
    };
    if ctx.run.llm_calls > b.max_calls {
        let detail = format!(
            "made more than {} language-model calls in one {}",
            b.max_calls,
            unit(ctx)
        );
        return refuse(ctx, Budget::LlmCalls, detail);
    }
    if b.session_used >= b.session_limit {
        let detail = format!(
            "used {} language-model tokens, the session's llm_tokens budget is {}",
            b.session_used, b.session_limit
        );
        return refuse(ctx, Budget::LlmTokens, detail);
    }
    if ctx.run.llm_tokens >= b.run_limit {
        let detail = format!(
            "used {} language-model tokens in one {}, the llm_turn_tokens budget is {}",
            ctx.run.llm_tokens,
            unit(ctx),
            b.run_limit
        );
        return refuse(ctx, Budget::LlmTokens, detail);
    }
    Ok(())
}

/// What the session's and the run's token budgets leave for the next call.
fn token_limits(ctx: &HostContext) -> [TokenLimit; 2] {
    let b = &ctx.llm;
    [
        TokenLimit {
            name: format!(
                "the {}'s llm_turn_tokens budget of {}",
                unit(ctx),
                b.run_limit
            ),
            left: b.run_limit.saturating_sub(ctx.run.llm_tokens),
        },
        TokenLimit {
            name: format!("the session's llm_tokens budget of {}", b.session_limit),
            left: b.session_limit.saturating_sub(b.session_used),
        },
    ]
}

/// Adds a call's tokens. A call is admitted only within what both budgets
/// leave and its usage is clamped to that, so this cannot go past them;
/// should it, the session ends (fail closed) and the reply is not handed
/// over.
fn charge_tokens(ctx: &mut HostContext, tokens: u64) -> Result<(), BudgetExceeded> {
    ctx.llm.session_used = ctx.llm.session_used.saturating_add(tokens);
    ctx.run.llm_tokens = ctx.run.llm_tokens.saturating_add(tokens);
    let b = &ctx.llm;
    let detail = if b.session_used > b.session_limit {
        format!(
            "used {} language-model tokens, more than the session's llm_tokens budget of {}",
            b.session_used, b.session_limit
        )
    } else if ctx.run.llm_tokens > b.run_limit {
        format!(
            "used {} language-model tokens in one {}, more than the llm_turn_tokens budget of {}",
            ctx.run.llm_tokens,
            unit(ctx),
            b.run_limit
        )
    } else {
        return Ok(());
    };
    tracing::warn!(session_id = %ctx.info.session_id, %detail, "llm budget exhausted");
    Err(BudgetExceeded {
        budget: Budget::LlmTokens,
        detail,
    })
}

fn message(m: wit::Message) -> ai::Message {
    let role = match m.role {
        wit::Role::System => ai::Role::System,
        wit::Role::User => ai::Role::User,
        wit::Role::Assistant => ai::Role::Assistant,
        wit::Role::Tool => ai::Role::Tool,
    };
    ai::Message {
        role,
        content: m.content,
        tool_calls: m
            .tool_calls
            .into_iter()
            .map(|c| ai::ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments_json,
            })
            .collect(),
        tool_call_id: m.tool_call_id,
    }
}

fn tool(t: ToolInfo) -> GuestTool {
    GuestTool {
        name: t.name,
        description: t.description,
        params_schema: t.params_schema,
    }
}

/// A tool a guest offers the model, as the guest describes it.
pub(crate) struct GuestTool {
    pub(crate) name: String,
    pub(crate) description: String,
    /// JSON Schema text of the arguments.
    pub(crate) params_schema: String,
}

/// What a guest's model request becomes before it goes to [`crate::ai`]:
/// refused past [`MAX_MESSAGES`] messages or [`MAX_CONVERSATION`] bytes
/// (the error is the text the guest gets); tool messages masked again; a
/// schema that is not a JSON object sent as `{"type":"object"}`.
pub(crate) fn guest_request(
    messages: Vec<ai::Message>,
    tools: Vec<GuestTool>,
) -> Result<(Vec<ai::Message>, Vec<ai::ToolSpec>), String> {
    let size: usize = messages
        .iter()
        .map(|m| {
            m.content.len()
                + m.tool_calls
                    .iter()
                    .map(|c| c.arguments.len() + c.name.len() + c.id.len())
                    .sum::<usize>()
        })
        .sum::<usize>()
        + tools
            .iter()
            .map(|t| t.params_schema.len() + t.description.len())
            .sum::<usize>();
    if messages.len() > MAX_MESSAGES || size > MAX_CONVERSATION {
        return Err(format!(
            "the host refused to send {} messages of {size} bytes (at most {MAX_MESSAGES} \
             messages of {MAX_CONVERSATION} bytes per call)",
            messages.len()
        ));
    }
    let messages = messages
        .into_iter()
        .map(|mut m| {
            // Tool results reach the guest masked already; a guest may
            // still put anything in a tool message, so it is masked again
            // on the way out.
            if m.role == ai::Role::Tool {
                m.content = mask_secrets(&m.content);
            }
            m
        })
        .collect();
    let tools = tools
        .into_iter()
        .map(|t| ai::ToolSpec {
            parameters: serde_json::from_str::<serde_json::Value>(&t.params_schema)
                .ok()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| serde_json::json!({ "type": "object" })),
            name: t.name,
            description: t.description,
        })
        .collect();
    Ok((messages, tools))
}

fn reply(r: ai::Reply, model: String) -> wit::Reply {
    wit::Reply {
        message: wit::Message {
            role: wit::Role::Assistant,
            content: r.message.content,
            tool_calls: r
                .message
                .tool_calls
                .into_iter()
                .map(|c| wit::ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments_json: c.arguments,
                })
                .collect(),
            tool_call_id: None,
        },
        finish_reason: r.finish_reason,
        usage: wit::Usage {
            prompt_tokens: u32::try_from(r.usage.prompt_tokens).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(r.usage.completion_tokens).unwrap_or(u32::MAX),
        },
        model,
    }
}

fn error(e: LlmError) -> wit::LlmError {
    match e {
        LlmError::NotConfigured(m) => wit::LlmError::NotConfigured(m),
        LlmError::Budget(m) => wit::LlmError::Budget(m),
        LlmError::Timeout(m) => wit::LlmError::Timeout(m),
        LlmError::Refused(m) => wit::LlmError::ProviderRefused(m),
        LlmError::AllFailed(m) => wit::LlmError::AllProvidersFailed(m),
    }
}

fn error_kind(e: &LlmError) -> &'static str {
    match e {
        LlmError::NotConfigured(_) => "not_configured",
        LlmError::Budget(_) => "token_budget",
        LlmError::Timeout(_) => "timeout",
        LlmError::Refused(_) => "provider_refused",
        LlmError::AllFailed(_) => "all_providers_failed",
    }
}

/// `llm.complete` through the session's tape: the call budget first (in
/// both modes), then in replay the recorded answer, its streamed text sent
/// again and its tokens charged again; in record mode the call itself,
/// written down with what it streamed.
pub(crate) async fn complete(
    ctx: &mut HostContext,
    messages: Vec<wit::Message>,
    tools: Vec<ToolInfo>,
    stream_as: Option<Stage>,
) -> wasmtime::Result<Result<wit::Reply, wit::LlmError>> {
    const NAME: &str = "llm.complete";
    if let Err(e) = charge_call(ctx) {
        ctx.tape.trapped(NAME, &e);
        return Err(e.into());
    }
    if ctx.tape.script().is_some() {
        return replay(ctx, &messages, &tools, stream_as).await;
    }
    let Some(rec) = ctx.tape.recording().cloned() else {
        return live(ctx, messages, tools, stream_as, None).await;
    };
    let content = rec.model_content();
    let args = tape::complete_args(&messages, &tools, stream_as, content);
    let mut streamed = Vec::new();
    let r = live(ctx, messages, tools, stream_as, Some(&mut streamed)).await;
    let failure = ctx.run.llm_failure.clone();
    rec.call(NAME, true, |b| {
        let mut args = args;
        crate::tools::mask_json(&mut args);
        b.extend_from_slice(b",\"args\":");
        let _ = serde_json::to_writer(&mut *b, &args);
        match &r {
            Ok(ret) => {
                let mut v = tape::reply_json(ret, content);
                crate::tools::mask_json(&mut v);
                b.extend_from_slice(b",\"ret\":");
                let _ = serde_json::to_writer(&mut *b, &v);
            }
            Err(e) => {
                b.extend_from_slice(b",\"trap\":");
                json_str(b, &mask_secrets(&format!("{e:#}")));
                if let Some(x) = e.downcast_ref::<BudgetExceeded>() {
                    b.extend_from_slice(b",\"budget\":");
                    json_str(b, &x.budget.to_string());
                }
            }
        }
        if content {
            let mut s = serde_json::json!(streamed);
            crate::tools::mask_json(&mut s);
            b.extend_from_slice(b",\"streamed\":");
            let _ = serde_json::to_writer(&mut *b, &s);
        }
        b.extend_from_slice(b",\"llm_failure\":");
        match &failure {
            Some(f) => json_str(b, &mask_secrets(f)),
            None => b.extend_from_slice(b"null"),
        }
    });
    r
}

/// The recorded answer of a model call: nothing reaches a provider.
async fn replay(
    ctx: &mut HostContext,
    messages: &[wit::Message],
    tools: &[ToolInfo],
    stream_as: Option<Stage>,
) -> wasmtime::Result<Result<wit::Reply, wit::LlmError>> {
    let args = || tape::complete_args(messages, tools, stream_as, true);
    let Some(script) = ctx.tape.script() else {
        return Ok(Err(wit::LlmError::NotConfigured(
            "replay: no recording".into(),
        )));
    };
    let mut a = args();
    crate::tools::mask_json(&mut a);
    let (ret, line) = match script.answer_line("llm.complete", &a) {
        (Answer::Ret(v), line) => (v, line),
        (Answer::Trap { detail, budget }, line) => {
            let streamed = tape::streamed_of(&line["streamed"]);
            if let Some(over) = resend(ctx, streamed, stream_as).await {
                return Err(over.into());
            }
            return Err(tape::trap_error(detail, budget));
        }
        (Answer::Missing(m) | Answer::Omitted(m), _) => {
            ctx.run.llm_failure = Some(m.clone());
            return Ok(Err(wit::LlmError::NotConfigured(m)));
        }
    };
    ctx.run.llm_failure = line["llm_failure"].as_str().map(str::to_string);
    let streamed = tape::streamed_of(&line["streamed"]);
    if let Some(over) = resend(ctx, streamed, stream_as).await {
        return Err(over.into());
    }
    match tape::reply_of(&ret) {
        Ok(r) => {
            let tokens = u64::from(r.usage.prompt_tokens) + u64::from(r.usage.completion_tokens);
            charge_tokens(ctx, tokens)?;
            Ok(Ok(r))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Sends a recorded call's streamed text again, as [`forward`] sent it.
async fn resend(
    ctx: &mut HostContext,
    streamed: Vec<(bool, String)>,
    stream_as: Option<Stage>,
) -> Option<BudgetExceeded> {
    let (tx, rx) = mpsc::channel::<Streamed>(streamed.len().max(1));
    for (text, s) in streamed {
        let item = if text {
            Streamed::Text(s)
        } else {
            Streamed::Notice(s)
        };
        let _ = tx.try_send(item);
    }
    drop(tx);
    forward(ctx, rx, stream_as, None).await
}

/// The model call itself (record mode and no tape): admitted, audited,
/// sent, streamed. What it streamed goes to `streamed` when given.
async fn live(
    ctx: &mut HostContext,
    messages: Vec<wit::Message>,
    tools: Vec<ToolInfo>,
    stream_as: Option<Stage>,
    streamed: Option<&mut Vec<(bool, String)>>,
) -> wasmtime::Result<Result<wit::Reply, wit::LlmError>> {
    if let Err(e) = ctx.grant.llm() {
        tracing::warn!(session_id = %ctx.info.session_id, reason = %e, "llm call refused");
        ctx.note(kind::LLM, "complete", "", outcome::REFUSED, &e);
        ctx.run.llm_failure = Some(e.clone());
        return Ok(Err(wit::LlmError::NotConfigured(e)));
    }
    let Some(llm) = ctx.services.llm.clone() else {
        let e = LlmError::NotConfigured("[ai] enabled is false in the agent's config".into());
        ctx.run.llm_failure = Some(e.to_string());
        return Ok(Err(error(e)));
    };
    let messages = messages.into_iter().map(message).collect();
    let tools = tools.into_iter().map(tool).collect();
    let (messages, tools) = match guest_request(messages, tools) {
        Ok(r) => r,
        Err(e) => {
            ctx.note(kind::LLM, "complete", "", outcome::REFUSED, &e);
            return Ok(Err(wit::LlmError::ProviderRefused(e)));
        }
    };
    let args = format!(
        "{{\"messages\":{},\"tools\":{}}}",
        messages.len(),
        tools.len()
    );
    let call = match llm.admit(messages, tools, &token_limits(ctx)) {
        Ok(c) => c,
        Err(e) => {
            ctx.note(
                kind::LLM,
                "complete",
                &args,
                outcome::REFUSED,
                &e.to_string(),
            );
            tracing::warn!(session_id = %ctx.info.session_id, error = %e, "llm call refused");
            ctx.run.llm_failure = Some(e.to_string());
            return Ok(Err(error(e)));
        }
    };
    let act = match ctx.begin(kind::LLM, "complete", &args, false) {
        Ok(a) => a,
        Err(e) => return Ok(Err(wit::LlmError::ProviderRefused(e))),
    };
    let cx = CallContext {
        scene: if ctx.info.kind() == crate::proto::SessionType::Chat {
            "chat"
        } else {
            "diagnose"
        },
        session_id: ctx.info.session_id.clone(),
    };
    let (tx, rx) = mpsc::channel::<Streamed>(64);
    let call = async move {
        let r = llm.complete(&cx, call, &tx).await;
        drop(tx);
        r
    };
    let ((result, report), over) = tokio::join!(call, forward(ctx, rx, stream_as, streamed));
    let detail = format!(
        "provider={} name={} model={} attempts={} duration_ms={}",
        report.provider,
        report.name,
        report.model,
        report.attempts,
        report.duration.as_millis()
    );
    let result = match result {
        Ok(r) => {
            if let Some(act) = act {
                // `prompt=` / `completion=`: the audit masks the value of
                // any key that says `token`.
                act.finish(
                    outcome::OK,
                    &format!(
                        "{detail} prompt={} completion={} finish={}",
                        r.usage.prompt_tokens, r.usage.completion_tokens, r.finish_reason
                    ),
                );
            }
            ctx.run.llm_failure = None;
            Ok(r)
        }
        Err(e) => {
            if let Some(act) = act {
                act.finish(
                    outcome::ERROR,
                    &format!("{detail} error={}", error_kind(&e)),
                );
            }
            tracing::warn!(session_id = %ctx.info.session_id, error = %e, "llm call failed");
            ctx.run.llm_failure = Some(e.to_string());
            Err(e)
        }
    };
    if let Some(over) = over {
        return Err(over.into());
    }
    match result {
        Ok(r) => {
            charge_tokens(ctx, r.usage.total())?;
            Ok(Ok(reply(r, report.name)))
        }
        Err(e) => Ok(Err(error(e))),
    }
}

/// Sends streamed text to the session as `stage` deltas marked
/// `llm_stream` (not at all when the guest asked for none) and the host's notices as `thinking`, each
/// against the output budget. Past the budget it stops sending and says
/// so; the call finishes, then the session ends.
async fn forward(
    ctx: &mut HostContext,
    mut rx: mpsc::Receiver<Streamed>,
    stage: Option<Stage>,
    mut streamed: Option<&mut Vec<(bool, String)>>,
) -> Option<BudgetExceeded> {
    let sink = Arc::clone(&ctx.sink);
    let mut over = None;
    while let Some(s) = rx.recv().await {
        if over.is_some() {
            continue;
        }
        if let Some(list) = streamed.as_deref_mut() {
            match &s {
                Streamed::Text(t) => list.push((true, t.clone())),
                Streamed::Notice(t) => list.push((false, t.clone())),
            }
        }
        let (text, st, meta) = match (s, stage) {
            (Streamed::Text(t), Some(st)) => {
                let mut m = serde_json::Map::new();
                m.insert(META_LLM_STREAM.into(), serde_json::Value::Bool(true));
                (t, super::stream::stage(st), Some(m))
            }
            (Streamed::Text(_), None) => continue,
            (Streamed::Notice(t), _) => (t, crate::runner::Stage::Thinking, None),
        };
        if let Err(e) = ctx
            .stream
            .charge(text.len() as u64, "a streamed model delta")
        {
            over = Some(e);
            continue;
        }
        sink.send(Output::delta(text, st, meta)).await;
    }
    over
}
