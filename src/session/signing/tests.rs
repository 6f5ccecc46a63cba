//! Tests of the §9 checks, built around the PROTOCOL.md test vectors.
//! (Long on purpose: one test per rule of §9, each with its frames written
//! out, sharing the signer helpers at the top.)

use super::*;
use ed25519_dalek::{Signer as _, SigningKey};

const AGENT: &str = "7d3c1e8a-4b6f-4f3e-9a51-2c8e0d9b6a10";
const PUBKEY: &str = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";
const PARAMS: &str = r#"{"plugin":"disk","allow_shell":true,"descriptions":"disk / above 90%"}"#;
/// PROTOCOL §9, valid at `T_START`.
const START_VECTOR: &str = r#"{"type":"session_start","id":"0b6f1d2e-3c4a-4e5f-8a7b-9c0d1e2f3a4b","payload":{"session_id":"s-1","session_type":"diagnose","user_name":"alice","params":{"plugin":"disk","allow_shell":true,"descriptions":"disk / above 90%"},"timestamp":1764115200,"nonce":"n-8f14e45fceea167a","key_id":"ops-1","signature":"kSw3J2j4EcdMGEKrMMTX+GlNHF3m7kJYkTskpazSNNGh/99m9VGOQ/Zaw2vTFVpK6MQDhQebzsKK14Y3mN1OBA=="}}"#;
const T_START: i64 = 1764115200;
/// PROTOCOL §9, valid at `T_INPUT`.
const INPUT_VECTOR: &str = r#"{"type":"session_input","id":"5e2d9c1b-7a4f-4c3e-8b6a-1d0f2e3c4b5a","payload":{"session_id":"s-1","message":"run df -h","timestamp":1764115230,"nonce":"n-c9f0f895fb98ab91","key_id":"ops-1","signature":"Hud2Eg7U24MpWXlmL16nh4NMuWPhuht2mDUJOE6u1VFQMzDRljZpIB2SmSwI9UtguaFtHRSWi4Kd9As0e8fEAA=="}}"#;
const T_INPUT: i64 = 1764115230;
const SKEW: i64 = 300;

