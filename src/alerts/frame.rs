//! The size policy of `alert_events` frames (PROTOCOL §7, §10): at most
//! [`MAX_EVENTS`] events **and** [`MAX_FRAME_BYTES`] of JSON per frame, and
//! an event too big to travel even alone is cut, with a visible marker.
//!
//! Why bytes as well as events: 100 events of 60 KiB make a 6 MB frame, and
//! a frame is written whole. On a 100 KiB/s link that is a minute in which
//! no session message and no ack can go out. At 256 KiB a session waits for
//! one frame at most, a few seconds on that link.
//!
//! Cutting order: the description first (free text, usually the bulk), then
//! attribute values, then label values (labels identify and route an alert,
//! so they go last), largest first. Each cut string ends with
//! `… [truncated by catpaw-agent: N bytes]`, N counting the bytes removed,
//! so whoever reads the alert knows it is not whole. Keys (`alert_key` and
//! map keys) are never cut; an event whose keys alone exceed the frame
//! cannot be sent and is refused.

use std::sync::OnceLock;

use crate::proto::{self, AlertEvent, AlertEventsPayload, Envelope, json_char_len, json_str_len};

/// Most events in one frame.
pub(crate) const MAX_EVENTS: usize = 100;
/// Most bytes of JSON in one frame, envelope included.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// The marker that ends a cut string.
pub fn marker(removed_bytes: usize) -> String {
    format!("… [truncated by catpaw-agent: {removed_bytes} bytes]")
}

/// Bytes of an `alert_events` frame around its events: everything but the
/// array's contents. The envelope id is a UUID, so this never varies.
fn frame_overhead() -> usize {
    static OVERHEAD: OnceLock<usize> = OnceLock::new();
    *OVERHEAD.get_or_init(|| {
        Envelope::new(
            proto::MSG_ALERT_EVENTS,
            AlertEventsPayload { events: Vec::new() },
        )
        .to_json()
        .len()
    })
}

/// Bytes the events of one frame may take, the commas between them
/// included.
pub(crate) fn events_budget() -> usize {
    MAX_FRAME_BYTES - frame_overhead()
}

/// Bytes of one event's JSON, counted without writing it: the field names
/// and punctuation serde_json writes for an [`AlertEvent`] plus each
/// string's escaped length. Every push measures its event, so this is the
/// ring buffer's hot path; a test holds it to [`serialized_len`] on
/// escapes, multibyte text, empty and present optional fields.
pub(crate) fn encoded_len(ev: &AlertEvent) -> usize {
    const HEAD: usize = r#"{"event_time":"#.len();
    const STATUS: usize = r#","event_status":"#.len();
    const KEY: usize = r#","alert_key":"#.len();
    const LABELS: usize = r#","labels":"#.len();
    const ATTRS: usize = r#","attrs":"#.len();
    const DESCRIPTION: usize = r#","description":"#.len();
    const FORMAT: usize = r#","description_format":"#.len();
    let mut n = HEAD + int_len(ev.event_time);
    n += STATUS + status_len(ev.event_status);
    n += KEY + quoted_len(&ev.alert_key);
    n += LABELS + map_len(&ev.labels);
    if !ev.attrs.is_empty() {
        n += ATTRS + map_len(&ev.attrs);
    }
    n += DESCRIPTION + quoted_len(&ev.description);
    if let Some(f) = &ev.description_format {
        n += FORMAT + quoted_len(f);
    }
    n + 1
}

/// Digits (and sign) of `v` in JSON.
fn int_len(v: i64) -> usize {
    let digits = v
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1);
    digits + usize::from(v < 0)
}

/// Bytes of a status as serde writes it (quotes included).
fn status_len(status: proto::EventStatus) -> usize {
    static LENS: OnceLock<[usize; 4]> = OnceLock::new();
    let lens = LENS.get_or_init(|| {
        use proto::EventStatus::*;
        [Critical, Warning, Info, Ok].map(|s| serialized_len(&s))
    });
    lens[status as usize]
}

/// Bytes of a map of strings: `{"k":"v",…}`.
fn map_len(map: &std::collections::BTreeMap<String, String>) -> usize {
    let pairs: usize = map
        .iter()
        .map(|(k, v)| quoted_len(k) + 1 + quoted_len(v))
        .sum();
    2 + pairs + map.len().saturating_sub(1)
}

/// Bytes of a JSON string, quotes included.
fn quoted_len(s: &str) -> usize {
    2 + json_str_len(s)
}

