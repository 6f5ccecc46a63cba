//! A runner that declares two tools and nothing else (`tools:cpu` and
//! `tools:uptime`: repeated entries add up), then reaches for more: it
//! lists the tools, calls `cpu`, `uptime` and `memory`, asks for a shell
//! and asks the model, and reports one line per attempt with what the
//! host answered.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

use catpaw::runner::{host, llm};
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-caps-probe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: vec!["tools:cpu".to_string(), "tools:uptime".to_string()],
        }
    }
}

impl Guest for Runner {
    fn run(_req: Request) -> Result<String, String> {
        let listed: Vec<String> = host::list_tools().into_iter().map(|t| t.name).collect();
        let mut out = format!("listed: {}\n", listed.join(","));
        for tool in ["cpu", "uptime", "memory"] {
            let line = match host::call_tool(tool, "{}") {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("refused: {e}"),
            };
            out.push_str(&format!("{tool}: {line}\n"));
        }
        let shell = match host::request_shell("echo catpaw-shell-ok", 5000) {
            Ok(o) => format!("granted, exit {}", o.exit_code),
            Err(host::ShellError::Denied(reason)) => format!("denied: {reason}"),
            Err(host::ShellError::Timeout) => "timeout".to_string(),
            Err(host::ShellError::Failed(reason)) => format!("failed: {reason}"),
        };
        out.push_str(&format!("shell: {shell}\n"));
        let llm = match llm::complete(&[], &[], None) {
            Ok(_) => "answered".to_string(),
            Err(e) => format!("{e:?}"),
        };
        out.push_str(&format!("llm: {llm}\n"));
        Ok(out)
    }
}
