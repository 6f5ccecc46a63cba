//! Language models for the AI runner, asked by the host on a guest's
//! behalf: OpenAI-compatible endpoints (streamed over SSE) and
//! catpaw-server's LLM gateway, failover down `model_priority`, retries
//! with backoff, the bounds of what a call may cost (so no budget is
//! overshot and no provider can charge more), and the daily token ledger.
//! The keys live here and in the HTTP headers, nowhere else: every text
//! that leaves this module (errors, notices) has them scrubbed.
//!
//! No wasmtime here; the sandbox's `llm` import (`sandbox/host/llm.rs`)
//! is the caller and adds the session budgets and the audit.
//!
//! (Just over 450 lines on purpose: admission and the failover loop share
//! the hold on the daily ledger that a call settles, and read best as one
//! order of events; its tests live in `tests.rs`.)
//!
//! - `mod.rs`: [`Llm`]: admission within the token budgets, failover and
//!   retries
//! - `cost.rs`: the most a call can cost, before it is sent
//! - `settings.rs`: what `[ai]` says, typed
//! - `types.rs`: messages, tools, replies, errors
//! - `scrub.rs`: credentials out of every text that leaves
//! - `openai.rs`: one streamed chat completion; `sse.rs` its event framing
//! - `gateway.rs`: one gateway call (`POST {base}/chat`)
//! - `wire.rs`: the JSON both speak
//! - `daily.rs`: `daily_token_limit`, persisted in the state directory

mod cost;
mod daily;
mod gateway;
mod openai;
mod scrub;
mod settings;
mod sse;
mod types;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use cost::Bounds;
pub use cost::TokenLimit;
// The request bodies and the readers of answers, which the fuzz targets
// drive through `crate::fuzz_entry`.
#[cfg(test)]
pub(crate) use cost::{FRAMING, MIN_ANSWER};
pub use daily::{DailyLedger, Hold};
pub(crate) use gateway::{answer as gateway_answer, body as gateway_body};
pub(crate) use openai::{StreamReader, body as openai_body, completion};
pub(crate) use scrub::TextOut;
use scrub::scrub;
pub use settings::{AiConfig, GatewayConfig, ModelConfig, Secret};
pub use types::*;

/// One backend in failover order.
#[derive(Debug, Clone)]
enum Backend {
    Gateway(GatewayConfig),
    Direct(String, ModelConfig),
}

impl Backend {
    fn provider(&self) -> &'static str {
        match self {
            Backend::Gateway(_) => "gateway",
            Backend::Direct(..) => "openai",
        }
    }

    /// The answer this backend asks for when the budgets leave room:
    /// the model's `max_completion_tokens` or `max_tokens`; for the
    /// gateway, which has no such setting, [`GATEWAY_ANSWER`].
    fn answer_want(&self) -> u64 {
        match self {
            Backend::Gateway(_) => GATEWAY_ANSWER,
            Backend::Direct(_, m) if m.max_completion_tokens > 0 => m.max_completion_tokens.into(),
            Backend::Direct(_, m) if m.max_tokens > 0 => m.max_tokens.into(),
            Backend::Direct(..) => GATEWAY_ANSWER,
        }
    }
}

/// `max_tokens` asked of the gateway (and of a model configured with
/// none) when the budgets leave room: the default of `[ai.models.<name>]
/// max_tokens`.
const GATEWAY_ANSWER: u64 = 4000;

/// Why one attempt failed.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The endpoint answered with an HTTP error.
    Status(u16, String),
    /// No complete answer within the timeout.
    Timeout(String),
    /// Connection or protocol trouble.
    Transport(String),
    /// The answer could not be read.
    Malformed(String),
    /// The endpoint answered with a redirect (status, where to, masked),
    /// which is never followed: the conversation and the credential would
    /// go to an address nobody configured.
    Redirect(u16, String),
}

impl Failure {
    /// 429 and 5xx may pass; other 4xx will not (catpaw's rule, also for
    /// failover).
    fn transient(&self) -> bool {
        match self {
            Failure::Status(code, _) => *code == 429 || *code >= 500,
            Failure::Redirect(..) => false,
            _ => true,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(code, body) => write!(f, "HTTP {code}: {body}"),
            Failure::Redirect(code, location) => write!(
                f,
                "HTTP {code} redirect to {location}: redirects are not followed (set base_url \
                 to the address that answers)"
            ),
            Failure::Timeout(m) | Failure::Transport(m) | Failure::Malformed(m) => f.write_str(m),
        }
    }
}

/// Longest retry wait (catpaw's cap).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The models of one agent, asked in `model_priority` order.
#[derive(Debug)]
pub struct Llm {
    cfg: AiConfig,
    backends: Vec<Backend>,
    http: reqwest::Client,
    agent_id: String,
    daily: Arc<DailyLedger>,
}

/// A call admitted within every token budget ([`Llm::admit`]): its
/// request, the most it may cost, and its hold on today's limit (given
/// back if it fails).
#[derive(Debug)]
pub struct Call {
    messages: Vec<Message>,
    tools: Vec<ToolSpec>,
    bounds: Bounds,
    hold: Hold,
}

