//! Every default and limit README.md, SECURITY.md, docs/runners.md and
//! PROTOCOL.md (§10, §11) give as a number, pinned once against the code.
//!
//! Why a module of its own: elsewhere tests compare a default with the
//! constant that defines it, so a changed constant changes both sides and
//! the docs silently go false. Here each expected value is the literal the
//! document prints, written as the document writes it (`64 << 20` for
//! "64 MiB"), with the sentence it comes from. A change to one of these
//! numbers fails here until the document says the new number too.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::sandbox::Budgets;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The config an empty file gives: every default the docs list is the one
/// the agent runs with, not just the one a constant holds.
fn empty_config() -> Config {
    Config::parse("", Path::new("/etc/catpaw/conf.d/config.toml")).expect("an empty config")
}

/// A one-key config, or its error.
fn config(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml")).map_err(|e| e.to_string())
}

/// README "Sandbox limits (defaults)" and docs/runners.md §1's budget
/// table, row by row, for both roles.
#[test]
fn the_sandbox_limits_table_of_readme_and_the_runner_guide() {
    let cfg = empty_config();
    for (role, b) in [
        ("diagnose", &cfg.sandbox.budgets.diagnose),
        ("chat", &cfg.sandbox.budgets.chat),
        ("Budgets::default", &Budgets::default()),
    ] {
        // fuel per run / chat turn | 1 000 000 000
        assert_eq!(b.fuel, 1_000_000_000, "{role}: fuel");
        // linear memory | 64 MiB
        assert_eq!(b.max_memory, 64 * MIB, "{role}: max_memory");
        // wall clock per run / chat turn | 120 s
        assert_eq!(b.timeout, Duration::from_secs(120), "{role}: timeout");
        // output per session | 8 MiB
        assert_eq!(b.max_output, 8 * MIB, "{role}: max_output");
        // host calls per run / chat turn | 256
        assert_eq!(b.max_host_calls, 256, "{role}: max_host_calls");
        // guest stdout/stderr and log lines kept per run | 16 KiB
        assert_eq!(b.guest_stdio, 16 * KIB, "{role}: guest_stdio");
        // shell command run time / output | 30 s / 64 KiB per stream
        assert_eq!(b.shell_timeout, Duration::from_secs(30), "{role}");
        assert_eq!(b.shell_output, 64 * KIB, "{role}: shell_output");
        // language-model tokens per session / per run | 400 000 / 200 000
        assert_eq!(b.llm_tokens, 400_000, "{role}: llm_tokens");
        assert_eq!(b.llm_turn_tokens, 200_000, "{role}: llm_turn_tokens");
        // language-model calls per run / chat turn | 32
        assert_eq!(b.max_llm_calls, 32, "{role}: max_llm_calls");
        // conversation state an idle chat keeps in place of its instance | 1 MiB
        assert_eq!(b.max_chat_state, MIB, "{role}: max_chat_state");
    }
    // runner file size (loaded or watched) | 64 MiB | (1 MiB..1 GiB)
    assert_eq!(cfg.sandbox.max_runner_size, 64 * MIB);
    assert_eq!(crate::config::DEFAULT_MAX_RUNNER_SIZE, 64 * MIB);
    let size = |v: &str| config(&format!("[sandbox]\nmax_runner_size = \"{v}\""));
    assert_eq!(size("1MiB").map(|c| c.sandbox.max_runner_size), Ok(MIB));
    assert_eq!(size("1GiB").map(|c| c.sandbox.max_runner_size), Ok(GIB));
    for outside in ["1023KiB", "1025MiB"] {
        let e = size(outside).expect_err(outside);
        assert!(e.contains("1MiB..1GiB"), "{outside}: {e}");
    }
}

/// README: "memory within 1 MiB..4 GiB, counts and durations above zero".
#[test]
fn memory_is_accepted_from_one_mib_to_four_gib() {
    let mem = |v: &str| config(&format!("[sandbox]\nmax_memory = \"{v}\""));
    assert_eq!(
        mem("1MiB").map(|c| c.sandbox.budgets.diagnose.max_memory),
        Ok(MIB)
    );
    assert_eq!(
        mem("4GiB").map(|c| c.sandbox.budgets.diagnose.max_memory),
        Ok(4 * GIB)
    );
    for outside in ["1023KiB", "4097MiB"] {
        let e = mem(outside).expect_err(outside);
        assert!(e.contains("max_memory"), "{outside}: {e}");
    }
    for zero in ["fuel = 0", "max_host_calls = 0", "timeout = \"0s\""] {
        let e = config(&format!("[sandbox]\n{zero}")).expect_err(zero);
        let key = zero.split(' ').next().unwrap_or(zero);
        assert!(e.contains(key), "{zero}: {e}");
    }
}

/// README "Local alerts" and SECURITY.md's local-user row: "at most 64
/// clients at once", "closes a client that sends no complete line for
/// 30 s", "One alert_events frame carries at most 100 events and
/// 256 KiB" (also PROTOCOL §10), "at most one line per 10 s".
#[test]
fn the_ingest_socket_and_alert_frame_limits() {
    let ingest = crate::alerts::ingest::IngestOptions::default();
    assert_eq!(ingest.max_connections, 64);
    assert_eq!(ingest.idle_timeout, Duration::from_secs(30));
    assert_eq!(crate::alerts::frame::MAX_EVENTS, 100);
    assert_eq!(crate::alerts::frame::MAX_FRAME_BYTES as u64, 256 * KIB);
    assert_eq!(
        crate::alerts::ringbuf::OVERFLOW_LOG_EVERY,
        Duration::from_secs(10)
    );
}

