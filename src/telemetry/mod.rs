//! The agent's counters: one set, read by `catpaw-agent status` and by the
//! Prometheus endpoint alike (both in [`crate::ops`]).
//!
//! Whoever sees an event counts it here: the session table (sessions,
//! budget breaches, sessions asking for a shell), the sandbox (shell
//! commands run or denied), the alert buffer (pushed, dropped),
//! the connection (alerts and session output written, register ack
//! latency, link state) and the reconnect loop (reconnects by cause). A [`Telemetry`] is
//! cheap to clone; every clone counts into the same set.
//!
//! (Just over 450 lines on purpose: every counter's registration, name and
//! help text sits beside its field, so the metric surface reads in one go.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Budget kinds as the counters spell them (`kind` label): fuel, memory,
/// time, output, host calls, language-model tokens and calls.
pub const BUDGET_KINDS: [&str; 7] = [
    "fuel",
    "memory",
    "time",
    "output",
    "calls",
    "llm_tokens",
    "llm_calls",
];

/// Where the link to the server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Dialing or waiting to dial again.
    Connecting,
    /// Registered: sessions can come in.
    Connected,
    /// Between attempts, waiting out a backoff.
    Waiting,
    /// Shutting down.
    Stopped,
}

impl LinkState {
    /// The spelling `status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Waiting => "waiting",
            LinkState::Stopped => "stopped",
        }
    }
}

/// The link state and when it was entered.
#[derive(Debug, Clone)]
pub struct Link {
    /// The state.
    pub state: LinkState,
    /// When it was entered (wall clock, for display).
    pub since: SystemTime,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabels {
    r#type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: String,
}

fn duration_histogram() -> Histogram {
    // 10 ms .. ~10 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

struct Inner {
    registry: Registry,
    sessions_started: Family<TypeLabel, Counter>,
    sessions_ended: Family<EndLabels, Counter>,
    session_duration: Family<TypeLabel, Histogram, fn() -> Histogram>,
    budget_breaches: Family<KindLabel, Counter>,
    shell_requests: Family<DecisionLabel, Counter>,
    shell_commands: Family<DecisionLabel, Counter>,
    alerts_pushed: Counter,
    alerts_dropped: Counter,
    alerts_sent: Counter,
    reconnects: Family<CauseLabel, Counter>,
    ack_latency: Histogram,
    session_ack_latency: Histogram,
    output_deltas: Counter,
    output_bytes: Counter,
    recording_failures: Counter,
    connected: Gauge,
    link: Mutex<Link>,
    started: Instant,
}

/// The counters (see the module doc).
#[derive(Clone)]
pub struct Telemetry(Arc<Inner>);

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// A fresh set, all zero, the link `connecting`.
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("catpaw_agent");
        let sessions_started = Family::<TypeLabel, Counter>::default();
        let sessions_ended = Family::<EndLabels, Counter>::default();
        let session_duration: Family<TypeLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let budget_breaches = Family::<KindLabel, Counter>::default();
        let shell_requests = Family::<DecisionLabel, Counter>::default();
        let shell_commands = Family::<DecisionLabel, Counter>::default();
        let reconnects = Family::<CauseLabel, Counter>::default();
        let ack_latency = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let session_ack_latency = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        let (alerts_pushed, alerts_dropped, alerts_sent) =
            (Counter::default(), Counter::default(), Counter::default());
        let (output_deltas, output_bytes) = (Counter::default(), Counter::default());
        let connected = Gauge::default();
        let recording_failures = Counter::default();
        registry.register(
            "recording_failures",
            "Session recordings that could not be written (the sessions went on)",
            recording_failures.clone(),
        );
        registry.register(
            "sessions_started",
            "Sessions accepted, by type",
            sessions_started.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions ended, by type and outcome (ok, cancelled or the session_error code)",
            sessions_ended.clone(),
        );
        registry.register(
            "session_duration_seconds",
            "How long sessions ran, by type",
            session_duration.clone(),
        );
        registry.register(
            "budget_breaches",
            "Sessions stopped by a budget, by kind",
            budget_breaches.clone(),
        );
        registry.register(
            "shell_requests",
            "Sessions that asked for a shell, by decision (granted, denied)",
            shell_requests.clone(),
        );
        registry.register(
            "shell_commands",
            "Shell commands runners asked for, by decision (run, denied)",
            shell_commands.clone(),
        );
        registry.register(
            "alerts_pushed",
            "Alert events put into the buffer",
            alerts_pushed.clone(),
        );
        registry.register(
            "alerts_dropped",
            "Alert events lost to a full buffer or an oversized event",
            alerts_dropped.clone(),
        );
        registry.register(
            "alerts_sent",
            "Alert events written to the server",
            alerts_sent.clone(),
        );
        registry.register(
            "reconnects",
            "Connection attempts that ended and were retried, by cause",
            reconnects.clone(),
        );
        registry.register(
            "register_ack_latency_seconds",
            "Time from sending register to the server's ack",
            ack_latency.clone(),
        );
        registry.register(
            "session_ack_latency_seconds",
            "Time from reading a session_start to its ack written to the socket",
            session_ack_latency.clone(),
        );
        registry.register(
            "session_output_deltas",
            "session_output messages sent",
            output_deltas.clone(),
        );
        registry.register(
            "session_output_bytes",
            "Bytes of delta and report text sent in session_output",
            output_bytes.clone(),
        );
        registry.register(
            "connected",
            "1 while registered with the server",
            connected.clone(),
        );
        // Every family is in the exposition from the start: a family with
        // no series yet is left out entirely (not even HELP/TYPE), so a
        // dashboard or alert rule could not tell "none so far" from "not
        // exported". The closed label sets start at 0.
        for t in SESSION_TYPES {
            let r#type = t.to_string();
            let _ = sessions_started.get_or_create(&TypeLabel {
                r#type: r#type.clone(),
            });
            let _ = session_duration.get_or_create(&TypeLabel {
                r#type: r#type.clone(),
            });
            for outcome in ["ok", "cancelled"] {
                let _ = sessions_ended.get_or_create(&EndLabels {
                    r#type: r#type.clone(),
                    outcome: outcome.into(),
                });
            }
        }
        for kind in BUDGET_KINDS {
            let _ = budget_breaches.get_or_create(&KindLabel { kind: kind.into() });
        }
        for decision in ["granted", "denied"] {
            let _ = shell_requests.get_or_create(&DecisionLabel {
                decision: decision.into(),
            });
        }
        for decision in ["run", "denied"] {
            let _ = shell_commands.get_or_create(&DecisionLabel {
                decision: decision.into(),
            });
        }
        for cause in RECONNECT_CAUSES {
            let _ = reconnects.get_or_create(&CauseLabel {
                cause: cause.into(),
            });
        }
        Telemetry(Arc::new(Inner {
            registry,
            sessions_started,
            sessions_ended,
            session_duration,
            budget_breaches,
            shell_requests,
            shell_commands,
            alerts_pushed,
            alerts_dropped,
            alerts_sent,
            reconnects,
            ack_latency,
            session_ack_latency,
            output_deltas,
            output_bytes,
            recording_failures,
            connected,
            link: Mutex::new(Link {
                state: LinkState::Connecting,
                since: SystemTime::now(),
            }),
            started: Instant::now(),
        }))
    }

