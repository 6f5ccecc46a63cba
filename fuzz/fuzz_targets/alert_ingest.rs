//! Bytes a local client writes to the ingest socket (`agent.sock`), through
//! the socket's line reader and event parser into the alert buffer, and
//! out as the `alert_events` frames the connection sends.
//!
//! Promises checked: every line that is not blank gets one reply; the
//! buffer never holds more than its capacity nor loses an event it does
//! not count as dropped; every frame is a valid `alert_events` message of
//! at most 100 events and 256 KiB (PROTOCOL §10), whatever the lines held.
#![no_main]

use catpaw_agent::fuzz_entry::{self, MAX_ALERT_EVENTS, MAX_ALERT_FRAME_BYTES};
use catpaw_agent::proto::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, bytes)) = data.split_first() else {
        return;
    };
    let capacity = i64::from(cap % 8) + 1;
    let out = fuzz_entry::ingest(bytes, capacity);
    let lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !String::from_utf8_lossy(l).trim().is_empty())
        .count();
    assert_eq!(
        out.replies.len(),
        lines,
        "one reply per line that is not blank"
    );
    let accepted = out.replies.iter().filter(|r| r.is_ok()).count();
    let sent: usize = out.frames.iter().map(|(n, _)| n).sum();
    assert!(
        sent as i64 <= capacity,
        "{sent} events out of a buffer of {capacity}"
    );
    assert_eq!(
        accepted as u64,
        sent as u64 + out.dropped,
        "accepted events are sent or counted as dropped"
    );
    for (n, text) in &out.frames {
        assert!(*n >= 1 && *n <= MAX_ALERT_EVENTS, "{n} events in one frame");
        assert!(
            text.len() <= MAX_ALERT_FRAME_BYTES,
            "an alert frame of {} bytes",
            text.len()
        );
        let env = Envelope::parse(text).expect("an alert frame parses");
        assert_eq!(env.msg_type, "alert_events");
        let events = env
            .payload
            .as_ref()
            .and_then(|p| p.get("events"))
            .and_then(|e| e.as_array());
        assert_eq!(events.map(Vec::len), Some(*n));
    }
});
