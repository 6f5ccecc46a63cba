//! `[tools]` and `[tools.targets]`: the files and endpoints the operator
//! lets the diagnostic tools read and reach. Every entry is checked here
//! so a typo is an error at start naming the field, not a silent refusal
//! in the middle of an incident.

use super::ConfigError;
use super::check::{Ctx, expand_env};
use super::raw::RawTools;
use crate::tools::{Targets, ToolConfig};

/// Most entries one list may hold.
const MAX_ENTRIES: usize = 256;

impl Ctx<'_> {
    /// `[tools]`.
    pub(super) fn tools(&self, raw: RawTools) -> Result<ToolConfig, ConfigError> {
        let paths = |key: &str, list: Vec<String>| -> Result<Vec<String>, ConfigError> {
            let field = format!("[tools] {key}");
            self.count(&field, list.len())?;
            for p in &list {
                file_pattern(p).map_err(|m| self.err(&field, m))?;
            }
            Ok(list)
        };
        let t = raw.targets;
        let endpoint_list =
            |key: &str, list: Vec<String>, check: fn(&str) -> Result<(), String>| {
                let field = format!("[tools.targets] {key}");
                self.count(&field, list.len())?;
                for e in &list {
                    check(e).map_err(|m| self.err(&field, m))?;
                }
                Ok::<_, ConfigError>(list)
            };
        let sysctl_keys = raw.sysctl_keys;
        self.count("[tools] sysctl_keys", sysctl_keys.len())?;
        for k in &sysctl_keys {
            let plain = !k.is_empty()
                && k.split('.').all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                });
            if !plain {
                return Err(self.err(
                    "[tools] sysctl_keys",
                    format!("{k:?} is not a sysctl key such as \"vm.swappiness\""),
                ));
            }
        }
        // Empty means none: no AUTH is sent.
        let redis_password = match t.redis_password.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                Some(expand_env(&p).map_err(|m| self.err("[tools.targets] redis_password", m))?)
            }
        };
        let docker_socket = match t.docker_socket.filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(s) if s.starts_with('/') => Some(std::path::PathBuf::from(s)),
            Some(s) => {
                return Err(self.err(
                    "[tools.targets] docker_socket",
                    format!("{s:?} must be an absolute path such as \"/var/run/docker.sock\""),
                ));
            }
        };
        Ok(ToolConfig {
            log_files: paths("log_files", raw.log_files)?,
            files: paths("files", raw.files)?,
            cert_files: paths("cert_files", raw.cert_files)?,
            sysctl_keys,
            targets: Targets {
                dns: endpoint_list("dns", t.dns, host_name)?,
                tcp: endpoint_list("tcp", t.tcp, host_port)?,
                ping: endpoint_list("ping", t.ping, host_name)?,
                http: endpoint_list("http", t.http, http_url)?,
                tls: endpoint_list("tls", t.tls, host_port)?,
                redis: endpoint_list("redis", t.redis, host_port)?,
                redis_password,
                docker_socket,
            },
        })
    }

    fn count(&self, field: &str, n: usize) -> Result<(), ConfigError> {
        if n > MAX_ENTRIES {
            return Err(self.err(field, format!("{n} entries; at most {MAX_ENTRIES}")));
        }
        Ok(())
    }
}

/// An absolute path, `*` allowed only in the last component, no `.`/`..`.
fn file_pattern(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must be an absolute path"));
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return Err(format!("{p:?} must not contain . or .. components"));
    }
    let (dir, _) = p.rsplit_once('/').unwrap_or(("", p));
    if dir.contains('*') {
        return Err(format!("{p:?}: `*` may only appear in the file name"));
    }
    if p.chars().any(char::is_control) {
        return Err(format!("{p:?} contains control characters"));
    }
    Ok(())
}

/// A host name or IP address.
pub(crate) fn host_name(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{h:?} is not a host name or IP address"))
    }
}

/// `host:port` (IPv6 as `[addr]:port`).
pub(crate) fn host_port(e: &str) -> Result<(), String> {
    let bad = || format!("{e:?} must be host:port, e.g. \"db.example.com:5432\" or \"[::1]:6379\"");
    let (host, port) = e.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if port.parse::<u16>().map_or(true, |p| p == 0) || host_name(host).is_err() {
        return Err(bad());
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host.
fn http_url(u: &str) -> Result<(), String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("{u:?} must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') || u.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{u:?} must name a host, without credentials or spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml"))
    }

    #[test]
    fn entries_are_checked() {
        assert!(host_port("db.example.com:5432").is_ok());
        assert!(host_port("[::1]:6379").is_ok());
        for bad in ["db", "db:0", "db:x", ":80", "a b:80"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        assert!(http_url("https://example.com/healthz").is_ok());
        for bad in ["ftp://x", "http://", "http://u:p@x/", "https://a b"] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
        assert!(file_pattern("/var/log/*.log").is_ok());
        for bad in ["var/log", "/var/*/x.log", "/var/../etc/shadow"] {
            assert!(file_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tools_allow_lists_are_read_and_checked() {
        let c = parse(
            r#"
    [tools]
    log_files = ["/var/log/nginx/*.log"]
    files = ["/etc/passwd"]
    cert_files = ["/etc/ssl/site.pem"]
    sysctl_keys = ["kernel.ostype"]
    [tools.targets]
    dns = ["example.com"]
    tcp = ["db.internal:5432", "[::1]:6379"]
    ping = ["10.0.0.1"]
    http = ["https://example.com/healthz"]
    tls = ["example.com:443"]
    redis = ["127.0.0.1:6379"]
    docker_socket = "/var/run/docker.sock"
    "#,
        )
        .expect("ok");
        let t = &c.tools;
        assert_eq!(t.log_files, ["/var/log/nginx/*.log"]);
        assert_eq!(t.targets.tcp, ["db.internal:5432", "[::1]:6379"]);
        assert_eq!(
            t.targets.docker_socket.as_deref(),
            Some(Path::new("/var/run/docker.sock"))
        );
        assert!(
            parse("").expect("ok").tools.targets.dns.is_empty(),
            "nothing allowed by default"
        );

        let cases = [
            (
                "[tools]\nlog_files = [\"var/log/x\"]",
                "[tools] log_files",
                "absolute",
            ),
            (
                "[tools]\nfiles = [\"/etc/*/passwd\"]",
                "[tools] files",
                "file name",
            ),
            (
                "[tools]\ncert_files = [\"/etc/../root/key\"]",
                "[tools] cert_files",
                ". or ..",
            ),
            (
                "[tools]\nsysctl_keys = [\"vm/swappiness\"]",
                "[tools] sysctl_keys",
                "sysctl key",
            ),
            (
                "[tools.targets]\ntcp = [\"db\"]",
                "[tools.targets] tcp",
                "host:port",
            ),
            (
                "[tools.targets]\nhttp = [\"ftp://x\"]",
                "[tools.targets] http",
                "http://",
            ),
            (
                "[tools.targets]\ndns = [\"a b\"]",
                "[tools.targets] dns",
                "host name",
            ),
            (
                "[tools.targets]\ndocker_socket = \"docker.sock\"",
                "[tools.targets] docker_socket",
                "absolute",
            ),
            (
                "[tools.targets]\nredis_password = \"${CATPAW_NO_SUCH_VAR}\"",
                "[tools.targets] redis_password",
                "not set",
            ),
        ];
        for (text, field, words) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(
                e.contains(&format!("`{field}`")) && e.contains(words),
                "{text}: {e}"
            );
        }
        let e = parse("[tools.targets]\nsmtp = [\"x:25\"]")
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("smtp"), "{e}");
    }
}
