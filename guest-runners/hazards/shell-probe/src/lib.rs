//! Hazard: asks for a shell and reports what the host answered.
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
        Ok(
            match host::request_shell("echo catpaw-shell-ok; id -u", 5000) {
                Ok(out) => format!(
                    "shell granted\nexit: {}\nstdout:\n{}stderr:\n{}",
                    out.exit_code, out.stdout, out.stderr
                ),
                Err(host::ShellError::Denied(reason)) => format!("shell denied: {reason}"),
                Err(host::ShellError::Timeout) => "shell timeout".to_string(),
                Err(host::ShellError::Failed(reason)) => format!("shell failed: {reason}"),
            },
        )
    }
}
