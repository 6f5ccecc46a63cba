//! The server's WebSocket URL, derived from `[server] address`.

/// Derives the WebSocket URL from `[server] address` (PROTOCOL §1).
pub(super) fn ws_url(address: &str) -> Result<String, String> {
    let a = address.trim();
    if a.is_empty() {
        return Err("is empty (use host:port, http(s):// or ws(s)://)".into());
    }
    let (scheme, rest) = match a.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), a),
    };
    let ws = match scheme.as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(format!(
                "scheme `{other}` is not supported (use host:port, http(s):// or ws(s)://)"
            ));
        }
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !(path.is_empty() || path == "/") {
        return Err(format!(
            "has a path `{path}`; give only the server's base address (the agent adds /api/v1/agent/ws)"
        ));
    }
    if authority.is_empty() {
        return Err("has no host".into());
    }
    Ok(format!("{ws}://{authority}/api/v1/agent/ws"))
}
