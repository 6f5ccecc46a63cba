//! The built-in AI runner: the model reads the alert (or the operator's
//! question), calls the host's read-only tools for at most `max_rounds`
//! rounds, and writes the answer. Everything about the model (provider,
//! key, retries, token budgets) is the host's; this runner only holds the
//! conversation.
//!
//! - diagnose (`alert` mode): the alert's `descriptions` and the tools →
//!   tool-calling rounds, streamed as `thinking` / `tool_call` /
//!   `tool_result`, then a Markdown report in the configured language
//! - inspect: the same loop over a health check of the plugin's area
//! - chat: one conversation per instance, its history kept across turns;
//!   `run_shell` is offered to the model only when the session may run
//!   commands (the host still decides each request); between turns the
//!   host keeps it as bytes (`snapshot.rs`) and lets the instance go
//!
//! When the model cannot be reached the run fails with the host's reason;
//! the host then hands the session to the rule-based runner.

wit_bindgen::generate!({ path: "../../wit", world: "snapshot-runner" });

mod snapshot;

use std::cell::RefCell;

use catpaw::runner::host::{self, Stage, ToolInfo};
use catpaw::runner::llm::{self, AiSettings, LlmError, Message, Role, ToolCall};
use exports::catpaw::runner::chat::{Guest as ChatGuest, GuestConversation};
use exports::catpaw::runner::diagnose::{Guest as DiagnoseGuest, Request};

struct Runner;
export!(Runner);

/// It names no plugins of its own: it asks the model about whatever area a
/// session names, and the rule-based runner behind it (whose table the
/// agent lists to the server) serves when the model is out of reach.
impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "catpaw-ai".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            // `mcp`: the tools of the host's [ai.mcp] servers, as catpaw's
            // AI diagnosis offers them.
            capabilities: vec![
                "tools".to_string(),
                "shell".to_string(),
                "llm".to_string(),
                "mcp".to_string(),
            ],
        }
    }
}

/// Name of the pseudo-tool that asks the host for a shell command.
const SHELL_TOOL: &str = "run_shell";
/// Most bytes of one tool result shown in the stream (the model gets it
/// whole).
const SHOWN_RESULT: usize = 600;

