use super::*;

#[test]
fn status_and_metrics_read_the_same_counters() {
    let t = Telemetry::new();
    let t2 = t.clone();
    t.session_started("inspect");
    t.session_ended("inspect", "ok", Duration::from_millis(20));
    t2.budget_breach("fuel");
    t2.shell_request(false);
    t2.shell_command(false);
    t.alerts_pushed(3);
    t.alerts_dropped(1);
    t.reconnect("dropped");
    t.output_sent(11);
    let c = t.counts();
    assert_eq!(c.budget_breaches["fuel"], 1);
    assert_eq!(c.budget_breaches["memory"], 0);
    assert_eq!((c.shell_granted, c.shell_denied), (0, 1));
    assert_eq!((c.shell_commands_run, c.shell_commands_denied), (0, 1));
    assert_eq!(
        (c.alerts_pushed, c.alerts_dropped, c.alerts_sent),
        (3, 1, 0)
    );
    assert_eq!(c.reconnects, 1);
    let text = t.encode();
    for line in [
        "catpaw_agent_sessions_started_total{type=\"inspect\"} 1",
        "catpaw_agent_sessions_ended_total{type=\"inspect\",outcome=\"ok\"} 1",
        "catpaw_agent_budget_breaches_total{kind=\"fuel\"} 1",
        "catpaw_agent_shell_requests_total{decision=\"denied\"} 1",
        "catpaw_agent_alerts_dropped_total 1",
        "catpaw_agent_reconnects_total{cause=\"dropped\"} 1",
        "catpaw_agent_session_output_bytes_total 11",
        "catpaw_agent_session_duration_seconds_count{type=\"inspect\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn link_state_keeps_its_since_on_a_repeat() {
    let t = Telemetry::new();
    t.set_link(LinkState::Connected);
    let first = t.link().since;
    t.set_link(LinkState::Connected);
    assert_eq!(t.link().since, first);
    assert_eq!(t.link().state, LinkState::Connected);
    assert!(t.encode().contains("catpaw_agent_connected 1"));
}
