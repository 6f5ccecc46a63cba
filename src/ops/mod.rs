//! What operators look at while the agent runs, both reading the one set
//! of counters in [`crate::telemetry`]:
//!
//! - `status.rs`: `catpaw-agent status` over `<state_dir>/status.sock`
//! - `metrics.rs`: the opt-in Prometheus endpoint (`[metrics] listen`)
//! - `reloads.rs`: the last runner reload's outcome, which `status` shows

pub mod metrics;
pub mod reloads;
pub mod status;
