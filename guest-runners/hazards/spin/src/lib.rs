//! Hazard: an endless loop that never calls the host. Only fuel, the
//! wall-clock deadline or a cancel can stop it.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

#[allow(unused_imports)]
use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl Guest for Runner {
    fn run(_req: Request) -> Result<String, String> {
        let mut x: u64 = core::hint::black_box(1);
        loop {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}
