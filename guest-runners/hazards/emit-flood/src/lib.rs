//! Hazard: streams 4 KiB deltas in an endless loop.
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
        let delta = "x".repeat(4096);
        loop {
            host::emit(&delta, host::Stage::Thinking, None);
        }
    }
}