/// Bytes of `value` as serde_json writes it.
fn serialized_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serializing a struct of strings and maps cannot fail; if it somehow
    // did, "too big" is the safe answer.
    match serde_json::to_writer(&mut c, value) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

/// How many of the events whose encoded sizes are `sizes` (oldest first)
/// go into the next frame: at most `max_events`, and no more than `budget`
/// bytes with the commas between them. The first event always goes, so
/// an event that does not fit alone cannot block the queue (the buffer
/// cuts events to fit before they get here).
pub(crate) fn batch_len(
    sizes: impl IntoIterator<Item = usize>,
    max_events: usize,
    budget: usize,
) -> usize {
    let mut used = 0usize;
    let mut n = 0;
    for size in sizes {
        if n == max_events {
            break;
        }
        let add = size.saturating_add(usize::from(n > 0));
        if n > 0 && used.saturating_add(add) > budget {
            break;
        }
        used = used.saturating_add(add);
        n += 1;
    }
    n
}

/// Cuts `s` so that its JSON shrinks by at least `excess` bytes where
/// possible, and ends it with the [`marker`]. Returns the bytes of JSON it
/// freed (0 when the string is too short for a cut to help).
fn cut_str(s: &mut String, excess: usize) -> usize {
    let before = json_str_len(s);
    // The marker's length with as many digits as the count can have.
    let marker_max = json_str_len(&marker(s.len()));
    if before <= marker_max {
        return 0;
    }
    let keep = before.saturating_sub(excess.saturating_add(marker_max));
    let mut kept = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let l = json_char_len(c);
        if kept + l > keep {
            break;
        }
        kept += l;
        end = i + c.len_utf8();
    }
    let removed = s.len() - end;
    s.truncate(end);
    s.push_str(&marker(removed));
    before - json_str_len(s)
}

/// Cuts the largest values of `map` until `len` is within `max` or the map
/// has nothing left to give.
fn cut_values(map: &mut std::collections::BTreeMap<String, String>, len: &mut usize, max: usize) {
    let mut keys: Vec<(usize, String)> = map.iter().map(|(k, v)| (v.len(), k.clone())).collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.0));
    for (_, k) in keys {
        if *len <= max {
            return;
        }
        if let Some(v) = map.get_mut(&k) {
            *len -= cut_str(v, *len - max);
        }
    }
}

