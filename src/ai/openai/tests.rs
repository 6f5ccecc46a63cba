use super::*;

#[test]
fn a_location_is_shown_without_user_info_or_query_and_cut() {
    let url = reqwest::Url::parse("https://user:pw@evil.example:8443/v1/x?key=sk-1#f").unwrap();
    assert_eq!(masked_location(&url), "https://evil.example:8443/v1/x?…");
    let long = reqwest::Url::parse(&format!("http://h/{}", "a".repeat(500))).unwrap();
    let shown = masked_location(&long);
    assert!(
        shown.len() <= MAX_LOCATION + "…".len() && shown.ends_with('…'),
        "{shown}"
    );
}

/// The reply a body makes when it arrives in `pieces`.
fn read(pieces: &[&[u8]]) -> Result<(Vec<String>, Reply), String> {
    let mut r = StreamReader::default();
    let mut texts = Vec::new();
    for p in pieces {
        if r.ended() {
            break;
        }
        texts.extend(r.push(p).map_err(|e| e.to_string())?);
    }
    let (last, reply) = r.finish().map_err(|e| e.to_string())?;
    texts.extend(last);
    Ok((texts, reply))
}

#[test]
fn nothing_after_done_is_read_however_the_body_arrives() {
    // Found writing the `model_answer` fuzz target (its check that the
    // pieces a body arrives in change nothing): with `[DONE]` and more
    // events in one piece, the events after it were read too (text
    // added; a broken one refused the whole answer); cut after
    // `[DONE]`, they were not.
    let more = "data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\n";
    for tail in [more, "data: not json\n\n", "\u{0}\n\n"] {
        let body = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"ok\"}}}}]}}\n\ndata: [DONE]\n\n{tail}"
        );
        let at = body.find("[DONE]\n\n").expect("done") + 8;
        let whole = read(&[body.as_bytes()]);
        let cut = read(&[&body.as_bytes()[..at], &body.as_bytes()[at..]]);
        assert_eq!(whole, cut, "{tail:?}");
        let (texts, reply) = whole.expect("an answer");
        assert_eq!(texts.concat(), "ok");
        assert_eq!(reply.message.content, "ok");
    }
    // Bytes that are not UTF-8 after `[DONE]` are never looked at.
    let mut body = b"data: [DONE]\n\n".to_vec();
    body.extend_from_slice(b"\xff\n\n");
    assert!(read(&[&body]).is_ok());
}

#[test]
fn a_streamed_answer_past_the_cap_is_refused() {
    let mut a = Assembler::default();
    let piece = "x".repeat(1 << 20);
    let event =
        serde_json::json!({"choices": [{"index": 0, "delta": {"content": piece}}]}).to_string();
    for _ in 0..10 {
        assert!(a.event(&event).is_ok(), "10 MiB is allowed");
    }
    match a.event(&event) {
        Err(Failure::Malformed(m)) => assert!(m.contains("more than 10485760 bytes"), "{m}"),
        other => panic!("expected the cap, got {other:?}"),
    }
    // Tool-call arguments count too.
    let mut a = Assembler::default();
    let args = serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}}]})
        .to_string();
    for _ in 0..10 {
        assert!(a.event(&args).is_ok());
    }
    assert!(a.event(&args).is_err());
}
