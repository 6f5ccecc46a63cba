//! The example Python runner (`guest-runners/python`, built with
//! componentize-py) end to end through the session driver and the real
//! sandbox: describe, tool calls, streaming, a chat with a denied and a
//! granted shell, and a budget breach; and a runner from `runner new`
//! that raises, through `check-runner` and `session` as its author runs
//! them.

mod common;

use catpaw_agent::config::DEFAULT_MAX_RUNNER_SIZE;
use catpaw_agent::sandbox::{LoadedRunner, WitVersion};
use catpaw_agent::session::SessionEvent;
use common::process::AgentHome;
use common::{TestSandbox, chat, diagnose, error_of, inspect, report_of, stages};
use serde_json::json;

/// The Python runner, loaded once per test binary (through the compile
/// cache shared with other test binaries).
fn python() -> &'static (TestSandbox, LoadedRunner) {
    static LOADED: std::sync::OnceLock<(TestSandbox, LoadedRunner)> = std::sync::OnceLock::new();
    LOADED.get_or_init(|| {
        let file = common::python::example_runner();
        let sb = TestSandbox::with_cache(Some(common::python::compile_cache()));
        let r = sb
            .sandbox
            .load_file(&file, DEFAULT_MAX_RUNNER_SIZE)
            .expect("the Python runner loads");
        (sb, r)
    })
}

/// The session id of a session's events.
fn session_id(events: &[SessionEvent]) -> String {
    match events.last().expect("events") {
        SessionEvent::Output(p) => p.session_id.clone(),
        SessionEvent::Error(e) => e.session_id.clone(),
    }
}

