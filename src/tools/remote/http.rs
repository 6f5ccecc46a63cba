//! http_check: one GET of an allow-listed URL, HTTP/1.1 with
//! `Connection: close`, redirects reported rather than followed (the
//! next hop may not be allow-listed), at most 64 KiB read.

use std::io::Write;
use std::time::Instant;

use serde_json::{Value, json};

use super::net::{Deadline, connect, read_capped, timeout, tls};
use super::{each_target, ms, none_configured, targets};
use crate::tools::args::Args;
use crate::tools::mask::mask_secrets;
use crate::tools::x509;

/// Bytes of response read at most.
const MAX_RESPONSE: usize = 64 * 1024;
/// Bytes of body shown.
const BODY_SHOWN: usize = 512;

/// A URL's parts: (https, host, port, path-and-query).
pub(crate) fn split_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http(s) URL"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    let default = if https { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse() {
            Ok(p) => (h.to_string(), p),
            Err(_) if authority.starts_with('[') && authority.ends_with(']') => {
                (authority.to_string(), default)
            }
            Err(_) => return Err(format!("{url:?} has a bad port")),
        },
        _ => (authority.to_string(), default),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok((https, host, port, path))
}

/// Status code, reason, chosen headers and the body of a raw response.
pub(crate) fn parse_response(raw: &[u8]) -> Result<Value, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no complete header")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(format!(
            "not an HTTP response: {:?}",
            crate::util::truncate_utf8(status, 80)
        ));
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or("the status line has no code")?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = serde_json::Map::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if [
                "server",
                "content-type",
                "content-length",
                "location",
                "transfer-encoding",
                "cache-control",
            ]
            .contains(&k.as_str())
            {
                headers.insert(k, json!(v.trim()));
            }
        }
    }
    let body = String::from_utf8_lossy(&raw[end + 4..]);
    let shown = mask_secrets(&body);
    Ok(json!({
        "status": code,
        "reason": reason,
        "headers": headers,
        "body_start": crate::util::truncate_utf8(&shown, BODY_SHOWN),
    }))
}

fn check(url: &str, deadline: std::time::Duration) -> Result<Value, String> {
    let (https, host, port, path) = split_url(url)?;
    let started = Instant::now();
    let (sock, addr, connect_took) = connect(&host, port, deadline)?;
    let authority = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let authority = if port == if https { 443 } else { 80 } {
        authority
    } else {
        format!("{authority}:{port}")
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: catpaw-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let (raw, cut, cert) = if https {
        let mut t = tls(sock, &host)?;
        if let Some(why) = &t.untrusted {
            return Err(format!("the certificate of {host} is not trusted: {why}"));
        }
        let cert = t.chain.first().and_then(|c| x509::parse(c.as_ref()).ok());
        t.stream
            .write_all(req.as_bytes())
            .map_err(|e| super::net::reason(&e))?;
        let mut r = Deadline {
            inner: &mut t.stream,
            until: Instant::now() + deadline,
        };
        let (raw, cut) = read_capped(&mut r, MAX_RESPONSE)?;
        (raw, cut, cert)
    } else {
        let mut s = sock;
        s.write_all(req.as_bytes())
            .map_err(|e| super::net::reason(&e))?;
        let mut r = Deadline {
            inner: &mut s,
            until: Instant::now() + deadline,
        };
        let (raw, cut) = read_capped(&mut r, MAX_RESPONSE)?;
        (raw, cut, None)
    };
    let mut v = parse_response(&raw)?;
    v["target"] = json!(url);
    v["ok"] = json!(true);
    v["address"] = json!(addr.to_string());
    v["connect_ms"] = json!(ms(connect_took));
    v["total_ms"] = json!(ms(started.elapsed()));
    v["response_cut"] = json!(cut);
    if let Some(c) = cert {
        v["cert_days_left"] = json!((c.not_after - x509::now()).div_euclid(86_400));
    }
    Ok(v)
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let allowed = &args.config().targets.http;
    let list = targets(args, allowed, "http")?;
    if list.is_empty() {
        return Ok(none_configured("http"));
    }
    let deadline = timeout(args)?;
    let rows = each_target(&list, |u| check(u, deadline));
    Ok(json!({ "available": true, "checks": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::{Targets, ToolConfig};
    use std::io::Read;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("https://example.com"),
            Ok((true, "example.com".into(), 443, "/".into()))
        );
        assert_eq!(
            split_url("http://h:8080/a?b=1#frag"),
            Ok((false, "h".into(), 8080, "/a?b=1".into()))
        );
        assert_eq!(
            split_url("http://[::1]:81/x"),
            Ok((false, "::1".into(), 81, "/x".into()))
        );
        assert_eq!(
            split_url("http://h?x"),
            Ok((false, "h".into(), 80, "/?x".into()))
        );
        assert!(split_url("ftp://h").is_err());
        assert!(split_url("http://h:port/").is_err());
    }

    #[test]
    fn responses_parse_and_bodies_are_masked() {
        let v = parse_response(include_bytes!("../fixtures/http_response")).expect("parse");
        assert_eq!(v["status"], 503);
        assert_eq!(v["reason"], "Service Unavailable");
        assert_eq!(v["headers"]["server"], "nginx");
        assert!(v["headers"].get("set-cookie").is_none());
        let body = v["body_start"].as_str().unwrap_or("");
        assert!(
            body.contains("db down") && !body.contains("hunter2pass"),
            "{body}"
        );
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn a_local_server_is_checked_and_unlisted_urls_refused() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).expect("read");
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .expect("write");
            req
        });
        let url = format!("http://127.0.0.1:{port}/healthz");
        let cfg = ToolConfig {
            targets: Targets {
                http: vec![url.clone()],
                ..Targets::default()
            },
            ..ToolConfig::default()
        };
        let v = run(&Args::of("{}", &["target", "timeout_ms"]).with_config(cfg.clone().into()))
            .expect("http");
        let req = server.join().expect("server");
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert_eq!(v["checks"][0]["status"], 200, "{v}");
        assert_eq!(v["checks"][0]["body_start"], "ok");
        // The listed path in other case is another URL: refused before
        // any connection (the server above accepted its one request).
        let upper = format!(r#"{{"target":"http://127.0.0.1:{port}/HEALTHZ"}}"#);
        for target in [
            r#"{"target":"http://169.254.169.254/latest/meta-data/"}"#,
            upper.as_str(),
        ] {
            let e =
                run(&Args::of(target, &["target", "timeout_ms"]).with_config(cfg.clone().into()))
                    .unwrap_err();
            assert!(
                e.contains("not allow-listed in [tools.targets] http"),
                "{target}: {e}"
            );
        }
    }

    #[test]
    fn an_untrusted_certificate_fails_the_check_and_says_why() {
        let (port, server) = super::super::net::self_signed_server();
        let url = format!("https://localhost:{port}/");
        let cfg = ToolConfig {
            targets: Targets {
                http: vec![url],
                ..Targets::default()
            },
            ..ToolConfig::default()
        };
        let v =
            run(&Args::of("{}", &["target", "timeout_ms"]).with_config(cfg.into())).expect("http");
        server.join().expect("server");
        let row = &v["checks"][0];
        assert_eq!(row["ok"], false, "{v}");
        assert!(
            row["error"]
                .as_str()
                .unwrap_or("")
                .contains("certificate of localhost is not trusted"),
            "{v}"
        );
    }
}
