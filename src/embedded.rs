//! The built-in runners, compiled from `guest-runners/` during the host
//! build and embedded in the binary so the agent needs no runner files.

/// The built-in inspect/diagnose runner component.
pub const DIAGNOSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/catpaw_diagnose.wasm"));

/// The built-in chat runner component.
pub const CHAT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/catpaw_chat.wasm"));

/// The built-in AI runner component (diagnose, inspect and chat through
/// the `llm` import), used when `[ai] enabled = true`.
pub const AI: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/catpaw_ai.wasm"));
