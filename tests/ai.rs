//! AI sessions end to end: the agent built from a config file with `[ai]`
//! (the built-in AI runner, the rule-based one behind it), against the
//! scripted model server of `common::llm` over real HTTP and SSE.

mod common;

use catpaw_agent::session::SessionEvent;
use common::ai::{KEY, agent, ai_toml, alert, deltas, llm_outcomes};
use common::llm::{LlmServer, Reply, calls, dead_port, text};
use common::{chat, error_of, report_of, stages};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diagnose_calls_two_tools_and_reports() {
    let report = "## CPU\n\nLoad is high because of process X.";
    let server = LlmServer::start(
        vec![
            calls(&[("cpu", "{}")]),
            calls(&[("uptime", "{}")]),
            text(report),
        ],
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), &ai_toml(&[("main", server.base_url())], ""));
    let (events, end) = alert()
        .start_with(a.runners.clone())
        .finish_with_end()
        .await;
    assert_eq!(error_of(&events), None);
    assert_eq!(report_of(&events).as_deref(), Some(report));
    let st = stages(&events);
    assert_eq!(st.iter().filter(|s| *s == "tool_call").count(), 2, "{st:?}");
    assert_eq!(
        st.iter().filter(|s| *s == "tool_result").count(),
        2,
        "{st:?}"
    );
    // The report streamed as it was written.
    assert_eq!(
        deltas(&events, "thinking").concat().matches(report).count(),
        1
    );

    let got = server.received();
    assert_eq!(got.len(), 3);
    let first = &got[0];
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(first.body["model"], "model-main");
    assert_eq!(first.body["stream"], true);
    assert_eq!(first.body["max_tokens"], 1000);
    let tools: Vec<&str> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"cpu") && tools.contains(&"uptime"),
        "{tools:?}"
    );
    assert!(
        first.messages()[1]["content"]
            .as_str()
            .unwrap()
            .contains("load average above 8")
    );
    // The last request carries both calls and their results.
    let last = got[2].messages();
    let tool_msgs: Vec<&Value> = last.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 2);
    assert_eq!(tool_msgs[0]["tool_call_id"], "call_0");
    assert!(
        tool_msgs[1]["content"]
            .as_str()
            .unwrap()
            .contains("uptime_sec")
    );
    let assistant = last.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(assistant["tool_calls"][0]["function"]["name"], "cpu");

    // Each call audited with its tokens, never its content.
    let audited = llm_outcomes(&a);
    assert_eq!(audited.len(), 3);
    for r in &audited {
        let d = r["detail"].as_str().unwrap();
        assert!(
            d.contains("provider=openai name=main model=model-main"),
            "{d}"
        );
        assert_eq!(r["outcome"], "ok");
    }
    let last = audited[2]["detail"].as_str().unwrap();
    assert!(last.contains("prompt=50 completion=20"), "{last}");
    // The session's receipt counts the calls and the tokens they were
    // charged, as the audit trail has them.
    let field = |d: &str, key: &str| -> u64 {
        let v = d.split(&format!("{key}=")).nth(1).expect(key);
        v.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let audited_tokens: u64 = audited
        .iter()
        .map(|r| {
            let d = r["detail"].as_str().unwrap();
            field(d, "prompt") + field(d, "completion")
        })
        .sum();
    let receipt = end.receipt.expect("a receipt");
    assert_eq!(receipt.llm_calls, 3, "{receipt:?}");
    assert_eq!(receipt.llm_tokens, audited_tokens, "{receipt:?}");
    assert!(
        receipt.line().contains("3 model call(s) using"),
        "{}",
        receipt.line()
    );
    let trail = std::fs::read_to_string(a.audit.path()).unwrap();
    assert!(!trail.contains("process X"), "the audit holds no content");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_keeps_its_history_across_turns() {
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
    let mut answers = String::new();
    let mut turns = 0;
    while turns < 2 {
        match s.next().await {
            SessionEvent::Output(p) if p.stage == "answer" => {
                answers.push_str(&p.delta);
                let done = p
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("turn_done"))
                    .is_some();
                if done {
                    turns += 1;
                    if turns == 1 {
                        s.say("What did I ask you?").await;
                    }
                }
            }
            SessionEvent::Error(e) => panic!("{e:?}"),
            _ => {}
        }
    }
    assert!(
        answers.contains("Hello Alice, the host looks fine."),
        "{answers}"
    );
    assert!(
        answers.contains("You asked whether the host is fine."),
        "{answers}"
    );
    let got = server.received();
    assert_eq!(got.len(), 2);
    let second: Vec<String> = got[1]
        .messages()
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(second.len(), 4, "{second:?}");
    assert_eq!(second[1], "user: I am Alice, is the host fine?");
    assert_eq!(second[2], "assistant: Hello Alice, the host looks fine.");
    assert_eq!(second[3], "user: What did I ask you?");
    assert_eq!(got[1].header("x-agent-scene"), None);
    // The AI chat keeps a receipt: two model calls over the session.
    let (_, end) = s.finish_with_end().await;
    let receipt = end.receipt.expect("a receipt");
    assert_eq!(receipt.llm_calls, 2, "{receipt:?}");
    assert!(receipt.llm_tokens > 0, "{receipt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_looping_on_tool_calls_stops_at_max_rounds() {
    let server = LlmServer::start(vec![], Some(calls(&[("uptime", "{}")]))).await;
    let dir = tempfile::tempdir().unwrap();
    let body =
        ai_toml(&[("main", server.base_url())], "").replace("max_rounds = 5", "max_rounds = 3");
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    assert_eq!(error_of(&events), None);
    let st = stages(&events);
    assert_eq!(st.iter().filter(|s| *s == "tool_call").count(), 3, "{st:?}");
    let got = server.received();
    // Three rounds, then one call without tools asking for the answer.
    assert_eq!(got.len(), 4);
    assert!(got[3].body.get("tools").is_none());
    let report = report_of(&events).unwrap();
    assert!(report.contains("all 3 tool-calling rounds"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_the_provider_is_not_followed() {
    let elsewhere = LlmServer::start(vec![], Some(text("followed"))).await;
    let location = format!(
        "http://user:pw@127.0.0.1:{}/v1/chat/completions?key=stolen",
        elsewhere.port
    );
    let server = LlmServer::start(vec![], Some(Reply::Redirect(location))).await;
    let dir = tempfile::tempdir().unwrap();
    let body =
        ai_toml(&[("main", server.base_url())], "").replace("max_retries = 0", "max_retries = 2");
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    assert_eq!(elsewhere.received().len(), 0, "the redirect was followed");
    assert_eq!(server.received().len(), 1, "a redirect is not retried");
    let thinking = deltas(&events, "thinking").concat();
    let shown = format!(
        "model main (openai) refused the request: HTTP 307 redirect to \
         http://127.0.0.1:{}/v1/chat/completions?…: redirects are not followed",
        elsewhere.port
    );
    assert!(thinking.contains(&shown), "{thinking}");
    assert!(
        !thinking.contains("stolen") && !thinking.contains("pw@"),
        "{thinking}"
    );
    assert!(thinking.contains("Falling back"), "{thinking}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_the_gateway_is_not_followed_and_the_token_stays_home() {
    let elsewhere = LlmServer::start(vec![], Some(text("followed"))).await;
    let location = format!("http://127.0.0.1:{}/api/v1/agent/llm/chat", elsewhere.port);
    let server = LlmServer::start(vec![], Some(Reply::Redirect(location.clone()))).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[server]\naddress = \"127.0.0.1:{}\"\nagent_token = \"gw-token-0123456789abcdef\"\n\
         [ai]\nenabled = true\nlanguage = \"en\"\n[ai.gateway]\nenabled = true\nmax_retries = 2\n",
        server.port
    );
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    let got = server.received();
    assert_eq!(got.len(), 1, "a redirect is not retried");
    assert_eq!(
        got[0].header("x-agent-token"),
        Some("gw-token-0123456789abcdef")
    );
    assert_eq!(elsewhere.received().len(), 0, "the redirect was followed");
    let thinking = deltas(&events, "thinking").concat();
    assert!(
        thinking.contains(&format!("HTTP 307 redirect to {location}")),
        "{thinking}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_and_then_answered() {
    let server = LlmServer::start(
        vec![
            Reply::Status(429, r#"{"error":{"message":"rate limited"}}"#.into()),
            text("All good."),
        ],
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let body =
        ai_toml(&[("main", server.base_url())], "").replace("max_retries = 0", "max_retries = 2");
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    assert_eq!(report_of(&events).as_deref(), Some("All good."));
    assert_eq!(server.received().len(), 2);
    let thinking = deltas(&events, "thinking").concat();
    assert!(
        says(&thinking, &["429", "retry 1 of 2"]),
        "the status and the retry count: {thinking}"
    );
    let audited = llm_outcomes(&a);
    assert!(
        audited[0]["detail"]
            .as_str()
            .unwrap()
            .contains("attempts=2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_not_retried_and_the_rule_based_runner_answers() {
    let echo = format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#);
    let server = LlmServer::start(vec![Reply::Status(401, echo)], None).await;
    let second = LlmServer::start(vec![], Some(text("never asked"))).await;
    let dir = tempfile::tempdir().unwrap();
    let body = ai_toml(
        &[("main", server.base_url()), ("backup", second.base_url())],
        "",
    )
    .replace("max_retries = 0", "max_retries = 3");
    let a = agent(dir.path(), &body);
    let (events, end) = alert()
        .start_with(a.runners.clone())
        .finish_with_end()
        .await;
    assert_eq!(server.received().len(), 1, "a 401 is not retried");
    // The receipt covers both runs: the AI runner's, whose one model call
    // was refused, and the rule-based runner's that answered.
    let receipt = end.receipt.expect("a receipt");
    assert_eq!(receipt.runs, 2, "{receipt:?}");
    assert_eq!(receipt.llm_calls, 1, "{receipt:?}");
    assert_eq!(receipt.llm_tokens, 0, "{receipt:?}");
    assert!(receipt.fuel_used > 0, "{receipt:?}");
    assert_eq!(second.received().len(), 0, "nor failed over");
    let thinking = deltas(&events, "thinking").concat();
    assert!(
        says(
            &thinking,
            &["main", "401", "Incorrect API key provided", "[redacted]"]
        ),
        "the model, the status, the provider's words, the key masked: {thinking}"
    );
    assert!(
        says(&thinking, &["Falling back", "rule-based"]),
        "{thinking}"
    );
    assert_eq!(error_of(&events), None);
    assert!(report_of(&events).is_some_and(|r| !r.is_empty()));
    assert!(!format!("{events:?}").contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_model_answers_when_the_first_is_down() {
    let down = format!("http://127.0.0.1:{}/v1", dead_port().await);
    let server = LlmServer::start(vec![text("Second model here.")], None).await;
    let dir = tempfile::tempdir().unwrap();
    let a = agent(
        dir.path(),
        &ai_toml(&[("first", down), ("second", server.base_url())], ""),
    );
    let events = alert().start_with(a.runners.clone()).finish().await;
    assert_eq!(report_of(&events).as_deref(), Some("Second model here."));
    let thinking = deltas(&events, "thinking").concat();
    assert!(
        thinking.contains("model first failed") && thinking.contains("trying second"),
        "{thinking}"
    );
    let audited = llm_outcomes(&a);
    assert!(
        audited[0]["detail"]
            .as_str()
            .unwrap()
            .contains("name=second")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sse_and_a_stalled_stream_fail_plainly() {
    let server = LlmServer::start(
        vec![
            Reply::RawSse("data: {\"choices\": [oops\n\n".into()),
            Reply::Stall,
        ],
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let body = ai_toml(&[("main", server.base_url())], "")
        .replace("request_timeout = \"5s\"", "request_timeout = \"1s\"");
    let a = agent(dir.path(), &body);

    let events = alert().start_with(a.runners.clone()).finish().await;
    let thinking = deltas(&events, "thinking").concat();
    assert!(thinking.contains("not a completion chunk"), "{thinking}");
    assert!(thinking.contains("Falling back"), "{thinking}");

    let events = alert().start_with(a.runners.clone()).finish().await;
    let thinking = deltas(&events, "thinking").concat();
    assert!(
        says(&thinking, &["request_timeout", "1s"]),
        "the setting and its value: {thinking}"
    );
    assert!(thinking.contains("Falling back"), "{thinking}");
    let audited = llm_outcomes(&a);
    assert!(
        audited[1]["detail"]
            .as_str()
            .unwrap()
            .contains("error=timeout"),
        "{audited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_is_asked_as_catpaw_server_expects() {
    let server =
        LlmServer::start(vec![calls(&[("cpu", "{}")]), text("Gateway report.")], None).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[server]\naddress = \"127.0.0.1:{}\"\nagent_token = \"gw-token-0123456789abcdef\"\n\
         [ai]\nenabled = true\nlanguage = \"en\"\n[ai.gateway]\nenabled = true\n",
        server.port
    );
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    assert_eq!(report_of(&events).as_deref(), Some("Gateway report."));
    let got = server.received();
    assert_eq!(got.len(), 2);
    let r = &got[0];
    assert_eq!(r.path, "/api/v1/agent/llm/chat");
    assert_eq!(r.header("x-agent-token"), Some("gw-token-0123456789abcdef"));
    assert_eq!(r.header("x-agent-scene"), Some("diagnose"));
    let id = std::fs::read_to_string(dir.path().join("state.d/agent_id")).unwrap();
    assert_eq!(r.header("x-agent-id"), Some(id.trim()));
    assert!(r.body["timeout_ms"].as_u64().is_some());
    // The gateway has no max_tokens setting: the host asks for 4000, the
    // default of a model's, as the budgets leave room.
    assert_eq!(r.body["max_tokens"], 4000);
    assert!(r.body["metadata"]["session_id"].as_str().is_some());
    assert!(r.body["tools"].as_array().is_some_and(|t| !t.is_empty()));
    assert_eq!(
        got[1]
            .messages()
            .iter()
            .filter(|m| m["role"] == "tool")
            .count(),
        1
    );
    let audited = llm_outcomes(&a);
    assert!(
        audited[1]["detail"]
            .as_str()
            .unwrap()
            .contains("provider=gateway name=server:diagnose model=gw-model")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_hostile_runner_cannot_learn_the_key() {
    use std::sync::Arc;

    let (_guard, log) = common::capture_log(tracing::Level::TRACE);

    // The provider echoes the Authorization header it got: first in a
    // 500 error body, then in the model's answer.
    let echo_error = Reply::With(Arc::new(|r: &common::llm::Request| {
        Reply::Status(
            500,
            format!(
                "{{\"error\":{{\"message\":\"bad {}\"}}}}",
                r.header("authorization").unwrap_or("")
            ),
        )
    }));
    let echo_text = Reply::With(Arc::new(|r: &common::llm::Request| {
        text(&format!(
            "your header was {}",
            r.header("authorization").unwrap_or("")
        ))
    }));
    let server = LlmServer::start(vec![echo_error, echo_text], None).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[sandbox]\ndiagnose_runner = \"{}\"\n{}",
        common::guest("hazard_llm_probe").display(),
        ai_toml(&[("main", server.base_url())], "")
    );
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    let report = report_of(&events).expect("the probe reports what it saw");
    assert!(report.contains("bad Bearer [redacted]"), "{report}");
    assert!(
        report.contains("your header was Bearer [redacted]"),
        "{report}"
    );
    assert!(
        !format!("{events:?}").contains(KEY),
        "the session output holds the key"
    );
    let trail = std::fs::read_to_string(a.audit.path()).unwrap();
    assert!(!trail.contains(KEY), "the audit holds the key");
    let logged = log.text();
    assert!(
        logged.contains("llm call failed"),
        "the log was captured: {logged}"
    );
    assert!(!logged.contains(KEY), "the log holds the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_built_against_the_0_1_0_contract_still_runs() {
    let sb = common::TestSandbox::new();
    let legacy = sb.load("hazard_legacy_echo");
    let events = common::inspect("mem").run_on(&legacy).await;
    assert_eq!(error_of(&events), None);
    assert_eq!(
        report_of(&events).as_deref(),
        Some("legacy report: plugin=mem uptime_ok=true")
    );
    assert_eq!(deltas(&events, "thinking"), vec!["legacy runner here"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_answer_without_end_is_refused_at_the_cap_not_read_whole() {
    let server = LlmServer::start(vec![Reply::Endless], None).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[server]\naddress = \"127.0.0.1:{}\"\n\
         [ai]\nenabled = true\nlanguage = \"en\"\n\
         [ai.gateway]\nenabled = true\nmax_retries = 0\nrequest_timeout = \"10m\"\n",
        server.port
    );
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    let thinking = deltas(&events, "thinking").concat();
    // Reading the whole body would have lasted until the 10-minute timeout.
    assert!(
        says(&thinking, &["gateway", &(10u64 << 20).to_string(), "bytes"]),
        "the gateway's 10 MiB cap named with its figure: {thinking}"
    );
    assert!(
        report_of(&events).is_some(),
        "the rule-based runner answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_is_down_falls_back_to_direct_models() {
    let server = LlmServer::start(vec![text("Direct answer.")], None).await;
    let dir = tempfile::tempdir().unwrap();
    let body = ai_toml(&[("local", server.base_url())], "").replace(
        "[ai.models.local]",
        &format!(
            "[ai.gateway]\nenabled = true\nbase_url = \"http://127.0.0.1:{}/api/v1/agent/llm\"\n\
             max_retries = 0\nfallback_to_direct = true\n[ai.models.local]",
            dead_port().await
        ),
    );
    let a = agent(dir.path(), &body);
    let events = alert().start_with(a.runners.clone()).finish().await;
    assert_eq!(report_of(&events).as_deref(), Some("Direct answer."));
    let thinking = deltas(&events, "thinking").concat();
    assert!(
        thinking.contains("model server:diagnose failed") && thinking.contains("trying local"),
        "{thinking}"
    );
}

/// Whether `text` says each of `parts`: what a user needs from a message
/// (the thing named, the figure), not its exact wording.
fn says(text: &str, parts: &[&str]) -> bool {
    parts.iter().all(|p| text.contains(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_model_down_every_open_chat_is_answered_by_the_rule_based_runner() {
    let dir = tempfile::tempdir().unwrap();
    let down = format!("http://127.0.0.1:{}/v1", dead_port().await);
    // As many chats as the agent allows (4): each holds the model-backed
    // chat and the rule-based one behind it (their saved states between
    // turns, or two live instances for runners that do not save).
    let a = agent(dir.path(), &ai_toml(&[("down", down)], ""));
    let mut chats: Vec<_> = (0..4)
        .map(|_| chat(json!({"message": "how is memory?"})).start_with(a.runners.clone()))
        .collect();
    for (i, s) in chats.iter_mut().enumerate() {
        let mut thinking = String::new();
        let answer = loop {
            match s.next().await {
                SessionEvent::Output(p)
                    if p.metadata
                        .as_ref()
                        .is_some_and(|m| m.contains_key("turn_done")) =>
                {
                    break p;
                }
                SessionEvent::Output(p) if p.stage == "thinking" => thinking.push_str(&p.delta),
                SessionEvent::Error(e) => panic!("chat {i}: {e:?}"),
                _ => {}
            }
        };
        assert_eq!(answer.stage, "answer", "chat {i}: {}", answer.delta);
        // The stream says the model was not reached and who took over,
        // and the answer is the rule-based chat's: its memory lookup,
        // through the memory tool.
        assert!(
            says(&thinking, &["could not be reached", "rule-based"]),
            "chat {i}: {thinking}"
        );
        assert!(
            thinking.contains("looking up memory"),
            "chat {i}: {thinking}"
        );
        assert!(
            answer.delta.starts_with("### Memory"),
            "chat {i}: {}",
            answer.delta
        );
    }
}
