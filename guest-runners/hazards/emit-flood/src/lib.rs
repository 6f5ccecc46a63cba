//! Hazard: streams 4 KiB deltas in an endless loop.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

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
