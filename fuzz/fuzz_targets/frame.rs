//! Inbound server frames, raw bytes, through what the connection does with
//! them: the envelope, admission of a `session_start` (§5 order, §10
//! bounds, §9 signature with the test vector's key pinned, both with and
//! without `require`), and the reading of a `session_input`.
//!
//! Promises checked: an envelope re-encodes to text that parses to the same
//! value; an admitted start has a `session_id` and `user_name` within §10,
//! the type it names, re-encodes to the same payload, carries a key id
//! only when signed (always under `require`), and a signed one is refused
//! as a replay the second time.
#![no_main]

#[path = "common.rs"]
mod common;

use catpaw_agent::fuzz_entry::{self, MAX_SESSION_ID, MAX_USER_NAME};
use catpaw_agent::proto::{AckError, Envelope, SessionStartPayload, SessionType, Unauthorized};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (the WebSocket layer refuses others).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(env) = Envelope::parse(text) else {
        return;
    };
    let again = Envelope::parse(&env.to_json()).expect("a parsed envelope re-encodes to a frame");
    // An empty `ref_id` is left out when written (Go's omitempty).
    let mut same = env.clone();
    same.ref_id = same.ref_id.filter(|r| !r.is_empty());
    assert_eq!(again, same, "the envelope changed through re-encoding");
    match env.msg_type.as_str() {
        "session_start" => {
            for require in [false, true] {
                start(&env, text, require);
            }
        }
        "session_input" => {
            if let Some((id, message)) = fuzz_entry::session_input(&env) {
                for require in [false, true] {
                    let signing = common::signing(require);
                    match signing.check_input(text, common::NOW) {
                        Ok(Some(key)) => {
                            assert_eq!(key, common::KEY_ID);
                            assert_eq!(
                                signing.check_input(text, common::NOW),
                                Err(Unauthorized::ReplayedNonce),
                                "a signed input passed twice: {id:?} {message:?}"
                            );
                        }
                        Ok(None) => assert!(!require, "unsigned input passed under require"),
                        Err(_) => {}
                    }
                }
            }
        }
        _ => {}
    }
});

fn start(env: &Envelope, text: &str, require: bool) {
    let signing = common::signing(require);
    let Ok((start, kind)) = fuzz_entry::admit(env, text, &signing, common::NOW) else {
        return;
    };
    assert!(!start.session_id.is_empty());
    assert!(
        start.session_id.len() <= MAX_SESSION_ID,
        "{}",
        start.session_id.len()
    );
    assert!(
        !start.session_id.chars().any(common::known_bad_id_char),
        "admitted session_id {:?}",
        start.session_id
    );
    assert!(
        start.user_name.len() <= MAX_USER_NAME,
        "{}",
        start.user_name.len()
    );
    assert_eq!(kind, SessionType::parse(&start.session_type));
    // What was admitted survives the trip through the wire format.
    let json = serde_json::to_string(&start).expect("an admitted payload serializes");
    let back: SessionStartPayload = serde_json::from_str(&json).expect("and parses back");
    assert_eq!(
        back, start,
        "the admitted payload changed through re-encoding"
    );
    match &start.key_id {
        Some(key) => {
            assert_eq!(key, common::KEY_ID);
            assert_eq!(
                fuzz_entry::admit(env, text, &signing, common::NOW).map(|_| ()),
                Err(AckError::Unauthorized(Unauthorized::ReplayedNonce)),
                "a signed session_start was admitted twice"
            );
        }
        None => assert!(
            !require,
            "an unsigned session_start was admitted under require"
        ),
    }
}
