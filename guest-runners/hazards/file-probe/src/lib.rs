//! Hazard: tries to reach the host's files, environment and network.
//! Reports "blocked: …" when every attempt failed, an error naming what
//! succeeded otherwise; each line says what was tried and what happened.
//!
//! The network probes aim at something that answers: a TCP listener the
//! test opened (its port in `params.port`) and a name lookup of
//! `localhost`, so only a missing socket, not an absent server, makes
//! them fail.
// Built against the kept 0.1.0 WIT: the hazards double as proof that
// components of the previous version still load and run.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0/runner.wit", world: "diagnose-runner" });

use std::net::{TcpStream, ToSocketAddrs, UdpSocket};

#[allow(unused_imports)]
use catpaw::runner::host;
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        let params: serde_json::Value =
            serde_json::from_str(&req.params_json).map_err(|e| format!("params: {e}"))?;
        let port = params["port"].as_u64();
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
        match ("localhost", 80).to_socket_addrs() {
            Ok(found) => escaped.push(format!(
                "resolved localhost to {:?}",
                found.collect::<Vec<_>>()
            )),
            Err(e) => blocked.push(format!("resolve localhost: {e} ({:?})", e.kind())),
        }
        // Without a listener to aim at (e.g. a smoke run by `check-runner`)
        // the socket probes are not tried, and the report says so.
        match port {
            Some(port) => {
                let addr = format!("127.0.0.1:{port}");
                match TcpStream::connect(&addr) {
                    Ok(_) => escaped.push(format!("connected to {addr}")),
                    Err(e) => blocked.push(format!("connect {addr}: {e} ({:?})", e.kind())),
                }
                match UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"probe", &addr)) {
                    Ok(n) => escaped.push(format!("sent {n} bytes over UDP to {addr}")),
                    Err(e) => blocked.push(format!("udp to {addr}: {e} ({:?})", e.kind())),
                }
            }
            None => blocked.push("sockets: not tried (no params.port)".to_string()),
        }
        if escaped.is_empty() {
            Ok(format!("blocked:\n{}", blocked.join("\n")))
        } else {
            Err(format!("sandbox escape: {}", escaped.join("; ")))
        }
    }
}
