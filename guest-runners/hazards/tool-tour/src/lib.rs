//! A test runner that tours the host's tools: it lists them and calls
//! each with `{}` (or makes the calls given in params as
//! `{"calls": [["tool", "{args}"], …]}`), and reports, as JSON, what each
//! call gave: `[{"tool", "ok", "bytes", "text"}]`, with `text` the whole
//! result or error.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};
use serde_json::{Value, json};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-tool-tour".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: vec!["tools".to_string()],
        }
    }
}

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        let params: Value =
            serde_json::from_str(&req.params_json).map_err(|e| format!("bad params: {e}"))?;
        let calls: Vec<(String, String)> = match params.get("calls").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(|c| {
                    Some((
                        c.get(0)?.as_str()?.to_string(),
                        c.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect(),
            None => host::list_tools()
                .into_iter()
                .map(|t| (t.name, "{}".to_string()))
                .collect(),
        };
        let rows: Vec<Value> = calls
            .iter()
            .map(|(name, args)| match host::call_tool(name, args) {
                Ok(out) => json!({"tool": name, "ok": true, "bytes": out.len(), "text": out}),
                Err(e) => json!({"tool": name, "ok": false, "bytes": e.len(), "text": e}),
            })
            .collect();
        Ok(Value::Array(rows).to_string())
    }
}
