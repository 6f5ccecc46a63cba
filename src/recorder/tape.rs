//! The tape a session's imports go through: in [`Tape::Record`] every
//! import runs and is written to the session's [`Recording`]; in
//! [`Tape::Replay`] every import that would reach the world (tools, shell,
//! model, MCP, clocks, random) is answered from a recording by a
//! [`Script`], in order, and nothing of this host is touched.
//!
//! The script answers a call when the next unanswered line of the
//! recording is the same function with the same arguments. When it is
//! not, the script looks further down for that call (a runner that made a
//! call fewer); when no line answers it, the call gets no answer (the
//! guest gets an error value) and the cursor stays where it was, so a
//! runner that made one call more still finds the rest. The first such
//! difference is kept: it is what `replay` names.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::Recording;
use super::read::Recorded;

/// Where a session's imports go.
#[derive(Clone, Debug)]
pub enum Tape {
    /// Run each import and write it down.
    Record(Recording),
    /// Answer each import from a recording.
    Replay(Arc<Script>),
}

/// What the recording answers for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The recorded return value.
    Ret(Value),
    /// The call ended the session: what the host said, and the budget it
    /// named, if one.
    Trap {
        /// The host's text.
        detail: String,
        /// The budget broken, as [`crate::runner::Budget`] displays it.
        budget: Option<String>,
    },
    /// The recording has no answer; the text says which call.
    Missing(String),
    /// The recording holds only the size of this call
    /// (`record_model_content = false`).
    Omitted(String),
}

/// Import calls answered live in both modes: their answer is the
/// session's own (its info, its output, its log), not the world's.
pub const LIVE: [&str; 3] = ["host.session", "host.emit", "host.log"];

/// One recorded call the script may answer.
#[derive(Debug)]
struct Line {
    n: u64,
    name: String,
    args: Value,
    line: Value,
}

/// The calls of a recording, answered in order (see the module doc).
#[derive(Debug)]
pub struct Script {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    lines: Vec<Line>,
    /// Lines below this one were answered or passed over.
    cursor: usize,
    /// The `wasi.insecure-seed` values, one per store, in order.
    seeds: std::collections::VecDeque<u128>,
    /// The first call the recording could not answer, or the first
    /// recorded call the runner did not make.
    first: Option<String>,
}

