//! Config hygiene: settings that work but leak or weaken something, and
//! renamed keys still in use (one warning line each at start), the shape a
//! token must have, and the form of a URL that logs may show.
//!
//! The secrets here are the agent token and any password written into the
//! server address (`https://user:pass@host`). Neither is ever logged: the
//! token is not a field of any log line, URLs are logged through
//! [`redact_url`], and the WebSocket library's own request logging is
//! capped (`crate::cli::logging`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::Config;

/// Checks that an agent token can travel as the `X-Agent-Token` header
/// value it becomes. A CR or LF would end the header (and could start a
/// forged one); other control or non-ASCII characters make the header
/// invalid, and the token would silently not be sent. The message never
/// repeats the token.
pub(crate) fn check_agent_token(token: &str) -> Result<(), String> {
    if let Some(c) = token.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains the control character {c:?}; a token is one line of printable text \
             (look for a trailing newline in the file or variable it came from)"
        ));
    }
    if !token.is_ascii() {
        return Err(
            "contains a non-ASCII character; a token is printable ASCII \
                    (it travels as an HTTP header)"
                .into(),
        );
    }
    Ok(())
}

/// `url` without its userinfo (`user:password@`), for logs: the rest of
/// the URL stays, so the log still says where the agent connects.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return url.to_string();
    };
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    format!("{scheme}***@{}", &rest[at + 1..])
}

impl Config {
    /// Settings that work but deserve a warning at start, one line each:
    /// renamed keys still in use, a token in a file that group or others
    /// can read, a token sent over plain `ws://`, and a `ca_file` that
    /// `tls_skip_verify` makes moot.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.deprecated.clone();
        if let Some(addr) = self.metrics.listen.filter(|a| !a.ip().is_loopback()) {
            out.push(format!(
                "[metrics] listen = \"{addr}\" is reachable from other hosts: the endpoint has no \
                 authentication and shows session, shell and alert counts; prefer 127.0.0.1 \
                 behind a scraper on the same host, or a firewall rule"
            ));
        }
        let s = &self.server;
        let has_token = !s.agent_token.is_empty();
        // (path, mode, whether the file is the checking user's own and
        // that user is not root) of a config file others can access.
        let shared_file = self.source.as_ref().and_then(|p| {
            let meta = std::fs::metadata(p).ok()?;
            let mode = meta.permissions().mode() & 0o777;
            // SAFETY: geteuid(2) cannot fail and touches no memory.
            let euid = unsafe { libc::geteuid() };
            (mode & 0o077 != 0).then_some((p.as_path(), mode, euid != 0 && meta.uid() == euid))
        });
        if let Some((path, mode, own)) = shared_file
            && has_token
            && !s.agent_token_from_env
        {
            out.push(secret_in_shared_file(
                path,
                mode,
                "[server] agent_token",
                "agent_token",
                "CATPAW_TOKEN",
                own,
            ));
        }
        if s.enabled && has_token && self.server_ws_url().is_ok_and(|u| u.starts_with("ws://")) {
            out.push(
                "[server] agent_token is sent in clear text: the address is not https:// (ws:// \
                 on the wire); anyone on the path can read and reuse the token. Use an https:// \
                 address"
                    .to_string(),
            );
        }
        let ai = &self.ai;
        if ai.enabled {
            for (name, m) in &ai.models {
                if let Some((path, mode, own)) = shared_file
                    && !m.api_key_from_env
                {
                    out.push(secret_in_shared_file(
                        path,
                        mode,
                        &format!("[ai.models.{name}] api_key"),
                        "api_key",
                        &env_name(name),
                        own,
                    ));
                }
                if clear_text_remote(&m.base_url) {
                    out.push(format!(
                        "[ai.models.{name}] api_key is sent in clear text to {}: use https://",
                        m.base_url
                    ));
                }
            }
            if ai.gateway.enabled && clear_text_remote(&ai.gateway.base_url) {
                out.push(format!(
                    "[ai.gateway] agent_token is sent in clear text to {}: use an https:// \
                     [server] address or base_url",
                    ai.gateway.base_url
                ));
            }
        }
        if s.ca_file.is_some() && s.tls_skip_verify {
            out.push(
                "[server] ca_file is ignored because tls_skip_verify = true: the server's \
                 certificate is not verified at all. Remove tls_skip_verify to verify against \
                 ca_file"
                    .to_string(),
            );
        }
        out
    }
}