/// README "Diagnostic tools": "`list-tools` names them all; 56 today",
/// "Each answers in JSON of at most 32 KiB"; `[tools.targets]`: "network
/// tools run in the host, 5 s deadline"; SECURITY.md: "a deadline per
/// step, 20 s per call".
#[test]
fn the_tool_catalog_and_its_limits() {
    assert_eq!(crate::tools::catalog().len(), 56);
    assert_eq!(crate::tools::output::MAX_OUTPUT_BYTES as u64, 32 * KIB);
    assert_eq!(crate::tools::DEFAULT_TIMEOUT_MS, 5_000);
    assert_eq!(crate::tools::CALL_BUDGET, Duration::from_secs(20));
}

/// PROTOCOL §10: "`session_id` longer than 128 bytes", "`user_name`
/// longer than 256 bytes", "`disconnect.retry_after_sec` is clamped to
/// 1 s … 3600 s" (SECURITY.md: "clamped to 1 h").
#[test]
fn what_the_server_sends_is_bounded_as_protocol_section_10_says() {
    assert_eq!(crate::session::admission::MAX_SESSION_ID, 128);
    assert_eq!(crate::session::admission::MAX_USER_NAME, 256);
    let p = crate::link::reconnect::BackoffPolicy::default();
    assert_eq!(p.disconnect_min, Duration::from_secs(1));
    assert_eq!(p.disconnect_max, Duration::from_secs(3600));
}

/// PROTOCOL §11 (SECURITY.md repeats it): "No frame the agent sends is
/// larger than 1 MiB", "a report is cut to at most 768 KiB", "an error
/// text is cut to 4 KiB", "metadata whose JSON is larger than 64 KiB is
/// not sent".
#[test]
fn what_the_agent_sends_is_bounded_as_protocol_section_11_says() {
    assert_eq!(crate::proto::MAX_FRAME_BYTES as u64, MIB);
    assert_eq!(crate::proto::MAX_REPORT_BYTES as u64, 768 * KIB);
    assert_eq!(crate::proto::MAX_ERROR_BYTES as u64, 4 * KIB);
    assert_eq!(crate::proto::MAX_METADATA_BYTES as u64, 64 * KIB);
}

/// README "AI diagnosis and chat": `retry_backoff` "doubled per retry,
/// capped at 30 s"; `language` "default \"zh\""; gateway `max_retries`
/// "0..2"; a token budget is checked against "one token per byte … plus
/// 64 for the provider's framing"; "When that is less than 256 tokens …
/// the call is refused".
#[test]
fn the_ai_defaults_and_the_token_estimate() {
    let ai = empty_config().ai;
    assert_eq!(crate::ai::MAX_BACKOFF, Duration::from_secs(30));
    assert_eq!(ai.language, "zh");
    assert!(!ai.enabled, "the rule-based runners stay the default");
    for ok in 0..=2 {
        let text = format!("[ai.gateway]\nmax_retries = {ok}");
        assert_eq!(
            config(&text).map(|c| c.ai.gateway.max_retries),
            Ok(ok),
            "{text}"
        );
    }
    let e = config("[ai.gateway]\nmax_retries = 3").expect_err("3 retries");
    assert!(e.contains("max_retries"), "{e}");
    assert_eq!(crate::ai::FRAMING, 64);
    assert_eq!(crate::ai::MIN_ANSWER, 256);
}

/// README "Operating it": "A client has 2 s to send its whole request
/// head".
#[test]
fn a_metrics_client_has_two_seconds_for_its_request_head() {
    assert_eq!(crate::ops::metrics::HEAD_DEADLINE, Duration::from_secs(2));
}

/// README "Serving the tools to an MCP client": the token is "at least 16
/// characters".
#[test]
fn an_mcp_token_has_at_least_sixteen_characters() {
    assert_eq!(crate::mcp::MIN_TOKEN, 16);
}

/// README "Trust" and SECURITY.md "Deploying": `max_size = "64MiB"`,
/// `keep = 5`, `append_only = true` (the default), `max_skew = "300s"`.
#[test]
fn the_audit_and_signing_defaults() {
    let cfg = empty_config();
    assert_eq!(cfg.audit.max_size, 64 * MIB);
    assert_eq!(cfg.audit.keep, 5);
    assert!(cfg.audit.append_only);
    assert_eq!(cfg.server.signing.max_skew, Duration::from_secs(300));
}

/// docs/runners.md §1: "at most 64 plugins, names of at most 64 bytes …,
/// descriptions cut to 200 bytes"; `log`: "lines cut at 4 KiB"; a trap
/// carries "the last 40 lines of the run's stderr (at most 2 KiB)";
/// SECURITY.md: "async yields every 1 M units".
#[test]
fn the_runner_guide_limits() {
    use crate::runner::Description;
    assert_eq!(Description::MAX_PLUGINS, 64);
    assert_eq!(Description::MAX_NAME, 64);
    assert_eq!(Description::MAX_LINE, 200);
    assert_eq!(crate::sandbox::MAX_LOG_LINE as u64, 4 * KIB);
    assert_eq!(crate::sandbox::TRAP_TAIL_LINES, 40);
    assert_eq!(crate::sandbox::TRAP_TAIL_BYTES as u64, 2 * KIB);
    assert_eq!(crate::sandbox::FUEL_YIELD_INTERVAL, 1_000_000);
}
