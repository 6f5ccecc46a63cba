//! The one seam between a session's imports and its recording
//! ([`crate::recorder::Tape`]): each import asks [`SessionTape::replayed`]
//! first (in replay, the recorded answer; nothing of this host is
//! touched) and writes what it did with [`SessionTape::record`]; the WIT
//! values cross as JSON here (records keyed by WIT field names, variants
//! as `{"case","value"}`, `result` as `{"ok"}`/`{"err"}`). The WASI clocks
//! and random the guest reads go through the same tape ([`TapeClock`],
//! [`TapeRandom`]).
//!
//! Everything written is masked first: tool and shell answers are masked
//! before the guest sees them, and what the guest sends or is told from
//! elsewhere (its arguments, the model's words, its log) is masked here,
//! so a recording never holds what the masking table covers.
//!
//! Why one file of about 630 lines: each import's record side and replay
//! side sit together, so what one writes is changed beside what the
//! other reads back. The recording itself is in `recorder/`.

use std::time::Duration;

use serde_json::{Value, json};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use super::bindings::host::{ShellError, ShellOutput, Stage, ToolInfo};
use super::bindings::llm as wit;
use super::budgets::Budgets;
use super::limits::BudgetExceeded;
use crate::recorder::tape::{Answer, Script};
use crate::recorder::writer::json_str;
use crate::recorder::{Recording, Tape};
use crate::runner::Budget;
use crate::tools::{mask_json, mask_secrets};

/// A session's tape, as its imports see it (`None`: not recorded).
#[derive(Clone, Default)]
pub(crate) struct SessionTape(pub(crate) Option<Tape>);

impl SessionTape {
    /// The recording, in record mode.
    pub(crate) fn recording(&self) -> Option<&Recording> {
        match &self.0 {
            Some(Tape::Record(r)) => Some(r),
            _ => None,
        }
    }

    /// The script, in replay mode.
    pub(crate) fn script(&self) -> Option<&Script> {
        match &self.0 {
            Some(Tape::Replay(s)) => Some(s),
            _ => None,
        }
    }

    /// In replay, the recorded answer to `name(args())`; `None`: run the
    /// import.
    pub(crate) fn replayed(&self, name: &str, args: impl FnOnce() -> Value) -> Option<Answer> {
        let s = self.script()?;
        let mut a = args();
        mask_json(&mut a);
        Some(s.answer(name, &a))
    }

    /// In record mode, writes `name(args())` and what it returned
    /// (`Ok(ret)`) or the trap that ended the session; flushed at once
    /// (the call reached the world). `ret` is masked as it is written.
    pub(crate) fn record(
        &self,
        name: &str,
        args: impl FnOnce() -> Value,
        ret: Result<Value, &wasmtime::Error>,
    ) {
        let Some(r) = self.recording() else { return };
        let mut a = args();
        mask_json(&mut a);
        write_call(r, name, true, &a, ret);
    }

    /// In replay, passes over the recorded trap of `name` when the
    /// replaying host broke the same budget before the call.
    pub(crate) fn trapped(&self, name: &str, e: &BudgetExceeded) {
        if let Some(s) = self.script() {
            s.trapped(name);
        }
        self.record(name, || json!({}), Err(&wasmtime::Error::from(e.clone())));
    }
}

