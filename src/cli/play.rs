//! `catpaw-agent play ID|FILE`: a recorded session shown as it streamed —
//! tool calls and their results, shell commands and their output, model
//! turns, every delta at its offset, the report and the receipt.
//!
//! Why a player and not `jq`: a recording holds every import call,
//! clock reads included, in the shape the WIT gives them, and the frames as
//! the wire text they were. An operator asking "what did this session do
//! on my host?" wants the acts and what came back, at the pace they came;
//! `--json` gives the lines as recorded for anything else (a frame written
//! by reference to its `emit` call with its `raw` rebuilt). The clock and
//! random reads, and the `emit` calls whose deltas appear as their frames,
//! are left out of the text (they are in `--json`).
//!
//! The seal is checked before anything is shown: a changed recording is an
//! error (exit 2, "hash mismatch"). One without a seal (the prefix a crash
//! left) is shown and said to be unsealed, as is a size-capped one.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::recorder::read::{self, Seal};
use crate::recorder::store::Store;

/// How `play` paces and prints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// Playback speed: 1 is as it happened, 2 twice as fast; None prints
    /// at once (`--no-wait`).
    pub speed: Option<f64>,
    /// One recorded line per output line, as recorded (`--json`).
    pub json: bool,
}

/// `catpaw-agent play ID|FILE`: the recording `target` names (a path, or
/// a session id looked up in the recordings dir of the config's state dir
/// or `[recorder] dir`) shown on stdout.
pub async fn run(
    config: Option<&Path>,
    target: &str,
    opts: PlayOptions,
) -> anyhow::Result<ExitCode> {
    let path = recordings(config)?.resolve(target)?;
    play(&path, opts, &mut std::io::stdout(), &mut std::io::stderr()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The recordings dir the config names, read only.
pub fn recordings(config: Option<&Path>) -> anyhow::Result<Store> {
    let cfg = Config::load(config)?;
    Ok(Store::at(&cfg.recorder.dir_under(&cfg.state_dir)))
}

/// Shows the recording at `path` on `out` (notes on the recording itself
/// go to `err` with `--json`, so stdout stays JSON lines). Err when it
/// cannot be read or its seal does not match.
pub async fn play(
    path: &Path,
    opts: PlayOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let scan = read::read_scan(path)?;
    let began = tokio::time::Instant::now();
    for line in &scan.lines {
        if let (Some(speed), Some(t)) = (opts.speed, line["t"].as_u64()) {
            let at = Duration::from_secs_f64(t as f64 / 1e6 / speed);
            tokio::time::sleep_until(began + at).await;
        }
        let shown = if opts.json {
            Some(line.to_string())
        } else {
            render(line, path)
        };
        if let Some(text) = shown {
            writeln!(out, "{text}")?;
            out.flush()?;
        }
    }
    for note in notes(&scan) {
        if opts.json {
            writeln!(err, "{note}")?;
        } else {
            writeln!(out, "{note}")?;
        }
    }
    Ok(())
}

/// What the reader should know about the recording as a whole: sealed or
/// not, cut, capped.
pub fn notes(scan: &read::Scan) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(t) = scan.lines.iter().find(|l| l["k"] == "truncated") {
        notes.push(format!(
            "truncated: the recording stopped after call #{} ({}); the session went on \
             unrecorded",
            t["after_call"],
            text(&t["reason"])
        ));
    }
    match &scan.seal {
        Seal::Sealed { sha256 } => notes.push(format!("sealed: sha256 {sha256} (checked)")),
        Seal::Unsealed { cut_line } => {
            notes.push(
                "unsealed: the session did not end in this recording (the prefix a crash \
                 left); nothing vouches that it was not changed"
                    .into(),
            );
            if let Some(n) = cut_line {
                notes.push(format!(
                    "line {n} was cut in the middle of being written and is not shown"
                ));
            }
        }
    }
    notes
}

/// A JSON string's text, or the JSON of anything else.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One line as text, or None for what the text leaves out.
pub fn render(line: &Value, path: &Path) -> Option<String> {
    let kind = line["k"].as_str().unwrap_or_default();
    let body = match kind {
        "header" => {
            let model = if line["record_model_content"] == false {
                "; model content not recorded"
            } else {
                ""
            };
            return Some(format!(
                "recording {} (catpaw-agent {}, started {}{model})",
                path.display(),
                text(&line["agent"]),
                text(&line["started_at"])
            ));
        }
        "start" => start(line),
        "input" => format!("chat turn {}: > {}", line["turn"], text(&line["text"])),
        "call" => call(line)?,
        "frame" => frame(&line["raw"]),
        "run_end" => {
            let turn = match line["turn"].as_u64() {
                Some(n) => format!("chat turn {n}"),
                None => "run".into(),
            };
            format!(
                "{turn} ended: {}, fuel {}",
                text(&line["outcome"]),
                line["fuel_used"]
            )
        }
        "receipt" => format!("receipt: {}", line["receipt"]),
        "end" => {
            let error = match &line["error"] {
                Value::Null => String::new(),
                e => format!(" ({}: {})", text(&e["code"]), text(&e["message"])),
            };
            format!(
                "end: {}{error}, fuel {}",
                text(&line["outcome"]),
                line["fuel_used"]
            )
        }
        "truncated" => format!(
            "recording stopped here: {} (after call #{})",
            text(&line["reason"]),
            line["after_call"]
        ),
        _ => {
            let mut rest = line.clone();
            if let Some(o) = rest.as_object_mut() {
                o.remove("t");
            }
            format!("{kind}: {rest}")
        }
    };
    let t = line["t"].as_u64().unwrap_or(0);
    Some(format!("[{:>9.3}s] {body}", t as f64 / 1e6))
}

fn start(line: &Value) -> String {
    let s = &line["session"];
    let r = &line["runner"];
    let key = match &s["key_id"] {
        Value::Null => "unsigned".to_string(),
        k => format!("key {}", text(k)),
    };
    let shell = if s["allow_shell"] == true {
        "shell allowed"
    } else {
        "no shell"
    };
    format!(
        "{} session {} by {} ({key}, {shell}), params {}\n            runner {} {} \
         sha256:{}, budgets {}",
        text(&s["type"]),
        text(&s["id"]),
        text(&s["user"]),
        line["params"],
        text(&r["role"]),
        text(&r["source"]),
        text(&r["sha256"]),
        line["budgets"]
    )
}

fn call(line: &Value) -> Option<String> {
    let name = line["fn"].as_str().unwrap_or_default();
    if name.starts_with("wasi.") || name == "host.emit" {
        return None;
    }
    let n = &line["n"];
    let args = &line["args"];
    let answer = match (line.get("trap"), line.get("ret")) {
        (Some(trap), _) => format!("trapped: {}", text(trap)),
        (None, Some(ret)) => answer(name, ret),
        (None, None) => "no answer recorded".into(),
    };
    Some(match name {
        "host.call-tool" => format!(
            "#{n} tool {} {} -> {answer}",
            text(&args["name"]),
            text(&args["args-json"])
        ),
        "host.request-shell" => format!("#{n} shell $ {} -> {answer}", text(&args["command"])),
        "host.log" => format!(
            "#{n} log {}: {}",
            text(&args["level"]),
            text(&args["message"])
        ),
        "llm.complete" => {
            let asked = match &args["messages"] {
                Value::Array(m) => match m.last() {
                    Some(last) => format!(
                        "{} message(s), last {}: {}",
                        m.len(),
                        text(&last["role"]),
                        text(&last["content"])
                    ),
                    None => "no messages".into(),
                },
                _ => args.to_string(),
            };
            format!("#{n} model asked ({asked}) -> {answer}")
        }
        _ => format!("#{n} {name} {args} -> {answer}"),
    })
}

/// A call's answer: results as `ok`/`error`, the shapes players look for
/// (shell output, model reply) spelled out.
fn answer(name: &str, ret: &Value) -> String {
    if let Some(err) = ret.get("err") {
        return format!("error {}", compact(err));
    }
    let ok = ret.get("ok").unwrap_or(ret);
    match name {
        "host.request-shell" if ok.get("exit-code").is_some() => format!(
            "exit {}\n{}{}",
            ok["exit-code"],
            indent(&text(&ok["stdout"])),
            indent(&text(&ok["stderr"]))
        ),
        "llm.complete" if ok.get("message").is_some() => format!(
            "{} says: {}{}",
            text(&ok["model"]),
            text(&ok["message"]["content"]),
            match &ok["message"]["tool-calls"] {
                Value::Array(c) if !c.is_empty() => format!(" (calls {})", Value::from(c.clone())),
                _ => String::new(),
            }
        ),
        _ => compact(ok),
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` as lines under the one above, or nothing when empty.
fn indent(s: &str) -> String {
    s.lines().map(|l| format!("            | {l}\n")).collect()
}

/// A frame as it went to the server: a delta with its stage, the report,
/// an error, or the frame's type.
fn frame(raw: &Value) -> String {
    let Some(wire) = raw.as_str() else {
        return format!("frame {raw}");
    };
    let Ok(v) = serde_json::from_str::<Value>(wire) else {
        return format!("frame (not JSON) {wire}");
    };
    let p = &v["payload"];
    match v["type"].as_str().unwrap_or_default() {
        "session_output" if p["done"] == true => match p.get("report") {
            Some(r) => format!("report:\n{}", indent(&text(r)).trim_end()),
            None => "done".into(),
        },
        "session_output" => {
            let meta = match p.get("metadata") {
                Some(m) => format!(" {m}"),
                None => String::new(),
            };
            format!("[{}] {}{meta}", text(&p["stage"]), text(&p["delta"]))
        }
        "session_error" => format!("error ({}): {}", text(&p["code"]), text(&p["error"])),
        other => format!("frame {other}: {p}"),
    }
}

#[cfg(test)]
#[path = "play_tests.rs"]
mod tests;
