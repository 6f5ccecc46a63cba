//! tls_cert: the certificate an allow-listed TLS endpoint presents, read
//! during a handshake that completes even when the certificate is bad
//! (expired or untrusted is what this tool exists to report).

use serde_json::{Value, json};

use super::net::{connect, split_host_port, timeout, tls};
use super::{each_target, none_configured, targets};
use crate::tools::args::Args;
use crate::tools::x509;

fn check(target: &str, deadline: std::time::Duration) -> Result<Value, String> {
    let (host, port) = split_host_port(target)?;
    let (sock, _, _) = connect(&host, port, deadline)?;
    let t = tls(sock, &host)?;
    let leaf = t.chain.first().ok_or("the server sent no certificate")?;
    let c = x509::parse(leaf.as_ref())?;
    let mut v = x509::row(&c, x509::now());
    v["target"] = json!(target);
    v["ok"] = json!(true);
    v["trusted"] = json!(t.untrusted.is_none());
    v["untrusted_reason"] = json!(t.untrusted);
    v["chain_length"] = json!(t.chain.len());
    v["tls_version"] = json!(t.version);
    Ok(v)
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let allowed = &args.config().targets.tls;
    let list = targets(args, allowed, "tls")?;
    if list.is_empty() {
        return Ok(none_configured("tls"));
    }
    let deadline = timeout(args)?;
    let rows = each_target(&list, |t| check(t, deadline));
    Ok(json!({ "available": true, "certificates": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::{Targets, ToolConfig};

    #[test]
    fn a_self_signed_endpoint_reports_expiry_and_distrust() {
        let (port, server) = super::super::net::self_signed_server();
        let target = format!("localhost:{port}");
        let cfg = ToolConfig {
            targets: Targets {
                tls: vec![target],
                ..Targets::default()
            },
            ..ToolConfig::default()
        };
        let v = run(&Args::of("{}", &["target", "timeout_ms"]).with_config(cfg.clone().into()))
            .expect("tls_cert");
        server.join().expect("server");
        let c = &v["certificates"][0];
        assert_eq!(c["ok"], true, "{v}");
        assert_eq!(c["trusted"], false, "{v}");
        assert!(c["days_left"].as_i64().unwrap_or(0) > 300, "{v}");
        let e = run(
            &Args::of(r#"{"target":"example.com:443"}"#, &["target", "timeout_ms"])
                .with_config(cfg.into()),
        )
        .unwrap_err();
        assert!(e.contains("[tools.targets] tls"), "{e}");
    }
}