impl Script {
    /// The script of `recorded`'s import calls.
    pub fn new(recorded: &Recorded) -> Script {
        let mut lines = Vec::new();
        let mut seeds = std::collections::VecDeque::new();
        for l in recorded.all("call") {
            let name = l["fn"].as_str().unwrap_or_default();
            if LIVE.contains(&name) {
                continue;
            }
            if name == "wasi.insecure-seed" {
                let hex = l["ret"].as_str().unwrap_or_default();
                seeds.push_back(u128::from_str_radix(hex, 16).unwrap_or(0));
                continue;
            }
            lines.push(Line {
                n: l["n"].as_u64().unwrap_or(0),
                name: name.to_string(),
                args: l.get("args").cloned().unwrap_or(Value::Null),
                line: l.clone(),
            });
        }
        Script {
            state: Mutex::new(State {
                lines,
                cursor: 0,
                seeds,
                first: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The recorded answer to `name(args)` (args as the recording writes
    /// them: masked, keyed by WIT parameter names).
    pub fn answer(&self, name: &str, args: &Value) -> Answer {
        self.answer_line(name, args).0
    }

    /// [`Script::answer`], with the whole recorded line (for the fields
    /// beside `ret`, e.g. what a model call streamed); `Null` when none
    /// answered.
    pub fn answer_line(&self, name: &str, args: &Value) -> (Answer, Value) {
        let mut s = self.lock();
        let from = s.cursor;
        let found = s.lines[from..]
            .iter()
            .position(|l| l.name == name && (l.args == *args || omitted(&l.args)))
            .map(|i| from + i);
        let Some(at) = found else {
            let what = format!(
                "the recording has no answer for {name}({}) (the runner asked a call the \
                 recorded session did not make)",
                shown(args)
            );
            s.note(&what);
            return (Answer::Missing(format!("replay: {what}")), Value::Null);
        };
        if at > from {
            let skipped = &s.lines[from];
            let what = format!(
                "the runner did not make recorded call {} {}({})",
                skipped.n,
                skipped.name,
                shown(&skipped.args)
            );
            s.note(&what);
        }
        s.cursor = at + 1;
        let line = s.lines[at].line.clone();
        if omitted(&line["args"]) {
            let what = format!(
                "call {} {name}: the recording omits the model's content \
                 (record_model_content = false); it cannot be replayed past this call",
                s.lines[at].n
            );
            s.note(&what);
            return (Answer::Omitted(format!("replay: {what}")), line);
        }
        let answer = match line.get("trap") {
            Some(trap) => Answer::Trap {
                detail: trap.as_str().unwrap_or_default().to_string(),
                budget: line["budget"].as_str().map(str::to_string),
            },
            None => Answer::Ret(line.get("ret").cloned().unwrap_or(Value::Null)),
        };
        (answer, line)
    }

    /// Passes over the next line when it is `name` ending the session
    /// (a budget the replaying host broke itself, as the recorded one did).
    pub fn trapped(&self, name: &str) {
        let mut s = self.lock();
        let at = s.cursor;
        if s.lines
            .get(at)
            .is_some_and(|l| l.name == name && l.line.get("trap").is_some())
        {
            s.cursor += 1;
        }
    }

    /// The insecure seed of the next store the session creates.
    pub fn seed(&self) -> Option<u128> {
        self.lock().seeds.pop_front()
    }

    /// The first difference between the calls made and the recorded
    /// ones: one the recording could not answer, one it holds that was
    /// never made, or (at the end) the first of those left over.
    pub fn divergence(&self) -> Option<String> {
        let s = self.lock();
        if let Some(f) = &s.first {
            return Some(f.clone());
        }
        s.lines.get(s.cursor).map(|l| {
            format!(
                "the runner did not make recorded call {} {}({}) (it made fewer calls)",
                l.n,
                l.name,
                shown(&l.args)
            )
        })
    }
}

impl State {
    fn note(&mut self, what: &str) {
        if self.first.is_none() {
            self.first = Some(what.to_string());
        }
    }
}

fn omitted(args: &Value) -> bool {
    args.get("omitted").is_some()
}

/// Arguments as a message shows them: their JSON, cut to 200 bytes.
fn shown(args: &Value) -> String {
    let text = args.to_string();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(&text);
    let cut = crate::util::truncate_utf8(text, 200);
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn script(calls: &[Value]) -> Script {
        let mut lines = vec![json!({"k":"header"})];
        lines.extend(calls.iter().cloned());
        Script::new(&Recorded {
            lines,
            sha256: String::new(),
        })
    }

    fn call(n: u64, name: &str, args: Value, ret: Value) -> Value {
        json!({"k":"call","n":n,"fn":name,"args":args,"ret":ret})
    }

    #[test]
    fn the_same_calls_get_the_recorded_answers_and_no_divergence() {
        let s = script(&[
            call(1, "host.emit", json!({}), Value::Null),
            call(
                2,
                "host.call-tool",
                json!({"name":"cpu"}),
                json!({"ok":"1"}),
            ),
            call(3, "wasi.wall-clock.now", json!({}), json!({"seconds":5})),
        ]);
        assert_eq!(
            s.answer("host.call-tool", &json!({"name":"cpu"})),
            Answer::Ret(json!({"ok":"1"}))
        );
        assert_eq!(
            s.answer("wasi.wall-clock.now", &json!({})),
            Answer::Ret(json!({"seconds":5}))
        );
        assert_eq!(s.divergence(), None);
    }

    #[test]
    fn one_call_more_is_named_and_the_rest_still_answer() {
        let s = script(&[
            call(
                1,
                "host.call-tool",
                json!({"name":"cpu"}),
                json!({"ok":"1"}),
            ),
            call(
                2,
                "host.call-tool",
                json!({"name":"mem"}),
                json!({"ok":"2"}),
            ),
        ]);
        assert_eq!(
            s.answer("host.call-tool", &json!({"name":"cpu"})),
            Answer::Ret(json!({"ok":"1"}))
        );
        let Answer::Missing(m) = s.answer("host.call-tool", &json!({"name":"disk"})) else {
            panic!("answered");
        };
        assert!(m.starts_with("replay: the recording has no answer for host.call-tool"));
        assert!(m.contains("disk"), "{m}");
        assert_eq!(
            s.answer("host.call-tool", &json!({"name":"mem"})),
            Answer::Ret(json!({"ok":"2"}))
        );
        assert!(s.divergence().expect("diverged").contains("disk"));
    }

    #[test]
    fn a_call_fewer_is_named_as_the_call_not_made() {
        let s = script(&[
            call(
                1,
                "host.call-tool",
                json!({"name":"cpu"}),
                json!({"ok":"1"}),
            ),
            call(
                2,
                "host.call-tool",
                json!({"name":"mem"}),
                json!({"ok":"2"}),
            ),
        ]);
        assert_eq!(
            s.answer("host.call-tool", &json!({"name":"mem"})),
            Answer::Ret(json!({"ok":"2"}))
        );
        let d = s.divergence().expect("diverged");
        assert!(d.contains("did not make recorded call 1"), "{d}");
        let s = script(&[call(1, "host.list-tools", json!({}), json!([]))]);
        let d = s.divergence().expect("never asked");
        assert!(d.contains("fewer calls"), "{d}");
    }

    #[test]
    fn an_omitted_model_call_is_not_replayable() {
        let s = script(&[json!({"k":"call","n":1,"fn":"llm.complete",
            "args":{"omitted":"record_model_content = false","bytes":10},
            "ret":{"omitted":"record_model_content = false","bytes":5}})]);
        let a = s.answer("llm.complete", &json!({"messages":[]}));
        assert!(
            matches!(&a, Answer::Omitted(m) if m.contains("record_model_content = false")),
            "{a:?}"
        );
    }
}