/// Writes one call line.
pub(crate) fn write_call(
    r: &Recording,
    name: &str,
    flush: bool,
    args: &Value,
    ret: Result<Value, &wasmtime::Error>,
) {
    r.call(name, flush, |b| {
        b.extend_from_slice(b",\"args\":");
        let _ = serde_json::to_writer(&mut *b, args);
        match ret {
            Ok(mut v) => {
                mask_json(&mut v);
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
    });
}

/// `emit`, written straight into the buffer (the per-delta path: one
/// masking pass, shared with the frame that carries the delta, no JSON
/// value built).
pub(crate) fn record_emit(
    r: &Recording,
    delta: &str,
    stage: Stage,
    wire_stage: &'static str,
    meta: Option<&str>,
    trap: Option<&BudgetExceeded>,
) {
    // The frame that carries this delta reuses the masked text, or names
    // this call when it holds nothing more (`wire_stage`: the stage as the
    // frame spells it).
    let plain = meta.is_none().then_some(wire_stage);
    r.emit_call(delta, plain, trap.is_none(), |b, masked| {
        b.extend_from_slice(b",\"args\":{\"delta\":");
        json_str(b, masked);
        b.extend_from_slice(b",\"stage\":\"");
        b.extend_from_slice(stage_name(stage).as_bytes());
        b.extend_from_slice(b"\",\"metadata-json\":");
        match meta {
            Some(m) => json_str(b, &mask_secrets(m)),
            None => b.extend_from_slice(b"null"),
        }
        b.push(b'}');
        match trap {
            None => b.extend_from_slice(b",\"ret\":null"),
            Some(e) => {
                b.extend_from_slice(b",\"trap\":");
                json_str(b, &e.to_string());
                b.extend_from_slice(b",\"budget\":");
                json_str(b, &e.budget.to_string());
            }
        }
    });
}

/// The error a recorded trap ends the replayed session with: the same
/// budget when one was named, else the host's text.
pub(crate) fn trap_error(detail: String, budget: Option<String>) -> wasmtime::Error {
    let budget = budget.as_deref().and_then(|b| {
        [
            Budget::Fuel,
            Budget::Memory,
            Budget::Time,
            Budget::Output,
            Budget::Calls,
            Budget::LlmTokens,
            Budget::LlmCalls,
        ]
        .into_iter()
        .find(|x| x.to_string() == b)
    });
    match budget {
        Some(budget) => BudgetExceeded { budget, detail }.into(),
        None => wasmtime::Error::msg(detail),
    }
}

pub(crate) fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Thinking => "thinking",
        Stage::ToolCall => "tool-call",
        Stage::ToolResult => "tool-result",
        Stage::Answer => "answer",
        Stage::Error => "error",
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

pub(crate) fn tools_json(tools: &[ToolInfo]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| json!({"name":t.name,"description":t.description,"params-schema":t.params_schema}))
            .collect(),
    )
}

