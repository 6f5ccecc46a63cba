//! Benchmark guest: `plugin` picks the workload, `target` its size.
//! - `noop`: returns at once (session set-up cost)
//! - `emit`: emits `target` deltas (cost per emit)
//! - `compute`: runs the shared compute kernel for `target` rounds
//! - `llm`: makes `target` language-model calls offering every tool (cost
//!   per `llm.complete`); `llm-bare`: the same without tools
//! - `emit-big`: emits one delta of `target` bytes
//! - `report-big`: returns a report of `target` bytes (two-byte chars, so
//!   a cut must find a char boundary)
//! - `meta-big`: emits one short delta whose metadata is a JSON object of
//!   about `target` bytes
wit_bindgen::generate!({ path: "../../wit", world: "diagnose-runner" });

use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "catpaw-bench".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: vec!["tools".to_string(), "llm".to_string()],
        }
    }
}

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        let n: u32 = req.target.parse().unwrap_or(0);
        match req.plugin.as_str() {
            "noop" => Ok(String::new()),
            "emit" => {
                for _ in 0..n {
                    host::emit("0123456789abcdef", host::Stage::Answer, None);
                }
                Ok(String::new())
            }
            // One delta of `n` bytes.
            "emit-big" => {
                host::emit(&"x".repeat(n as usize), host::Stage::Answer, None);
                Ok(String::new())
            }
            "report-big" => Ok("é".repeat(n as usize / 2)),
            "meta-big" => {
                let meta = format!("{{\"blob\":\"{}\"}}", "m".repeat(n as usize));
                host::emit("with metadata", host::Stage::Answer, Some(&meta));
                Ok(String::new())
            }
            "compute" => Ok(catpaw_guest_common::bench_kernel(n).to_string()),
            "llm" | "llm-bare" => {
                use catpaw::runner::llm::{self, Message, Role};
                let ask = [
                    Message {
                        role: Role::System,
                        content: "You diagnose hosts.".into(),
                        tool_calls: vec![],
                        tool_call_id: None,
                    },
                    Message {
                        role: Role::User,
                        content: "Is the load high?".into(),
                        tool_calls: vec![],
                        tool_call_id: None,
                    },
                ];
                // `llm-bare` offers no tools (the request is smaller).
                let tools = if req.plugin == "llm" {
                    host::list_tools()
                } else {
                    Vec::new()
                };
                for _ in 0..n {
                    llm::complete(&ask, &tools, Some(host::Stage::Thinking))
                        .map_err(|e| format!("{e:?}"))?;
                }
                Ok(String::new())
            }
            other => Err(format!("unknown workload {other}")),
        }
    }
}
