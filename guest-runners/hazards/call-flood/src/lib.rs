//! Hazard: calls cheap host imports in an endless loop: a fast tool, an
//! unknown tool, and a shell request (denied without `allow_shell`).
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

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