    /// A session of `session_type` was accepted. The label is
    /// [`SessionType::metric_label`](crate::proto::SessionType::metric_label):
    /// one of four, never the free text a server sent.
    pub fn session_started(&self, session_type: &str) {
        self.0
            .sessions_started
            .get_or_create(&TypeLabel {
                r#type: session_type.into(),
            })
            .inc();
    }

    /// A session ended with `outcome` after `duration`.
    pub fn session_ended(&self, session_type: &str, outcome: &str, duration: Duration) {
        self.0
            .sessions_ended
            .get_or_create(&EndLabels {
                r#type: session_type.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.0
            .session_duration
            .get_or_create(&TypeLabel {
                r#type: session_type.into(),
            })
            .observe(duration.as_secs_f64());
    }

    /// A session was stopped by the budget of `kind` (one of
    /// [`BUDGET_KINDS`]).
    pub fn budget_breach(&self, kind: &str) {
        self.0
            .budget_breaches
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// A session asked for a shell and got it (`granted`) or not.
    pub fn shell_request(&self, granted: bool) {
        let decision = if granted { "granted" } else { "denied" };
        self.0
            .shell_requests
            .get_or_create(&DecisionLabel {
                decision: decision.into(),
            })
            .inc();
    }

    /// A session's recording could not be written (the session went on
    /// unrecorded).
    pub fn recording_failed(&self) {
        self.0.recording_failures.inc();
    }

    /// Session recordings that could not be written.
    pub fn recording_failures(&self) -> u64 {
        self.0.recording_failures.get()
    }

    /// A runner's `request-shell` ran (`true`) or was denied.
    pub fn shell_command(&self, ran: bool) {
        let decision = if ran { "run" } else { "denied" };
        self.0
            .shell_commands
            .get_or_create(&DecisionLabel {
                decision: decision.into(),
            })
            .inc();
    }

    /// `n` alert events went into the buffer.
    pub fn alerts_pushed(&self, n: u64) {
        self.0.alerts_pushed.inc_by(n);
    }

    /// `n` alert events were lost.
    pub fn alerts_dropped(&self, n: u64) {
        self.0.alerts_dropped.inc_by(n);
    }

    /// `n` alert events were written to the server.
    pub fn alerts_sent(&self, n: u64) {
        self.0.alerts_sent.inc_by(n);
    }

    /// A connection attempt ended with `cause` and another follows.
    pub fn reconnect(&self, cause: &str) {
        self.0
            .reconnects
            .get_or_create(&CauseLabel {
                cause: cause.into(),
            })
            .inc();
    }

    /// The server acked `register` after `latency`.
    pub fn register_acked(&self, latency: Duration) {
        self.0.ack_latency.observe(latency.as_secs_f64());
    }

    /// A `session_start` read `latency` ago is acked on the socket.
    pub fn session_acked(&self, latency: Duration) {
        self.0.session_ack_latency.observe(latency.as_secs_f64());
    }

    /// A `session_output` carrying `bytes` of text was sent.
    pub fn output_sent(&self, bytes: u64) {
        self.0.output_deltas.inc();
        self.0.output_bytes.inc_by(bytes);
    }

    /// The link entered `state` (a repeat of the current state keeps its
    /// `since`).
    pub fn set_link(&self, state: LinkState) {
        let mut l = self.0.link.lock().unwrap_or_else(|p| p.into_inner());
        if l.state != state {
            *l = Link {
                state,
                since: SystemTime::now(),
            };
        }
        self.0
            .connected
            .set(i64::from(state == LinkState::Connected));
    }

    /// The link state now.
    pub fn link(&self) -> Link {
        self.0
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Time since the counters were made (the agent's start).
    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    /// A snapshot of the counters, for `status`.
    pub fn counts(&self) -> Counts {
        let i = &self.0;
        let by = |f: &Family<KindLabel, Counter>, k: &str| {
            f.get(&KindLabel { kind: k.into() }).map_or(0, |c| c.get())
        };
        let decided = |f: &Family<DecisionLabel, Counter>, d: &str| {
            f.get(&DecisionLabel { decision: d.into() })
                .map_or(0, |c| c.get())
        };
        let shell = |d: &str| decided(&i.shell_requests, d);
        let mut reconnects = 0;
        for cause in RECONNECT_CAUSES {
            reconnects += i
                .reconnects
                .get(&CauseLabel {
                    cause: cause.into(),
                })
                .map_or(0, |c| c.get());
        }
        Counts {
            alerts_pushed: i.alerts_pushed.get(),
            alerts_dropped: i.alerts_dropped.get(),
            alerts_sent: i.alerts_sent.get(),
            budget_breaches: BUDGET_KINDS
                .iter()
                .map(|k| (k.to_string(), by(&i.budget_breaches, k)))
                .collect(),
            shell_granted: shell("granted"),
            shell_denied: shell("denied"),
            shell_commands_run: decided(&i.shell_commands, "run"),
            shell_commands_denied: decided(&i.shell_commands, "denied"),
            reconnects,
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

/// The `type` label's values ([`SessionType::metric_label`](crate::proto::SessionType::metric_label)).
pub const SESSION_TYPES: [&str; 4] = ["inspect", "diagnose", "chat", "other"];

/// Causes [`Telemetry::reconnect`] is called with.
pub const RECONNECT_CAUSES: [&str; 4] = [
    "dial_failed",
    "unauthorized",
    "dropped",
    "server_disconnect",
];

/// The counters `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Alert events put into the buffer.
    pub alerts_pushed: u64,
    /// Alert events lost.
    pub alerts_dropped: u64,
    /// Alert events written to the server.
    pub alerts_sent: u64,
    /// Budget breaches, by kind (every kind listed, zeros included).
    pub budget_breaches: std::collections::BTreeMap<String, u64>,
    /// Sessions that asked for a shell and got one.
    pub shell_granted: u64,
    /// Sessions that asked for a shell and were refused.
    pub shell_denied: u64,
    /// Shell commands runners asked for that ran.
    pub shell_commands_run: u64,
    /// Shell commands runners asked for that were denied.
    pub shell_commands_denied: u64,
    /// Connection attempts retried, all causes.
    pub reconnects: u64,
}

#[cfg(test)]
mod tests;
