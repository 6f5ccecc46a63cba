//! The local session harness: runs one session in the sandbox without a
//! server and shows it on the terminal (`catpaw-agent session`).
//!
//! It drives the same session code the server connection uses, so `--json`
//! prints exactly the `session_output` / `session_error` payloads a server
//! would receive, followed by one line the server never sees:
//! `{"session_id":…,"receipt":{…}}`, what the session used against its
//! budgets. Without `--json` the receipt is one line on stderr.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::proto::{self, SessionStartPayload, SessionType};
use crate::session::{Runners, SessionEvent, run_session};

/// What to run.
#[derive(Debug, Clone)]
pub struct LocalSession {
    /// `inspect`, `diagnose` or `chat`.
    pub session_type: String,
    /// Session params (`plugin`, `target`, `descriptions`, `message`…).
    pub params: Map<String, Value>,
    /// Grant the shell import.
    pub allow_shell: bool,
    /// Print JSON lines instead of a readable transcript.
    pub json: bool,
}

/// How a local session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOutcome {
    /// Finished normally.
    Ok,
    /// Ended with a `session_error`: `(code, error)`.
    Failed(String, String),
}

/// Colours for a terminal; empty strings otherwise.
pub(crate) struct Style {
    pub(crate) dim: &'static str,
    cyan: &'static str,
    green: &'static str,
    red: &'static str,
    pub(crate) bold: &'static str,
    pub(crate) reset: &'static str,
}

impl Style {
    pub(crate) fn new(tty: bool) -> Self {
        if tty {
            Style {
                dim: "\x1b[2m",
                cyan: "\x1b[36m",
                green: "\x1b[32m",
                red: "\x1b[31m",
                bold: "\x1b[1m",
                reset: "\x1b[0m",
            }
        } else {
            Style {
                dim: "",
                cyan: "",
                green: "",
                red: "",
                bold: "",
                reset: "",
            }
        }
    }
}

/// Runs one session locally, printing as it streams. Chat turns come from
/// stdin (one line per turn; EOF ends the chat).
pub async fn run_local(runners: Runners, req: LocalSession) -> anyhow::Result<LocalOutcome> {
    let session_id = uuid::Uuid::new_v4().to_string();
    let start = SessionStartPayload {
        session_id: session_id.clone(),
        session_type: req.session_type.clone(),
        user_name: std::env::var("USER").unwrap_or_else(|_| "local".to_string()),
        params: req.params.clone(),
        key_id: None,
    };
    let kind = SessionType::parse(&start.session_type);
    if !runners.serves(&kind) {
        anyhow::bail!("no runner serves {} sessions", start.session_type);
    }
    let (tx, mut rx) = mpsc::channel(64);
    let (in_tx, in_rx) = mpsc::channel::<String>(8);
    let cancel = CancellationToken::new();
    let is_chat = kind == SessionType::Chat;
    let task = tokio::spawn(run_session(
        start,
        req.allow_shell,
        runners,
        tx,
        in_rx,
        cancel.clone(),
    ));
    let tty = std::io::stdout().is_terminal();
    let prompt = std::io::stdin().is_terminal();
    let st = Style::new(tty && !req.json);
    let mut inputs = if is_chat {
        Some(in_tx)
    } else {
        drop(in_tx);
        None
    };
    let has_first = req
        .params
        .get(proto::PARAM_MESSAGE)
        .and_then(Value::as_str)
        .is_some_and(|m| !m.is_empty());
    if is_chat && !has_first {
        inputs = next_turn(inputs, prompt, &st).await;
    }
    let mut outcome = LocalOutcome::Ok;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = &mut ctrl_c => { cancel.cancel(); continue; }
        };
        let Some(ev) = ev else { break };
        if req.json {
            let line = match &ev {
                SessionEvent::Output(p) => serde_json::to_string(p)?,
                SessionEvent::Error(p) => serde_json::to_string(p)?,
            };
            println!("{line}");
        } else {
            print_event(&ev, &st);
        }
        let turn_done = matches!(&ev, SessionEvent::Output(p)
            if p.metadata.as_ref().and_then(|m| m.get(proto::META_TURN_DONE)).and_then(Value::as_bool) == Some(true));
        match &ev {
            SessionEvent::Error(e) => {
                outcome = LocalOutcome::Failed(e.code.clone(), e.error.clone())
            }
            SessionEvent::Output(p) if p.done => break,
            _ => {}
        }
        if turn_done {
            inputs = next_turn(inputs, prompt, &st).await;
        }
    }
    if let Ok(end) = task.await
        && let Some(receipt) = &end.receipt
    {
        if req.json {
            let line = serde_json::json!({ "session_id": session_id, "receipt": receipt });
            println!("{line}");
        } else {
            // Beside the transcript, not in it: stdout stays the session's.
            eprintln!("{}receipt: {}{}", st.dim, receipt.line(), st.reset);
        }
    }
    Ok(outcome)
}

/// Reads the next chat turn from stdin and queues it; drops the sender at
/// EOF, which ends the chat.
async fn next_turn(
    inputs: Option<mpsc::Sender<String>>,
    prompt: bool,
    st: &Style,
) -> Option<mpsc::Sender<String>> {
    let tx = inputs?;
    loop {
        if prompt {
            print!("{}you>{} ", st.bold, st.reset);
            let _ = std::io::stdout().flush();
        }
        let line = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            match std::io::stdin().lock().read_line(&mut s) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(s),
            }
        })
        .await
        .ok()
        .flatten();
        let line = line?.trim().to_string();
        if line.is_empty() {
            continue;
        }
        if tx.send(line).await.is_err() {
            return None;
        }
        return Some(tx);
    }
}

thread_local! {
    /// Whether the terminal line is a model stream still being written:
    /// its pieces join on one line until another event ends it.
    static STREAMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn print_event(ev: &SessionEvent, st: &Style) {
    if let SessionEvent::Output(p) = ev
        && !p.done
        && p.metadata
            .as_ref()
            .and_then(|m| m.get(proto::META_LLM_STREAM))
            .and_then(Value::as_bool)
            == Some(true)
    {
        if !STREAMING.replace(true) && p.stage != proto::STAGE_ANSWER {
            print!("{}[{}]{} ", st.dim, p.stage, st.reset);
        }
        print!("{}", p.delta);
        let _ = std::io::stdout().flush();
        return;
    }
    if STREAMING.replace(false) {
        println!();
    }
    match ev {
        SessionEvent::Error(e) => {
            eprintln!(
                "{}session error [{}]: {}{}",
                st.red, e.code, e.error, st.reset
            );
        }
        SessionEvent::Output(p) if p.done => {
            if let Some(report) = &p.report {
                println!("\n{}", report.trim_end());
            }
        }
        SessionEvent::Output(p) => {
            let (colour, label) = match p.stage.as_str() {
                proto::STAGE_THINKING => (st.dim, "thinking"),
                proto::STAGE_TOOL_CALL => (st.cyan, "tool call"),
                proto::STAGE_TOOL_RESULT => (st.green, "tool result"),
                proto::STAGE_ERROR => (st.red, "error"),
                proto::STAGE_ANSWER => {
                    if !p.delta.is_empty() {
                        println!("{}", p.delta.trim_end());
                    }
                    return;
                }
                _ => (st.dim, "output"),
            };
            for (i, line) in p.delta.trim_end().lines().enumerate() {
                if i == 0 {
                    println!("{colour}[{label}]{} {line}", st.reset);
                } else {
                    println!(
                        "{colour}{:width$}{} {line}",
                        "",
                        st.reset,
                        width = label.len() + 2
                    );
                }
            }
        }
    }
}
