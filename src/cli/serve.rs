//! `catpaw-agent` with no subcommand: the agent serving its server, with
//! everything that runs beside the connection.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::setup;
use crate::config::{BudgetFlag, Config};
use crate::link::agent::AgentOptions;

/// What the command line gives the agent.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--runner`.
    pub runner: Option<PathBuf>,
    /// `--fuel`, `--max-memory`, `--timeout`.
    pub flags: Vec<BudgetFlag>,
    /// `--watch`.
    pub watch: bool,
}

/// Waits for SIGINT or SIGTERM.
pub(super) async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serves the server at `[server] address` until SIGINT or SIGTERM, with
/// the hot-reloader, the local alert socket, the status socket and (when
/// configured) `/metrics` beside it.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    if !cfg.server.enabled {
        match &cfg.source {
            Some(file) => anyhow::bail!(
                "[server] enabled is false in {}: nothing to connect to (set enabled = true and \
                 address, or try `catpaw-agent demo` / `catpaw-agent session`)",
                file.display()
            ),
            None => anyhow::bail!(
                "no config file: {} does not exist here ({}), so there is no server to connect \
                 to. Write one with `mkdir -p conf.d && catpaw-agent config example > {}` and set \
                 [server] enabled and address, or pass --config FILE (or try `catpaw-agent demo`)",
                crate::config::DEFAULT_PATH,
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| "the current directory".into()),
                crate::config::DEFAULT_PATH
            ),
        }
    }
    for warning in cfg.warnings() {
        tracing::warn!("{warning}");
    }
    // Before anything in the state dir is touched: one agent per dir.
    let _lock = super::statelock::acquire(&cfg.paths())?;
    // Before the runners load: a file replaced from here on is a change.
    let baseline = (args.watch || cfg.sandbox.watch_runners)
        .then(|| crate::cli::reload::baseline(args.config.as_deref(), args.runner.as_deref()));
    let setup = setup::build(
        &cfg,
        args.runner.as_deref(),
        &args.flags,
        cfg.sandbox.max_concurrent_sessions as u32,
    )?;
    setup::note_append_only(&cfg.paths().audit_trail());
    let agent = setup.agent(&cfg, AgentOptions::default())?;
    // Caught from here on: SIGHUP's default would end the agent.
    let hup = crate::cli::reload::hangups();
    let metrics = match cfg.metrics.listen {
        Some(addr) => Some(crate::ops::metrics::bind(addr).await?),
        None => None,
    };
    let url = crate::config::redact_url(&cfg.server_ws_url().unwrap_or_default());
    tracing::info!(agent_id = %agent.agent_id(), url = %url,
        max_sessions = cfg.sandbox.max_concurrent_sessions, "catpaw-agent starting");
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        terminated().await;
        tracing::info!("shutting down: cancelling sessions and closing the connection");
        stopper.cancel();
    });
    let reloads = crate::ops::reloads::LastReload::default();
    let reloader = crate::cli::reload::Reloader {
        last: reloads.clone(),
        sandbox: setup.sandbox.clone(),
        config_path: args.config.clone(),
        runner_override: args.runner.clone(),
        flags: args.flags.clone(),
        pool_memory: setup
            .budgets
            .diagnose
            .max_memory
            .max(setup.budgets.chat.max_memory),
        table: agent.sessions(),
    };
    let reloader = tokio::spawn(reloader.serve(hup, baseline, shutdown.clone()));
    let ingest = {
        let socket = cfg.paths().ingest_socket();
        let alerts = agent.alerts();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::alerts::ingest::serve(&socket, alerts, stop).await {
                tracing::error!(error = %format!("{e:#}"), "local alert ingest is not available");
            }
        })
    };
    let status = {
        let socket = cfg.paths().status_socket();
        let source = crate::ops::status::StatusSource {
            telemetry: agent.telemetry(),
            table: agent.sessions(),
            alerts: agent.alerts(),
            agent_id: agent.agent_id().to_string(),
            server: agent.server_url(),
            max_sessions: cfg.sandbox.max_concurrent_sessions,
            reloads: reloads.clone(),
        };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::ops::status::serve(&socket, source, stop).await {
                tracing::error!(error = %format!("{e:#}"), "`catpaw-agent status` is not available");
            }
        })
    };
    let metrics = metrics.map(|listener| {
        tokio::spawn(crate::ops::metrics::serve(
            listener,
            agent.telemetry(),
            shutdown.clone(),
        ))
    });
    // Everything that only starting needed has run.
    super::footprint::shed_file_pages();
    let shedder = tokio::spawn(super::footprint::idle_shedder(
        agent.sessions(),
        std::time::Duration::from_secs(5),
        crate::link::conn::Timings::default().heartbeat,
        shutdown.clone(),
    ));
    agent.run(shutdown).await;
    if let Some(mcp) = &setup.mcp {
        mcp.shutdown().await;
    }
    let _ = ingest.await;
    let _ = reloader.await;
    let _ = status.await;
    let _ = shedder.await;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    Ok(())
}
