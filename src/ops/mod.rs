//! What operators look at while the agent runs, both reading the one set
//! of counters in [`crate::telemetry`]:
//!
//! - `status.rs`: `catpaw-agent status` over `<state_dir>/status.sock`
//! - `metrics.rs`: the opt-in Prometheus endpoint (`[metrics] listen`)

pub mod metrics;
pub mod status;
