//! What language-model calls may cost, end to end: every token budget
//! (`llm_turn_tokens`, `llm_tokens`, `[ai] daily_token_limit`) is checked
//! before a call against the most it can cost, `max_tokens` is cut to what
//! is left, and a provider's reported usage is charged at most that bound.
//! The AI runner and `hazard_llm_probe` (a fixed, small prompt whose bound
//! a test can compute) against the scripted model of `common::llm`.

mod common;

use catpaw_agent::cli::setup::Setup;
use catpaw_agent::session::SessionEvent;
use common::ai::{
    agent, ai_toml, alert, deltas, ledger_tokens, llm_outcomes, llm_refusals, probe_agent,
    probe_prompt_bound,
};
use common::llm::{LlmServer, Reply, calls, text};
use common::{diagnose, error_of, report_of};
use serde_json::{Value, json};

/// An alert's diagnose against a model that asks for `uptime` on every
/// call, with `budget` (a `[sandbox]` line) set: the model server, the
/// agent, its dir and the session's events.
async fn against_endless_tool_calls(
    budget: &str,
) -> (LlmServer, Setup, tempfile::TempDir, Vec<SessionEvent>) {
    let server = LlmServer::start(vec![], Some(calls(&[("uptime", "{}")]))).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[sandbox]\n{budget}\n{}",
        ai_toml(&[("main", server.base_url())], "")
    );
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    (server, a, dir, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_may_not_fit_the_session_token_budget_is_never_sent() {
    // The first call's prompt alone is thousands of bytes: it may cost more
    // than the 120 tokens the session has, so it is refused, not sent.
    let (server, a, _dir, events) = against_endless_tool_calls("llm_tokens = 120").await;
    assert_eq!(server.received().len(), 0);
    let thinking = deltas(&events, "thinking").concat();
    assert!(
        thinking.contains("the session's llm_tokens budget of 120 has 120 left"),
        "{thinking}"
    );
    assert!(thinking.contains("Falling back"), "{thinking}");
    assert_eq!(error_of(&events), None, "the rule-based runner answered");
    assert_eq!(llm_refusals(&a).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4mb_prompt_is_refused_before_any_byte_reaches_the_model() {
    let server = LlmServer::start(vec![], Some(text("never asked"))).await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), &ai_toml(&[("main", server.base_url())], ""));
    let huge = "0123456789abcdef".repeat(250_000);
    let events = diagnose(json!({"plugin": "cpu", "descriptions": huge}))
        .start_with(a.runners.clone())
        .finish()
        .await;
    assert_eq!(server.received().len(), 0, "nothing reached the model");
    let thinking = deltas(&events, "thinking").concat();
    // The estimate (4 MB of prompt at one token per byte) against the
    // default llm_turn_tokens, the tightest budget.
    assert!(
        thinking.contains("the run's llm_turn_tokens budget of 200000 has 200000 left"),
        "{}",
        &thinking[..thinking.len().min(2000)]
    );
    let estimate: u64 = thinking
        .split("may cost ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the estimate");
    assert!(estimate > 4_000_000, "{estimate}");
    assert!(thinking.contains("Falling back"));
    assert_eq!(llm_refusals(&a).len(), 1);
    assert_eq!(llm_outcomes(&a).len(), 1, "only the refusal is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_sent_is_what_the_turn_budget_leaves_after_the_prompt() {
    let p = probe_prompt_bound();
    let first = Reply::Stream {
        text: vec!["one".into()],
        calls: vec![],
        usage: (50, 200),
    };
    let server = LlmServer::start(vec![first, text("two")], None).await;
    let dir = tempfile::tempdir().unwrap();
    let budget = format!("llm_turn_tokens = {}", p + 600);
    let a = probe_agent(dir.path(), &server, &budget, "");
    let (events, end) = alert()
        .start_with(a.runners.clone())
        .finish_with_end()
        .await;
    let got = server.received();
    assert_eq!(got.len(), 2, "{:?}", report_of(&events));
    // The host's bound is the request's messages, byte for byte.
    let sent = serde_json::to_vec(&got[0].body["messages"]).unwrap().len() as u64;
    assert_eq!(sent + 64, p);
    // 600 left after the prompt, then 350 after the first call's 250.
    assert_eq!(got[0].body["max_tokens"], 600);
    assert_eq!(got[1].body["max_tokens"], 350);
    assert_eq!(end.receipt.expect("a receipt").llm_tokens, 250 + 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_no_token_left_ends_resource_exhausted() {
    // The provider claims the most it can: the first call is charged its
    // whole bound, which is the whole budget; the second finds none left.
    let p = probe_prompt_bound();
    let lie = Reply::Stream {
        text: vec!["all".into()],
        calls: vec![],
        usage: (u64::MAX, u64::MAX),
    };
    let server = LlmServer::start(vec![], Some(lie)).await;
    let dir = tempfile::tempdir().unwrap();
    let budget = format!("llm_turn_tokens = {}", p + 300);
    let a = probe_agent(dir.path(), &server, &budget, "");
    let (events, end) = alert()
        .start_with(a.runners.clone())
        .finish_with_end()
        .await;
    let (code, msg) = error_of(&events).expect("an error");
    assert_eq!(code, "resource_exhausted");
    assert!(
        msg.contains(&format!("the llm_turn_tokens budget is {}", p + 300)),
        "{msg}"
    );
    assert_eq!(server.received().len(), 1);
    assert_eq!(end.receipt.expect("a receipt").llm_tokens, p + 300);
    assert_eq!(llm_refusals(&a).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_llm_call_budget_ends_resource_exhausted() {
    let (server, a, _dir, events) = against_endless_tool_calls("max_llm_calls = 2").await;
    let (code, msg) = error_of(&events).expect("an error");
    assert_eq!(code, "resource_exhausted");
    assert!(
        msg.contains("llm calls") && msg.contains("more than 2 language-model calls in one run"),
        "{msg}"
    );
    assert_eq!(server.received().len(), 2);
    let refused: Vec<Value> = std::fs::read_to_string(a.audit.path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "llm" && r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_token_limit_survives_a_restart() {
    let p = probe_prompt_bound();
    let server = LlmServer::start(vec![], Some(text("Fine."))).await;
    let dir = tempfile::tempdir().unwrap();
    // Two calls of 70 tokens leave p + 200: less than the prompt and a
    // minimal answer (256).
    let limit = p + 340;
    let ai = format!("daily_token_limit = {limit}");
    {
        let a = probe_agent(dir.path(), &server, "", &ai);
        let report = report_of(&alert().start_with(a.runners.clone()).finish().await).unwrap();
        assert!(!report.contains("Budget"), "{report}");
    }
    let got = server.received();
    assert_eq!(got[0].body["max_tokens"], 340);
    assert_eq!(got[1].body["max_tokens"], 270);
    assert_eq!(ledger_tokens(dir.path()), 140);
    let a = probe_agent(dir.path(), &server, "", &ai);
    let report = report_of(&alert().start_with(a.runners.clone()).finish().await).unwrap();
    assert!(
        report.contains(&format!(
            "the agent's [ai] daily_token_limit of {limit} (used 140 today; the count starts \
             again at 00:00 UTC) has {} left",
            p + 200
        )),
        "{report}"
    );
    assert_eq!(server.received().len(), 2, "no call after the limit");
}

#[tokio::test(flavor = "current_thread")]
async fn a_provider_reporting_2_64_tokens_is_charged_at_most_what_the_call_could_cost() {
    let (_guard, log) = common::capture_log(tracing::Level::WARN);
    let p = probe_prompt_bound();
    let lie = Reply::Stream {
        text: vec!["cheap".into()],
        calls: vec![],
        usage: (u64::MAX, u64::MAX),
    };
    let server = LlmServer::start(vec![], Some(lie)).await;
    let dir = tempfile::tempdir().unwrap();
    let ai = "daily_token_limit = 1000000";
    // Each call may cost its prompt's bound and the 1000 of max_tokens.
    let clamp = p + 1000;
    {
        let a = probe_agent(dir.path(), &server, "", ai);
        let (_, end) = alert()
            .start_with(a.runners.clone())
            .finish_with_end()
            .await;
        assert_eq!(end.receipt.expect("a receipt").llm_tokens, 2 * clamp);
    }
    assert_eq!(ledger_tokens(dir.path()), 2 * clamp);
    let logged = log.text();
    assert!(
        logged.contains("model main reported more tokens than the call could have used"),
        "{logged}"
    );
    assert!(logged.contains("provider=\"openai\""), "{logged}");
    // After a restart the ledger holds the clamp and goes on from it.
    let a = probe_agent(dir.path(), &server, "", ai);
    assert_eq!(ledger_tokens(dir.path()), 2 * clamp);
    let report = report_of(&alert().start_with(a.runners.clone()).finish().await).unwrap();
    assert!(!report.contains("Budget"), "{report}");
    assert_eq!(ledger_tokens(dir.path()), 4 * clamp);
}
