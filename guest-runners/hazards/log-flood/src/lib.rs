//! Hazard: writes 100 000 warning lines of 1 KiB through the `log` import,
//! then returns a report as if nothing happened.
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
        let line = "L".repeat(1024);
        for _ in 0..100_000 {
            host::log(host::Level::Warn, &line);
        }
        Ok("log flood finished".to_string())
    }
}