fn msg(role: Role, content: impl Into<String>) -> Message {
    Message {
        role,
        content: content.into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

fn language_rule(lang: &str) -> String {
    match lang {
        "zh" => "Write in Chinese (简体中文).".to_string(),
        "en" => "Write in English.".to_string(),
        other => format!("Write in the language whose code is `{other}`."),
    }
}

fn error_text(e: &LlmError) -> String {
    match e {
        LlmError::NotConfigured(m) => format!("no language model is configured: {m}"),
        LlmError::Budget(m)
        | LlmError::Timeout(m)
        | LlmError::ProviderRefused(m)
        | LlmError::AllProvidersFailed(m) => m.clone(),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Runs one tool call the model asked for and returns the tool message
/// that answers it, streaming the call and its result.
fn call_tool(call: &ToolCall, allow_shell: bool) -> Message {
    let meta = serde_json::json!({ "tool": call.name, "call_id": call.id }).to_string();
    host::emit(
        &format!("{}({})", call.name, call.arguments_json),
        Stage::ToolCall,
        Some(&meta),
    );
    let args = if call.arguments_json.trim().is_empty() {
        "{}"
    } else {
        call.arguments_json.as_str()
    };
    let result = if call.name == SHELL_TOOL && allow_shell {
        shell(args)
    } else {
        host::call_tool(&call.name, args)
    };
    let text = match result {
        Ok(out) => out,
        Err(e) => format!("error: {e}"),
    };
    let shown = cut(&text, SHOWN_RESULT);
    let more = if shown.len() < text.len() { " …" } else { "" };
    host::emit(&format!("{shown}{more}"), Stage::ToolResult, Some(&meta));
    Message {
        role: Role::Tool,
        content: text,
        tool_calls: Vec::new(),
        tool_call_id: Some(call.id.clone()),
    }
}

fn shell(args: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(args).map_err(|e| format!("arguments are not JSON: {e}"))?;
    let command = v
        .get("command")
        .and_then(|c| c.as_str())
        .ok_or("run_shell needs a `command` string")?;
    let timeout = v
        .get("timeout_ms")
        .and_then(|t| t.as_u64())
        .unwrap_or(10_000)
        .min(u64::from(u32::MAX)) as u32;
    match host::request_shell(command, timeout) {
        Ok(o) => Ok(serde_json::json!({
            "exit_code": o.exit_code,
            "stdout": o.stdout,
            "stderr": o.stderr,
            "truncated": o.truncated,
        })
        .to_string()),
        Err(host::ShellError::Denied(m)) => Err(format!("denied: {m}")),
        Err(host::ShellError::Timeout) => Err("the command timed out and was killed".into()),
        Err(host::ShellError::Failed(m)) => Err(format!("failed: {m}")),
    }
}

fn shell_tool() -> ToolInfo {
    ToolInfo {
        name: SHELL_TOOL.into(),
        description: "Runs a shell command on the host (sh -c, no stdin) and returns its exit \
                      code, stdout and stderr. Prefer the read-only tools; use this only when \
                      they cannot answer."
            .into(),
        params_schema: r#"{"type":"object","properties":{"command":{"type":"string","description":"the command line"},"timeout_ms":{"type":"integer","description":"kill it after this many milliseconds (default 10000)"}},"required":["command"]}"#.into(),
    }
}

/// How a tool-calling loop ended.
enum Ended {
    /// The model answered without calling a tool.
    Answer(String),
    /// `max_rounds` rounds of tool calls were used up.
    OutOfRounds,
}

/// The loop: ask, run the calls the model made, ask again, until it
/// answers or `max_rounds` rounds have run.
fn tool_loop(
    messages: &mut Vec<Message>,
    tools: &[ToolInfo],
    settings: &AiSettings,
    stream_as: Stage,
    allow_shell: bool,
) -> Result<Ended, String> {
    for _ in 0..settings.max_rounds.max(1) {
        let reply = llm::complete(messages, tools, Some(stream_as)).map_err(|e| error_text(&e))?;
        let calls = reply.message.tool_calls.clone();
        messages.push(reply.message);
        if calls.is_empty() {
            let answer = messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            return Ok(Ended::Answer(answer));
        }
        for call in &calls {
            let answer = call_tool(call, allow_shell);
            messages.push(answer);
        }
    }
    Ok(Ended::OutOfRounds)
}

/// After the last round: one more call without tools, asking for the
/// answer from what was gathered.
fn wrap_up(
    messages: &mut Vec<Message>,
    settings: &AiSettings,
    stream_as: Stage,
) -> Result<String, String> {
    messages.push(msg(
        Role::User,
        format!(
            "You have used all {} tool-calling rounds. Do not call tools any more: answer now \
             from what you have gathered, and say what you could not check.",
            settings.max_rounds
        ),
    ));
    let reply = llm::complete(messages, &[], Some(stream_as)).map_err(|e| error_text(&e))?;
    let text = reply.message.content.trim().to_string();
    messages.push(reply.message);
    if text.is_empty() {
        return Ok(format!(
            "The model used all {} tool-calling rounds without reaching a conclusion.",
            settings.max_rounds
        ));
    }
    Ok(text)
}

fn diagnose_prompt(req: &Request, settings: &AiSettings) -> (String, String) {
    let system = format!(
        "You are catpaw's diagnosis assistant on the host `{target}`. You investigate with \
         read-only diagnostic tools, one or more per round, for at most {rounds} rounds. Base \
         every claim on tool output; never guess numbers. When you have enough, stop calling \
         tools and write the final report in Markdown: a one-line summary, the findings with \
         the figures behind them, the likely cause, and the next steps an operator should \
         take. {lang}",
        target = req.target,
        rounds = settings.max_rounds,
        lang = language_rule(&settings.language),
    );
    let params: serde_json::Value =
        serde_json::from_str(&req.params_json).unwrap_or(serde_json::Value::Null);
    let descriptions = match params.get("descriptions") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    let user = if req.mode == "alert" {
        format!(
            "An alert fired for the `{plugin}` plugin on `{target}`:\n\n{desc}\n\nFind out \
             why, and report.",
            plugin = req.plugin,
            target = req.target,
            desc = if descriptions.is_empty() {
                "(the alert carried no description)"
            } else {
                &descriptions
            },
        )
    } else {
        format!(
            "Inspect the health of `{target}`, focusing on the `{plugin}` area (CPU, memory, \
             disk, network, processes or the system as a whole), and report what needs \
             attention.",
            plugin = req.plugin,
            target = req.target,
        )
    };
    (system, user)
}

impl DiagnoseGuest for Runner {
    fn run(req: Request) -> Result<String, String> {
        let settings = llm::settings();
        if !settings.enabled {
            return Err("the AI runner needs [ai] enabled = true and a model".into());
        }
        let (system, user) = diagnose_prompt(&req, &settings);
        let mut messages = vec![msg(Role::System, system), msg(Role::User, user)];
        let tools = host::list_tools();
        host::emit(
            &format!(
                "Asking the model ({} tools, at most {} rounds)",
                tools.len(),
                settings.max_rounds
            ),
            Stage::Thinking,
            None,
        );
        match tool_loop(&mut messages, &tools, &settings, Stage::Thinking, false)? {
            Ended::Answer(report) if !report.trim().is_empty() => Ok(report),
            Ended::Answer(_) => Err("the model answered with an empty report".into()),
            Ended::OutOfRounds => wrap_up(&mut messages, &settings, Stage::Thinking),
        }
    }
}

impl ChatGuest for Runner {
    type Conversation = Conversation;
}

/// One conversation: its messages, kept across turns.
pub struct Conversation {
    allow_shell: bool,
    messages: RefCell<Vec<Message>>,
}

impl Conversation {
    fn new(allow_shell: bool) -> Self {
        let settings = llm::settings();
        let info = host::session();
        let shell = if allow_shell {
            "You may run shell commands with `run_shell` when the read-only tools cannot answer; \
             say what you run and why."
        } else {
            "You cannot run shell commands in this session; use the read-only tools."
        };
        let system = format!(
            "You are catpaw's assistant for operating this host, talking with {user}. Answer \
             questions about the host with its read-only diagnostic tools (at most {rounds} \
             rounds of tool calls per question); base every figure on tool output. {shell} \
             Answer concisely in Markdown. {lang}",
            user = info.user_name,
            rounds = settings.max_rounds,
            lang = language_rule(&settings.language),
        );
        Conversation {
            allow_shell,
            messages: RefCell::new(vec![msg(Role::System, system)]),
        }
    }
}

impl GuestConversation for Conversation {
    fn create(allow_shell: bool) -> Result<exports::catpaw::runner::chat::Conversation, String> {
        if !llm::settings().enabled {
            return Err("the AI runner needs [ai] enabled = true and a model".into());
        }
        Ok(exports::catpaw::runner::chat::Conversation::new(
            Conversation::new(allow_shell),
        ))
    }

    fn handle_message(&self, input: String) -> Result<String, String> {
        let settings = llm::settings();
        let mut tools = host::list_tools();
        if self.allow_shell {
            tools.push(shell_tool());
        }
        let mut messages = self.messages.borrow_mut();
        let kept = messages.len();
        messages.push(msg(Role::User, input));
        // The answer streams as `answer` deltas while the model writes it;
        // the turn's reply is then empty, so it is not shown twice.
        let ended = tool_loop(
            &mut messages,
            &tools,
            &settings,
            Stage::Answer,
            self.allow_shell,
        );
        let ended = match ended {
            Ok(e) => e,
            Err(e) => {
                // A failed turn leaves no half-answered question behind.
                messages.truncate(kept);
                return Err(e);
            }
        };
        if let Ended::OutOfRounds = ended
            && let Err(e) = wrap_up(&mut messages, &settings, Stage::Answer)
        {
            messages.truncate(kept);
            return Err(e);
        }
        Ok(String::new())
    }
}
