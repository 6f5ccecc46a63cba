//! Hazard: prints a line to stdout, streams one delta, then panics (a trap
//! for the host; the panic message goes to stderr).
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
        println!("hazard-trap: stdout before the panic");
        host::emit("about to panic", host::Stage::Thinking, None);
        if core::hint::black_box(true) {
            panic!("hazard-trap: deliberate panic");
        }
        Ok(String::new())
    }
}