impl Llm {
    /// A client for `cfg`; `agent_id` is sent to the gateway, the daily
    /// token count is kept at `daily_path`. None when `[ai]` is off.
    pub fn new(
        cfg: &AiConfig,
        agent_id: String,
        daily_path: PathBuf,
    ) -> anyhow::Result<Option<Llm>> {
        if !cfg.enabled {
            return Ok(None);
        }
        let mut backends = Vec::new();
        if cfg.gateway.enabled {
            backends.push(Backend::Gateway(cfg.gateway.clone()));
        }
        if !cfg.gateway.enabled || cfg.gateway.fallback_to_direct {
            for name in &cfg.model_priority {
                if let Some(m) = cfg.models.get(name) {
                    backends.push(Backend::Direct(name.clone(), m.clone()));
                }
            }
        }
        // No redirects: a 3xx would make the client send the whole
        // conversation, and the key or agent token, to another address.
        let http = reqwest::Client::builder()
            .user_agent(concat!("catpaw-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client for [ai]: {e}"))?;
        Ok(Some(Llm {
            cfg: cfg.clone(),
            backends,
            http,
            agent_id,
            daily: Arc::new(DailyLedger::open(daily_path, cfg.daily_token_limit)?),
        }))
    }

    /// The `[ai]` settings.
    pub fn config(&self) -> &AiConfig {
        &self.cfg
    }

    /// Admits a call of `messages` and `tools` if its bound (see
    /// `cost.rs`) fits the caller's `limits` and today's; the answer's
    /// `max_tokens` is cut to what the tightest of them leaves. Nothing is
    /// sent yet; a refusal names the budget, what is left and the estimate.
    pub fn admit(
        &self,
        messages: Vec<Message>,
        tools: Vec<ToolSpec>,
        limits: &[TokenLimit],
    ) -> Result<Call, LlmError> {
        if self.backends.is_empty() {
            return Err(LlmError::NotConfigured(
                "[ai] lists no model and no gateway".into(),
            ));
        }
        let prompt = cost::prompt_bound(&messages, &tools);
        let want = self
            .backends
            .iter()
            .map(Backend::answer_want)
            .max()
            .unwrap_or(GATEWAY_ANSWER);
        let (hold, bounds) = self
            .daily
            .reserve(|daily| {
                let mut all = limits.to_vec();
                if let Some((name, left)) = daily {
                    all.push(TokenLimit { name, left });
                }
                let b = cost::plan(prompt, want, &all)?;
                Ok((b.total(), b))
            })
            .map_err(LlmError::Budget)?;
        Ok(Call {
            messages,
            tools,
            bounds,
            hold,
        })
    }

    /// Asks the models in order until one answers. Text is streamed to
    /// `stream` as it arrives (a closed receiver only stops the stream).
    /// The reply's usage is at most the call's bounds; today's ledger is
    /// charged that, or nothing when no model answered.
    pub async fn complete(
        &self,
        cx: &CallContext,
        call: Call,
        stream: &mpsc::Sender<Streamed>,
    ) -> (Result<Reply, LlmError>, CallReport) {
        let started = Instant::now();
        let mut report = CallReport {
            provider: "-",
            name: "-".into(),
            model: "-".into(),
            attempts: 0,
            duration: Duration::ZERO,
        };
        let mut result = self.failover(cx, &call, stream, &mut report).await;
        let Call { hold, .. } = call;
        if let Ok(reply) = &mut result {
            hold.settle(reply.usage.total());
            let m = &mut reply.message;
            m.content = self.scrub(&m.content);
            for c in &mut m.tool_calls {
                c.arguments = self.scrub(&c.arguments);
                c.name = self.scrub(&c.name);
                c.id = self.scrub(&c.id);
            }
        }
        report.duration = started.elapsed();
        (result, report)
    }

