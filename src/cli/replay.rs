//! `catpaw-agent replay ID|FILE [--runner X.wasm]`: re-executes a recorded
//! session in the sandbox with every import answered from the recording
//! (no tool, shell, model, MCP server or clock of this host is touched)
//! and says how the run compares: the same frames byte for byte (and,
//! with the recorded runner, the same fuel), or a diff of output and
//! report and the first call that diverged.
//!
//! The session is driven by the same code a served one is
//! ([`crate::session::drive`]): the recorded session info, params and
//! budgets, the recorded chat inputs in order, the runner recorded (the
//! built-in one whose SHA-256 the recording names) or `--runner`.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::proto::{self, SessionStartPayload, SessionType};
use crate::recorder::{Recorded, Script, Verdict};
use crate::runner::{ChatRunner, DiagnoseRunner, WithFallback};
use crate::sandbox::{LoadedRunner, Sandbox, SandboxOptions, budgets_of};
use crate::session::{ChannelSink, Runners, SessionEvent, drive, frame_raw};

/// What one replay found: the verdict and, for a person, what differed.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The verdict (its exit code is `replay`'s).
    pub verdict: Verdict,
    /// Whether the runner replayed is the recorded one (same SHA-256).
    pub same_runner: bool,
    /// Frames the recording holds and the replay sent.
    pub frames: (usize, usize),
    /// Fuel the recording and the replay used.
    pub fuel: (u64, u64),
}

/// Replays the recording at `path` against `runner` (`None`: the runner
/// it names, which must be built in).
pub async fn replay_file(path: &Path, runner: Option<&Path>) -> Verdict {
    replay(path, runner).await.verdict
}

/// [`replay_file`], with what the command prints beside the verdict.
pub async fn replay(path: &Path, runner: Option<&Path>) -> Replayed {
    match run(path, runner).await {
        Ok(r) => r,
        Err(reason) => Replayed {
            verdict: Verdict::CouldNotReplay { reason },
            same_runner: false,
            frames: (0, 0),
            fuel: (0, 0),
        },
    }
}

/// Largest runner file `--runner` loads (`[sandbox] max_runner_size`'s
/// default).
const MAX_RUNNER: u64 = crate::config::DEFAULT_MAX_RUNNER_SIZE;