/// The answers of a chat's turns, in order.
fn answers(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Output(p)
                if p.metadata
                    .as_ref()
                    .and_then(|m| m.get("turn_done"))
                    .is_some() =>
            {
                Some(p.delta.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_runner_serves_every_session_kind_end_to_end() {
    let (sb, py) = python();
    let py = py.clone();
    assert_eq!(py.version(), WitVersion::V0_2);
    assert_eq!(py.world(), "runner");
    assert_eq!(py.plugin_names(), ["cpu", "mem", "disk", "uptime"]);

    // Inspect: tool calls stream as they happen, then the report.
    let (events, end) = inspect("mem").start_on(&py).finish_with_end().await;
    assert_eq!(end.outcome, "ok", "{events:?}");
    let s = stages(&events);
    assert!(
        s.iter().any(|x| x == "tool_call") && s.iter().any(|x| x == "tool_result"),
        "{s:?}"
    );
    let report = report_of(&events).expect("report");
    assert!(
        report.contains("# Inspection: mem on localhost (catpaw-py)"),
        "{report}"
    );
    assert!(
        report.contains("total_bytes"),
        "the memory tool's JSON: {report}"
    );
    let r = end.receipt.expect("receipt");
    assert!(
        r.tool_calls == 2 && r.fuel_used > 0 && r.peak_memory <= r.memory_limit,
        "{r:?}"
    );
    let sid = session_id(&events);
    let audited = sb
        .audit_records()
        .iter()
        .filter(|a| a["kind"] == "tool" && a["event"] == "started" && a["session_id"] == sid)
        .count();
    assert_eq!(audited, 2, "every tool call is audited");

    // Diagnose: the alert text is read from params.
    let events = diagnose(json!({"descriptions": "host slow"}))
        .run_on(&py)
        .await;
    let report = report_of(&events).expect("report");
    assert!(
        report.contains("> host slow") && report.contains("## uptime"),
        "{report}"
    );

    // Chat: state across turns; a shell request without a grant is denied
    // (an answer, the chat goes on).
    let run = chat(json!({"message": "uptime"})).start_on(&py);
    run.say("run id").await;
    run.say("hello").await;
    let (events, end) = run.finish_with_end().await;
    let a = answers(&events);
    assert_eq!(a.len(), 3, "{a:?}");
    assert!(a[0].starts_with("turn 1, uptime:"), "{a:?}");
    assert!(a[1].starts_with("shell denied: "), "{a:?}");
    assert!(
        a[2].starts_with("turn 3:"),
        "the conversation kept its state: {a:?}"
    );
    assert_eq!(end.receipt.expect("receipt").shell_requests, 1);
    let denied = sb
        .audit_records()
        .iter()
        .any(|a| a["kind"] == "shell" && a["name"] == "id" && a["outcome"] == "denied");
    assert!(denied, "{:?}", sb.audit_records());

    // With a grant, the command runs.
    let run = chat(json!({"message": "run echo from-python"}))
        .allow_shell()
        .start_on(&py);
    let a = answers(&run.finish().await);
    assert_eq!(a, ["exit 0\nfrom-python\n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_runner_is_held_to_its_budgets() {
    let py = python().1.clone();
    // An inspect takes some 200 000 fuel units; a quarter of that breaks
    // the fuel budget.
    let (events, end) = inspect("cpu")
        .budget(|b| b.fuel = 50_000)
        .start_on(&py)
        .finish_with_end()
        .await;
    let (code, error) = error_of(&events).expect("an error");
    assert_eq!(code, "resource_exhausted", "{error}");
    assert!(error.contains("fuel"), "{error}");
    assert_eq!(end.receipt.expect("receipt").fuel_max_run, 50_000);

    // Less memory than the interpreter needs: the memory budget, by name.
    let events = inspect("cpu")
        .budget(|b| b.max_memory = 4 << 20)
        .run_on(&py)
        .await;
    let (code, error) = error_of(&events).expect("an error");
    assert_eq!(code, "resource_exhausted", "{error}");
    assert!(error.contains("memory"), "{error}");
}

/// Runs `catpaw-agent ARGS` in `home`: (exit code, stdout, stderr).
fn run_in(home: &AgentHome, args: &[&str]) -> (i32, String, String) {
    let out = home.command().args(args).output().expect("run");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A runner generated by `runner new` whose `run` raises `KeyError('x')`
/// first thing, built in `home`; returns the component and the line of
/// app.py that raises.
fn raising_runner(home: &AgentHome) -> (std::path::PathBuf, usize) {
    let (code, _, stderr) = run_in(home, &["runner", "new", "raiser", "--lang", "python"]);
    assert_eq!(code, 0, "{stderr}");
    let dir = home.path().join("raiser");
    let app = std::fs::read_to_string(dir.join("app.py")).expect("app.py");
    let anchor = "    def run(self, req: diagnose.Request) -> str:\n";
    assert!(app.contains(anchor), "the scaffold's run: {app}");
    let app = app.replacen(anchor, &format!("{anchor}        {{}}[\"x\"]\n"), 1);
    let line = app
        .lines()
        .position(|l| l.trim() == "{}[\"x\"]")
        .expect("the raising line")
        + 1;
    std::fs::write(dir.join("app.py"), app).expect("write app.py");
    let wasm = dir.join("raiser.wasm");
    common::python::build(&dir, std::path::Path::new("wit"), &wasm);
    (wasm, line)
}

/// What a Python exception must show: its type, its message and where.
fn shows_the_exception(text: &str, line: usize) {
    assert!(text.contains("KeyError: 'x'"), "type and message: {text}");
    assert!(
        text.contains(&format!("app.py\", line {line}, in run")),
        "the line that raised: {text}"
    );
}

#[test]
fn a_python_exception_shows_its_traceback_and_a_second_check_reads_the_compile_cache() {
    let home = AgentHome::bare();
    let (wasm, line) = raising_runner(&home);
    let file = wasm.to_str().expect("utf-8 path");

    // The first check compiles, into the state dir's compile cache; every
    // run that calls `run` fails showing the exception, indented under it.
    let started = std::time::Instant::now();
    let (code, first, stderr) = run_in(&home, &["check-runner", file]);
    let compiling = started.elapsed();
    assert_eq!(code, 1, "{first}\n{stderr}");
    assert!(first.contains("ok   compile    compiled in "), "{first}");
    let diagnose = first
        .split("FAIL diagnose")
        .nth(1)
        .expect("the diagnose failed")
        .split("receipt:")
        .next()
        .expect("its error");
    assert!(diagnose.contains("runner trapped"), "{diagnose}");
    shows_the_exception(diagnose, line);
    assert!(
        !diagnose.contains("RUST_BACKTRACE"),
        "no advice a guest cannot follow: {diagnose}"
    );
    // Only the runner's own exports are listed (componentize-py adds one
    // of its own, `exports`).
    let exports = first
        .lines()
        .find(|l| l.contains(" exports "))
        .expect("exports step");
    assert!(
        exports.ends_with(
            "exports    catpaw:runner/describe@0.2.0, catpaw:runner/diagnose@0.2.0, \
             catpaw:runner/chat@0.2.0"
        ),
        "{exports}"
    );
    assert!(home.path().join("state.d/cache").is_dir(), "{first}");

    // The second check of the same file reads the compiled code back.
    let started = std::time::Instant::now();
    let (code, second, _) = run_in(&home, &["check-runner", file, "--json"]);
    let cached = started.elapsed();
    assert_eq!(code, 1, "{second}");
    let report: serde_json::Value = serde_json::from_str(&second).expect("json report");
    assert_eq!(report["from_cache"], true, "{report}");
    assert!(report["compile_ms"].is_null(), "{report}");
    let detail = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "compile")
        .expect("compile step")["detail"]
        .to_string();
    assert!(detail.contains("from cache"), "{detail}");
    assert!(
        cached * 3 < compiling,
        "a cached check ({cached:?}) is far quicker than one that compiles ({compiling:?})"
    );

    // A session's runner_trapped error carries the same traceback (the
    // harness uses the same state dir, so it compiles nothing either).
    let (code, out, _) = run_in(
        &home,
        &[
            "--runner",
            file,
            "session",
            "--type",
            "inspect",
            "--param",
            "plugin=mem",
            "--json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let error = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l.get("code").is_some())
        .unwrap_or_else(|| panic!("a session_error line: {out}"));
    assert_eq!(error["code"], "runner_trapped", "{error}");
    shows_the_exception(error["error"].as_str().expect("error text"), line);
    // Both kept their files in the default state dir, in the project's
    // parent here (docs/runners.md, "state.d").
    assert!(home.path().join("state.d/audit.jsonl").is_file());
}

/// Building a Python runner leaves Python's bytecode beside its sources;
/// none of it is in git, where each build would leave the checkout dirty.
#[test]
fn python_bytecode_is_neither_tracked_nor_left_visible_to_git() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
    };
    match git(&["rev-parse", "--is-inside-work-tree"]) {
        Ok(o) if o.status.success() => {}
        // A source archive without git has nothing tracked.
        _ => return common::skip("not a git work tree (or no git): nothing is tracked"),
    }
    let tracked = git(&["ls-files"]).expect("git ls-files");
    let tracked = String::from_utf8_lossy(&tracked.stdout);
    let bytecode: Vec<&str> = tracked
        .lines()
        .filter(|f| f.contains("__pycache__/") || f.ends_with(".pyc"))
        .collect();
    assert!(bytecode.is_empty(), "tracked build output: {bytecode:?}");
    let ignored = git(&[
        "check-ignore",
        "-q",
        "--no-index",
        "guest-runners/python/__pycache__/app.cpython-314.pyc",
    ])
    .expect("git check-ignore");
    assert!(
        ignored.status.success(),
        "the example's bytecode is ignored"
    );
}
