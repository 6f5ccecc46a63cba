//! `session_input` frames (a chat turn), signed by the independent §9
//! signer of `common.rs` or not, perhaps changed after signing, read as the
//! connection reads them: the payload, then the §9 check.
//!
//! Promises checked: a chat turn passes exactly when it is unsigned and
//! signing is not required, or its signature fields are well formed, fresh
//! and over the very session id and message the session then gets; a copy
//! is a replay; a turn changed after signing never passes.
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use catpaw_agent::fuzz_entry;
use catpaw_agent::proto::{Envelope, Unauthorized};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    session_id: String,
    message: String,
    signed: bool,
    skew: i16,
    nonce: String,
    /// Field order.
    order: [u8; 6],
    tamper: Option<Tamper>,
    require: bool,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    SessionId(String),
    Message(String),
    Timestamp(i8),
    /// The same message written with `\u` escapes for its ASCII letters.
    Escaped,
}

fuzz_target!(|input: Input| run(input));

fn run(input: Input) {
    let ts = common::NOW + i64::from(input.skew);
    let text = common::input_text(
        common::AGENT_ID,
        &input.session_id,
        ts,
        &input.nonce,
        &input.message,
    );
    let signature = common::sign(&text);
    let mut sid = common::quote(&input.session_id);
    let mut message = common::quote(&input.message);
    let mut wire_ts = ts;
    let mut changed = false;
    match &input.tamper {
        None => {}
        Some(Tamper::SessionId(s)) => {
            changed = *s != input.session_id;
            sid = common::quote(s);
        }
        Some(Tamper::Message(m)) => {
            changed = *m != input.message;
            message = common::quote(m);
        }
        Some(Tamper::Timestamp(d)) => {
            changed = *d != 0;
            wire_ts = ts + i64::from(*d);
        }
        // The same value spelled differently: not a change.
        Some(Tamper::Escaped) => {
            message = format!(
                "\"{}\"",
                input
                    .message
                    .chars()
                    .map(|c| if c.is_ascii_alphabetic() {
                        format!("\\u{:04x}", c as u32)
                    } else {
                        let q = common::quote(&c.to_string());
                        q[1..q.len() - 1].to_string()
                    })
                    .collect::<String>()
            );
        }
    }
    let mut fields: Vec<(u8, String)> = vec![
        (input.order[0], format!("\"session_id\":{sid}")),
        (input.order[1], format!("\"message\":{message}")),
    ];
    if input.signed {
        fields.push((input.order[2], format!("\"timestamp\":{wire_ts}")));
        fields.push((
            input.order[3],
            format!("\"nonce\":{}", common::quote(&input.nonce)),
        ));
        fields.push((input.order[4], format!("\"key_id\":\"{}\"", common::KEY_ID)));
        fields.push((input.order[5], format!("\"signature\":\"{signature}\"")));
    }
    fields.sort_by_key(|(k, _)| *k);
    let payload: Vec<String> = fields.into_iter().map(|(_, f)| f).collect();
    let frame = format!(
        "{{\"type\":\"session_input\",\"id\":\"5e2d9c1b-7a4f-4c3e-8b6a-1d0f2e3c4b5a\",\"payload\":{{{}}}}}",
        payload.join(",")
    );
    let env = Envelope::parse(&frame).expect("a frame of JSON strings parses");
    let (got_sid, got_message) = fuzz_entry::session_input(&env).expect("its payload decodes");
    let signing = common::signing(input.require);
    let verdict = signing.check_input(&frame, common::NOW);
    if !input.signed {
        let want = if input.require {
            Err(Unauthorized::SignatureRequired)
        } else {
            Ok(None)
        };
        assert_eq!(verdict, want);
        return;
    }
    if changed {
        assert!(
            verdict.is_err(),
            "a turn changed after signing passed: {frame}"
        );
        return;
    }
    assert_eq!(got_sid, input.session_id);
    assert_eq!(got_message, input.message);
    let want = if !common::nonce_ok(&input.nonce) || input.session_id.contains(['\r', '\n']) {
        Err(Unauthorized::BadSignature)
    } else if input.skew.unsigned_abs() as u64 > common::MAX_SKEW {
        Err(Unauthorized::StaleTimestamp)
    } else {
        Ok(Some(common::KEY_ID.to_string()))
    };
    assert_eq!(verdict, want, "frame: {frame}");
    if verdict.is_ok() {
        assert_eq!(
            signing.check_input(&frame, common::NOW),
            Err(Unauthorized::ReplayedNonce),
            "a signed turn passed twice"
        );
    }
}