/// The environment file the shipped systemd unit loads
/// (`EnvironmentFile=` in packaging/catpaw-agent.service): where the
/// warnings below send a secret that should not sit in the config file.
pub const UNIT_ENV_FILE: &str = "/etc/catpaw-agent/agent.env";

/// The warning for a secret (`field`, e.g. `[server] agent_token`, written
/// as `key = "..."`) in a config file that group or others can access.
///
/// The advice is the environment file, not `chmod 600`: the documented
/// install makes the file `0640 root:catpaw` so the service user reads it
/// through its group, and `chmod 600` would lock that user out. `chmod 600`
/// is offered too only when `own_file` (the file belongs to the non-root
/// user checking it, the agent's own user, which keeps access).
fn secret_in_shared_file(
    path: &Path,
    mode: u32,
    field: &str,
    key: &str,
    var: &str,
    own_file: bool,
) -> String {
    let chmod = if own_file {
        format!(", or run `chmod 600 {}`", path.display())
    } else {
        String::new()
    };
    format!(
        "{}: holds {field} and is accessible to group or others (mode {mode:04o}); put \
         {var}=... in an environment file only root can read ({UNIT_ENV_FILE}, mode 0600, \
         which the systemd unit loads with EnvironmentFile=) and set {key} = \"${{{var}}}\"\
         {chmod}",
        path.display()
    )
}

/// The variable name the warning suggests for model `name`'s API key:
/// `CATPAW_AI_KEY_` and the name in upper case, other characters as `_`.
fn env_name(model: &str) -> String {
    let tail: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CATPAW_AI_KEY_{tail}")
}

