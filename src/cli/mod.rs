//! What only the command line uses: turning a config into a sandbox and
//! runners (`setup.rs`), the local session harness (`session.rs`, the
//! `session` subcommand), the runner check (`check.rs`), the loopback demo
//! (`demo.rs`), the agent's main loop (`serve.rs`), hot reload of the runners (`reload.rs`), new runner
//! projects (`scaffold.rs`), `runner keygen` / `runner sign` (`sign.rs`),
//! the MCP server command (`mcp.rs`), log output (`logging.rs`), the man page
//! (`manpage.rs`), what the agent hands back once started (`footprint.rs`),
//! the one-agent-per-
//! state-dir lock (`statelock.rs`) and the operator commands `config check`
//! and `status` (`ops.rs`). The core modules never
//! import from here.

pub mod check;
pub mod demo;
pub mod footprint;
pub mod logging;
pub mod manpage;
pub mod mcp;
pub mod ops;
pub mod play;
pub mod reload;
pub mod replay;
pub mod scaffold;
pub mod serve;
pub mod session;
pub mod setup;
pub mod sign;
pub mod statelock;
pub mod suite;
