//! docker: the Docker Engine API over its unix socket (only the socket
//! the operator named in `[tools.targets] docker_socket`), read-only
//! endpoints only: the container list and one container's inspect.
//! HTTP/1.0, so the engine closes the connection after one response and
//! never chunks it.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};

use super::net::{Deadline, read_capped};
use crate::tools::args::Args;
use crate::tools::logs::{not_configured, unavailable};

/// Largest API response read.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Containers listed at most.
const MAX_CONTAINERS: usize = 200;

/// `GET path` on the socket; Ok is the parsed JSON body of a 200.
fn get(socket: &std::path::Path, path: &str) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to {}: {} (the agent's user needs access to the Docker socket)",
            socket.display(),
            crate::tools::cmd::io_reason(&e)
        )
    })?;
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut r = Deadline {
        inner: &mut s,
        until: std::time::Instant::now() + TIMEOUT,
    };
    let (raw, cut) = read_capped(&mut r, MAX_RESPONSE)?;
    if cut {
        return Err(format!(
            "the Docker API answer is larger than {MAX_RESPONSE} bytes"
        ));
    }
    body_of(&raw)
}

/// Status check and JSON body of a raw HTTP response.
pub(crate) fn body_of(raw: &[u8]) -> Result<Value, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the Docker API answer has no header")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head.lines().next().unwrap_or("");
    let body = &raw[end + 4..];
    if status.split_whitespace().nth(1) != Some("200") {
        let msg = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string));
        return Err(format!(
            "Docker API: {}",
            msg.unwrap_or_else(|| status.to_string())
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("Docker API gave invalid JSON: {e}"))
}

/// The list rows the tool keeps.
pub(crate) fn summarize_list(v: &Value) -> Vec<Value> {
    v.as_array()
        .into_iter()
        .flatten()
        .take(MAX_CONTAINERS)
        .map(|c| {
            json!({
                "id": c["Id"].as_str().map(|i| i.chars().take(12).collect::<String>()),
                "names": c["Names"],
                "image": c["Image"],
                "state": c["State"],
                "status": c["Status"],
            })
        })
        .collect()
}

/// The inspect fields the tool keeps (environment included: it is
/// masked like every output).
pub(crate) fn summarize_inspect(v: &Value) -> Value {
    let st = &v["State"];
    json!({
        "id": v["Id"].as_str().map(|i| i.chars().take(12).collect::<String>()),
        "name": v["Name"],
        "image": v["Config"]["Image"],
        "status": st["Status"],
        "running": st["Running"],
        "restarting": st["Restarting"],
        "oom_killed": st["OOMKilled"],
        "exit_code": st["ExitCode"],
        "error": st["Error"],
        "started_at": st["StartedAt"],
        "finished_at": st["FinishedAt"],
        "health": st["Health"]["Status"],
        "restart_count": v["RestartCount"],
        "restart_policy": v["HostConfig"]["RestartPolicy"]["Name"],
        "memory_limit_bytes": v["HostConfig"]["Memory"],
        "nano_cpus": v["HostConfig"]["NanoCpus"],
        "cmd": v["Config"]["Cmd"],
        "env": v["Config"]["Env"],
    })
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let container = args.string("container", 128)?;
    let all = args.flag("all", true)?;
    let Some(socket) = args.config().targets.docker_socket.clone() else {
        return Ok(not_configured(
            "no Docker socket is allow-listed: the operator sets [tools.targets] docker_socket (e.g. \"/var/run/docker.sock\")",
            "[tools.targets] docker_socket",
        ));
    };
    if !socket.exists() {
        return Ok(unavailable(format!(
            "{} does not exist (Docker not running here?)",
            socket.display()
        )));
    }
    match container {
        Some(c) => {
            if c.is_empty()
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                return Err(format!(
                    "\"container\" {c:?} must be a container name or id"
                ));
            }
            let v = get(&socket, &format!("/containers/{c}/json"))?;
            Ok(json!({ "available": true, "container": summarize_inspect(&v) }))
        }
        None => {
            let v = get(&socket, &format!("/containers/json?all={}", u8::from(all)))?;
            let rows = summarize_list(&v);
            let running = rows.iter().filter(|r| r["state"] == "running").count();
            Ok(
                json!({ "available": true, "total": rows.len(), "running": running, "containers": rows }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::{Targets, ToolConfig};
    use std::io::Read;

    #[test]
    fn list_and_inspect_are_summarized() {
        let list: Value =
            serde_json::from_str(include_str!("../fixtures/docker_ps.json")).expect("json");
        let rows = summarize_list(&list);
        assert_eq!(rows[0]["id"], "4c0ffee12345");
        assert_eq!(rows[0]["state"], "running");
        assert_eq!(rows[1]["state"], "exited");
        let e = body_of(b"HTTP/1.0 404 Not Found\r\n\r\n{\"message\":\"No such container: x\"}")
            .unwrap_err();
        assert_eq!(e, "Docker API: No such container: x");
    }

    #[test]
    fn a_fake_engine_is_asked_and_the_environment_masked() {
        let d = tempfile::tempdir().expect("tmp");
        let sock = d.path().join("docker.sock");
        let l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let engine = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).expect("read");
            let body = include_str!("../fixtures/docker_inspect.json");
            s.write_all(
                format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}")
                    .as_bytes(),
            )
            .expect("write");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let cfg = ToolConfig {
            targets: Targets {
                docker_socket: Some(sock),
                ..Targets::default()
            },
            ..ToolConfig::default()
        };
        let a = Args::of(r#"{"container":"web"}"#, &["container", "all"]).with_config(cfg.into());
        let v = run(&a).expect("docker");
        assert!(
            engine
                .join()
                .expect("engine")
                .starts_with("GET /containers/web/json HTTP/1.0\r\n")
        );
        let c = &v["container"];
        assert_eq!(c["oom_killed"], true, "{v}");
        assert_eq!(c["restart_count"], 7);
        assert_eq!(c["health"], "unhealthy");
        let out = crate::tools::output::finish(v, false);
        assert!(
            !out.contains("pr0d-db-pass") && !out.contains("AKIAIOSFODNN7EXAMPLE"),
            "{out}"
        );
        assert!(out.contains("TZ=UTC"), "{out}");
        let none = run(&Args::of("{}", &["container", "all"])).expect("unconfigured");
        assert!(
            none["reason"]
                .as_str()
                .unwrap_or("")
                .contains("[tools.targets] docker_socket")
        );
    }
}
