//! Hazard: an endless loop that never calls the host. Only fuel, the
//! wall-clock deadline or a cancel can stop it. One `thinking` delta,
//! `spinning`, streamed just before the loop, tells a test the loop is
//! running; nothing else reaches the host.
// Built against the kept 0.1.0 WIT: the hazards double as proof that
// components of the previous version still load and run.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0/runner.wit", world: "diagnose-runner" });

use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl Guest for Runner {
    fn run(_req: Request) -> Result<String, String> {
        host::emit("spinning", host::Stage::Thinking, None);
        let mut x: u64 = core::hint::black_box(1);
        loop {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}
