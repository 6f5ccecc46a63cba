//! Admission: the one answer (`ack`) to a `session_start`.
//!
//! The checks run in PROTOCOL §5 order: payload, `session_id` (with the
//! bounds of §10 on it and on `user_name`), the signature of §9, an engine
//! for the type, a free limiter slot, no duplicate id. Pure: the table
//! passes in what it knows (runners, limiter, running ids, the verifier)
//! and starts the session when the answer is yes.

use serde_json::Value;

use crate::proto::{AckError, SessionStartPayload, SessionType, Unauthorized};

/// Longest `session_id` accepted (PROTOCOL §10).
pub(crate) const MAX_SESSION_ID: usize = 128;
/// Longest `user_name` accepted (PROTOCOL §10).
pub(crate) const MAX_USER_NAME: usize = 256;

/// An accepted `session_start`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Admitted {
    /// The payload; its `key_id` is the one the signature check vouched
    /// for (never a claimed one).
    pub start: SessionStartPayload,
    /// Its type, parsed once here.
    pub kind: SessionType,
}

/// Decides the ack of a `session_start`. `serves` says whether a runner
/// serves a known type; `any_runner` whether any runner exists at all.
pub(crate) fn decide(
    payload: Option<&Value>,
    verify: impl FnOnce(&SessionStartPayload) -> Result<Option<String>, Unauthorized>,
    serves: impl Fn(&SessionType) -> bool,
    any_runner: bool,
    limiter_full: bool,
    is_running: impl Fn(&str) -> bool,
) -> Result<Admitted, AckError> {
    let mut start: SessionStartPayload = payload
        .filter(|v| v.is_object())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or(AckError::InvalidPayload)?;
    if start.session_id.is_empty() {
        return Err(AckError::MissingSessionId);
    }
    if start.session_id.len() > MAX_SESSION_ID
        || start
            .session_id
            .chars()
            .any(crate::util::is_control_or_format)
    {
        return Err(AckError::InvalidSessionId);
    }
    if start.user_name.len() > MAX_USER_NAME {
        return Err(AckError::InvalidUserName);
    }
    start.key_id = verify(&start)?;
    let kind = SessionType::parse(&start.session_type);
    match &kind {
        SessionType::Chat if !serves(&kind) => return Err(AckError::ChatEngineNotAvailable),
        SessionType::Inspect | SessionType::Diagnose if !serves(&kind) => {
            return Err(AckError::DiagnoseEngineNotAvailable);
        }
        // An unknown type is acked when any runner exists (it then gets
        // `invalid_type`); with no runner at all it has no engine either.
        SessionType::Other(_) if !any_runner => {
            return Err(AckError::DiagnoseEngineNotAvailable);
        }
        _ => {}
    }
    if limiter_full {
        return Err(AckError::MaxConcurrentSessions);
    }
    if is_running(&start.session_id) {
        return Err(AckError::DuplicateSessionId);
    }
    Ok(Admitted { start, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_start_checks_run_in_protocol_order() {
        let p = |v: Value| Some(v);
        let chat = json!({"session_id":"a","session_type":"chat"});
        // (payload, has runner, any runner, limiter full, running, expected)
        type Case = (Option<Value>, bool, bool, bool, bool, Result<(), AckError>);
        let cases: Vec<Case> = vec![
            (
                None,
                true,
                true,
                false,
                false,
                Err(AckError::InvalidPayload),
            ),
            (
                p(json!("x")),
                true,
                true,
                false,
                false,
                Err(AckError::InvalidPayload),
            ),
            (
                p(json!({"session_id": 5})),
                true,
                true,
                false,
                false,
                Err(AckError::InvalidPayload),
            ),
            (
                p(json!({"session_type":"chat"})),
                true,
                true,
                true,
                true,
                Err(AckError::MissingSessionId),
            ),
            (
                p(chat.clone()),
                false,
                true,
                true,
                true,
                Err(AckError::ChatEngineNotAvailable),
            ),
            (
                p(json!({"session_id":"a","session_type":"inspect"})),
                false,
                true,
                true,
                true,
                Err(AckError::DiagnoseEngineNotAvailable),
            ),
            (
                p(json!({"session_id":"a","session_type":"weird"})),
                false,
                false,
                true,
                true,
                Err(AckError::DiagnoseEngineNotAvailable),
            ),
            (
                p(json!({"session_id":"a","session_type":"weird"})),
                false,
                true,
                false,
                false,
                Ok(()),
            ),
            (
                p(chat.clone()),
                true,
                true,
                true,
                true,
                Err(AckError::MaxConcurrentSessions),
            ),
            (
                p(chat.clone()),
                true,
                true,
                false,
                true,
                Err(AckError::DuplicateSessionId),
            ),
            (p(chat), true, true, false, false, Ok(())),
            (
                p(json!({"session_id": "x".repeat(129), "session_type":"chat"})),
                false,
                false,
                true,
                true,
                Err(AckError::InvalidSessionId),
            ),
            (
                p(json!({"session_id": "a\nb", "session_type":"chat"})),
                true,
                true,
                false,
                false,
                Err(AckError::InvalidSessionId),
            ),
            (
                p(json!({"session_id": "a\u{202e}b", "session_type":"chat"})),
                true,
                true,
                false,
                false,
                Err(AckError::InvalidSessionId),
            ),
            (
                p(json!({"session_id": "x".repeat(128), "session_type":"chat"})),
                true,
                true,
                false,
                false,
                Ok(()),
            ),
            (
                p(json!({"session_id": "a", "session_type":"chat", "user_name": "u".repeat(257)})),
                false,
                false,
                true,
                true,
                Err(AckError::InvalidUserName),
            ),
        ];
        for (i, (payload, has, any, full, running, want)) in cases.into_iter().enumerate() {
            let got = decide(
                payload.as_ref(),
                |_| Ok(None),
                |_| has,
                any,
                full,
                |_| running,
            )
            .map(|_| ());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn the_signature_is_checked_after_step_2_and_before_the_engines() {
        let refuse = |_: &SessionStartPayload| Err(Unauthorized::SignatureRequired);
        let chat = json!({"session_id":"a","session_type":"chat"});
        // Step 2 comes first...
        let got = decide(
            Some(&json!({"session_type":"chat"})),
            refuse,
            |_| false,
            false,
            true,
            |_| true,
        );
        assert_eq!(got.map(|_| ()), Err(AckError::MissingSessionId));
        // ...then the signature, before engine, limiter and duplicate.
        let got = decide(Some(&chat), refuse, |_| false, false, true, |_| true);
        assert_eq!(
            got.map(|_| ()),
            Err(AckError::Unauthorized(Unauthorized::SignatureRequired))
        );
        // The accepted payload carries the checked key id, never a claimed one.
        let claimed = json!({"session_id":"a","session_type":"chat","key_id":"ops-9"});
        let got = decide(
            Some(&claimed),
            |_| Ok(None),
            |_| true,
            true,
            false,
            |_| false,
        );
        assert_eq!(got.expect("ok").start.key_id, None);
        let got = decide(
            Some(&chat),
            |_| Ok(Some("ops-1".into())),
            |_| true,
            true,
            false,
            |_| false,
        );
        assert_eq!(got.expect("ok").start.key_id.as_deref(), Some("ops-1"));
    }

    #[test]
    fn the_type_is_parsed_once_and_unknown_types_need_some_runner() {
        let weird = json!({"session_id":"a","session_type":"weird"});
        let got = decide(
            Some(&weird),
            |_| Ok(None),
            |_| false,
            true,
            false,
            |_| false,
        );
        assert_eq!(got.expect("ok").kind, SessionType::Other("weird".into()));
        let inspect = json!({"session_id":"a","session_type":"inspect"});
        let got = decide(
            Some(&inspect),
            |_| Ok(None),
            |k| *k == SessionType::Inspect,
            true,
            false,
            |_| false,
        );
        assert_eq!(got.expect("ok").kind, SessionType::Inspect);
    }
}
