//! A model's answer, as the bytes of an HTTP body: read as an event
//! stream (SSE framing, then completion chunks put together, tool calls by
//! index), arriving in fuzzer-chosen pieces; read as one chat completion
//! (a server that does not stream); read as the gateway's envelope.
//!
//! Promises checked: how the body is cut into pieces changes nothing (the
//! same reply, the same text, or a refusal either way); the text streamed
//! to the session is the reply's text; a reply has at most 64 tool calls,
//! each with an id; a gateway error is one status and at most 300 bytes of
//! text.
#![no_main]

use catpaw_agent::fuzz_entry;
use libfuzzer_sys::fuzz_target;

// Byte 0 picks the gateway's HTTP status, byte 1 how the body is cut into
// pieces; the rest is the body (so the seeds are plain answers).
fuzz_target!(|data: &[u8]| {
    let [status, cut_seed, body @ ..] = data else {
        return;
    };
    let whole = fuzz_entry::model_stream(&[body]);
    // Cut points from a small generator seeded by byte 1.
    let mut x = u32::from(*cut_seed) | 1;
    let mut at: Vec<usize> = (0..usize::from(*cut_seed % 16))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize % (body.len() + 1)
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for a in at.into_iter().chain([body.len()]) {
        pieces.push(&body[from..a]);
        from = a;
    }
    let cut = fuzz_entry::model_stream(&pieces);
    match (&whole, &cut) {
        (Ok(w), Ok(c)) => {
            assert_eq!(w.1, c.1, "the reply depends on how the body arrived");
            assert_eq!(
                w.0.concat(),
                c.0.concat(),
                "the streamed text depends on how the body arrived"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("one arrival refused, the other not: {whole:?} / {cut:?}"),
    }
    if let Ok((texts, reply)) = &whole {
        assert_eq!(
            texts.concat(),
            reply.message.content,
            "streamed text is not the answer"
        );
        assert!(reply.message.tool_calls.len() <= 64);
        assert!(reply.message.tool_calls.iter().all(|c| !c.id.is_empty()));
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = fuzz_entry::model_completion(text);
    }
    let status = if *status < 128 {
        200
    } else {
        300 + u16::from(*status)
    };
    match fuzz_entry::gateway_answer(status, body) {
        Ok(_) => assert!((200..300).contains(&status)),
        Err(e) => {
            if !(200..300).contains(&status) {
                let text = e
                    .strip_prefix(&format!("HTTP {status}: "))
                    .unwrap_or_else(|| panic!("a gateway error without its status: {e}"));
                assert!(text.len() <= 300, "{}", text.len());
            }
        }
    }
});
