//! An idle chat gives its instance back: a runner that exports `snapshot`
//! has its conversation saved after each turn and restored into a fresh
//! instance before the next; one without it, or whose save fails or is
//! over `max_chat_state`, keeps its live instance; a restore that fails
//! ends the session.

mod common;

use catpaw_agent::session::SessionEvent;
use common::ai::{agent, ai_toml};
use common::llm::{LlmServer, text};
use common::{Running, TestSandbox, capture_log, chat, error_of};
use serde_json::json;

/// The next turn's reply, `(stage, text)`: the output that carries
/// `turn_done` (what streamed before it is skipped).
async fn reply(run: &mut Running) -> (String, String) {
    loop {
        match run.next().await {
            SessionEvent::Output(p)
                if p.metadata
                    .as_ref()
                    .is_some_and(|m| m.contains_key("turn_done")) =>
            {
                return (p.stage, p.delta);
            }
            SessionEvent::Error(e) => panic!("the session failed: {e:?}"),
            _ => {}
        }
    }
}

/// What the built-in chat answers to three turns, and the instances alive
/// after each answer, with `max_chat_state` = `cap` (0: never saved).
async fn three_turns(sb: &TestSandbox, cap: u64) -> (Vec<String>, Vec<usize>, u64) {
    let mut run = chat(json!({"message": "hello there"}))
        .budget(|b| b.max_chat_state = cap)
        .start_on(&sb.builtin_chat());
    let mut answers = Vec::new();
    let mut alive = Vec::new();
    for next in ["help", "history", ""] {
        let (stage, text) = reply(&mut run).await;
        assert_eq!(stage, "answer", "{text}");
        answers.push(text);
        // The answer went out after its turn ended: the chat is idle.
        alive.push(sb.sandbox.live_instances());
        if !next.is_empty() {
            run.say(next).await;
        }
    }
    let (events, end) = run.finish_with_end().await;
    assert_eq!(error_of(&events), None);
    assert_eq!(end.outcome, "ok");
    let receipt = end.receipt.expect("a chat keeps a receipt");
    assert_eq!(
        sb.sandbox.live_instances(),
        0,
        "the ended chat holds nothing"
    );
    (answers, alive, receipt.runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_chat_answers_as_before_with_no_instance_between_turns() {
    let sb = TestSandbox::new();
    assert!(sb.builtin_chat().saves_chats());
    let (saved, alive_saved, runs_saved) = three_turns(&sb, 1 << 20).await;
    let (live, alive_live, runs_live) = three_turns(&sb, 0).await;
    assert_eq!(saved, live, "the same conversation, restored or live");
    assert!(saved[1].contains("read-only tools"), "{}", saved[1]);
    assert!(
        saved[2].contains("This is turn 3. You asked:\n\n1. hello there\n2. help"),
        "{}",
        saved[2]
    );
    assert_eq!(alive_saved, [0, 0, 0], "an idle chat holds no instance");
    assert_eq!(
        alive_live,
        [1, 1, 1],
        "with max_chat_state = 0 it keeps one"
    );
    // The start and three turns, either way.
    assert_eq!((runs_saved, runs_live), (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_chat_keeps_its_conversation_across_save_and_restore() {
    let server = LlmServer::start(
        vec![
            text("Hello Alice, the host looks fine."),
            text("You asked whether the host is fine."),
        ],
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), &ai_toml(&[("main", server.base_url())], ""));
    let mut s =
        chat(json!({"message": "I am Alice, is the host fine?"})).start_with(a.runners.clone());
    reply(&mut s).await;
    assert_eq!(a.sandbox.live_instances(), 0, "saved, not alive");
    s.say("What did I ask you?").await;
    reply(&mut s).await;
    assert_eq!(a.sandbox.live_instances(), 0);
    let got = server.received();
    assert_eq!(got.len(), 2);
    let second: Vec<String> = got[1]
        .messages()
        .iter()
        .map(|m| format!("{}: {}", m["role"].as_str().unwrap(), m["content"]))
        .collect();
    assert_eq!(second.len(), 4, "{second:?}");
    assert!(second[0].starts_with("system: "), "{second:?}");
    assert_eq!(second[1], "user: \"I am Alice, is the host fine?\"");
    assert_eq!(
        second[2],
        "assistant: \"Hello Alice, the host looks fine.\""
    );
    assert_eq!(second[3], "user: \"What did I ask you?\"");
    // The session's budgets span the restored turns: both calls counted.
    let (_, end) = s.finish_with_end().await;
    let receipt = end.receipt.expect("a receipt");
    assert_eq!(receipt.llm_calls, 2, "{receipt:?}");
    assert!(receipt.output_bytes > 0, "{receipt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_without_the_export_keeps_its_live_instance() {
    let sb = TestSandbox::new();
    let memo = sb.load("hazard_chat_memo_live");
    assert!(!memo.saves_chats());
    let mut run = chat(json!({"message": "note one"})).start_on(&memo);
    assert_eq!(reply(&mut run).await.1, "noted one [instance turn 1]");
    assert_eq!(sb.sandbox.live_instances(), 1);
    run.say("notes").await;
    assert_eq!(reply(&mut run).await.1, "notes: one [instance turn 2]");
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_with_the_export_serves_each_turn_from_a_fresh_instance() {
    let sb = TestSandbox::new();
    let memo = sb.load("hazard_chat_memo");
    assert!(memo.saves_chats());
    let mut run = chat(json!({"message": "note one"})).start_on(&memo);
    assert_eq!(reply(&mut run).await.1, "noted one [instance turn 1]");
    assert_eq!(sb.sandbox.live_instances(), 0);
    run.say("note two").await;
    assert_eq!(reply(&mut run).await.1, "noted two [instance turn 1]");
    run.say("notes").await;
    assert_eq!(reply(&mut run).await.1, "notes: one, two [instance turn 1]");
    run.finish().await;
}

/// The save that fails keeps the instance (the next turn is served by
/// it), says why in the log, and the save after it parks the chat again.
async fn a_failing_save_keeps_the_instance(order: &str, cap: u64, logged: &str) {
    let (_guard, log) = capture_log(tracing::Level::WARN);
    let sb = TestSandbox::new();
    let mut run = chat(json!({"message": "note one"}))
        .budget(|b| b.max_chat_state = cap)
        .start_on(&sb.load("hazard_chat_memo"));
    reply(&mut run).await;
    run.say(order).await;
    let (stage, _) = reply(&mut run).await;
    assert_eq!(stage, "answer");
    assert_eq!(sb.sandbox.live_instances(), 1, "kept alive: {order}");
    let text = log.text();
    assert!(text.contains(logged), "{order}: {text}");
    assert!(text.contains("the chat keeps its instance"), "{text}");
    run.say("notes").await;
    assert_eq!(reply(&mut run).await.1, "notes: one [instance turn 2]");
    assert_eq!(sb.sandbox.live_instances(), 0, "saved again");
    run.say("notes").await;
    assert_eq!(reply(&mut run).await.1, "notes: one [instance turn 1]");
    let (events, end) = run.finish_with_end().await;
    assert_eq!(error_of(&events), None);
    assert_eq!(end.outcome, "ok");
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_save_keeps_the_live_instance_and_says_why() {
    a_failing_save_keeps_the_instance(
        "save refuse",
        1 << 20,
        "the runner refused: asked to refuse this save",
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_state_over_the_cap_keeps_the_live_instance_and_says_why() {
    a_failing_save_keeps_the_instance(
        "save huge 4096",
        1024,
        "its state is 4096 bytes, over the cap of 1024 (`[sandbox] max_chat_state`)",
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_huge_state_from_a_hostile_runner_is_not_kept() {
    // 8 MiB: within the runner's memory and what the host copies out of
    // a guest in one call, far past the default cap: refused before the
    // copy, at the cap.
    a_failing_save_keeps_the_instance(
        "save huge 8388608",
        1 << 20,
        "too much data is being copied between the host and the guest",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_fails_ends_the_session_with_its_reason() {
    let sb = TestSandbox::new();
    let mut run = chat(json!({"message": "note one"})).start_on(&sb.load("hazard_chat_memo"));
    reply(&mut run).await;
    run.say("restore fail").await;
    assert_eq!(
        reply(&mut run).await.1,
        "the next restore fails [instance turn 1]"
    );
    run.say("notes").await;
    let (events, end) = run.finish_with_end().await;
    assert_eq!(
        error_of(&events),
        Some((
            "diagnose_failed".into(),
            "the conversation could not be restored: asked to fail this restore".into()
        ))
    );
    assert!(events.last().is_some_and(SessionEvent::is_done));
    assert_eq!(end.outcome, "diagnose_failed");
    // The start, two turns, and the one whose restore failed.
    assert_eq!(end.receipt.expect("a receipt").runs, 4);
    assert_eq!(sb.sandbox.live_instances(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_turn_is_saved_too_and_the_chat_goes_on() {
    let sb = TestSandbox::new();
    let mut run = chat(json!({"message": "note one"})).start_on(&sb.load("hazard_chat_memo"));
    reply(&mut run).await;
    run.say("juggle").await;
    let (stage, text) = reply(&mut run).await;
    assert_eq!(stage, "error");
    assert_eq!(text, "unknown memo command: juggle");
    assert_eq!(sb.sandbox.live_instances(), 0);
    run.say("notes").await;
    assert_eq!(reply(&mut run).await.1, "notes: one [instance turn 1]");
    run.finish().await;
}

/// Output that goes nowhere.
struct Nowhere;

#[async_trait::async_trait]
impl catpaw_agent::runner::StreamSink for Nowhere {
    async fn send(&self, _out: catpaw_agent::runner::Output) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_opened_without_a_message_holds_no_instance() {
    use catpaw_agent::runner::{ChatRunner, ChatSessionOpts, SessionInfo};
    let sb = TestSandbox::new();
    let runner = sb
        .builtin_chat()
        .chat_runner(common::limits(|_| {}))
        .expect("serves chat");
    let info = SessionInfo {
        session_id: "idle".into(),
        session_type: "chat".into(),
        user_name: "tester".into(),
        allow_shell: false,
        key_id: None,
    };
    let chat = runner
        .start(
            &info,
            ChatSessionOpts::default(),
            std::sync::Arc::new(Nowhere),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("start");
    assert_eq!(sb.sandbox.live_instances(), 0, "saved right after create");
    drop(chat);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_output_budget_spans_restored_turns() {
    let sb = TestSandbox::new();
    // Each answer is 29 bytes ("noted aaaa [instance turn 1]" and a digit):
    // the third breaks 80 bytes only if the first two still count.
    let mut run = chat(json!({"message": "note aaa1"}))
        .budget(|b| b.max_output = 80)
        .start_on(&sb.load("hazard_chat_memo"));
    reply(&mut run).await;
    run.say("note aaa2").await;
    reply(&mut run).await;
    assert_eq!(sb.sandbox.live_instances(), 0);
    run.say("note aaa3").await;
    let (events, end) = run.finish_with_end().await;
    let (code, error) = error_of(&events).expect("the third answer breaks the budget");
    assert_eq!(code, "resource_exhausted", "{error}");
    assert!(error.contains("output budget exhausted"), "{error}");
    assert_eq!(end.receipt.expect("a receipt").runs, 4);
}
