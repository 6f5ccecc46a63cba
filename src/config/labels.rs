//! `[global.labels]`: the labels `register` sends, with the reference
//! agent's names and expansion.
//!
//! A value may name `${HOSTNAME}`, `${SHORT_HOSTNAME}`, `${IP}` or any
//! environment variable (`$NAME` works too). They are resolved at each
//! `register`, so a host whose address changes reports the new one after
//! the next reconnect:
//!
//! - `from_hostname`: `${HOSTNAME}` is the `HOSTNAME` environment variable
//!   when set and non-empty, else the kernel's host name;
//! - `from_hostip`: `${IP}` is the `IP` environment variable when set and
//!   non-empty, else the host's primary IPv4;
//! - other labels: `${HOSTNAME}` and `${IP}` are the resolved
//!   `from_hostname` / `from_hostip`, `${SHORT_HOSTNAME}` the host name up
//!   to its first dot; other names come from the environment.
//!
//! `from_hostname` and `from_hostip` are always sent: when not configured
//! (or empty after expansion) they are the host's name and address, as the
//! reference agent sends them. `register.hostname` / `register.ip` are the
//! same two values.
//!
//! A name that is neither built in nor set in the environment is refused
//! when the file is loaded (the reference would send an empty string).

use std::collections::BTreeMap;

/// The label that carries the host name.
pub const FROM_HOSTNAME: &str = "from_hostname";
/// The label that carries the host address.
pub const FROM_HOSTIP: &str = "from_hostip";

/// Names every label value may use without an environment variable.
const BUILTINS: [&str; 3] = ["HOSTNAME", "SHORT_HOSTNAME", "IP"];

/// What the host says about itself when `register` is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The kernel's host name.
    pub hostname: String,
    /// The primary non-loopback IPv4, or "".
    pub ip: String,
}

/// The labels of one `register`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLabels {
    /// Every label, `from_hostname` and `from_hostip` included.
    pub labels: BTreeMap<String, String>,
}

impl ResolvedLabels {
    /// `register.hostname`.
    pub fn hostname(&self) -> &str {
        self.labels.get(FROM_HOSTNAME).map_or("", String::as_str)
    }

    /// `register.ip`.
    pub fn ip(&self) -> &str {
        self.labels.get(FROM_HOSTIP).map_or("", String::as_str)
    }
}

/// Resolves the configured label templates for one `register`; `env`
/// reads an environment variable.
pub fn resolve(
    templates: &BTreeMap<String, String>,
    host: &HostFacts,
    env: impl Fn(&str) -> Option<String>,
) -> ResolvedLabels {
    let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    let short = host
        .hostname
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut builtins: BTreeMap<&str, String> = BTreeMap::from([
        ("HOSTNAME", host.hostname.clone()),
        ("SHORT_HOSTNAME", short),
        ("IP", host.ip.clone()),
    ]);
    // The identity labels prefer the environment over detection, so a
    // container can state the name and address of the host it runs on.
    let identity = |raw: &str, own: &str, builtins: &BTreeMap<&str, String>| {
        expand(raw, |k| {
            if k == own {
                env_nonempty(k).or_else(|| builtins.get(k).cloned())
            } else {
                builtins.get(k).cloned().or_else(|| env(k))
            }
        })
    };
    let hostname = templates
        .get(FROM_HOSTNAME)
        .map(|raw| identity(raw, "HOSTNAME", &builtins))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| host.hostname.clone());
    builtins.insert("HOSTNAME", hostname.clone());
    let ip = templates
        .get(FROM_HOSTIP)
        .map(|raw| identity(raw, "IP", &builtins))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| host.ip.clone());
    builtins.insert("IP", ip.clone());

    let mut labels: BTreeMap<String, String> = templates
        .iter()
        .map(|(k, raw)| {
            let v = expand(raw, |name| {
                builtins.get(name).cloned().or_else(|| env(name))
            });
            (k.clone(), v)
        })
        .collect();
    labels.insert(FROM_HOSTNAME.into(), hostname);
    labels.insert(FROM_HOSTIP.into(), ip);
    ResolvedLabels { labels }
}

/// Checks one label at load time: every variable it names must be built in
/// or set in the environment. The error names the variable and the fix.
pub(super) fn check_template(value: &str, env: impl Fn(&str) -> bool) -> Result<(), String> {
    let mut missing = None;
    let _ = expand(value, |name| {
        if missing.is_none() && !BUILTINS.contains(&name) && !env(name) {
            missing = Some(name.to_string());
        }
        Some(String::new())
    });
    match missing {
        Some(name) if name.is_empty() => Err("`${}` names no variable".into()),
        Some(name) => Err(format!(
            "environment variable {name} is not set (built in: ${{HOSTNAME}}, ${{SHORT_HOSTNAME}}, ${{IP}})"
        )),
        None => Ok(()),
    }
}

