//! A well-behaved test runner: echoes its params, streams `count` answer
//! deltas (default 3), returns a one-line report (padded with `.` to
//! `report_bytes` when that param is given, empty when `empty_report` is
//! true).
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

#[allow(unused_imports)]
use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-echo".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: Vec::new(),
        }
    }
}

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        host::emit(&req.params_json, host::Stage::Thinking, None);
        let params: serde_json::Value =
            serde_json::from_str(&req.params_json).map_err(|e| format!("bad params: {e}"))?;
        let count = params.get("count").and_then(|c| c.as_u64()).unwrap_or(3);
        for i in 0..count {
            host::emit(&format!("delta {i}"), host::Stage::Answer, None);
        }
        if params.get("empty_report") == Some(&serde_json::Value::Bool(true)) {
            return Ok(String::new());
        }
        let mut report = format!(
            "echo report: plugin={} target={} mode={}",
            req.plugin, req.target, req.mode
        );
        if let Some(n) = params.get("report_bytes").and_then(|n| n.as_u64()) {
            report.extend(std::iter::repeat_n(
                '.',
                (n as usize).saturating_sub(report.len()),
            ));
        }
        Ok(report)
    }
}
