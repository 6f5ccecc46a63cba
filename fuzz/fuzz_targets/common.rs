//! What several targets share: a signer of §9 messages written from
//! PROTOCOL.md alone (the oracle the agent's verifier is held to), the
//! agent's §9 configuration, and a few checks on frames.
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use catpaw_agent::fuzz_entry::Signing;
use catpaw_agent::session::signing::SigningConfig;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

/// PROTOCOL §9's test vector: seed, key id, agent id, and a time at which
/// its frames are fresh.
pub const SEED: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    27, 28, 29, 30, 31, 32,
];
pub const KEY_ID: &str = "ops-1";
pub const AGENT_ID: &str = "7d3c1e8a-4b6f-4f3e-9a51-2c8e0d9b6a10";
pub const NOW: i64 = 1_764_115_200;
pub const MAX_SKEW: u64 = 300;

/// The agent's checks with the vector's key pinned.
pub fn signing(require: bool) -> Signing {
    signing_for(AGENT_ID, require)
}

/// As [`signing`], on the connection of agent `agent_id`.
pub fn signing_for(agent_id: &str, require: bool) -> Signing {
    let key = SigningKey::from_bytes(&SEED).verifying_key();
    let cfg = SigningConfig {
        keys: [(KEY_ID.to_string(), key)].into(),
        require,
        max_skew: std::time::Duration::from_secs(MAX_SKEW),
    };
    Signing::new(cfg, agent_id)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The §9 signed text of a `session_start`.
pub fn start_text(
    agent_id: &str,
    session_id: &str,
    session_type: &str,
    user_name: &str,
    timestamp: i64,
    nonce: &str,
    params_raw: &str,
) -> String {
    [
        "catpaw-session-v1",
        "session_start",
        agent_id,
        session_id,
        session_type,
        user_name,
        &timestamp.to_string(),
        nonce,
        &sha256_hex(params_raw.as_bytes()),
    ]
    .join("\n")
}

/// The §9 signed text of a `session_input`.
pub fn input_text(
    agent_id: &str,
    session_id: &str,
    timestamp: i64,
    nonce: &str,
    message: &str,
) -> String {
    [
        "catpaw-session-v1",
        "session_input",
        agent_id,
        session_id,
        &timestamp.to_string(),
        nonce,
        &sha256_hex(message.as_bytes()),
    ]
    .join("\n")
}

/// The base64 signature of `text` by the vector's key.
pub fn sign(text: &str) -> String {
    BASE64.encode(
        SigningKey::from_bytes(&SEED)
            .sign(text.as_bytes())
            .to_bytes(),
    )
}

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A well-formed §9 nonce.
pub fn nonce_ok(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Characters §10 refuses in a `session_id` that this oracle knows of
/// (controls, and the format and separator characters of bidi and line
/// breaking); admission may refuse more (all of Cf).
pub fn known_bad_id_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{2028}' | '\u{2029}' | '\u{00ad}')
}

/// The bytes of a JSON value "from its first to its last character" (§9):
/// without the whitespace around it.
pub fn json_trim(raw: &str) -> &str {
    raw.trim_matches([' ', '\t', '\n', '\r'])
}
