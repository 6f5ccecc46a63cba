//! ping: round-trip times through the system `ping` (raw ICMP sockets
//! need privileges the agent should not hold for this).

use std::time::Duration;

use serde_json::{Value, json};

use super::{each_target, none_configured, targets};
use crate::tools::args::Args;
use crate::tools::cmd::{Keep, on_path, run as run_cmd};
use crate::tools::logs::unavailable;

/// `N packets transmitted, M received, X% packet loss` and
/// `rtt min/avg/max/mdev = a/b/c/d ms` (iputils and busybox forms).
pub(crate) fn parse(text: &str) -> Value {
    let mut sent = None;
    let mut received = None;
    let mut loss = None;
    let mut rtt = None;
    for l in text.lines() {
        if l.contains("packets transmitted") {
            let nums: Vec<f64> = l
                .split([',', ' ', '%'])
                .filter_map(|w| w.parse::<f64>().ok())
                .collect();
            sent = nums.first().copied();
            received = nums.get(1).copied();
            loss = nums.get(2).copied();
        }
        if let Some((_, v)) = l.split_once(" = ").filter(|_| l.contains("min/avg/max")) {
            let n: Vec<f64> = v.split([' ', '/']).filter_map(|x| x.parse().ok()).collect();
            if n.len() >= 3 {
                rtt = Some(json!({ "min_ms": n[0], "avg_ms": n[1], "max_ms": n[2] }));
            }
        }
    }
    json!({ "sent": sent, "received": received, "loss_pct": loss, "rtt": rtt })
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let allowed = &args.config().targets.ping;
    let list = targets(args, allowed, "ping")?;
    if list.is_empty() {
        return Ok(none_configured("ping"));
    }
    let count = args.int("count", 1, 10, 3)?;
    if !on_path("ping") {
        return Ok(unavailable("ping is not on PATH (install iputils-ping)"));
    }
    let c = count.to_string();
    let rows = each_target(&list, |host| {
        // `--` ends options: an allow-listed name can never be read as one.
        let argv = ["-n", "-c", c.as_str(), "-i", "0.2", "-W", "1", "--", host];
        let budget = Duration::from_secs(2 + count);
        // ping fails (exit 1) when no reply came at all: the host is then
        // unreachable, and the row carries ping's own words for it.
        let mut v = parse(&run_cmd("ping", &argv, budget, Keep::Head)?);
        v["target"] = json!(host);
        v["ok"] = json!(true);
        Ok(v)
    });
    Ok(json!({ "available": true, "pings": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_parse() {
        let v = parse(include_str!("../fixtures/ping"));
        assert_eq!(v["sent"], 3.0);
        assert_eq!(v["received"], 2.0);
        assert_eq!(v["loss_pct"], 33.3333);
        assert_eq!(v["rtt"]["avg_ms"], 0.045);
        let v = parse(
            "3 packets transmitted, 3 packets received, 0% packet loss\nround-trip min/avg/max = 0.1/0.2/0.3 ms\n",
        );
        assert_eq!(v["loss_pct"], 0.0);
        assert_eq!(v["rtt"]["max_ms"], 0.3);
    }

    #[test]
    fn unlisted_hosts_are_refused() {
        let e = run(&Args::of(r#"{"target":"8.8.8.8"}"#, &["target", "count"])).unwrap_err();
        assert!(e.contains("[tools.targets] ping is empty"), "{e}");
    }
}