    async fn failover(
        &self,
        cx: &CallContext,
        call: &Call,
        stream: &mpsc::Sender<Streamed>,
        report: &mut CallReport,
    ) -> Result<Reply, LlmError> {
        let mut failed: Vec<String> = Vec::new();
        let mut all_timeouts = true;
        for (i, backend) in self.backends.iter().enumerate() {
            let name = match backend {
                Backend::Gateway(_) => format!("server:{}", cx.scene),
                Backend::Direct(name, _) => name.clone(),
            };
            report.provider = backend.provider();
            report.name = name.clone();
            report.model = match backend {
                Backend::Gateway(_) => "-".into(),
                Backend::Direct(_, m) => m.model.clone(),
            };
            let retries = match backend {
                Backend::Gateway(g) => g.max_retries,
                Backend::Direct(..) => self.cfg.max_retries,
            };
            match self
                .with_retries(cx, backend, &name, retries, call, stream, report)
                .await
            {
                Ok(reply) => return Ok(reply),
                Err(f) => {
                    let text = self.scrub(&f.to_string());
                    if !f.transient() {
                        return Err(LlmError::Refused(format!(
                            "model {name} ({}) refused the request: {text}",
                            backend.provider()
                        )));
                    }
                    all_timeouts &= matches!(f, Failure::Timeout(_));
                    failed.push(format!("{name}: {text}"));
                    if let Some(next) = self.backends.get(i + 1) {
                        let next = match next {
                            Backend::Gateway(_) => format!("server:{}", cx.scene),
                            Backend::Direct(n, _) => n.clone(),
                        };
                        let _ = stream
                            .send(Streamed::Notice(format!(
                                "model {name} failed ({text}); trying {next}"
                            )))
                            .await;
                    }
                }
            }
        }
        let list = failed.join("; ");
        if all_timeouts {
            Err(LlmError::Timeout(format!(
                "no model answered in time: {list}"
            )))
        } else {
            Err(LlmError::AllFailed(format!(
                "all {} models failed: {list}",
                self.backends.len()
            )))
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn with_retries(
        &self,
        cx: &CallContext,
        backend: &Backend,
        name: &str,
        retries: u32,
        call: &Call,
        stream: &mpsc::Sender<Streamed>,
        report: &mut CallReport,
    ) -> Result<Reply, Failure> {
        let (messages, tools) = (&call.messages[..], &call.tools[..]);
        let answer = call.bounds.answer.min(backend.answer_want());
        let mut attempt = 0;
        loop {
            report.attempts += 1;
            let result = match backend {
                Backend::Gateway(g) => {
                    let call =
                        gateway::chat(&self.http, g, &self.agent_id, cx, messages, tools, answer);
                    let r = match tokio::time::timeout(g.request_timeout, call).await {
                        Ok(r) => r.map(|(reply, model)| {
                            if let Some(m) = model {
                                report.model = m;
                            }
                            reply
                        }),
                        Err(_) => Err(Failure::Timeout(format!(
                            "the gateway did not answer within {:?}",
                            g.request_timeout
                        ))),
                    };
                    // The gateway does not stream: its text goes out whole.
                    if let Ok(reply) = &r {
                        let mut out = TextOut::new(stream, self.secrets());
                        out.text(&reply.message.content).await;
                        out.flush().await;
                    }
                    r
                }
                Backend::Direct(_, m) => {
                    let mut out = TextOut::new(stream, self.secrets());
                    let call = openai::chat(&self.http, m, messages, tools, answer, &mut out);
                    let r = match tokio::time::timeout(self.cfg.request_timeout, call).await {
                        Ok(r) => r,
                        Err(_) => Err(Failure::Timeout(format!(
                            "no complete answer within request_timeout {:?}",
                            self.cfg.request_timeout
                        ))),
                    };
                    out.flush().await;
                    r
                }
            };
            let f = match result {
                Ok(mut reply) => {
                    let (usage, clamped) = cost::clamp(reply.usage, call.bounds.prompt, answer);
                    if clamped {
                        tracing::warn!(
                            provider = backend.provider(),
                            model = %name,
                            reported_prompt = reply.usage.prompt_tokens,
                            reported_completion = reply.usage.completion_tokens,
                            charged = usage.total(),
                            "model {name} reported more tokens than the call could have used \
                             (at most {} for the prompt, {answer} for the answer); charged that most",
                            call.bounds.prompt
                        );
                    }
                    reply.usage = usage;
                    return Ok(reply);
                }
                Err(f) => f,
            };
            if !f.transient() || attempt >= retries {
                return Err(f);
            }
            attempt += 1;
            let wait = backoff(self.cfg.retry_backoff, attempt);
            let _ = stream
                .send(Streamed::Notice(format!(
                    "model {name}: {}; retry {attempt} of {retries} in {:.1}s",
                    self.scrub(&f.to_string()),
                    wait.as_secs_f64()
                )))
                .await;
            tokio::time::sleep(wait).await;
        }
    }

    /// Every configured credential (at least 4 bytes long: a shorter one
    /// would redact ordinary words).
    fn secrets(&self) -> Vec<String> {
        self.cfg
            .models
            .values()
            .map(|m| m.api_key.expose())
            .chain(std::iter::once(self.cfg.gateway.agent_token.expose()))
            .filter(|s| s.len() >= 4)
            .map(str::to_string)
            .collect()
    }

    /// `text` with every configured credential replaced: a provider may
    /// echo the key it was sent, in an error body or in the answer.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets())
    }

    /// Tokens used today, by every session.
    pub fn tokens_today(&self) -> u64 {
        self.daily.used()
    }
}

/// Wait before retry `n` (1-based): `base` doubled per retry, capped, with
/// ±25% jitter so agents that failed together do not retry together.
fn backoff(base: Duration, n: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << (n - 1).min(16));
    let capped = exp.min(MAX_BACKOFF);
    capped.mul_f64(0.75 + rand::random::<f64>() * 0.5)
}

#[cfg(test)]
mod tests;
