//! What the operator allow-listed for the tools (`[tools]` and
//! `[tools.targets]` in the config file, checked by `crate::config`): the
//! files the file tools may read and the endpoints the network tools may
//! reach. Anything not listed is refused with the config key to add it
//! to; an empty list refuses everything (fail closed).

use std::path::{Component, Path, PathBuf};

/// `[tools]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolConfig {
    /// Files `log_tail` may read: absolute paths, `*` matching within one
    /// path component (`/var/log/nginx/*.log`).
    pub log_files: Vec<String>,
    /// Files `file_check` may examine (same form).
    pub files: Vec<String>,
    /// Certificate files `cert_files` may read (same form).
    pub cert_files: Vec<String>,
    /// sysctl keys `sysctl` may read beyond its built-in list.
    pub sysctl_keys: Vec<String>,
    /// `[tools.targets]`.
    pub targets: Targets,
}

/// `[tools.targets]`: the endpoints network tools may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Names `dns_lookup` may resolve.
    pub dns: Vec<String>,
    /// `host:port` endpoints `tcp_connect` may connect to.
    pub tcp: Vec<String>,
    /// Hosts `ping` may ping.
    pub ping: Vec<String>,
    /// URLs `http_check` may fetch.
    pub http: Vec<String>,
    /// `host:port` TLS endpoints `tls_cert` may read the certificate of.
    pub tls: Vec<String>,
    /// `host:port` Redis servers (or sentinels) `redis_info` may ask.
    pub redis: Vec<String>,
    /// Password sent with `AUTH` to the Redis targets, if any.
    pub redis_password: Option<String>,
    /// The Docker Engine socket `docker` may ask (none: refused).
    pub docker_socket: Option<PathBuf>,
}

/// Whether `target` is one of `allowed`; Err names the config key that
/// would allow it. Host names (and a URL's scheme) compare ASCII
/// case-insensitively, as DNS and URLs treat them; a URL's path and query
/// compare exactly (`/ok` does not admit `/OK`: servers may tell them apart).
pub(crate) fn check_target(target: &str, allowed: &[String], key: &str) -> Result<(), String> {
    if allowed.iter().any(|a| same_target(a, target)) {
        return Ok(());
    }
    Err(refusal(target, allowed, &format!("[tools.targets] {key}")))
}

/// `a` and `b` name the same target: equal up to ASCII case in the part
/// that names the host (all of `host:port`; a URL up to its path), equal
/// byte for byte after it.
fn same_target(a: &str, b: &str) -> bool {
    let (a_host, a_rest) = split_host(a);
    let (b_host, b_rest) = split_host(b);
    a_host.eq_ignore_ascii_case(b_host) && a_rest == b_rest
}

/// Splits a target into the part that names the host and the rest: for a
/// URL (`scheme://authority/path?query`) at the first `/`, `?` or `#` after
/// the authority; anything else is all host.
fn split_host(t: &str) -> (&str, &str) {
    let Some(start) = t.find("://").map(|i| i + 3) else {
        return (t, "");
    };
    match t[start..].find(['/', '?', '#']) {
        Some(i) => t.split_at(start + i),
        None => (t, ""),
    }
}

fn refusal(target: &str, allowed: &[String], key: &str) -> String {
    if allowed.is_empty() {
        format!("{target:?} is not allow-listed: {key} is empty; the operator adds it there")
    } else {
        format!(
            "{target:?} is not allow-listed in {key} (allowed: {})",
            allowed.join(", ")
        )
    }
}

/// Whether `pattern` (`*` matches any run of characters but `/`)
/// matches `path`.
pub(crate) fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

/// Finds the file `path` names, for a tool that may read only what the
/// allow-list `allowed` (config key `key`) names: `path` must be absolute,
/// without `.`/`..` components, and match a pattern; then it is opened
/// without reading (`fsafe::locate`) and the path the kernel records for
/// the descriptor must match a pattern too, so a symlink out of the
/// allowed set is refused, also one swapped into any component of `path`
/// while this runs: what is checked is what was opened. Read it with
/// [`Located::open_regular`](crate::fsafe::Located::open_regular), which
/// reopens that same file, never the path.
pub(crate) fn locate_allowed(
    path: &str,
    allowed: &[String],
    key: &str,
) -> Result<crate::fsafe::Located, String> {
    let key = format!("[tools] {key}");
    let p = Path::new(path);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "{path:?} must be an absolute path without . or .. components"
        ));
    }
    if !allowed.iter().any(|a| glob_match(a, path)) {
        return Err(refusal(path, allowed, &key));
    }
    let located = crate::fsafe::locate(p).map_err(|e| e.to_string())?;
    let real_text = located.real_path().to_string_lossy();
    if !allowed.iter().any(|a| glob_match(a, &real_text)) {
        return Err(format!(
            "{path:?} resolves to {real_text:?}, which is not allow-listed in {key}"
        ));
    }
    Ok(located)
}

