//! The agent: the reconnect loop around [`conn::run_once`], plus the parts
//! that outlive connections (session table, alert buffer). The command line
//! builds one from its setup with `cli::setup::Setup::agent`.

use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::alerts::ringbuf::AlertBuffer;
use crate::config::Config;
use crate::link::conn::{self, ConnContext, RegisterInfo, Timings};
use crate::link::reconnect::{AttemptOutcome, Backoff, BackoffPolicy, wait};
use crate::session::{Runners, SessionTable};
use crate::telemetry::{LinkState, Telemetry};

/// A configured agent, ready to run.
#[derive(Clone)]
pub struct Agent {
    ctx: ConnContext,
    policy: BackoffPolicy,
}

/// Knobs tests and embedders may change; the defaults are the protocol's.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// Protocol timers.
    pub timings: Timings,
    /// Reconnect waits.
    pub backoff: BackoffPolicy,
    /// Where session lifecycle records go (the setup's audit log).
    pub audit: Option<crate::audit::AuditLog>,
    /// The counters to count into (a fresh set when `None`).
    pub telemetry: Option<Telemetry>,
}

impl Agent {
    /// Builds the agent for `cfg`, serving sessions with `runners`.
    pub fn new(cfg: &Config, runners: Runners, opts: AgentOptions) -> anyhow::Result<Agent> {
        let url = cfg
            .server_ws_url()
            .map_err(|m| anyhow::anyhow!("config `[server] address`: {m}"))?;
        // Config::parse checks this too; a Config built in code has not been.
        crate::config::check_agent_token(&cfg.server.agent_token)
            .map_err(|m| anyhow::anyhow!("config `[server] agent_token`: {m}"))?;
        let tls = if url.starts_with("wss://") {
            Some(crate::link::tls::client_config(&cfg.server)?)
        } else {
            None
        };
        let agent_id = cfg.paths().load_or_create_agent_id().context("agent id")?;
        let telemetry = opts.telemetry.clone().unwrap_or_default();
        let table = SessionTable::new(
            runners,
            cfg.sandbox.max_concurrent_sessions,
            cfg.sandbox.allow_remote_shell,
        )
        .with_audit(opts.audit.clone())
        .with_signing(
            crate::session::signing::Verifier::persistent(
                cfg.server.signing.clone(),
                &cfg.paths().replay_nonces(),
                crate::session::signing::now_unix(),
            )?,
            agent_id.to_string(),
        )
        .with_telemetry(telemetry.clone())
        .with_recorder(cfg.recorder.clone(), recordings(cfg));
        Ok(Agent {
            ctx: ConnContext {
                url,
                token: cfg.server.agent_token.clone(),
                agent_id,
                tls,
                register: RegisterInfo {
                    labels: cfg.labels.clone(),
                    plugins: cfg.plugins.clone(),
                    started: Instant::now(),
                },
                table,
                alerts: AlertBuffer::new(cfg.server.alert_buffer_size as i64)
                    .with_telemetry(telemetry.clone()),
                timings: opts.timings,
                telemetry,
            },
            policy: opts.backoff,
        })
    }

    /// The alert buffer (push from anywhere, any time).
    pub fn alerts(&self) -> AlertBuffer {
        self.ctx.alerts.clone()
    }

    /// The session table.
    pub fn sessions(&self) -> SessionTable {
        self.ctx.table.clone()
    }

    /// The agent's counters.
    pub fn telemetry(&self) -> Telemetry {
        self.ctx.telemetry.clone()
    }

    /// The WebSocket URL it connects to, as logs and `status` may show it.
    pub fn server_url(&self) -> String {
        crate::config::redact_url(&self.ctx.url)
    }

    /// This agent's id.
    pub fn agent_id(&self) -> uuid::Uuid {
        self.ctx.agent_id
    }

    /// Runs connection attempts until `shutdown`, following the reconnect
    /// policy.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.policy.clone());
        let t = &self.ctx.telemetry;
        loop {
            t.set_link(LinkState::Connecting);
            let outcome = conn::run_once(&self.ctx, &shutdown).await;
            let Some(d) = backoff.next_wait(&outcome) else {
                break;
            };
            if outcome == AttemptOutcome::Shutdown {
                break;
            }
            t.set_link(LinkState::Waiting);
            t.reconnect(reconnect_cause(&outcome));
            tracing::info!(outcome = %outcome, wait = %crate::util::human_duration(d),
                "reconnecting after a wait");
            let floor = backoff.floor(&outcome);
            if !wait(d, backoff.jitter_fraction(), floor, &shutdown).await {
                break;
            }
        }
        self.ctx.table.cancel_all();
        // Sessions that were not on a connection (it had dropped) get the
        // same grace as those that were.
        let idle = self
            .ctx
            .table
            .wait_idle(self.ctx.timings.shutdown_grace)
            .await;
        if !idle {
            tracing::warn!(
                running = self.ctx.table.active(),
                "sessions still running after the shutdown grace period; stopping without them"
            );
        }
        // The last partial second of refused starts.
        self.ctx.table.flush_refusals();
        t.set_link(LinkState::Stopped);
        tracing::info!("agent stopped");
    }
}

/// The `cause` label of a reconnect (one of
/// [`crate::telemetry::RECONNECT_CAUSES`]).
/// The recordings store the config describes, prepared (directory made,
/// old recordings removed) when recording is on. A directory that cannot
/// be made is logged here; each session's recording then fails, is counted
/// and audited, and the session goes on.
fn recordings(cfg: &Config) -> crate::recorder::store::Store {
    let store = crate::recorder::store::Store::new(
        &cfg.recorder.dir_under(&cfg.state_dir),
        crate::recorder::store::Limits::from(&cfg.recorder),
    );
    if cfg.recorder.enabled {
        match store.prepare() {
            Ok(p) if p.expired + p.over_total > 0 => tracing::info!(
                expired = p.expired,
                over_total = p.over_total,
                "old recordings removed ([recorder] keep_days, max_total)"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"),
                "sessions will not be recorded until the recordings dir can be made"),
        }
    }
    store
}

fn reconnect_cause(outcome: &AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::DialFailed => "dial_failed",
        AttemptOutcome::Unauthorized => "unauthorized",
        AttemptOutcome::DroppedAfterRegister => "dropped",
        AttemptOutcome::ServerDisconnect { .. } => "server_disconnect",
        // The loop ends on a shutdown; nothing is retried.
        AttemptOutcome::Shutdown => "shutdown",
    }
}
