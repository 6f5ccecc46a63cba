//! Hazard: calls cheap host imports in an endless loop: a fast tool, an
//! unknown tool, and a shell request (denied without `allow_shell`).
// Built against the kept 0.1.0 WIT: the hazards double as proof that
// components of the previous version still load and run.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0/runner.wit", world: "diagnose-runner" });

#[allow(unused_imports)]
use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl Guest for Runner {
    fn run(_req: Request) -> Result<String, String> {
        loop {
            let _ = host::call_tool("uptime", "{}");
            let _ = host::call_tool("no-such-tool", "{}");
            let _ = host::request_shell("true", 1000);
        }
    }
}
