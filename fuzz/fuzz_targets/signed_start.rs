//! Signed `session_start` frames built and signed by an independent §9
//! signer (`common.rs`, from PROTOCOL.md alone), in any field order, with
//! any values, then perhaps tampered with after signing.
//!
//! Promises checked: an untampered frame is admitted exactly when its
//! fields are within §9 and §10 (nonce grammar, no line break in a signed
//! field, fresh timestamp, bounds on id and user), and then with the very
//! values that were signed and the signer's key id; a second copy is a
//! replay; a frame changed after signing (a signed value, a byte of
//! `params`, the agent it was meant for) is never admitted.
#![no_main]

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use catpaw_agent::fuzz_entry::{self, MAX_SESSION_ID, MAX_USER_NAME};
use catpaw_agent::proto::{AckError, Envelope, Unauthorized};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    session_id: String,
    session_type: String,
    user_name: Option<String>,
    /// Raw JSON text of `params` (`None`: absent).
    params: Option<String>,
    skew: i16,
    nonce: String,
    /// Order of the payload's fields.
    order: [u8; 8],
    /// Spaces after each `:` of the payload.
    spaced: bool,
    tamper: Option<Tamper>,
    require: bool,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    SessionId(String),
    UserName(String),
    SessionType(String),
    /// Inserts a space into `params` at this byte (when a char boundary).
    ParamsSpace(u16),
    Timestamp(i8),
    Nonce(String),
    OtherAgent,
}

fuzz_target!(|input: Input| run(input));

