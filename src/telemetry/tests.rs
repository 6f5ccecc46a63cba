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

#[test]
fn a_fresh_set_exports_every_family_with_its_known_labels_at_zero() {
    let text = Telemetry::new().encode();
    for family in [
        "sessions_started",
        "sessions_ended",
        "session_duration_seconds",
        "budget_breaches",
        "shell_requests",
        "shell_commands",
        "alerts_pushed",
        "alerts_dropped",
        "alerts_sent",
        "reconnects",
        "register_ack_latency_seconds",
        "session_ack_latency_seconds",
        "session_output_deltas",
        "session_output_bytes",
        "connected",
    ] {
        let help = format!("# HELP catpaw_agent_{family} ");
        assert!(text.contains(&help), "no {help:?} in\n{text}");
    }
    let mut zeros: Vec<String> = Vec::new();
    for kind in BUDGET_KINDS {
        zeros.push(format!(
            "catpaw_agent_budget_breaches_total{{kind=\"{kind}\"}} 0"
        ));
    }
    for cause in RECONNECT_CAUSES {
        zeros.push(format!(
            "catpaw_agent_reconnects_total{{cause=\"{cause}\"}} 0"
        ));
    }
    for d in ["granted", "denied"] {
        zeros.push(format!(
            "catpaw_agent_shell_requests_total{{decision=\"{d}\"}} 0"
        ));
    }
    for d in ["run", "denied"] {
        zeros.push(format!(
            "catpaw_agent_shell_commands_total{{decision=\"{d}\"}} 0"
        ));
    }
    for t in SESSION_TYPES {
        zeros.push(format!(
            "catpaw_agent_sessions_started_total{{type=\"{t}\"}} 0"
        ));
    }
    for line in zeros {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn the_type_labels_are_the_ones_sessions_are_counted_under() {
    use crate::proto::SessionType;
    for t in ["inspect", "diagnose", "chat", "anything-else"] {
        let label = SessionType::parse(t).metric_label();
        assert!(SESSION_TYPES.contains(&label), "{label}");
    }
}
