//! `catpaw-agent mcp`: the config turned into what the MCP server shares
//! (runners, allow-lists, the `mcp` policy, the audit trail), served over
//! stdio or, with `--http`, streamable HTTP, until the client goes or
//! SIGTERM / Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::setup;
use crate::config::{BudgetFlag, Config};
use crate::mcp::{HttpOptions, Served};
use crate::sandbox::Subject;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct McpArgs {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--runner`.
    pub runner: Option<PathBuf>,
    /// The budget flags.
    pub flags: Vec<BudgetFlag>,
    /// `--http ADDR`: streamable HTTP instead of stdio.
    pub http: Option<SocketAddr>,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--allow-non-loopback`.
    pub allow_non_loopback: bool,
}

/// Runs the MCP server.
pub async fn run(args: McpArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.as_deref())?;
    for warning in cfg.warnings() {
        tracing::warn!("{warning}");
    }
    // The token is checked before anything loads: a bad one is the
    // quickest error to see.
    let http = match args.http {
        None => None,
        Some(addr) => Some(HttpOptions {
            addr,
            token: crate::mcp::token_from(args.token_file.as_deref())?,
            allow_non_loopback: args.allow_non_loopback,
        }),
    };
    let served = Arc::new(served(&cfg, args.runner.as_deref(), &args.flags)?);
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        super::serve::terminated().await;
        tracing::info!("stopping the MCP server");
        stopper.cancel();
    });
    match http {
        None => crate::mcp::serve_stdio(served, shutdown).await,
        Some(opts) => crate::mcp::serve_http(opts, served, shutdown).await,
    }
}

/// The runners, allow-lists, `mcp` policy and trail of `cfg`.
fn served(cfg: &Config, runner: Option<&Path>, flags: &[BudgetFlag]) -> anyhow::Result<Served> {
    let slots = cfg.sandbox.max_concurrent_sessions;
    let setup = setup::build(cfg, runner, flags, slots as u32)?;
    setup::note_append_only(&cfg.paths().audit_trail());
    let who = Subject {
        name: None,
        role: "mcp",
        sha256: "",
    };
    let (allowed, budgets) = cfg.sandbox.policies.narrow(who, &setup.budgets.diagnose);
    let tools = match &allowed.tools {
        crate::sandbox::ToolSet::All => "every catalog tool".to_string(),
        crate::sandbox::ToolSet::Only(names) => {
            names.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    tracing::info!(%tools, timeout = %crate::util::human_duration(budgets.timeout),
        "MCP server ready");
    Ok(Served {
        runners: setup.runners.clone(),
        tools: Arc::new(cfg.tools.clone()),
        allowed,
        tool_timeout: budgets.timeout,
        audit: setup.audit.clone(),
        sessions: Arc::new(tokio::sync::Semaphore::new(slots)),
    })
}
