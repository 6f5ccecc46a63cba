//! `tool-tour` changed the way a new release of a runner changes: it
//! makes the calls given in params (`{"calls": [["tool", "{args}"], …]}`)
//! as `tool-tour` does, then one call more (`uptime`), and its report has
//! one line more. `replay` of a `tool-tour` recording against it must
//! name that call and show the extra line.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};
use serde_json::{Value, json};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-tool-tour-more".to_string(),
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
        let mut calls: Vec<(String, String)> = params
            .get("calls")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| {
                        Some((
                            c.get(0)?.as_str()?.to_string(),
                            c.get(1)?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        calls.push(("uptime".to_string(), "{}".to_string()));
        let rows: Vec<Value> = calls
            .iter()
            .map(|(name, args)| match host::call_tool(name, args) {
                Ok(out) => json!({"tool": name, "ok": true, "bytes": out.len(), "text": out}),
                Err(e) => json!({"tool": name, "ok": false, "bytes": e.len(), "text": e}),
            })
            .collect();
        Ok(format!("{}\nchecked uptime too", Value::Array(rows)))
    }
}
