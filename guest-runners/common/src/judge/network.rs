//! Judges of the network stack tools and the network-touching tools.

use serde_json::Value;

use super::level;
use crate::{Finding, Severity, int, list, num, text};

pub(super) fn judge(tool: &str, v: &Value) -> Option<Vec<Finding>> {
    Some(match tool {
        "conntrack" => vec![pct_finding("conntrack", "conntrack table", v, 75.0, 90.0)],
        "neighbours" => vec![pct_finding("neigh", "neighbour table", v, 75.0, 90.0)],
        "tcp_retrans" => retrans(v),
        "sockstat" => vec![Finding::new(
            Severity::Ok,
            "sockstat",
            format!(
                "{} TCP sockets in use, {} orphans, {} time-wait; {} listen overflows since boot",
                int(&v["ipv4"]["TCP"], "inuse"),
                int(&v["ipv4"]["TCP"], "orphan"),
                int(&v["ipv4"]["TCP"], "tw"),
                int(v, "listen_overflows")
            ),
        )],
        "tcp_connections" => connections(v),
        "softnet" => vec![Finding::new(
            if int(v, "dropped") > 0 {
                Severity::Warning
            } else {
                Severity::Ok
            },
            "softnet",
            format!(
                "{} packets dropped, {} time squeezes over {} CPUs",
                int(v, "dropped"),
                int(v, "time_squeeze"),
                int(v, "cpus")
            ),
        )],
        "dns_lookup" => rows(v, "lookups", "dns", |r| {
            let ok = r["ok"] == true;
            (
                if ok { Severity::Ok } else { Severity::Critical },
                if ok {
                    format!(
                        "{} → {} in {:.1} ms",
                        text(r, "target"),
                        joined(&r["addresses"]),
                        num(r, "time_ms")
                    )
                } else {
                    format!(
                        "{} does not resolve: {}",
                        text(r, "target"),
                        text(r, "error")
                    )
                },
            )
        }),
        "tcp_connect" => rows(v, "connects", "net", |r| {
            up_or_down(r, |r| {
                format!("connected in {:.1} ms", num(r, "connect_ms"))
            })
        }),
        "ping" => rows(v, "pings", "ping", |r| {
            if r["ok"] != true {
                return (
                    Severity::Critical,
                    format!("{} unreachable: {}", text(r, "target"), text(r, "error")),
                );
            }
            let loss = num(r, "loss_pct");
            (
                level(loss, 1.0, 50.0),
                format!(
                    "{}: {loss:.0} % loss, avg {:.2} ms",
                    text(r, "target"),
                    num(&r["rtt"], "avg_ms")
                ),
            )
        }),
        "http_check" => rows(v, "checks", "http", |r| {
            if r["ok"] != true {
                return (
                    Severity::Critical,
                    format!("{} failed: {}", text(r, "target"), text(r, "error")),
                );
            }
            let s = int(r, "status");
            let sev = if s >= 500 {
                Severity::Critical
            } else if s >= 400 {
                Severity::Warning
            } else {
                Severity::Ok
            };
            let mut f = (
                sev,
                format!(
                    "{} answered {s} in {:.1} ms",
                    text(r, "target"),
                    num(r, "total_ms")
                ),
            );
            if let Some(days) = r.get("cert_days_left").and_then(Value::as_i64) {
                f.1.push_str(&format!(", certificate expires in {days} days"));
            }
            f
        }),
        "tls_cert" => rows(v, "certificates", "cert", |r| {
            if r["ok"] != true {
                return (
                    Severity::Critical,
                    format!("{} failed: {}", text(r, "target"), text(r, "error")),
                );
            }
            let days = r["days_left"].as_i64().unwrap_or(0);
            let mut sev = cert_level(days);
            if r["trusted"] == false {
                sev = sev.max(Severity::Warning);
            }
            (
                sev,
                format!(
                    "{} ({}) expires in {days} days{}",
                    text(r, "target"),
                    text(r, "subject_cn"),
                    if r["trusted"] == false {
                        format!("; not trusted: {}", text(r, "untrusted_reason"))
                    } else {
                        String::new()
                    }
                ),
            )
        }),
        "redis_info" => redis(v),
        "docker" => docker(v),
        _ => return None,
    })
}

