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
        let table = SessionTable::new(
            runners,
            cfg.sandbox.max_concurrent_sessions,
            cfg.sandbox.allow_remote_shell,
        )
        .with_audit(opts.audit.clone())
        .with_signing(
            crate::session::signing::Verifier::new(cfg.server.signing.clone()),
            agent_id.to_string(),
        );
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
                alerts: AlertBuffer::new(cfg.server.alert_buffer_size as i64),
                timings: opts.timings,
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

    /// This agent's id.
    pub fn agent_id(&self) -> uuid::Uuid {
        self.ctx.agent_id
    }

    /// Runs connection attempts until `shutdown`, following the reconnect
    /// policy.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.policy.clone());
        loop {
            let outcome = conn::run_once(&self.ctx, &shutdown).await;
            let Some(d) = backoff.next_wait(&outcome) else {
                break;
            };
            if outcome == AttemptOutcome::Shutdown {
                break;
            }
            tracing::info!(?outcome, wait = ?d, "reconnecting after a wait");
            let floor = backoff.floor(&outcome);
            if !wait(d, backoff.jitter_fraction(), floor, &shutdown).await {
                break;
            }
        }
        self.ctx.table.cancel_all();
        self.ctx
            .table
            .wait_idle(std::time::Duration::from_secs(5))
            .await;
        tracing::info!("agent stopped");
    }
}
