//! The server's URLs, derived from `[server] address`: its WebSocket and
//! its LLM gateway.

/// Derives the WebSocket URL from `[server] address` (PROTOCOL §1).
pub(super) fn ws_url(address: &str) -> Result<String, String> {
    let (secure, authority) = split(address)?;
    let ws = if secure { "wss" } else { "ws" };
    Ok(format!("{ws}://{authority}/api/v1/agent/ws"))
}

/// Derives the LLM gateway's base URL from `[server] address`, as catpaw
/// does: the same host over http(s), path `/api/v1/agent/llm`.
pub(super) fn gateway_url(address: &str) -> Result<String, String> {
    let (secure, authority) = split(address)?;
    let http = if secure { "https" } else { "http" };
    Ok(format!("{http}://{authority}/api/v1/agent/llm"))
}

/// Whether `address` is TLS, and its authority (host and port).
fn split(address: &str) -> Result<(bool, &str), String> {
    let a = address.trim();
    if a.is_empty() {
        return Err("is empty (use host:port, http(s):// or ws(s)://)".into());
    }
    let (scheme, rest) = match a.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), a),
    };
    let secure = match scheme.as_str() {
        "http" | "ws" => false,
        "https" | "wss" => true,
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
            "has a path `{path}`; give only the server's base address (the agent adds /api/v1/agent/ws and /api/v1/agent/llm)"
        ));
    }
    if authority.is_empty() {
        return Err("has no host".into());
    }
    Ok((secure, authority))
}
