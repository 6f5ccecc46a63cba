//! Hazard: unbounded, non-tail recursion on the wasm call stack (scalar
//! arguments only, so nothing lands on the shadow stack in linear memory).
// Built against the kept 0.1.0 WIT: the hazards double as proof that
// components of the previous version still load and run.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0/runner.wit", world: "diagnose-runner" });

use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

/// Recurses forever on purpose: this guest exists to overflow the stack.
/// The rotate after the call keeps the compiler from turning it into a loop.
#[allow(unconditional_recursion)]
#[inline(never)]
fn dive(depth: u64) -> u64 {
    dive(depth.wrapping_add(1)).rotate_left((depth % 63) as u32) ^ depth
}

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        Ok(format!("{}", dive(req.plugin.len() as u64)))
    }
}
