//! tcp_connect: how long a TCP handshake to an allow-listed endpoint
//! takes, or why it fails (refused, timed out, unresolvable). Nothing is
//! sent: the connection is closed right after it opens.

use serde_json::{Value, json};

use super::net::{connect, split_host_port, timeout};
use super::{each_target, ms, none_configured, targets};
use crate::tools::args::Args;

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let allowed = &args.config().targets.tcp;
    let list = targets(args, allowed, "tcp")?;
    if list.is_empty() {
        return Ok(none_configured("tcp"));
    }
    let deadline = timeout(args)?;
    let rows = each_target(&list, |t| {
        let r = split_host_port(t).and_then(|(h, p)| connect(&h, p, deadline));
        Ok(match r {
            Ok((_, addr, took)) => {
                json!({ "target": t, "ok": true, "address": addr.to_string(), "connect_ms": ms(took) })
            }
            Err(e) => json!({ "target": t, "ok": false, "error": e }),
        })
    });

    Ok(json!({ "available": true, "connects": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::{Targets, ToolConfig};

    fn args(text: &str, tcp: Vec<String>) -> Args {
        let cfg = ToolConfig {
            targets: Targets {
                tcp,
                ..Targets::default()
            },
            ..ToolConfig::default()
        };
        Args::of(text, &["target", "timeout_ms"]).with_config(cfg.into())
    }

    #[test]
    fn allowed_endpoints_are_timed_and_others_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
        let closed = {
            let c = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("127.0.0.1:{}", c.local_addr().expect("addr").port())
        };
        let v = run(&args("{}", vec![open.clone(), closed.clone()])).expect("tcp");
        assert_eq!(v["connects"][0]["ok"], true, "{v}");
        assert!(v["connects"][0]["connect_ms"].is_f64(), "{v}");
        assert_eq!(v["connects"][1]["ok"], false);
        assert!(
            v["connects"][1]["error"]
                .as_str()
                .unwrap_or("")
                .contains("refused"),
            "{v}"
        );
        let e = run(&args(r#"{"target":"127.0.0.1:22"}"#, vec![open])).unwrap_err();
        assert!(e.contains("[tools.targets] tcp"), "{e}");
    }
}
