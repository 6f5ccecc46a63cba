//! Test guest: a runner that imports an interface the host does not
//! provide (`test:foreign/probe`), so it must be refused at load.
wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package test:foreign;
        interface probe { ping: func(); }
        world foreign {
            import probe;
            import catpaw:runner/host@0.2.0;
            export catpaw:runner/describe@0.2.0;
            export catpaw:runner/diagnose@0.2.0;
        }
    ",
    world: "test:foreign/foreign",
    generate_all,
});

use exports::catpaw::runner::describe::{Guest as Describe, RunnerInfo};
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl Describe for Runner {
    fn describe() -> RunnerInfo {
        RunnerInfo {
            name: "hazard-foreign-import".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: Vec::new(),
        }
    }
}

impl Guest for Runner {
    fn run(_req: Request) -> Result<String, String> {
        test::foreign::probe::ping();
        Ok("pinged".to_string())
    }
}
