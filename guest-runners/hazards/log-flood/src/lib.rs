//! Hazard: writes 100 000 warning lines of 1 KiB through the `log` import,
//! then returns a report as if nothing happened.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

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