/// An `http://` URL to a host other than this one: what is sent there
/// (a key, a token) crosses the network readable.
fn clear_text_remote(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    !matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") && !host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Writes `body` as a config file with `mode` and loads it.
    fn load(dir: &Path, body: &str, mode: u32) -> Config {
        let path = dir.join("config.toml");
        std::fs::write(&path, body).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        Config::load(Some(&path)).expect("config")
    }

    fn warned(c: &Config, what: &str) -> bool {
        c.warnings().iter().any(|w| w.contains(what))
    }

    #[test]
    fn a_token_in_a_file_others_can_read_is_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = "[server]\nagent_token = \"s3cret-token\"\n";
        let c = load(dir.path(), body, 0o644);
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("mode 0644")
                && w[0].contains(UNIT_ENV_FILE)
                && w[0].contains("agent_token = \"${CATPAW_TOKEN}\""),
            "{w:?}"
        );
        // SAFETY: geteuid(2) cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(
            w[0].contains("chmod 600"),
            !root,
            "chmod is advice only for a non-root user's own file: {w:?}"
        );
        assert!(
            !w[0].contains("s3cret-token"),
            "the warning never shows the token"
        );
        assert!(load(dir.path(), body, 0o600).warnings().is_empty());
        assert!(load(dir.path(), body, 0o640).warnings().len() == 1);
        // No token, or a token from the environment: nothing in the file.
        assert!(load(dir.path(), "", 0o644).warnings().is_empty());
        // SAFETY: test-only env mutation with a name unique to this test.
        unsafe { std::env::set_var("CATPAW_TEST_HYGIENE_TOKEN_5521", "t") };
        let from_env = "[server]\nagent_token = \"${CATPAW_TEST_HYGIENE_TOKEN_5521}\"\n";
        assert!(load(dir.path(), from_env, 0o644).warnings().is_empty());
    }

    /// `0640 root:catpaw`, as the service install makes it: `chmod 600`
    /// would lock the agent out, so the advice is the environment file.
    #[test]
    fn a_shared_config_file_is_sent_to_the_env_file_and_chmod_only_for_its_owner() {
        let path = Path::new("/etc/catpaw-agent/config.toml");
        let key = "[server] agent_token";
        let shared = secret_in_shared_file(path, 0o640, key, "agent_token", "CATPAW_TOKEN", false);
        assert_eq!(
            shared,
            "/etc/catpaw-agent/config.toml: holds [server] agent_token and is accessible to \
             group or others (mode 0640); put CATPAW_TOKEN=... in an environment file only \
             root can read (/etc/catpaw-agent/agent.env, mode 0600, which the systemd unit \
             loads with EnvironmentFile=) and set agent_token = \"${CATPAW_TOKEN}\""
        );
        let own = secret_in_shared_file(path, 0o644, key, "agent_token", "CATPAW_TOKEN", true);
        assert!(
            own.contains(UNIT_ENV_FILE)
                && own.ends_with(", or run `chmod 600 /etc/catpaw-agent/config.toml`"),
            "{own}"
        );
        assert_eq!(env_name("gpt-4o.mini"), "CATPAW_AI_KEY_GPT_4O_MINI");
    }

    #[test]
    fn a_token_over_plain_ws_is_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = |addr: &str, token: &str| {
            format!("[server]\nenabled = true\naddress = \"{addr}\"\nagent_token = \"{token}\"\n")
        };
        for plain in ["h:8080", "http://h", "ws://h"] {
            let c = load(dir.path(), &server(plain, "t"), 0o600);
            assert!(warned(&c, "clear text"), "{plain}");
        }
        for ok in ["https://h", "wss://h"] {
            assert!(
                load(dir.path(), &server(ok, "t"), 0o600)
                    .warnings()
                    .is_empty(),
                "{ok}"
            );
        }
        assert!(
            load(dir.path(), &server("http://h", ""), 0o600)
                .warnings()
                .is_empty()
        );
    }

    #[test]
    fn ca_file_with_skip_verify_says_the_ca_file_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(
            dir.path(),
            "[server]\nca_file = \"ca.pem\"\ntls_skip_verify = true\n",
            0o600,
        );
        assert!(warned(&c, "ca_file is ignored"), "{:?}", c.warnings());
        let c = load(dir.path(), "[server]\nca_file = \"ca.pem\"\n", 0o600);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn a_token_with_a_line_break_is_a_config_error_naming_the_field() {
        for bad in [
            "sEcReT\\nX-Evil: 1",
            "sEcReT\\r",
            "sEcReT\\u001b[31m",
            "sEcReT\\t",
            "sEcReTø",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("config.toml");
            std::fs::write(&path, format!("[server]\nagent_token = \"{bad}\"\n")).expect("write");
            let e = Config::load(Some(&path)).unwrap_err().to_string();
            assert!(e.contains("[server] agent_token"), "{bad}: {e}");
            assert!(
                !e.contains("sEcReT"),
                "the error never shows the token: {e}"
            );
        }
        assert_eq!(check_agent_token("abc-DEF_123.~ +/="), Ok(()));
    }

    #[test]
    fn urls_are_logged_without_userinfo() {
        let cases = [
            (
                "ws://user:hunter2@h:80/api/v1/agent/ws",
                "ws://***@h:80/api/v1/agent/ws",
            ),
            ("wss://token@h/x?y=1", "wss://***@h/x?y=1"),
            ("ws://u:p@ss@h/", "ws://***@h/"),
            ("ws://h:80/a@b", "ws://h:80/a@b"),
            ("ws://h/api/v1/agent/ws", "ws://h/api/v1/agent/ws"),
            ("user:pw@h:8080", "***@h:8080"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