/// Days left of a certificate judged by catpaw's 30 / 7 days.
pub(super) fn cert_level(days: i64) -> Severity {
    if days <= 7 {
        Severity::Critical
    } else if days <= 30 {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

fn joined(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn pct_finding(area: &str, what: &str, v: &Value, warn: f64, crit: f64) -> Finding {
    let pct = num(v, "used_pct");
    let (n, max) = if area == "neigh" {
        (int(v, "count"), int(v, "gc_thresh3"))
    } else {
        (int(v, "count"), int(v, "max"))
    };
    Finding::new(
        level(pct, warn, crit),
        area,
        format!("{what} {n} of {max} ({pct:.1} %)"),
    )
}

fn rows(
    v: &Value,
    key: &str,
    area: &str,
    each: impl Fn(&Value) -> (Severity, String),
) -> Vec<Finding> {
    list(v, key)
        .iter()
        .map(|r| {
            let (s, t) = each(r);
            Finding::new(s, area, t)
        })
        .collect()
}

fn up_or_down(r: &Value, ok: impl Fn(&Value) -> String) -> (Severity, String) {
    if r["ok"] == true {
        (Severity::Ok, format!("{}: {}", text(r, "target"), ok(r)))
    } else {
        (
            Severity::Critical,
            format!("{}: {}", text(r, "target"), text(r, "error")),
        )
    }
}

fn retrans(v: &Value) -> Vec<Finding> {
    let now = num(v, "retrans_pct_now");
    let overflows = num(&v["per_sec"], "ListenOverflows");
    vec![
        Finding::new(
            level(now, 2.0, 10.0),
            "retrans",
            format!(
                "{now:.1} % of segments retransmitted during the sample ({:.1} % since boot), {:.1} timeouts/s",
                num(v, "retrans_pct_since_boot"),
                num(&v["per_sec"], "TCPTimeouts")
            ),
        ),
        Finding::new(
            level(overflows, 1.0, 100.0),
            "sockstat",
            format!(
                "{overflows:.1} listen-queue overflows/s ({} since boot)",
                int(&v["totals"], "ListenOverflows")
            ),
        ),
    ]
}

fn connections(v: &Value) -> Vec<Finding> {
    let st = &v["states"];
    let (cw, tw) = (int(st, "CLOSE_WAIT"), int(st, "TIME_WAIT"));
    let top = |k: &str| {
        list(v, k)
            .first()
            .map(|r| format!(" (most on port {}: {})", text(r, "port"), int(r, "count")))
            .unwrap_or_default()
    };
    vec![
        Finding::new(
            level(cw as f64, 100.0, 1000.0),
            "tcp",
            format!(
                "{cw} CLOSE_WAIT connections{}",
                top("close_wait_by_local_port")
            ),
        ),
        Finding::new(
            level(tw as f64, 5000.0, 20000.0),
            "tcp",
            format!(
                "{tw} TIME_WAIT connections{}",
                top("time_wait_by_local_port")
            ),
        ),
    ]
}

fn redis(v: &Value) -> Vec<Finding> {
    let mut f = Vec::new();
    for s in list(v, "servers") {
        let t = text(s, "target");
        if s["ok"] != true {
            f.push(Finding::new(
                Severity::Critical,
                "redis",
                format!("{t}: {}", text(s, "error")),
            ));
            continue;
        }
        let sec = &s["sections"];
        if let Some(sent) = sec.get("sentinel") {
            for (k, m) in sent.as_object().into_iter().flatten() {
                let Some(desc) = m.as_str().filter(|_| k.starts_with("master")) else {
                    continue;
                };
                let ok = desc.contains("status=ok");
                f.push(Finding::new(
                    if ok { Severity::Ok } else { Severity::Critical },
                    "redis",
                    format!("{t} sentinel {k}: {desc}"),
                ));
            }
            continue;
        }
        f.push(Finding::new(
            Severity::Ok,
            "redis",
            format!(
                "{t}: role {}, {} clients, memory {} (max {}), version {}",
                text(&sec["replication"], "role"),
                int(&sec["clients"], "connected_clients"),
                text(&sec["memory"], "used_memory_human"),
                text(&sec["memory"], "maxmemory_human"),
                text(&sec["server"], "redis_version")
            ),
        ));
    }
    f
}

fn docker(v: &Value) -> Vec<Finding> {
    if let Some(c) = v.get("container") {
        let restarts = int(c, "restart_count");
        let mut sev = level(restarts as f64, 3.0, 5.0);
        if c["health"] == "unhealthy" || c["running"] == false {
            sev = Severity::Critical;
        } else if c["restarting"] == true || c["status"] == "paused" || c["oom_killed"] == true {
            sev = sev.max(Severity::Warning);
        }
        return vec![Finding::new(
            sev,
            "docker",
            format!(
                "{} {} (health {}), {restarts} restarts, OOM-killed {}, exit code {}",
                text(c, "name"),
                text(c, "status"),
                text(c, "health"),
                c["oom_killed"],
                c["exit_code"]
            ),
        )];
    }
    let mut f = vec![Finding::new(
        Severity::Ok,
        "docker",
        format!(
            "{} containers, {} running",
            int(v, "total"),
            int(v, "running")
        ),
    )];
    for c in list(v, "containers") {
        let status = text(c, "status");
        let sev = if status.contains("(unhealthy)") {
            Severity::Critical
        } else if matches!(text(c, "state"), "restarting" | "paused") {
            Severity::Warning
        } else {
            continue;
        };
        f.push(Finding::new(
            sev,
            "docker",
            format!("{}: {status}", joined(&c["names"])),
        ));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::super::judge;
    use super::*;
    use serde_json::json;

    fn worst(tool: &str, v: Value) -> Severity {
        judge(tool, &v)
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    #[test]
    fn reference_thresholds() {
        assert_eq!(worst("conntrack", json!({"used_pct": 74.0})), Severity::Ok);
        assert_eq!(
            worst("conntrack", json!({"used_pct": 75.0})),
            Severity::Warning
        );
        assert_eq!(
            worst("neighbours", json!({"used_pct": 91.0})),
            Severity::Critical
        );
        let tc = |cw: u64, tw: u64| json!({"states": {"CLOSE_WAIT": cw, "TIME_WAIT": tw}});
        assert_eq!(worst("tcp_connections", tc(99, 4999)), Severity::Ok);
        assert_eq!(worst("tcp_connections", tc(100, 0)), Severity::Warning);
        assert_eq!(worst("tcp_connections", tc(0, 20000)), Severity::Critical);
        let ping = |loss: f64| json!({"pings": [{"target": "h", "ok": true, "loss_pct": loss, "rtt": {"avg_ms": 1.0}}]});
        assert_eq!(worst("ping", ping(0.0)), Severity::Ok);
        assert_eq!(worst("ping", ping(1.0)), Severity::Warning);
        assert_eq!(worst("ping", ping(50.0)), Severity::Critical);
        assert_eq!(
            worst(
                "dns_lookup",
                json!({"lookups": [{"target": "x", "ok": false}]})
            ),
            Severity::Critical
        );
        assert_eq!(
            worst(
                "http_check",
                json!({"checks": [{"ok": true, "status": 503}]})
            ),
            Severity::Critical
        );
        assert_eq!(
            worst(
                "http_check",
                json!({"checks": [{"ok": true, "status": 404}]})
            ),
            Severity::Warning
        );
        let cert =
            |d: i64| json!({"certificates": [{"ok": true, "days_left": d, "trusted": true}]});
        assert_eq!(worst("tls_cert", cert(31)), Severity::Ok);
        assert_eq!(worst("tls_cert", cert(30)), Severity::Warning);
        assert_eq!(worst("tls_cert", cert(7)), Severity::Critical);
        let r = json!({"servers": [{"target": "s:26379", "ok": true, "sections": {"sentinel": {"master0": "name=m,status=odown,address=1.2.3.4:6379"}}}]});
        assert_eq!(worst("redis_info", r), Severity::Critical);
        let d = json!({"container": {"name": "/web", "running": true, "health": "healthy", "restart_count": 4}});
        assert_eq!(worst("docker", d), Severity::Warning);
        let d = json!({"total": 1, "running": 1, "containers": [{"names": ["/web"], "state": "running", "status": "Up 1 h (unhealthy)"}]});
        assert_eq!(worst("docker", d), Severity::Critical);
        let r = json!({"retrans_pct_now": 3.0, "per_sec": {"ListenOverflows": 0.0}});
        assert_eq!(worst("tcp_retrans", r), Severity::Warning);
    }
}
