//! Network-touching tools. They run in the host (a guest has no network)
//! and reach only what the operator allow-listed under `[tools.targets]`;
//! anything else is refused with the key to add it to. Every step has a
//! deadline and every read a size cap.

mod dns;
mod docker;
mod http;
mod net;
mod ping;
mod redis;
mod tcp;
mod tlscert;

use super::Tool;
use super::args::Args;
use super::targets::check_target;

/// Targets one call may touch.
const MAX_TARGETS: usize = 20;

pub(super) const TOOLS: &[Tool] = &[
    Tool::new(
        "dns_lookup",
        "resolve allow-listed names ([tools.targets] dns): addresses and lookup time",
        r#"{"type":"object","properties":{"target":{"type":"string","description":"a name from [tools.targets] dns; default: all of them"},"timeout_ms":{"type":"integer","minimum":100,"maximum":10000,"default":5000}},"additionalProperties":false}"#,
        dns::run,
    ),
    Tool::new(
        "tcp_connect",
        "TCP connect time to allow-listed host:port endpoints ([tools.targets] tcp), or why the connect failed",
        r#"{"type":"object","properties":{"target":{"type":"string","description":"host:port from [tools.targets] tcp; default: all of them"},"timeout_ms":{"type":"integer","minimum":100,"maximum":10000,"default":5000}},"additionalProperties":false}"#,
        tcp::run,
    ),
    Tool::new(
        "ping",
        "ICMP round-trip times and packet loss to allow-listed hosts ([tools.targets] ping), through the ping binary",
        r#"{"type":"object","properties":{"target":{"type":"string"},"count":{"type":"integer","minimum":1,"maximum":10,"default":3}},"additionalProperties":false}"#,
        ping::run,
    ),
    Tool::new(
        "http_check",
        "GET an allow-listed URL ([tools.targets] http): status, response time, headers, start of the body (masked), certificate days left",
        r#"{"type":"object","properties":{"target":{"type":"string","description":"a URL from [tools.targets] http; default: all of them"},"timeout_ms":{"type":"integer","minimum":100,"maximum":10000,"default":5000}},"additionalProperties":false}"#,
        http::run,
    ),
    Tool::new(
        "tls_cert",
        "the certificate an allow-listed TLS endpoint ([tools.targets] tls) presents: subject, issuer, days left, whether it is trusted",
        r#"{"type":"object","properties":{"target":{"type":"string","description":"host:port from [tools.targets] tls; default: all of them"},"timeout_ms":{"type":"integer","minimum":100,"maximum":10000,"default":5000}},"additionalProperties":false}"#,
        tlscert::run,
    ),
    Tool::new(
        "redis_info",
        "INFO of allow-listed Redis servers or sentinels ([tools.targets] redis): role, memory, clients, replication, secrets masked",
        r#"{"type":"object","properties":{"target":{"type":"string"},"section":{"type":"string","enum":["default","server","clients","memory","persistence","stats","replication","cpu","keyspace","sentinel"],"default":"default"},"timeout_ms":{"type":"integer","minimum":100,"maximum":10000,"default":5000}},"additionalProperties":false}"#,
        redis::run,
    ),
    Tool::new(
        "docker",
        "containers from the Docker socket ([tools.targets] docker_socket): state, health, restarts; with \"container\", its inspect (environment masked)",
        r#"{"type":"object","properties":{"container":{"type":"string","maxLength":128,"description":"name or id to inspect"},"all":{"type":"boolean","default":true}},"additionalProperties":false}"#,
        docker::run,
    ),
];

/// The targets of one call: the `target` argument (which must be in
/// `allowed`), else every allowed target. Ok(empty) when none are
/// configured.
fn targets(args: &Args, allowed: &[String], key: &str) -> Result<Vec<String>, String> {
    match args.string("target", 2048)? {
        Some(t) => {
            check_target(&t, allowed, key)?;
            Ok(vec![t])
        }
        None => Ok(allowed.iter().take(MAX_TARGETS).cloned().collect()),
    }
}

/// The answer of a network tool with no configured targets.
fn none_configured(key: &str) -> serde_json::Value {
    super::logs::unavailable(format!(
        "no targets are allow-listed: the operator lists them in [tools.targets] {key}"
    ))
}

/// Milliseconds with one decimal.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}
