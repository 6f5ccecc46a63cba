//! Hazard: prints a line to stdout, streams one delta, then panics (a trap
//! for the host; the panic message goes to stderr).
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

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
