//! Hazard: tries to reach the host's files, environment and network.
//! Reports "blocked: …" when every attempt failed, an error naming what
//! succeeded otherwise.
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
        let mut blocked = Vec::new();
        let mut escaped = Vec::new();
        match std::fs::read_to_string("/etc/passwd") {
            Ok(s) => escaped.push(format!("read /etc/passwd ({} bytes)", s.len())),
            Err(e) => blocked.push(format!("read /etc/passwd: {e}")),
        }
        match std::fs::read_dir("/") {
            Ok(_) => escaped.push("listed /".to_string()),
            Err(e) => blocked.push(format!("list /: {e}")),
        }
        let vars = std::env::vars().count();
        if vars > 0 {
            escaped.push(format!("saw {vars} environment variables"));
        } else {
            blocked.push("environment: empty".to_string());
        }
        match std::net::TcpStream::connect("127.0.0.1:1") {
            Ok(_) => escaped.push("connected to 127.0.0.1:1".to_string()),
            Err(e) => blocked.push(format!("connect 127.0.0.1:1: {e}")),
        }
        if escaped.is_empty() {
            Ok(format!("blocked:\n{}", blocked.join("\n")))
        } else {
            Err(format!("sandbox escape: {}", escaped.join("; ")))
        }
    }
}