fn run(input: Input) {
    let ts = common::NOW + i64::from(input.skew);
    let user = input.user_name.clone().unwrap_or_default();
    let params_raw = common::json_trim(input.params.as_deref().unwrap_or_default()).to_string();
    let text = common::start_text(
        common::AGENT_ID,
        &input.session_id,
        &input.session_type,
        &user,
        ts,
        &input.nonce,
        &params_raw,
    );
    let signature = common::sign(&text);
    // What goes on the wire, after any tampering.
    let mut sid = input.session_id.clone();
    let mut stype = input.session_type.clone();
    let mut uname = input.user_name.clone();
    let mut params = input.params.clone();
    let mut wire_ts = ts;
    let mut nonce = input.nonce.clone();
    let mut agent = common::AGENT_ID;
    let mut tampered = false;
    match &input.tamper {
        None => {}
        Some(Tamper::SessionId(s)) => (tampered, sid) = (*s != sid, s.clone()),
        Some(Tamper::SessionType(s)) => (tampered, stype) = (*s != stype, s.clone()),
        Some(Tamper::UserName(s)) => {
            tampered = *s != user;
            uname = Some(s.clone());
        }
        Some(Tamper::ParamsSpace(at)) => {
            if let Some(p) = &mut params {
                // Strictly inside the value: whitespace around it is not
                // part of what is signed.
                let lead = p.len() - p.trim_start_matches([' ', '\t', '\n', '\r']).len();
                let inner = common::json_trim(p).len();
                let at = lead + 1 + usize::from(*at) % inner.max(1);
                if inner >= 2 && at < lead + inner && p.is_char_boundary(at) {
                    p.insert(at, ' ');
                    tampered = true;
                }
            }
        }
        Some(Tamper::Timestamp(d)) => {
            wire_ts = ts + i64::from(*d);
            tampered = *d != 0;
        }
        Some(Tamper::Nonce(n)) => (tampered, nonce) = (*n != nonce, n.clone()),
        Some(Tamper::OtherAgent) => {
            agent = "00000000-0000-4000-8000-000000000000";
            tampered = true;
        }
    }
    let colon = if input.spaced { ": " } else { ":" };
    let mut fields: Vec<(u8, String)> = vec![
        (
            input.order[0],
            format!("\"session_id\"{colon}{}", common::quote(&sid)),
        ),
        (
            input.order[1],
            format!("\"session_type\"{colon}{}", common::quote(&stype)),
        ),
        (input.order[2], format!("\"timestamp\"{colon}{wire_ts}")),
        (
            input.order[3],
            format!("\"nonce\"{colon}{}", common::quote(&nonce)),
        ),
        (
            input.order[4],
            format!("\"key_id\"{colon}\"{}\"", common::KEY_ID),
        ),
        (
            input.order[5],
            format!("\"signature\"{colon}\"{signature}\""),
        ),
    ];
    if let Some(u) = &uname {
        fields.push((
            input.order[6],
            format!("\"user_name\"{colon}{}", common::quote(u)),
        ));
    }
    if let Some(p) = &params {
        fields.push((input.order[7], format!("\"params\"{colon}{p}")));
    }
    fields.sort_by_key(|(k, _)| *k);
    let payload: Vec<String> = fields.into_iter().map(|(_, f)| f).collect();
    let frame = format!(
        "{{\"type\":\"session_start\",\"id\":\"0b6f1d2e-3c4a-4e5f-8a7b-9c0d1e2f3a4b\",\"payload\":{{{}}}}}",
        payload.join(",")
    );
    // Whether `params` is one JSON value where it stands in the frame (a
    // member's value two objects deep, for the nesting limit).
    let fits = |p: &str| {
        serde_json::from_str::<serde_json::Value>(&format!("{{\"a\":{{\"b\":{p}}}}}")).is_ok()
    };
    let Ok(env) = Envelope::parse(&frame) else {
        assert!(
            params.as_deref().is_some_and(|p| !fits(p)),
            "a frame of valid fields did not parse: {frame}"
        );
        return;
    };
    let signing = common::signing_for(agent, input.require);
    let verdict = fuzz_entry::admit(&env, &frame, &signing, common::NOW);
    // A `params` that is not one JSON value, yet the frame parses: it
    // smuggled fields in or moved the signature out of the payload. Never
    // admitted as signed (unsigned, it may pass where that is allowed).
    if params
        .as_deref()
        .is_some_and(|p| serde_json::from_str::<serde_json::Value>(p).is_err())
    {
        assert!(
            !matches!(&verdict, Ok((s, _)) if s.key_id.is_some()),
            "a frame with smuggled fields was admitted as signed: {frame}"
        );
        return;
    }
    if tampered {
        assert!(
            verdict.is_err(),
            "a frame changed after signing was admitted: {frame}"
        );
        return;
    }
    let params_ok = params
        .as_deref()
        .is_none_or(|p| serde_json::from_str::<serde_json::Value>(p).is_ok_and(|v| v.is_object()));
    let expected: Result<(), AckError> = if !params_ok {
        Err(AckError::InvalidPayload)
    } else if sid.is_empty() {
        Err(AckError::MissingSessionId)
    } else if sid.len() > MAX_SESSION_ID || sid.chars().any(common::known_bad_id_char) {
        Err(AckError::InvalidSessionId)
    } else if user.len() > MAX_USER_NAME {
        Err(AckError::InvalidUserName)
    } else if !common::nonce_ok(&nonce)
        || [&sid, &stype, &user]
            .iter()
            .any(|f| f.contains(['\r', '\n']))
    {
        Err(AckError::Unauthorized(Unauthorized::BadSignature))
    } else if input.skew.unsigned_abs() as u64 > common::MAX_SKEW {
        Err(AckError::Unauthorized(Unauthorized::StaleTimestamp))
    } else {
        Ok(())
    };
    match (&verdict, &expected) {
        (Ok((start, _)), Ok(())) => {
            assert_eq!(start.session_id, sid);
            assert_eq!(start.session_type, stype);
            assert_eq!(start.user_name, user);
            assert_eq!(start.key_id.as_deref(), Some(common::KEY_ID));
            assert_eq!(
                fuzz_entry::admit(&env, &frame, &signing, common::NOW).map(|_| ()),
                Err(AckError::Unauthorized(Unauthorized::ReplayedNonce)),
                "admitted twice: {frame}"
            );
        }
        // Admission refuses every format character; this oracle knows
        // only some of them.
        (Err(AckError::InvalidSessionId), Ok(())) if !sid.is_ascii() => {}
        (got, want) => assert_eq!(
            got.as_ref().map(|_| ()).map_err(|e| *e),
            *want,
            "frame: {frame}"
        ),
    }
}
