//! A runner built against the 0.1.0 contract (`wit/v0.1.0`), before the
//! `llm` import: it must keep loading and running.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "diagnose-runner" });

use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        host::emit("legacy runner here", host::Stage::Thinking, None);
        let uptime = host::call_tool("uptime", "{}")?;
        Ok(format!(
            "legacy report: plugin={} uptime_ok={}",
            req.plugin,
            uptime.contains("uptime")
        ))
    }
}
