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

#[cfg(test)]
pub(crate) use net::DEFAULT_TIMEOUT_MS;

use super::args::Args;
use super::targets::check_target;
use super::tool::Tool;

/// Targets one call may touch.
const MAX_TARGETS: usize = 20;
/// Time one call may spend over all its targets: those left when it is
/// spent are reported as skipped, so a list of dead endpoints cannot hold
/// a session (or a blocking thread) for minutes.
pub(crate) const CALL_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

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

/// `check` of each target in turn while the call's budget lasts; a
/// failed check is a row with its error, not a failed call.
fn each_target(
    list: &[String],
    check: impl Fn(&str) -> Result<serde_json::Value, String>,
) -> Vec<serde_json::Value> {
    each_target_within(list, CALL_BUDGET, check)
}

fn each_target_within(
    list: &[String],
    budget: std::time::Duration,
    check: impl Fn(&str) -> Result<serde_json::Value, String>,
) -> Vec<serde_json::Value> {
    let started = std::time::Instant::now();
    list.iter()
        .map(|t| {
            if started.elapsed() >= budget {
                return serde_json::json!({ "target": t, "ok": false,
                    "error": format!("skipped: this call's {budget:?} budget was spent on the targets before it") });
            }
            check(t).unwrap_or_else(|e| serde_json::json!({ "target": t, "ok": false, "error": e }))
        })
        .collect()
}

/// The answer of a network tool with no configured targets.
fn none_configured(key: &str) -> serde_json::Value {
    super::logs::not_configured(
        format!("no targets are allow-listed: the operator lists them in [tools.targets] {key}"),
        &format!("[tools.targets] {key}"),
    )
}

/// Milliseconds with one decimal.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_past_the_call_budget_are_skipped_not_tried() {
        let list = vec!["a:1".to_string(), "b:2".to_string()];
        let tried = std::cell::Cell::new(0);
        let rows = each_target_within(&list, std::time::Duration::ZERO, |_| {
            tried.set(tried.get() + 1);
            Ok(serde_json::json!({}))
        });
        assert_eq!(tried.get(), 0);
        assert!(
            rows[1]["error"]
                .as_str()
                .unwrap_or("")
                .starts_with("skipped:"),
            "{rows:?}"
        );
        let rows = each_target(&list, |t| {
            if t == "a:1" {
                Err("refused".into())
            } else {
                Ok(serde_json::json!({"target": t, "ok": true}))
            }
        });
        assert_eq!(
            rows[0],
            serde_json::json!({"target": "a:1", "ok": false, "error": "refused"})
        );
        assert_eq!(rows[1]["ok"], true);
    }
}