/// Shell-style expansion of `${NAME}` and `$NAME` (as Go's `os.Expand`):
/// `lookup` answers a name, unknown names become "". A `$` not followed by
/// a name stays as it is.
fn expand(s: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                out.push_str(&lookup(&braced[..end]).unwrap_or_default());
                rest = &braced[end + 1..];
                continue;
            }
            out.push('$');
            rest = after;
            continue;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&lookup(&after[..len]).unwrap_or_default());
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            hostname: "web-1.example.com".into(),
            ip: "10.0.0.5".into(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn identity_labels_are_always_present() {
        let r = resolve(&BTreeMap::new(), &host(), |_| None);
        assert_eq!(
            r.labels,
            map(&[
                ("from_hostname", "web-1.example.com"),
                ("from_hostip", "10.0.0.5")
            ])
        );
        assert_eq!(r.hostname(), "web-1.example.com");
        assert_eq!(r.ip(), "10.0.0.5");
    }

    #[test]
    fn the_reference_defaults_expand_to_the_host() {
        let t = map(&[("from_hostname", "${HOSTNAME}"), ("from_hostip", "${IP}")]);
        let r = resolve(&t, &host(), |_| None);
        assert_eq!(r.labels["from_hostname"], "web-1.example.com");
        assert_eq!(r.labels["from_hostip"], "10.0.0.5");
    }

    #[test]
    fn the_environment_wins_for_identity_labels() {
        let t = map(&[
            ("from_hostname", "${HOSTNAME}"),
            ("from_hostip", "${IP}"),
            ("peer", "$IP/${SHORT_HOSTNAME}"),
        ]);
        let env = |k: &str| match k {
            "HOSTNAME" => Some("node-7".to_string()),
            "IP" => Some("192.168.1.9".to_string()),
            _ => None,
        };
        let r = resolve(&t, &host(), env);
        assert_eq!(r.labels["from_hostname"], "node-7");
        assert_eq!(r.labels["from_hostip"], "192.168.1.9");
        // Other labels see the resolved identity, not the environment.
        assert_eq!(r.labels["peer"], "192.168.1.9/web-1");
        assert_eq!(r.hostname(), "node-7");
    }

    #[test]
    fn fixed_values_are_kept_and_reused() {
        let t = map(&[
            ("from_hostip", "172.16.0.1"),
            ("where", "${HOSTNAME}@${IP}"),
            ("team", "db-${TEAM}"),
        ]);
        let env = |k: &str| (k == "TEAM").then(|| "core".to_string());
        let r = resolve(&t, &host(), env);
        assert_eq!(r.labels["from_hostip"], "172.16.0.1");
        assert_eq!(r.labels["where"], "web-1.example.com@172.16.0.1");
        assert_eq!(r.labels["team"], "db-core");
        assert_eq!(r.labels["from_hostname"], "web-1.example.com");
    }

    #[test]
    fn empty_identity_falls_back_to_the_host() {
        let t = map(&[("from_hostname", ""), ("from_hostip", "${IP}")]);
        let r = resolve(
            &t,
            &HostFacts {
                hostname: "h".into(),
                ip: String::new(),
            },
            |_| None,
        );
        assert_eq!(r.labels["from_hostname"], "h");
        assert_eq!(
            r.labels["from_hostip"], "",
            "no address: empty, still present"
        );
    }

    #[test]
    fn expansion_follows_go_os_expand() {
        let look = |k: &str| (k == "A").then(|| "x".to_string());
        assert_eq!(expand("$A-${A}-$B-$", look), "x-x--$");
        assert_eq!(
            expand("a${A", look),
            "a${A",
            "an unclosed brace stays as written"
        );
        assert_eq!(expand("cost: $5", look), "cost: ", "$5 is a name, as in Go");
        assert_eq!(expand("plain", look), "plain");
    }

    #[test]
    fn load_check_names_the_missing_variable() {
        let set = |k: &str| k == "TEAM";
        assert!(check_template("${HOSTNAME}-${TEAM}-$IP", set).is_ok());
        let e = check_template("${NOPE_NOT_SET}", set).expect_err("unset");
        assert!(e.contains("NOPE_NOT_SET"), "{e}");
        assert!(check_template("${}", set).is_err());
    }
}