async fn run(path: &Path, runner: Option<&Path>) -> Result<Replayed, String> {
    let recorded = crate::recorder::read::read(path).map_err(|e| e.to_string())?;
    if let Some(t) = recorded.first("truncated") {
        return Err(format!(
            "{}: the recording stopped at [recorder] max_size after call {}; it cannot be \
             replayed past it (raise max_size to record such sessions whole)",
            path.display(),
            t["after_call"]
        ));
    }
    let start = recorded
        .first("start")
        .ok_or_else(|| format!("{}: the recording has no start line", path.display()))?
        .clone();
    let sandbox = Sandbox::new(SandboxOptions::default()).map_err(|e| format!("{e:#}"))?;
    let recorded_sha = start["runner"]["sha256"].as_str().unwrap_or_default();
    let front = match runner {
        Some(p) => sandbox
            .load_file(p, MAX_RUNNER)
            .map_err(|e| format!("runner missing: {e:#}"))?,
        None => built_in(&sandbox, &start["runner"])?,
    };
    let same_runner = front.sha256() == recorded_sha;
    let fallback = match &start["fallback"] {
        Value::Null => None,
        f => Some(built_in(&sandbox, f)?),
    };
    let budgets = budgets_of(&start["budgets"]);
    let session = &start["session"];
    let kind = SessionType::parse(session["type"].as_str().unwrap_or_default());
    let runners = runners(&front, fallback.as_ref(), budgets, &kind);
    let params: Map<String, Value> = start["params"].as_object().cloned().unwrap_or_default();
    let allow_shell = session["allow_shell"].as_bool().unwrap_or(false);
    let payload = SessionStartPayload {
        session_id: text(&session["id"]),
        session_type: text(&session["type"]),
        user_name: text(&session["user"]),
        params: params.clone(),
        key_id: session["key_id"].as_str().map(str::to_string),
    };
    let script = Arc::new(Script::new(&recorded));
    let (tx, mut rx) = mpsc::channel::<SessionEvent>(64);
    let sink = ChannelSink::new(payload.session_id.clone(), tx).replaying(script.clone());
    let (in_tx, in_rx) = mpsc::channel::<String>(recorded.all("input").count().max(1));
    // The first turn of a chat may come in its params; the rest as inputs.
    let skip = usize::from(params.contains_key(proto::PARAM_MESSAGE));
    for input in recorded.all("input").skip(skip) {
        let _ = in_tx.try_send(text(&input["text"]));
    }
    drop(in_tx);
    let collect = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(ev) = rx.recv().await {
            frames.push(frame_raw(&ev));
        }
        frames
    });
    let end = drive(
        payload,
        allow_shell,
        runners,
        sink,
        in_rx,
        CancellationToken::new(),
        |_| {},
    )
    .await;
    let frames = collect
        .await
        .map_err(|e| format!("collecting frames: {e}"))?;
    let was: Vec<String> = recorded.all("frame").map(|f| text(&f["raw"])).collect();
    let recorded_end = recorded.first("end").cloned().unwrap_or_default();
    let fuel = (
        recorded_end["fuel_used"].as_u64().unwrap_or(0),
        end.receipt.as_ref().map_or(0, |r| r.fuel_used),
    );
    let verdict = judge(
        &recorded,
        &was,
        &frames,
        fuel,
        same_runner,
        &end.outcome,
        end.error.as_deref(),
        script.divergence(),
    );
    Ok(Replayed {
        verdict,
        same_runner,
        frames: (was.len(), frames.len()),
        fuel,
    })
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The built-in runner a recording's `runner` (or `fallback`) names by
/// its SHA-256.
fn built_in(sandbox: &Arc<Sandbox>, file: &Value) -> Result<LoadedRunner, String> {
    let sha = file["sha256"].as_str().unwrap_or_default();
    for (name, bytes) in [
        ("built-in AI runner", crate::embedded::AI),
        ("built-in diagnose runner", crate::embedded::DIAGNOSE),
        ("built-in chat runner", crate::embedded::CHAT),
    ] {
        if crate::util::sha256_hex(bytes) == sha {
            return sandbox.load(name, bytes).map_err(|e| format!("{e:#}"));
        }
    }
    Err(format!(
        "runner missing: the recorded runner {} (sha256 {sha}) is not built into this \
         agent; pass the file with --runner",
        file["source"].as_str().unwrap_or("?")
    ))
}

/// The session's runners as the agent composed them: the AI runner in
/// front of the rule-based one when the recording says so.
fn runners(
    front: &LoadedRunner,
    fallback: Option<&LoadedRunner>,
    budgets: crate::sandbox::Budgets,
    kind: &SessionType,
) -> Runners {
    let mut r = Runners::default();
    if *kind == SessionType::Chat {
        let primary = front
            .chat_runner(budgets.clone())
            .map(|c| Arc::new(c) as Arc<dyn ChatRunner>);
        let behind = fallback
            .and_then(|f| f.chat_runner(budgets))
            .map(|c| Arc::new(c) as Arc<dyn ChatRunner>);
        r.chat = match (primary, behind) {
            (Some(p), Some(b)) => Some(Arc::new(WithFallback {
                primary: p,
                fallback: b,
            })),
            (p, _) => p,
        };
    } else {
        let primary = front
            .diagnose_runner(budgets.clone())
            .map(|d| Arc::new(d) as Arc<dyn DiagnoseRunner>);
        let behind = fallback
            .and_then(|f| f.diagnose_runner(budgets))
            .map(|d| Arc::new(d) as Arc<dyn DiagnoseRunner>);
        r.diagnose = match (primary, behind) {
            (Some(p), Some(b)) => Some(Arc::new(WithFallback {
                primary: p,
                fallback: b,
            })),
            (p, _) => p,
        };
    }
    r
}