/// Makes `ev` fit a frame on its own: cuts it (see the module doc) until
/// its JSON takes at most `max` bytes. Returns its encoded size, or `None`
/// when even cutting every value is not enough (giant keys).
pub fn fit(ev: &mut AlertEvent, max: usize) -> Option<usize> {
    let mut len = encoded_len(ev);
    if len <= max {
        return Some(len);
    }
    if len > max {
        len -= cut_str(&mut ev.description, len - max);
    }
    if len > max {
        cut_values(&mut ev.attrs, &mut len, max);
    }
    if len > max {
        cut_values(&mut ev.labels, &mut len, max);
    }
    // The arithmetic above mirrors serde_json; the measurement decides.
    let len = encoded_len(ev);
    (len <= max).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::EventStatus;

    fn event(description: &str) -> AlertEvent {
        AlertEvent {
            event_time: 1,
            event_status: EventStatus::Critical,
            alert_key: "disk-full".into(),
            labels: [("host".to_string(), "web-1".to_string())].into(),
            attrs: Default::default(),
            description: description.into(),
            description_format: None,
        }
    }

    fn removed_by_marker(s: &str) -> usize {
        let tail = s
            .rsplit_once("[truncated by catpaw-agent: ")
            .expect("marker")
            .1;
        tail.trim_end_matches(" bytes]").parse().expect("count")
    }

    #[test]
    fn batches_stop_at_the_event_count_or_the_byte_budget() {
        // (sizes, max events, budget, events taken)
        let cases: [(&[usize], usize, usize, usize); 7] = [
            (&[], 100, 1000, 0),
            (&[10; 250], 100, usize::MAX, 100),
            (&[100, 100, 100], 100, 301, 2), // 100 + 1 + 100 + 1 + 100 = 302
            (&[100, 100, 100], 100, 302, 3),
            (&[5000, 1], 100, 1000, 1), // too big alone still goes, alone
            (&[1, 5000], 100, 1000, 1),
            (&[60 * 1024; 10], MAX_EVENTS, 256 * 1024 - 100, 4),
        ];
        for (sizes, max, budget, want) in cases {
            assert_eq!(
                batch_len(sizes.iter().copied(), max, budget),
                want,
                "{sizes:?} max {max} budget {budget}"
            );
        }
    }

    #[test]
    fn the_overhead_is_the_envelope_around_an_empty_array() {
        let env = Envelope::new(
            proto::MSG_ALERT_EVENTS,
            AlertEventsPayload {
                events: vec![event("x")],
            },
        );
        assert_eq!(
            env.to_json().len(),
            frame_overhead() + encoded_len(&event("x"))
        );
        assert!(frame_overhead() < 128, "{}", frame_overhead());
    }

    #[test]
    fn a_small_event_is_left_alone() {
        let mut ev = event("disk / above 95%");
        let before = ev.clone();
        assert_eq!(fit(&mut ev, 1024), Some(encoded_len(&before)));
        assert_eq!(ev, before);
    }

    #[test]
    fn an_oversized_description_is_cut_with_a_marker_first() {
        let mut ev = event(&"x".repeat(1 << 20));
        ev.attrs.insert("a".into(), "y".repeat(1000));
        let len = fit(&mut ev, events_budget()).expect("fits");
        assert!(len <= events_budget(), "{len}");
        assert!(
            len > events_budget() - 100,
            "cut no more than needed: {len}"
        );
        assert_eq!(ev.attrs["a"].len(), 1000, "attrs untouched");
        let kept = ev.description.find('…').expect("marker");
        assert_eq!(removed_by_marker(&ev.description), (1 << 20) - kept);
    }

    #[test]
    fn attrs_then_labels_are_cut_when_the_description_is_not_enough() {
        let mut ev = event("short");
        ev.attrs.insert("big".into(), "a".repeat(300_000));
        ev.attrs.insert("small".into(), "b".repeat(10));
        ev.labels.insert("huge".into(), "c".repeat(100_000));
        let len = fit(&mut ev, events_budget()).expect("fits");
        assert!(len <= events_budget());
        assert_eq!(ev.description, "short");
        assert!(ev.attrs["big"].ends_with(" bytes]"));
        assert_eq!(ev.attrs["small"], "b".repeat(10));
        assert_eq!(ev.labels["huge"], "c".repeat(100_000), "labels last");

        let mut ev = event("");
        ev.labels.insert("huge".into(), "c".repeat(400_000));
        assert!(fit(&mut ev, events_budget()).is_some());
        assert!(ev.labels["huge"].contains("[truncated by catpaw-agent: "));
        assert_eq!(ev.labels["host"], "web-1");
    }

    #[test]
    fn escapes_and_multibyte_text_are_measured_as_serde_json_writes_them() {
        // Each "\u{1}" takes 6 bytes in JSON, each "é" 2, each '"' 2.
        for unit in ["\u{1}", "é", "\"", "日本"] {
            let mut ev = event(&unit.repeat(200_000));
            let len = fit(&mut ev, events_budget()).expect("fits");
            assert_eq!(len, encoded_len(&ev));
            assert!(len <= events_budget(), "{unit:?}: {len}");
            assert!(ev.description.ends_with(" bytes]"));
        }
    }

    #[test]
    fn the_counted_length_is_what_serde_json_writes() {
        use proto::EventStatus::*;
        let texts = [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\ncr\rtab\t",
            "\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "é日本🙂",
            "</script>",
        ];
        let mut checked = 0;
        for (i, t) in texts.iter().enumerate() {
            for status in [Critical, Warning, Info, Ok] {
                for time in [0, 7, -1, 1_764_115_200, i64::MIN, i64::MAX] {
                    let mut ev = event(t);
                    ev.event_status = status;
                    ev.event_time = time;
                    ev.alert_key = texts[(i + 1) % texts.len()].to_string();
                    if i % 2 == 0 {
                        ev.attrs.insert(t.to_string(), "v".into());
                        ev.description_format = Some("markdown".into());
                    }
                    if i % 3 == 0 {
                        ev.labels.clear();
                    }
                    assert_eq!(encoded_len(&ev), serialized_len(&ev), "{ev:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, texts.len() * 4 * 6);
    }

    #[test]
    fn an_event_whose_keys_alone_are_too_big_is_refused() {
        let mut ev = event("");
        ev.labels.insert("k".repeat(300_000), String::new());
        assert_eq!(fit(&mut ev, events_budget()), None);
    }
}
