//! What a guest hands the host for the server: an `emit` delta with its
//! stage and metadata JSON, a report on the `done` message, an error
//! text; through the host's reading of the metadata and the connection's
//! framing (PROTOCOL §11).
//!
//! Promises checked: no frame is over 1 MiB; the pieces of a split delta
//! join to the delta, in order, with one stage; metadata goes out exactly
//! when it is a JSON object of at most 64 KiB, on the last piece only, and
//! unchanged; a report is sent whole when it fits, else as a prefix of
//! itself and the truncation marker within 768 KiB; an error text is cut
//! to 4 KiB likewise.
#![no_main]

use arbitrary::Arbitrary;
use catpaw_agent::fuzz_entry::{
    self, MAX_ERROR_BYTES, MAX_FRAME_BYTES, MAX_METADATA_BYTES, MAX_REPORT_BYTES,
};
use catpaw_agent::proto::Envelope;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    session_id: String,
    delta: String,
    /// Repeats the delta this many times (big deltas from small inputs).
    delta_times: u16,
    stage: u8,
    metadata: Option<String>,
    report: Option<String>,
    report_times: u16,
    error: Option<(String, u16)>,
}

const STAGES: [&str; 6] = [
    "thinking",
    "tool_call",
    "tool_result",
    "answer",
    "error",
    "",
];

fuzz_target!(|input: Input| run(input));

fn payloads(frames: &[String], kind: &str) -> Vec<serde_json::Map<String, Value>> {
    frames
        .iter()
        .map(|f| {
            assert!(f.len() <= MAX_FRAME_BYTES, "a frame of {} bytes", f.len());
            let env = Envelope::parse(f).expect("a frame the agent writes parses");
            assert_eq!(env.msg_type, kind);
            match env.payload {
                Some(Value::Object(m)) => m,
                other => panic!("payload {other:?}"),
            }
        })
        .collect()
}

fn run(input: Input) {
    let delta = input.delta.repeat(usize::from(input.delta_times % 64) + 1);
    let report = input
        .report
        .map(|r| r.repeat(usize::from(input.report_times) % 1024 + 1));
    let stage = STAGES[usize::from(input.stage) % STAGES.len()];
    let done = report.is_some();
    let frames = fuzz_entry::guest_output(
        &input.session_id,
        delta.clone(),
        stage,
        input.metadata.as_deref(),
        report.clone(),
        done,
    );
    let ps = payloads(&frames, "session_output");
    let (last, pieces) = ps.split_last().expect("at least one frame");
    let joined: String = ps
        .iter()
        .map(|p| p["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(joined, delta, "the delta's pieces do not join to it");
    for p in &ps {
        assert_eq!(p["session_id"].as_str(), Some(input.session_id.as_str()));
        assert_eq!(p["stage"].as_str(), Some(stage));
    }
    for p in pieces {
        assert!(!p.contains_key("metadata") && !p.contains_key("report"));
        assert_eq!(p["done"], Value::Bool(false));
    }
    assert_eq!(last["done"], Value::Bool(done));
    let metadata = input
        .metadata
        .as_deref()
        .and_then(fuzz_entry::guest_metadata);
    let small = metadata.as_ref().filter(|m| {
        !m.is_empty()
            && serde_json::to_vec(m).expect("metadata serializes").len() <= MAX_METADATA_BYTES
    });
    assert_eq!(
        last.get("metadata").and_then(Value::as_object),
        small,
        "metadata sent when it should not be, or changed"
    );
    match (&report, last.get("report").and_then(Value::as_str)) {
        (Some(r), Some(sent)) => {
            assert!(
                sent.len() <= MAX_REPORT_BYTES,
                "a report of {} bytes",
                sent.len()
            );
            if sent != r {
                let (kept, marker) = sent
                    .rsplit_once("\n… [report truncated by catpaw-agent: ")
                    .expect("a cut report ends with the marker");
                assert!(
                    r.starts_with(kept),
                    "a cut report is a prefix of the report"
                );
                assert_eq!(marker, format!("{} bytes]", r.len() - kept.len()));
            }
        }
        (Some(r), None) => assert!(r.is_empty(), "a report of {} bytes was not sent", r.len()),
        (None, Some(_)) => panic!("a report out of nowhere"),
        (None, None) => {}
    }
    if let Some((error, times)) = input.error {
        let error = error.repeat(usize::from(times % 2048) + 1);
        let frames = fuzz_entry::guest_error(&input.session_id, error.clone(), "diagnose_failed");
        let ps = payloads(&frames, "session_error");
        assert_eq!(ps.len(), 1);
        let sent = ps[0]["error"].as_str().expect("error");
        assert!(sent.len() <= MAX_ERROR_BYTES);
        if sent != error {
            let (kept, marker) = sent
                .rsplit_once("… [truncated by catpaw-agent: ")
                .expect("a cut error ends with the marker");
            assert!(error.starts_with(kept));
            assert_eq!(marker, format!("{} bytes]", error.len() - kept.len()));
        }
    }
}