/// The existing files matching the patterns of `allowed` (a pattern's
/// directory is listed for `*`), sorted, at most `max`.
pub(crate) fn expand(allowed: &[String], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for pattern in allowed {
        if !pattern.contains('*') {
            out.push(pattern.clone());
            continue;
        }
        let Some((dir, _)) = pattern.rsplit_once('/') else {
            continue;
        };
        // `*` in a directory component is matched by walking one level.
        if dir.contains('*') {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "/" } else { dir }) else {
            continue;
        };
        let mut found: Vec<String> = entries
            .flatten()
            .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
            .filter(|p| glob_match(pattern, p))
            .collect();
        found.sort();
        out.extend(found);
    }
    out.dedup();
    out.truncate(max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_component() {
        assert!(glob_match("/var/log/*.log", "/var/log/syslog.log"));
        assert!(glob_match("/var/log/app/*", "/var/log/app/x"));
        assert!(!glob_match("/var/log/*.log", "/var/log/sub/x.log"));
        assert!(!glob_match("/var/log/*.log", "/var/log/x.txt"));
        assert!(glob_match("/etc/passwd", "/etc/passwd"));
        assert!(!glob_match("/etc/passwd", "/etc/passwd2"));
        assert!(glob_match("/a/*/c", "/a/b/c"));
    }

    #[test]
    fn targets_outside_the_list_are_refused_naming_the_key() {
        let allowed = vec!["db.example.com:5432".to_string()];
        assert!(check_target("DB.example.com:5432", &allowed, "tcp").is_ok());
        // A URL's host ignores case, its path and query do not.
        let urls = vec!["https://Svc.example.com:8443/ok?probe=1".to_string()];
        assert!(check_target("HTTPS://svc.EXAMPLE.com:8443/ok?probe=1", &urls, "http").is_ok());
        for other in [
            "https://svc.example.com:8443/OK?probe=1",
            "https://svc.example.com:8443/ok?probe=2",
            "https://svc.example.com:8443/ok?PROBE=1",
            "https://svc.example.com:8443/ok",
        ] {
            assert!(check_target(other, &urls, "http").is_err(), "{other}");
        }
        let e = check_target("evil.example.com:22", &allowed, "tcp").unwrap_err();
        assert!(
            e.contains("[tools.targets] tcp") && e.contains("db.example.com"),
            "{e}"
        );
        let e = check_target("x", &[], "dns").unwrap_err();
        assert!(e.contains("[tools.targets] dns is empty"), "{e}");
    }

    #[test]
    fn paths_must_be_allowed_also_after_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = std::fs::canonicalize(dir.path()).expect("canon");
        let d = d.to_string_lossy();
        std::fs::write(format!("{d}/app.log"), "x").expect("write");
        std::fs::write(format!("{d}/secret.txt"), "s").expect("write");
        std::os::unix::fs::symlink(format!("{d}/secret.txt"), format!("{d}/sneaky.log"))
            .expect("symlink");
        std::os::unix::fs::symlink(format!("{d}/app.log"), format!("{d}/alias.log"))
            .expect("symlink");
        let allowed = vec![format!("{d}/*.log")];
        let found = locate_allowed(&format!("{d}/app.log"), &allowed, "log_files").expect("app");
        assert_eq!(found.real_path(), Path::new(&format!("{d}/app.log")));
        // A link between two allowed files is followed.
        let found =
            locate_allowed(&format!("{d}/alias.log"), &allowed, "log_files").expect("alias");
        assert_eq!(found.real_path(), Path::new(&format!("{d}/app.log")));
        let e = locate_allowed(&format!("{d}/secret.txt"), &allowed, "log_files").unwrap_err();
        assert!(e.contains("[tools] log_files"), "{e}");
        let e = locate_allowed(&format!("{d}/sneaky.log"), &allowed, "log_files").unwrap_err();
        assert!(e.contains("resolves to") && e.contains("secret.txt"), "{e}");
        let e = locate_allowed(&format!("{d}/../x.log"), &allowed, "log_files").unwrap_err();
        assert!(e.contains("absolute path without"), "{e}");
        let e = locate_allowed("relative.log", &allowed, "log_files").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e = locate_allowed(&format!("{d}/gone.log"), &allowed, "log_files").unwrap_err();
        assert!(e.ends_with(": not found"), "{e}");
        let fifo = format!("{d}/pipe.log");
        let c = std::ffi::CString::new(fifo.clone()).expect("cstring");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let found = locate_allowed(&fifo, &allowed, "log_files").expect("allowed");
        let e = found.open_regular(u64::MAX).unwrap_err().to_string();
        assert_eq!(e, format!("{fifo} is a FIFO, not a regular file"));
        std::fs::remove_file(&fifo).expect("rm fifo");
        let listed = expand(&allowed, 10);
        assert_eq!(
            listed,
            [
                format!("{d}/alias.log"),
                format!("{d}/app.log"),
                format!("{d}/sneaky.log")
            ]
        );
    }
}
