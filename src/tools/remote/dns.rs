//! dns_lookup: the system resolver (getaddrinfo, so /etc/hosts and
//! nsswitch count, as for every program here) on allow-listed names.

use std::time::Instant;

use serde_json::{Value, json};

use super::net::{resolve, timeout};
use super::{each_target, ms, none_configured, targets};
use crate::tools::args::Args;

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let allowed = &args.config().targets.dns;
    let names = targets(args, allowed, "dns")?;
    if names.is_empty() {
        return Ok(none_configured("dns"));
    }
    let deadline = timeout(args)?;
    let rows = each_target(&names, |n| {
        let started = Instant::now();
        Ok(match resolve(n, 0, deadline) {
            Ok(a) => {
                let mut ips: Vec<String> = a.iter().map(|s| s.ip().to_string()).collect();
                ips.dedup();
                json!({ "target": n, "ok": true, "addresses": ips, "time_ms": ms(started.elapsed()) })
            }
            Err(e) => {
                json!({ "target": n, "ok": false, "error": e, "time_ms": ms(started.elapsed()) })
            }
        })
    });

    Ok(json!({ "available": true, "lookups": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::{Targets, ToolConfig};

    fn args(text: &str, dns: &[&str]) -> Args {
        let cfg = ToolConfig {
            targets: Targets {
                dns: dns.iter().map(|s| s.to_string()).collect(),
                ..Targets::default()
            },
            ..ToolConfig::default()
        };
        Args::of(text, &["target", "timeout_ms"]).with_config(cfg.into())
    }

    #[test]
    fn allow_listed_names_resolve_and_others_are_refused() {
        let v = run(&args("{}", &["localhost"])).expect("dns");
        let row = &v["lookups"][0];
        assert_eq!(row["ok"], true, "{v}");
        assert!(
            row["addresses"].as_array().is_some_and(|a| !a.is_empty()),
            "{v}"
        );
        let e = run(&args(r#"{"target":"evil.example.com"}"#, &["localhost"])).unwrap_err();
        assert!(e.contains("not allow-listed in [tools.targets] dns"), "{e}");
        let v = run(&args("{}", &[])).expect("none");
        assert!(
            v["reason"]
                .as_str()
                .unwrap_or("")
                .contains("[tools.targets] dns"),
            "{v}"
        );
    }
}