pub(crate) fn tools_of(v: &Value) -> Vec<ToolInfo> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|t| ToolInfo {
                    name: s(&t["name"]),
                    description: s(&t["description"]),
                    params_schema: s(&t["params-schema"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn result_json<T, E>(
    r: &Result<T, E>,
    ok: impl Fn(&T) -> Value,
    err: impl Fn(&E) -> Value,
) -> Value {
    match r {
        Ok(v) => json!({ "ok": ok(v) }),
        Err(e) => json!({ "err": err(e) }),
    }
}

/// A recorded `result<string, string>`.
pub(crate) fn string_result(v: &Value) -> Result<String, String> {
    match (v.get("ok"), v.get("err")) {
        (Some(ok), _) => Ok(s(ok)),
        (_, Some(err)) => Err(s(err)),
        _ => Err(format!("replay: the recorded answer {v} is not a result")),
    }
}

pub(crate) fn shell_json(r: &Result<ShellOutput, ShellError>) -> Value {
    result_json(
        r,
        |o| {
            json!({"exit-code":o.exit_code,"stdout":o.stdout,"stderr":o.stderr,
                "truncated":o.truncated})
        },
        |e| match e {
            ShellError::Denied(m) => json!({"case":"denied","value":m}),
            ShellError::Timeout => json!({"case":"timeout"}),
            ShellError::Failed(m) => json!({"case":"failed","value":m}),
        },
    )
}

pub(crate) fn shell_of(v: &Value) -> Result<ShellOutput, ShellError> {
    if let Some(o) = v.get("ok") {
        return Ok(ShellOutput {
            exit_code: o["exit-code"]
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(-1),
            stdout: s(&o["stdout"]),
            stderr: s(&o["stderr"]),
            truncated: o["truncated"].as_bool().unwrap_or(false),
        });
    }
    let e = &v["err"];
    Err(match e["case"].as_str() {
        Some("denied") => ShellError::Denied(s(&e["value"])),
        Some("timeout") => ShellError::Timeout,
        _ => ShellError::Failed(s(&e["value"])),
    })
}

pub(crate) fn settings_json(a: &wit::AiSettings) -> Value {
    json!({"enabled":a.enabled,"max-rounds":a.max_rounds,"language":a.language})
}

pub(crate) fn settings_of(v: &Value) -> wit::AiSettings {
    wit::AiSettings {
        enabled: v["enabled"].as_bool().unwrap_or(false),
        max_rounds: v["max-rounds"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        language: s(&v["language"]),
    }
}

fn role_name(r: wit::Role) -> &'static str {
    match r {
        wit::Role::System => "system",
        wit::Role::User => "user",
        wit::Role::Assistant => "assistant",
        wit::Role::Tool => "tool",
    }
}

fn role_of(s: &str) -> wit::Role {
    match s {
        "system" => wit::Role::System,
        "user" => wit::Role::User,
        "tool" => wit::Role::Tool,
        _ => wit::Role::Assistant,
    }
}

pub(crate) fn message_json(m: &wit::Message) -> Value {
    json!({
        "role": role_name(m.role),
        "content": m.content,
        "tool-calls": m.tool_calls.iter().map(|c| json!({
            "id": c.id, "name": c.name, "arguments-json": c.arguments_json,
        })).collect::<Vec<_>>(),
        "tool-call-id": m.tool_call_id,
    })
}

fn message_of(v: &Value) -> wit::Message {
    wit::Message {
        role: role_of(v["role"].as_str().unwrap_or_default()),
        content: s(&v["content"]),
        tool_calls: v["tool-calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| wit::ToolCall {
                        id: s(&c["id"]),
                        name: s(&c["name"]),
                        arguments_json: s(&c["arguments-json"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        tool_call_id: v["tool-call-id"].as_str().map(str::to_string),
    }
}

/// The arguments of `llm.complete` as the recording holds them.
pub(crate) fn complete_args(
    messages: &[wit::Message],
    tools: &[ToolInfo],
    stream_as: Option<Stage>,
    content: bool,
) -> Value {
    if !content {
        let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        return json!({"omitted":"record_model_content = false","bytes":bytes});
    }
    json!({
        "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
        "tools": tools_json(tools),
        "stream-as": stream_as.map(stage_name),
    })
}

pub(crate) fn reply_json(r: &Result<wit::Reply, wit::LlmError>, content: bool) -> Value {
    if !content {
        let bytes = r.as_ref().map_or(0, |r| r.message.content.len());
        return json!({"omitted":"record_model_content = false","bytes":bytes});
    }
    result_json(
        r,
        |r| {
            json!({
                "message": message_json(&r.message),
                "finish-reason": r.finish_reason,
                "usage": {"prompt-tokens": r.usage.prompt_tokens,
                          "completion-tokens": r.usage.completion_tokens},
                "model": r.model,
            })
        },
        |e| {
            let (case, m) = match e {
                wit::LlmError::NotConfigured(m) => ("not-configured", m),
                wit::LlmError::Budget(m) => ("budget", m),
                wit::LlmError::Timeout(m) => ("timeout", m),
                wit::LlmError::ProviderRefused(m) => ("provider-refused", m),
                wit::LlmError::AllProvidersFailed(m) => ("all-providers-failed", m),
            };
            json!({"case": case, "value": m})
        },
    )
}

pub(crate) fn reply_of(v: &Value) -> Result<wit::Reply, wit::LlmError> {
    if let Some(r) = v.get("ok") {
        let u = |k: &str| {
            r["usage"][k]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0)
        };
        return Ok(wit::Reply {
            message: message_of(&r["message"]),
            finish_reason: s(&r["finish-reason"]),
            usage: wit::Usage {
                prompt_tokens: u("prompt-tokens"),
                completion_tokens: u("completion-tokens"),
            },
            model: s(&r["model"]),
        });
    }
    let e = &v["err"];
    let m = s(&e["value"]);
    Err(match e["case"].as_str().unwrap_or_default() {
        "not-configured" => wit::LlmError::NotConfigured(m),
        "budget" => wit::LlmError::Budget(m),
        "timeout" => wit::LlmError::Timeout(m),
        "all-providers-failed" => wit::LlmError::AllProvidersFailed(m),
        _ => wit::LlmError::ProviderRefused(m),
    })
}

/// What was streamed during a model call, in order: `[true, text]` for
/// the model's text, `[false, text]` for a host notice.
pub(crate) fn streamed_of(v: &Value) -> Vec<(bool, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| (p[0].as_bool().unwrap_or(false), s(&p[1])))
                .collect()
        })
        .unwrap_or_default()
}

/// A session's effective budgets, as the `start` line holds them.
pub(crate) fn budgets_json(b: &Budgets) -> Value {
    json!({
        "fuel": b.fuel,
        "max_memory": b.max_memory,
        "timeout_ms": b.timeout.as_millis() as u64,
        "max_output": b.max_output,
        "max_host_calls": b.max_host_calls,
        "guest_stdio": b.guest_stdio,
        "shell_timeout_ms": b.shell_timeout.as_millis() as u64,
        "shell_output": b.shell_output,
        "llm_tokens": b.llm_tokens,
        "llm_turn_tokens": b.llm_turn_tokens,
        "max_llm_calls": b.max_llm_calls,
        "max_chat_state": b.max_chat_state,
    })
}

/// The budgets a `start` line holds (a key it lacks keeps its default).
pub fn budgets_of(v: &Value) -> Budgets {
    let d = Budgets::default();
    let n = |k: &str, d: u64| v[k].as_u64().unwrap_or(d);
    let ms = |k: &str, d: Duration| v[k].as_u64().map_or(d, Duration::from_millis);
    Budgets {
        fuel: n("fuel", d.fuel),
        max_memory: n("max_memory", d.max_memory),
        timeout: ms("timeout_ms", d.timeout),
        max_output: n("max_output", d.max_output),
        max_host_calls: n("max_host_calls", d.max_host_calls),
        guest_stdio: n("guest_stdio", d.guest_stdio),
        shell_timeout: ms("shell_timeout_ms", d.shell_timeout),
        shell_output: n("shell_output", d.shell_output),
        llm_tokens: n("llm_tokens", d.llm_tokens),
        llm_turn_tokens: n("llm_turn_tokens", d.llm_turn_tokens),
        max_llm_calls: n("max_llm_calls", d.max_llm_calls),
        max_chat_state: n("max_chat_state", d.max_chat_state),
    }
}

/// A WASI clock read through the tape: in record mode the host's clock,
/// written down; in replay the recorded value (0 when the recording has
/// none: this host's clock is never read).
pub(crate) struct TapeClock {
    pub(crate) tape: SessionTape,
}

impl TapeClock {
    fn read(&self, name: &str, live: impl FnOnce() -> Value) -> Value {
        if let Some(a) = self.tape.replayed(name, || json!({})) {
            return match a {
                Answer::Ret(v) => v,
                _ => json!(0),
            };
        }
        let v = live();
        if let Some(r) = self.tape.recording() {
            write_call(r, name, false, &json!({}), Ok(v.clone()));
        }
        v
    }
}

fn datetime(d: Duration) -> Value {
    json!({"seconds": d.as_secs(), "nanoseconds": d.subsec_nanos()})
}

fn datetime_of(v: &Value) -> Duration {
    Duration::new(
        v["seconds"].as_u64().unwrap_or(0),
        v["nanoseconds"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
    )
}

/// The host's wall clock, as wasmtime-wasi reads it by default.
fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

impl HostWallClock for TapeClock {
    fn resolution(&self) -> Duration {
        datetime_of(&self.read("wasi.wall-clock.resolution", || {
            datetime(Duration::from_nanos(1))
        }))
    }

    fn now(&self) -> Duration {
        datetime_of(&self.read("wasi.wall-clock.now", || datetime(wall_now())))
    }
}

/// The monotonic clock counts from when the process first read it.
fn monotonic_now() -> u64 {
    static ZERO: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let zero = *ZERO.get_or_init(std::time::Instant::now);
    u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl HostMonotonicClock for TapeClock {
    fn resolution(&self) -> u64 {
        self.read("wasi.monotonic-clock.resolution", || json!(1))
            .as_u64()
            .unwrap_or(1)
    }

    fn now(&self) -> u64 {
        self.read("wasi.monotonic-clock.now", || json!(monotonic_now()))
            .as_u64()
            .unwrap_or(0)
    }
}

/// `wasi:random` (secure, insecure and the insecure seed) through the
/// tape; linked over wasmtime-wasi's own, which the tape cannot see.
pub(crate) struct TapeRandom {
    pub(crate) tape: SessionTape,
    /// The insecure seed of this store, fixed when it was created.
    pub(crate) seed: u128,
}

/// Most bytes one random call may ask (wasmtime-wasi's own bound).
const MAX_RANDOM: u64 = 64 << 20;

impl TapeRandom {
    /// A store's random: its seed drawn (or, in replay, the recorded one)
    /// and written down as the `wasi.insecure-seed` call it answers.
    pub(crate) fn new(tape: SessionTape) -> TapeRandom {
        let seed = tape
            .script()
            .and_then(Script::seed)
            .unwrap_or_else(rand::random::<u128>);
        if let Some(r) = tape.recording() {
            write_call(
                r,
                "wasi.insecure-seed",
                false,
                &json!({}),
                Ok(json!(format!("{seed:032x}"))),
            );
        }
        TapeRandom { tape, seed }
    }

    fn bytes(&self, name: &str, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM {
            wasmtime::bail!("requested len {len} exceeds limit {MAX_RANDOM}");
        }
        if let Some(a) = self.tape.replayed(name, || json!({ "len": len })) {
            let hex = match a {
                Answer::Ret(v) => s(&v),
                _ => String::new(),
            };
            let mut out = unhex(&hex);
            out.resize(len as usize, 0);
            return Ok(out);
        }
        let mut out = vec![0u8; len as usize];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut out);
        if let Some(r) = self.tape.recording() {
            let hex = crate::util::hex_digest(&out);
            write_call(r, name, false, &json!({ "len": len }), Ok(json!(hex)));
        }
        Ok(out)
    }

    fn u64(&self, name: &str) -> wasmtime::Result<u64> {
        if let Some(a) = self.tape.replayed(name, || json!({})) {
            return Ok(match a {
                Answer::Ret(v) => v.as_u64().unwrap_or(0),
                _ => 0,
            });
        }
        let n = rand::random::<u64>();
        if let Some(r) = self.tape.recording() {
            write_call(r, name, false, &json!({}), Ok(json!(n)));
        }
        Ok(n)
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};

impl random::Host for TapeRandom {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.bytes("wasi.random.bytes", len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.u64("wasi.random.u64")
    }
}

impl insecure::Host for TapeRandom {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.bytes("wasi.insecure-random.bytes", len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        self.u64("wasi.insecure-random.u64")
    }
}

impl insecure_seed::Host for TapeRandom {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        Ok((self.seed as u64, (self.seed >> 64) as u64))
    }
}
