//! Hazard: allocates and touches 1 MiB chunks forever, keeping them alive.
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
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; 1 << 20];
            // Touch every page so the memory is really used.
            for i in (0..chunk.len()).step_by(4096) {
                chunk[i] = (hoard.len() & 0xff) as u8;
            }
            hoard.push(core::hint::black_box(chunk));
        }
    }
}
