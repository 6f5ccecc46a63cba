//! A runner whose `describe` acts on the host: it reads a tool and asks the
//! model before saying what it is. `describe` belongs to no session, so
//! nothing it did would be audited; the host refuses both calls and the
//! runner does not load.
wit_bindgen::generate!({ path: "../../../wit", world: "diagnose-runner" });

use catpaw::runner::{host, llm};
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        let seen = format!(
            "{:?} {:?}",
            host::call_tool("uptime", "{}"),
            llm::complete(&[], &[], None)
        );
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-describe-calls".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: vec![seen],
        }
    }
}

impl Guest for Runner {
    fn run(_req: Request) -> Result<String, String> {
        Ok("never loaded".to_string())
    }
}