/// The §9 test key: seed 01 02 … 20.
fn vector_key() -> SigningKey {
    SigningKey::from_bytes(&std::array::from_fn(|i| i as u8 + 1))
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn config(require: bool) -> SigningConfig {
    SigningConfig {
        keys: BTreeMap::from([("ops-1".to_string(), vector_key().verifying_key())]),
        require,
        max_skew: Duration::from_secs(SKEW as u64),
    }
}

fn required() -> Verifier {
    Verifier::new(config(true))
}

type TextOf = fn(&str, &str) -> Result<String, Unauthorized>;

/// Signs an unsigned frame (payload last, ending in `}}`) as a signer
/// beside the server would: text from the frame, signature appended.
fn sign(text_of: TextOf, key: &SigningKey, unsigned: &str) -> String {
    let text = text_of(unsigned, AGENT).expect("signable frame");
    let sig = BASE64.encode(key.sign(text.as_bytes()).to_bytes());
    let body = unsigned
        .strip_suffix("}}")
        .expect("payload closes the frame");
    format!(r#"{body},"signature":"{sig}"}}}}"#)
}

/// An unsigned `session_start` like the vector's, with these stamps.
fn start_unsigned(timestamp: i64, nonce: &str, key_id: &str) -> String {
    format!(
        r#"{{"type":"session_start","id":"x","payload":{{"session_id":"s-1","session_type":"diagnose","user_name":"alice","params":{PARAMS},"timestamp":{timestamp},"nonce":"{nonce}","key_id":"{key_id}"}}}}"#
    )
}

fn start(timestamp: i64, nonce: &str) -> String {
    sign(
        signed_text_start,
        &vector_key(),
        &start_unsigned(timestamp, nonce, "ops-1"),
    )
}

fn input(timestamp: i64, nonce: &str) -> String {
    let unsigned = format!(
        r#"{{"type":"session_input","id":"y","payload":{{"session_id":"s-1","message":"uptime","timestamp":{timestamp},"nonce":"{nonce}","key_id":"ops-1"}}}}"#
    );
    sign(signed_text_input, &vector_key(), &unsigned)
}

const UNSIGNED_START: &str = r#"{"type":"session_start","id":"u","payload":{"session_id":"s-1","session_type":"diagnose","user_name":"alice","params":{}}}"#;
const UNSIGNED_INPUT: &str =
    r#"{"type":"session_input","id":"v","payload":{"session_id":"s-1","message":"hi"}}"#;

#[test]
fn protocol_vectors_verify() {
    assert_eq!(
        BASE64.encode(vector_key().verifying_key().as_bytes()),
        PUBKEY
    );
    let v = required();
    assert_eq!(
        v.check_start(START_VECTOR, AGENT, T_START),
        Ok(Some("ops-1".into()))
    );
    assert_eq!(
        v.check_input(INPUT_VECTOR, AGENT, T_INPUT),
        Ok(Some("ops-1".into()))
    );
}

#[test]
fn start_vector_signed_text_is_the_protocol_text() {
    let want = "catpaw-session-v1\nsession_start\n7d3c1e8a-4b6f-4f3e-9a51-2c8e0d9b6a10\ns-1\ndiagnose\nalice\n1764115200\nn-8f14e45fceea167a\n449df0d4432cf1683bdae4ce61d0df141f30b77a9dff81c57ae1fddc2e3f7cbe";
    assert_eq!(signed_text_start(START_VECTOR, AGENT).as_deref(), Ok(want));
    let input = "catpaw-session-v1\nsession_input\n7d3c1e8a-4b6f-4f3e-9a51-2c8e0d9b6a10\ns-1\n1764115230\nn-c9f0f895fb98ab91\n";
    let text = signed_text_input(INPUT_VECTOR, AGENT).expect("text");
    assert_eq!(text, format!("{input}{}", sha256_hex(b"run df -h")));
}

#[test]
fn params_line_hashes_the_exact_bytes_or_the_empty_string() {
    let frame = |params: &str| {
        format!(
            r#"{{"type":"session_start","payload":{{"session_id":"s","session_type":"chat"{params},"timestamp":1,"nonce":"n"}}}}"#
        )
    };
    let cases = [
        ("absent", String::new(), sha256_hex(b"")),
        ("null", r#","params":null"#.into(), sha256_hex(b"null")),
        (
            "spaces inside kept",
            r#","params": { "a" : 1 } "#.into(),
            sha256_hex(br#"{ "a" : 1 }"#),
        ),
        (
            "escapes kept",
            r#","params":{"m":"\u0041"}"#.into(),
            sha256_hex(br#"{"m":"\u0041"}"#),
        ),
    ];
    for (name, params, want) in cases {
        let text = signed_text_start(&frame(&params), AGENT).expect(name);
        assert_eq!(text.rsplit('\n').next(), Some(want.as_str()), "{name}");
    }
}

#[test]
fn own_signer_reproduces_the_protocol_vectors() {
    // Ed25519 is deterministic: re-signing the vectors' text with the
    // vector key must give the vectors byte for byte, which proves the
    // test helper signs exactly what the verifier checks.
    for (vector, text_of) in [
        (START_VECTOR, signed_text_start as TextOf),
        (INPUT_VECTOR, signed_text_input as TextOf),
    ] {
        let (body, _) = vector.split_once(r#","signature""#).expect("signed");
        let unsigned = format!("{body}}}}}");
        assert_eq!(sign(text_of, &vector_key(), &unsigned), vector);
    }
}

#[test]
fn changing_any_signed_byte_is_a_bad_signature() {
    let params_field = format!(r#""params":{PARAMS},"#);
    // (what changes, frame, from, to, agent id)
    let start_cases = [
        (
            "space inside params",
            r#""plugin":"disk""#,
            r#""plugin": "disk""#,
            AGENT,
        ),
        ("params value", "90%", "91%", AGENT),
        ("params removed", params_field.as_str(), "", AGENT),
        ("user name", r#""alice""#, r#""alicE""#, AGENT),
        ("user name removed", r#""user_name":"alice","#, "", AGENT),
        ("session id", r#""s-1""#, r#""s-2""#, AGENT),
        ("session type", r#""diagnose""#, r#""inspect""#, AGENT),
        ("timestamp", "1764115200", "1764115201", AGENT),
        ("nonce", "n-8f14e45fceea167a", "n-8f14e45fceea167b", AGENT),
        ("signature", r#""kSw3"#, r#""lSw3"#, AGENT),
        ("agent id", "", "", "7d3c1e8a-4b6f-4f3e-9a51-2c8e0d9b6a11"),
    ];
    for (name, from, to, agent) in start_cases {
        let frame = START_VECTOR.replacen(from, to, 1);
        assert!(frame != START_VECTOR || agent != AGENT, "{name}: no change");
        let got = required().check_start(&frame, agent, T_START);
        assert_eq!(got, Err(Unauthorized::BadSignature), "{name}");
    }
    let input_cases = [
        ("message", "run df -h", "run df -H", AGENT),
        ("message removed", r#""message":"run df -h","#, "", AGENT),
        ("session id", r#""s-1""#, r#""s-2""#, AGENT),
        ("timestamp", "1764115230", "1764115229", AGENT),
        ("agent id", "", "", "7d3c1e8a-4b6f-4f3e-9a51-2c8e0d9b6a11"),
    ];
    for (name, from, to, agent) in input_cases {
        let frame = INPUT_VECTOR.replacen(from, to, 1);
        assert!(frame != INPUT_VECTOR || agent != AGENT, "{name}: no change");
        let got = required().check_input(&frame, agent, T_INPUT);
        assert_eq!(got, Err(Unauthorized::BadSignature), "input {name}");
    }
}

#[test]
fn a_signature_is_bound_to_its_message_type() {
    let v = required();
    assert_eq!(
        v.check_input(START_VECTOR, AGENT, T_START),
        Err(Unauthorized::BadSignature)
    );
    assert_eq!(
        v.check_start(INPUT_VECTOR, AGENT, T_INPUT),
        Err(Unauthorized::BadSignature)
    );
}

#[test]
fn every_refusal_has_its_wire_text() {
    let unknown = sign(
        signed_text_start,
        &other_key(),
        &start_unsigned(T_START, "n-1", "ops-2"),
    );
    let tampered = START_VECTOR.replacen("alice", "mallory", 1);
    // (frame, now, check it once before, refusal, wire text)
    let cases = [
        (
            UNSIGNED_START,
            T_START,
            false,
            Unauthorized::SignatureRequired,
            "unauthorized: signature required",
        ),
        (
            unknown.as_str(),
            T_START,
            false,
            Unauthorized::UnknownKey,
            "unauthorized: unknown key",
        ),
        (
            tampered.as_str(),
            T_START,
            false,
            Unauthorized::BadSignature,
            "unauthorized: bad signature",
        ),
        (
            START_VECTOR,
            T_START + SKEW + 1,
            false,
            Unauthorized::StaleTimestamp,
            "unauthorized: stale timestamp",
        ),
        (
            START_VECTOR,
            T_START,
            true,
            Unauthorized::ReplayedNonce,
            "unauthorized: replayed nonce",
        ),
    ];
    for (frame, now, replay, want, text) in cases {
        let v = required();
        if replay {
            assert!(v.check_start(frame, AGENT, now).is_ok(), "{text}: first");
        }
        assert_eq!(v.check_start(frame, AGENT, now), Err(want), "{text}");
        assert_eq!(want.to_string(), text);
    }
    assert_eq!(
        required().check_input(UNSIGNED_INPUT, AGENT, T_INPUT),
        Err(Unauthorized::SignatureRequired)
    );
}

#[test]
fn stale_timestamps_are_refused_both_ways() {
    let cases = [
        ("long before", i64::MIN, Err(Unauthorized::StaleTimestamp)),
        (
            "just too early",
            T_START - SKEW - 1,
            Err(Unauthorized::StaleTimestamp),
        ),
        ("earliest", T_START - SKEW, Ok(Some("ops-1".to_string()))),
        ("exact", T_START, Ok(Some("ops-1".to_string()))),
        ("latest", T_START + SKEW, Ok(Some("ops-1".to_string()))),
        (
            "just too late",
            T_START + SKEW + 1,
            Err(Unauthorized::StaleTimestamp),
        ),
        ("long after", i64::MAX, Err(Unauthorized::StaleTimestamp)),
    ];
    for (name, now, want) in cases {
        assert_eq!(
            required().check_start(START_VECTOR, AGENT, now),
            want,
            "{name}"
        );
    }
    // Extreme timestamps in a validly signed frame do not overflow.
    for ts in [i64::MIN, i64::MAX] {
        let frame = start(ts, "n-extreme");
        assert_eq!(
            required().check_start(&frame, AGENT, T_START),
            Err(Unauthorized::StaleTimestamp),
            "{ts}"
        );
    }
}

#[test]
fn a_replayed_nonce_is_refused_until_twice_max_skew_has_passed() {
    let v = required();
    let t0 = T_START;
    assert!(v.check_start(&start(t0, "n-1"), AGENT, t0).is_ok());
    // The same frame again, a re-signed one and a chat turn reusing the
    // nonce: all replays while the nonce is remembered.
    let replays = [
        (start(t0, "n-1"), t0 + 1, true),
        (start(t0 + 2 * SKEW, "n-1"), t0 + 2 * SKEW, true),
        (input(t0 + 10, "n-1"), t0 + 10, false),
    ];
    for (frame, now, is_start) in replays {
        let got = if is_start {
            v.check_start(&frame, AGENT, now)
        } else {
            v.check_input(&frame, AGENT, now)
        };
        assert_eq!(got, Err(Unauthorized::ReplayedNonce), "at {now}");
    }
    // A refused replay does not extend the window.
    let later = t0 + 2 * SKEW + 1;
    assert_eq!(
        v.check_start(&start(later, "n-1"), AGENT, later),
        Ok(Some("ops-1".into()))
    );
    assert_eq!(
        v.check_start(&start(later, "n-1"), AGENT, later),
        Err(Unauthorized::ReplayedNonce)
    );
}

#[test]
fn nonces_are_remembered_per_key() {
    let mut cfg = config(true);
    cfg.keys.insert("ops-2".into(), other_key().verifying_key());
    let v = Verifier::new(cfg);
    let by_other = sign(
        signed_text_start,
        &other_key(),
        &start_unsigned(T_START, "n-8f14e45fceea167a", "ops-2"),
    );
    assert_eq!(
        v.check_start(START_VECTOR, AGENT, T_START),
        Ok(Some("ops-1".into()))
    );
    assert_eq!(
        v.check_start(&by_other, AGENT, T_START),
        Ok(Some("ops-2".into()))
    );
}

#[test]
fn refused_messages_do_not_record_their_nonce() {
    let v = required();
    let stale = start(T_START - SKEW - 1, "n-r");
    let tampered = start(T_START, "n-r").replacen("alice", "bob", 1);
    for frame in [stale, tampered] {
        assert!(v.check_start(&frame, AGENT, T_START).is_err());
    }
    assert!(
        v.check_start(&start(T_START, "n-r"), AGENT, T_START)
            .is_ok()
    );
}

#[test]
fn a_full_verifier_cache_refuses_until_entries_expire() {
    let v = Verifier::with_replay_capacity(config(true), 4);
    for i in 0..4 {
        let frame = start(T_START, &format!("n-{i}"));
        assert!(v.check_start(&frame, AGENT, T_START).is_ok(), "{i}");
    }
    let fifth = start(T_START, "n-4");
    assert_eq!(
        v.check_start(&fifth, AGENT, T_START),
        Err(Unauthorized::ReplayedNonce)
    );
    let later = T_START + 2 * SKEW + 1;
    let frame = start(later, "n-4");
    assert!(v.check_start(&frame, AGENT, later).is_ok());
}

#[test]
fn optional_signing_passes_unsigned_and_refuses_bad() {
    let v = Verifier::new(config(false));
    assert!(v.enabled());
    let unknown = sign(
        signed_text_start,
        &other_key(),
        &start_unsigned(T_START, "n-2", "ops-2"),
    );
    let tampered = START_VECTOR.replacen("alice", "eve", 1);
    let cases = [
        ("unsigned start", UNSIGNED_START, true, Ok(None)),
        ("unsigned input", UNSIGNED_INPUT, false, Ok(None)),
        ("signed", START_VECTOR, true, Ok(Some("ops-1".to_string()))),
        (
            "tampered",
            tampered.as_str(),
            true,
            Err(Unauthorized::BadSignature),
        ),
        (
            "unknown key",
            unknown.as_str(),
            true,
            Err(Unauthorized::UnknownKey),
        ),
    ];
    for (name, frame, is_start, want) in cases {
        let got = if is_start {
            v.check_start(frame, AGENT, T_START)
        } else {
            v.check_input(frame, AGENT, T_START)
        };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn malformed_signature_fields_are_bad_signatures() {
    let sig_63 = BASE64.encode([0u8; 63]);
    let unpadded =
        "kSw3J2j4EcdMGEKrMMTX+GlNHF3m7kJYkTskpazSNNGh/99m9VGOQ/Zaw2vTFVpK6MQDhQebzsKK14Y3mN1OBA";
    let signature = r#""kSw3J2j4EcdMGEKrMMTX+GlNHF3m7kJYkTskpazSNNGh/99m9VGOQ/Zaw2vTFVpK6MQDhQebzsKK14Y3mN1OBA==""#;
    let long_nonce = format!(r#""{}""#, "a".repeat(65));
    let nonce = r#""n-8f14e45fceea167a""#;
    let ts = "1764115200";
    let quoted_sig_63 = format!(r#""{sig_63}""#);
    let quoted_unpadded = format!(r#""{unpadded}""#);
    let dup_params = format!(r#""params":{{}},"params":{PARAMS}"#);
    let params_field = format!(r#""params":{PARAMS}"#);
    let signature_field = format!(r#","signature":{signature}"#);
    // (what, from, to)
    let cases = [
        ("empty nonce", nonce, r#""""#),
        ("nonce with a space", nonce, r#""n 8f14""#),
        ("nonce of 65 chars", nonce, long_nonce.as_str()),
        ("escaped nonce", nonce, r#""n\u002d8f14e45fceea167a""#),
        ("numeric nonce", nonce, "8"),
        ("string timestamp", ts, r#""1764115200""#),
        ("fractional timestamp", ts, "1764115200.0"),
        ("exponent timestamp", ts, "1.7641152e9"),
        ("null timestamp", ts, "null"),
        ("timestamp beyond i64", ts, "99999999999999999999"),
        ("unpadded signature", signature, quoted_unpadded.as_str()),
        ("63-byte signature", signature, quoted_sig_63.as_str()),
        ("empty signature", signature, r#""""#),
        ("numeric signature", signature, "5"),
        ("signature removed", signature_field.as_str(), ""),
        ("key id removed", r#""key_id":"ops-1","#, ""),
        ("numeric key id", r#""key_id":"ops-1""#, r#""key_id":1"#),
        (
            "params given twice",
            params_field.as_str(),
            dup_params.as_str(),
        ),
    ];
    for (name, from, to) in cases {
        let frame = START_VECTOR.replacen(from, to, 1);
        assert_ne!(frame, START_VECTOR, "{name}: no change");
        let got = Verifier::new(config(false)).check_start(&frame, AGENT, T_START);
        assert_eq!(got, Err(Unauthorized::BadSignature), "{name}");
    }
    let only_nonce = r#"{"type":"session_start","payload":{"session_id":"s-1","nonce":"n-1"}}"#;
    assert_eq!(
        required().check_start(only_nonce, AGENT, T_START),
        Err(Unauthorized::BadSignature)
    );
}

#[test]
fn line_breaks_in_signed_fields_are_bad_signatures() {
    let broken = [
        (START_VECTOR.replacen("alice", r"ali\nce", 1), AGENT),
        (START_VECTOR.replacen(r#""s-1""#, r#""s-1\r""#, 1), AGENT),
        (START_VECTOR.replacen("diagnose", r"diag\nnose", 1), AGENT),
        (START_VECTOR.to_string(), "7d3c1e8a\n4b6f"),
    ];
    for (frame, agent) in &broken {
        assert_eq!(
            signed_text_start(frame, agent),
            Err(Unauthorized::BadSignature)
        );
        assert_eq!(
            required().check_start(frame, agent, T_START),
            Err(Unauthorized::BadSignature)
        );
    }
    // The message is hashed, so a multi-line chat turn is fine.
    let unsigned = r#"{"type":"session_input","payload":{"session_id":"s-1","message":"a\nb","timestamp":1764115200,"nonce":"n-ml","key_id":"ops-1"}}"#;
    let frame = sign(signed_text_input, &vector_key(), unsigned);
    assert!(required().check_input(&frame, AGENT, T_START).is_ok());
}

#[test]
fn unreadable_frames_are_never_taken_as_signed() {
    let dup_unsigned =
        r#"{"type":"session_start","payload":{"session_id":"s-1","session_id":"s-2"}}"#;
    // (frame, when required, when optional)
    let cases = [
        (
            "not json",
            Err(Unauthorized::BadSignature),
            Err(Unauthorized::BadSignature),
        ),
        (dup_unsigned, Err(Unauthorized::SignatureRequired), Ok(None)),
        (
            r#"{"type":"session_start","payload":"x"}"#,
            Err(Unauthorized::SignatureRequired),
            Ok(None),
        ),
        (
            r#"{"type":"session_start"}"#,
            Err(Unauthorized::SignatureRequired),
            Ok(None),
        ),
    ];
    for (frame, when_required, when_optional) in cases {
        assert_eq!(
            required().check_start(frame, AGENT, T_START),
            when_required,
            "{frame}"
        );
        let optional = Verifier::new(config(false));
        assert_eq!(
            optional.check_start(frame, AGENT, T_START),
            when_optional,
            "{frame}"
        );
    }
}

#[test]
fn without_configuration_nothing_is_checked() {
    let v = Verifier::new(SigningConfig::default());
    assert!(!v.enabled());
    let tampered = START_VECTOR.replacen("alice", "eve", 1);
    for frame in [START_VECTOR, tampered.as_str(), UNSIGNED_START] {
        assert_eq!(v.check_start(frame, AGENT, 0), Ok(None));
    }
}

#[test]
fn verifier_clones_share_one_replay_cache_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Verifier>();
    let v = required();
    let w = v.clone();
    let first = std::thread::spawn(move || w.check_start(START_VECTOR, AGENT, T_START))
        .join()
        .expect("thread");
    assert_eq!(first, Ok(Some("ops-1".into())));
    assert_eq!(
        v.check_start(START_VECTOR, AGENT, T_START),
        Err(Unauthorized::ReplayedNonce)
    );
}
