//! redis_info: `INFO` of an allow-listed Redis server or sentinel over
//! RESP, with `AUTH` when the operator configured a password. The reply
//! is parsed into sections; every value goes through masking like any
//! tool output (INFO can carry command lines and addresses with
//! credentials).

use std::io::{BufRead, BufReader, Read, Write};

use serde_json::{Map, Value, json};

use super::net::{Deadline, connect, split_host_port, timeout};
use super::{each_target, ms, none_configured, targets};
use crate::tools::args::Args;

/// Largest INFO reply read.
const MAX_REPLY: usize = 256 * 1024;

/// One RESP command as an array of bulk strings.
pub(crate) fn command(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    out
}

/// Reads one RESP reply: Ok(text) for a simple or bulk string, Err for
/// an error reply or a malformed one.
pub(crate) fn read_reply(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    r.take(4096)
        .read_line(&mut line)
        .map_err(|e| super::net::reason(&e))?;
    let line = line.trim_end_matches("\r\n");
    match line.chars().next() {
        Some('+') => Ok(line[1..].to_string()),
        Some('-') => Err(format!("redis replied: {}", &line[1..])),
        Some('$') => {
            let n: i64 = line[1..]
                .parse()
                .map_err(|_| "bad RESP bulk length".to_string())?;
            if n < 0 {
                return Ok(String::new());
            }
            let n = n as usize;
            if n > MAX_REPLY {
                return Err(format!(
                    "the reply is {n} bytes, more than the {MAX_REPLY} read"
                ));
            }
            let mut buf = vec![0u8; n + 2];
            r.read_exact(&mut buf).map_err(|e| super::net::reason(&e))?;
            buf.truncate(n);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        _ => Err(format!(
            "not a Redis reply: {:?}",
            crate::util::truncate_utf8(line, 60)
        )),
    }
}

/// INFO text → `{section: {key: value}}`, numbers as numbers.
pub(crate) fn parse_info(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let mut section = "info".to_string();
    for l in text.lines() {
        let l = l.trim();
        if let Some(s) = l.strip_prefix("# ") {
            section = s.trim().to_lowercase();
            continue;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let value = if let Ok(i) = v.parse::<i64>() {
            json!(i)
        } else if let Ok(f) = v
            .parse::<f64>()
            .map_err(|_| ())
            .and_then(|f| if f.is_finite() { Ok(f) } else { Err(()) })
        {
            json!(f)
        } else {
            json!(v)
        };
        if let Value::Object(m) = out.entry(section.clone()).or_insert_with(|| json!({})) {
            m.insert(k.to_string(), value);
        }
    }
    out
}

fn info(
    target: &str,
    section: &str,
    password: Option<&str>,
    deadline: std::time::Duration,
) -> Result<Value, String> {
    let (host, port) = split_host_port(target)?;
    let (sock, _, took) = connect(&host, port, deadline)?;
    let mut w = sock.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(Deadline {
        inner: sock,
        until: std::time::Instant::now() + deadline,
    });
    if let Some(pw) = password {
        w.write_all(&command(&["AUTH", pw]))
            .map_err(|e| super::net::reason(&e))?;
        read_reply(&mut r).map_err(|e| format!("AUTH failed: {e}"))?;
    }
    w.write_all(&command(&["INFO", section]))
        .map_err(|e| super::net::reason(&e))?;
    let text = read_reply(&mut r)?;
    Ok(
        json!({ "target": target, "ok": true, "connect_ms": ms(took), "sections": parse_info(&text) }),
    )
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let t = &args.config().targets;
    let list = targets(args, &t.redis, "redis")?;
    if list.is_empty() {
        return Ok(none_configured("redis"));
    }
    let section = args.choice(
        "section",
        &[
            "default",
            "server",
            "clients",
            "memory",
            "persistence",
            "stats",
            "replication",
            "cpu",
            "keyspace",
            "sentinel",
        ],
        "default",
    )?;
    let deadline = timeout(args)?;
    let rows = each_target(&list, |x| {
        info(x, section, t.redis_password.as_deref(), deadline)
    });
    Ok(json!({ "available": true, "servers": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::{Targets, ToolConfig};

    #[test]
    fn resp_and_info_parse() {
        assert_eq!(
            command(&["INFO", "memory"]),
            b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n"
        );
        let mut r = BufReader::new(&b"$5\r\nhello\r\n"[..]);
        assert_eq!(read_reply(&mut r), Ok("hello".into()));
        let mut r = BufReader::new(&b"-NOAUTH Authentication required.\r\n"[..]);
        assert!(read_reply(&mut r).unwrap_err().contains("NOAUTH"));
        let mut r = BufReader::new(&b"HTTP/1.1 400\r\n"[..]);
        assert!(
            read_reply(&mut r)
                .unwrap_err()
                .contains("not a Redis reply")
        );
        let s = parse_info(include_str!("../fixtures/redis_info"));
        assert_eq!(s["server"]["redis_version"], "7.2.4");
        assert_eq!(s["memory"]["used_memory"], 1048576);
        assert_eq!(s["memory"]["mem_fragmentation_ratio"], 1.25);
        assert_eq!(s["replication"]["role"], "master");
        assert_eq!(s["keyspace"]["db0"], "keys=10,expires=2,avg_ttl=0");
    }

    /// A one-connection fake Redis that wants AUTH, then answers INFO.
    fn fake_redis(info: &'static str) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("127.0.0.1:{}", l.local_addr().expect("addr").port());
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let mut w = s.try_clone().expect("clone");
            let mut r = BufReader::new(s);
            let mut seen = Vec::new();
            for _ in 0..2 {
                let mut cmd = Vec::new();
                let mut head = String::new();
                r.read_line(&mut head).expect("head");
                let n: usize = head.trim()[1..].parse().expect("count");
                for _ in 0..n * 2 {
                    let mut l = String::new();
                    r.read_line(&mut l).expect("line");
                    cmd.push(l.trim().to_string());
                }
                let cmd: Vec<String> = cmd.into_iter().skip(1).step_by(2).collect();
                let reply = if cmd[0] == "AUTH" {
                    "+OK\r\n".to_string()
                } else {
                    format!("${}\r\n{info}\r\n", info.len())
                };
                w.write_all(reply.as_bytes()).expect("write");
                seen.push(cmd.join(" "));
            }
            seen
        });
        (addr, h)
    }

    #[test]
    fn info_of_an_allowed_server_is_read_authenticated_and_masked() {
        let (addr, server) = fake_redis(include_str!("../fixtures/redis_info"));
        let cfg = ToolConfig {
            targets: Targets {
                redis: vec![addr.clone()],
                redis_password: Some("pw-1".into()),
                ..Targets::default()
            },
            ..ToolConfig::default()
        };
        let a = Args::of(
            r#"{"section":"server"}"#,
            &["target", "section", "timeout_ms"],
        )
        .with_config(cfg.clone().into());
        let v = run(&a).expect("redis_info");
        assert_eq!(server.join().expect("server"), ["AUTH pw-1", "INFO server"]);
        assert_eq!(
            v["servers"][0]["sections"]["replication"]["connected_slaves"], 1,
            "{v}"
        );
        let out = crate::tools::output::finish(v, false);
        assert!(
            !out.contains("r3dis-S3cret") && !out.contains("mast3rauth"),
            "{out}"
        );
        let a = Args::of(
            r#"{"target":"10.9.9.9:6379"}"#,
            &["target", "section", "timeout_ms"],
        )
        .with_config(cfg.into());
        assert!(run(&a).unwrap_err().contains("[tools.targets] redis"));
    }
}
