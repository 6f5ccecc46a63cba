//! A test runner that declares `mcp` and nothing else: it lists the tools
//! the host offers it and makes the calls given in params as
//! `{"calls": [["tool", "{args}"], …]}` (or that array as JSON text), and
//! reports, as JSON,
//! `{"listed": [names], "calls": [{"tool", "ok", "text"}]}` with `text`
//! the whole result or error.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};
use serde_json::{Value, json};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-mcp-tour".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: vec!["mcp".to_string()],
        }
    }
}

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        let params: Value =
            serde_json::from_str(&req.params_json).map_err(|e| format!("bad params: {e}"))?;
        let listed: Vec<Value> = host::list_tools()
            .into_iter()
            .map(|t| json!({"name": t.name, "description": t.description, "schema": t.params_schema}))
            .collect();
        // An array, or (from `catpaw-agent session --param calls=…`) the
        // same array as JSON text.
        let given = match params.get("calls") {
            Some(Value::String(text)) => serde_json::from_str(text).ok(),
            other => other.cloned(),
        };
        let calls: Vec<Value> = given
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c.get(0)?.as_str()?, c.get(1)?.as_str()?)))
            .map(|(name, args)| match host::call_tool(name, args) {
                Ok(out) => json!({"tool": name, "ok": true, "text": out}),
                Err(e) => json!({"tool": name, "ok": false, "text": e}),
            })
            .collect();
        Ok(json!({"listed": listed, "calls": calls}).to_string())
    }
}
