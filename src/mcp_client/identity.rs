//! What "this host" is called in each server's world, shown to the model
//! beside the server's tools: a Prometheus or a CMDB knows the host by a
//! label, an instance address or a name, and the model must query it
//! with that. As catpaw does it: the server's `identity`, else
//! `default_identity`, else `hostname=…, ip=…`; `${HOSTNAME}`,
//! `${SHORT_HOSTNAME}`, `${IP}` and `${ENV_VAR}` expanded (an unknown
//! variable is empty).

/// The host facts an identity can name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct HostFacts {
    pub(super) hostname: String,
    pub(super) ip: String,
}

impl HostFacts {
    /// This host's name (the kernel's) and its outbound IPv4 address (the
    /// source address of a route to a public address; no packet is sent).
    pub(super) fn detect() -> HostFacts {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let ip = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                s.connect("8.8.8.8:53")?;
                s.local_addr()
            })
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        HostFacts { hostname, ip }
    }

    fn get(&self, name: &str) -> Option<String> {
        match name {
            "HOSTNAME" => Some(self.hostname.clone()),
            "SHORT_HOSTNAME" => Some(
                self.hostname
                    .split_once('.')
                    .map_or(self.hostname.as_str(), |(s, _)| s)
                    .to_string(),
            ),
            "IP" => Some(self.ip.clone()),
            _ => None,
        }
    }
}

/// The identity of a server whose own is `own` under `default`.
pub(super) fn resolve(own: &str, default: &str, host: &HostFacts) -> String {
    let raw = if own.is_empty() { default } else { own };
    if raw.is_empty() {
        let mut parts = Vec::new();
        if !host.hostname.is_empty() {
            parts.push(format!("hostname={}", host.hostname));
        }
        if !host.ip.is_empty() {
            parts.push(format!("ip={}", host.ip));
        }
        return parts.join(", ");
    }
    expand(raw, host)
}

/// `${NAME}` replaced by the host fact or environment variable of that
/// name (empty when there is none); other text kept as it is.
fn expand(raw: &str, host: &HostFacts) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let name = &after[..end];
        out.push_str(
            &host
                .get(name)
                .or_else(|| std::env::var(name).ok())
                .unwrap_or_default(),
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_resolve_as_catpaw_resolves_them() {
        let host = HostFacts {
            hostname: "web-1.prod.example".into(),
            ip: "10.0.0.7".into(),
        };
        let cases = [
            ("", "", "hostname=web-1.prod.example, ip=10.0.0.7"),
            ("", "instance=${IP}:9100", "instance=10.0.0.7:9100"),
            ("host=${SHORT_HOSTNAME}", "ignored", "host=web-1"),
            (
                "${HOSTNAME} ${NO_SUCH_VAR_CATPAW_TEST}!",
                "",
                "web-1.prod.example !",
            ),
            ("open ${IP", "", "open ${IP"),
        ];
        for (own, default, want) in cases {
            assert_eq!(resolve(own, default, &host), want, "{own:?} {default:?}");
        }
        assert_eq!(resolve("", "", &HostFacts::default()), "");
    }
}