/// The verdict: calls first (a call the recording could not answer),
/// then frames and fuel.
#[allow(clippy::too_many_arguments)]
fn judge(
    recorded: &Recorded,
    was: &[String],
    now: &[String],
    fuel: (u64, u64),
    same_runner: bool,
    outcome: &str,
    error: Option<&str>,
    divergence: Option<String>,
) -> Verdict {
    let same_frames = was == now;
    if let Some(first) = divergence {
        return Verdict::CallsDiverged {
            first,
            diff: diff(was, now),
        };
    }
    // A secret masked in an input or a parameter reached the recorded
    // guest whole and the replayed one as `***`: the frames (masked
    // both times) still compare, the fuel cannot.
    let masked = recorded.lines.iter().any(|l| l["masked"] == true);
    if same_frames && (!same_runner || masked || fuel.0 == fuel.1) {
        return Verdict::Identical { fuel: fuel.1 };
    }
    if same_frames {
        return Verdict::OutputDiffers {
            diff: format!(
                "the same frames, but the fuel differs: recorded {}, replayed {}",
                fuel.0, fuel.1
            ),
        };
    }
    let recorded_outcome = recorded
        .first("end")
        .and_then(|e| e["outcome"].as_str())
        .unwrap_or_default();
    let detail = error.unwrap_or_default().to_string();
    if outcome != recorded_outcome {
        if outcome == proto::ErrorCode::RunnerTrapped.as_str() {
            return Verdict::Trapped { detail };
        }
        if outcome == proto::ErrorCode::ResourceExhausted.as_str() {
            return Verdict::Budget { detail };
        }
    }
    Verdict::OutputDiffers {
        diff: diff(was, now),
    }
}

/// Most differing frames a diff shows.
const DIFF_FRAMES: usize = 5;

/// The frames that differ (at most [`DIFF_FRAMES`]), then the report.
fn diff(was: &[String], now: &[String]) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..was.len().max(now.len()) {
        let (a, b) = (was.get(i), now.get(i));
        if a == b {
            continue;
        }
        if shown == DIFF_FRAMES {
            out.push_str("… (more frames differ)\n");
            break;
        }
        shown += 1;
        out.push_str(&format!("frame {}:\n", i + 1));
        if let Some(a) = a {
            out.push_str(&format!("- {a}\n"));
        }
        if let Some(b) = b {
            out.push_str(&format!("+ {b}\n"));
        }
    }
    let report = |frames: &[String]| {
        frames.iter().rev().find_map(|f| {
            let v: Value = serde_json::from_str(f).ok()?;
            v["payload"]["report"].as_str().map(str::to_string)
        })
    };
    let (a, b) = (report(was), report(now));
    if a != b {
        out.push_str("report:\n");
        for line in a.unwrap_or_default().lines() {
            out.push_str(&format!("- {line}\n"));
        }
        for line in b.unwrap_or_default().lines() {
            out.push_str(&format!("+ {line}\n"));
        }
    }
    out
}

/// What `replay` prints for `r`.
pub fn render(path: &Path, r: &Replayed) -> String {
    let mut out = format!("{}: {}\n", path.display(), r.verdict.label());
    let runner = if r.same_runner {
        "the recorded runner"
    } else {
        "another runner"
    };
    match &r.verdict {
        Verdict::Identical { fuel } => {
            out.push_str(&format!(
                "{} frames identical byte for byte with {runner}; fuel {fuel} (recorded {})\n",
                r.frames.1, r.fuel.0
            ));
            if r.same_runner && *fuel != r.fuel.0 {
                out.push_str(
                    "the fuel differs because the recording masked a secret the guest saw \
                     (an input or a parameter): the replay saw `***`\n",
                );
            }
        }
        Verdict::OutputDiffers { diff } => {
            out.push_str(&format!(
                "output differs with {runner} ({} frames recorded, {} replayed):\n{diff}",
                r.frames.0, r.frames.1
            ));
        }
        Verdict::CallsDiverged { first, diff } => {
            out.push_str(&format!("calls diverged: {first}\n{diff}"));
        }
        Verdict::Trapped { detail } => out.push_str(&format!("the runner trapped: {detail}\n")),
        Verdict::Budget { detail } => {
            out.push_str(&format!("the runner broke a budget: {detail}\n"))
        }
        Verdict::CouldNotReplay { reason } => {
            out.push_str(&format!("could not replay: {reason}\n"))
        }
    }
    out
}
