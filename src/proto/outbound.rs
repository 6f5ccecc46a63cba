//! PROTOCOL §11, the bounds on what the agent sends, as pure functions on
//! payloads: the limits, the report cut and its marker, the error cut, and
//! the byte count of a string inside JSON that makes the cuts exact.
//!
//! Why in JSON bytes: a frame's size is its JSON, and JSON escapes a
//! control character to six bytes. A report of 768 KiB of `\u{1}` is a
//! 4.5 MiB frame, so a cut measured in text bytes alone would not bound
//! the frame. Every cut here keeps within both: the text limit §11 names,
//! and the JSON budget the frame leaves.

/// Largest frame the agent sends, envelope included: the read limit it
/// applies to the server's frames itself (§1).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Largest report text, the marker included.
pub const MAX_REPORT_BYTES: usize = 768 * 1024;
/// Largest `session_error.error` text, the marker included.
pub const MAX_ERROR_BYTES: usize = 4 * 1024;
/// Largest `session_output.metadata` sent, as JSON; larger is not sent.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Most JSON bytes of delta text in one frame; a longer delta is split
/// over several frames (same stage, in order: a server appends them).
pub const MAX_DELTA_JSON_BYTES: usize = 128 * 1024;

/// What ends a cut report; `dropped` counts the bytes of text removed.
pub fn report_marker(dropped: usize) -> String {
    format!("\n… [report truncated by catpaw-agent: {dropped} bytes]")
}

/// What ends a cut error text; `dropped` counts the bytes removed.
fn error_marker(dropped: usize) -> String {
    format!("… [truncated by catpaw-agent: {dropped} bytes]")
}

/// Bytes a character takes inside a JSON string, as serde_json writes it.
pub(crate) fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Bytes of `s` inside a JSON string (quotes not counted). serde_json
/// escapes only ASCII (quote, backslash, controls) and writes every other
/// byte as it is, so counting bytes is exact and needs no decoding.
pub(crate) fn json_str_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum()
}

/// The end of the longest prefix of `s` (on a char boundary) that takes at
/// most `max_text` bytes of text and `max_json` bytes inside JSON.
pub(crate) fn prefix_within(s: &str, max_text: usize, max_json: usize) -> usize {
    let mut json = 0usize;
    for (i, c) in s.char_indices() {
        json += json_char_len(c);
        if i + c.len_utf8() > max_text || json > max_json {
            return i;
        }
    }
    s.len()
}

/// Cuts `text` to at most `max_text` bytes and `max_json` bytes of JSON,
/// the marker (`marker(bytes removed)`) included; untouched when it fits.
/// A budget too small for the marker itself leaves an empty string.
fn cut_with(text: &mut String, max_text: usize, max_json: usize, marker: fn(usize) -> String) {
    if text.len() <= max_text && json_str_len(text) <= max_json {
        return;
    }
    // The marker with as many digits as the count can have.
    let longest = marker(text.len());
    let end = prefix_within(
        text,
        max_text.saturating_sub(longest.len()),
        max_json.saturating_sub(json_str_len(&longest)),
    );
    let dropped = text.len() - end;
    text.truncate(end);
    let m = marker(dropped);
    if text.len() + m.len() <= max_text && json_str_len(text) + json_str_len(&m) <= max_json {
        text.push_str(&m);
    }
}

/// Cuts a report to [`MAX_REPORT_BYTES`] of text and `max_json` bytes of
/// JSON (what its frame has room for), ending it with [`report_marker`].
pub fn cut_report(report: &mut String, max_json: usize) {
    cut_with(report, MAX_REPORT_BYTES, max_json, report_marker);
}

/// Cuts an error text to [`MAX_ERROR_BYTES`], with a marker.
pub fn cut_error(error: &mut String) {
    cut_with(error, MAX_ERROR_BYTES, usize::MAX, error_marker);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lengths_match_serde() {
        for s in [
            "",
            "plain",
            "q\"b\\",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "é中😀",
        ] {
            let serde = serde_json::to_string(s).expect("json").len() - 2;
            assert_eq!(json_str_len(s), serde, "{s:?}");
            assert_eq!(s.chars().map(json_char_len).sum::<usize>(), serde, "{s:?}");
        }
    }

    #[test]
    fn a_report_that_fits_is_untouched() {
        let mut r = "x".repeat(MAX_REPORT_BYTES);
        cut_report(&mut r, MAX_FRAME_BYTES);
        assert_eq!(r.len(), MAX_REPORT_BYTES);
    }

    #[test]
    fn a_long_report_is_cut_on_a_char_boundary_with_the_exact_marker() {
        let original = "é".repeat(3 << 19); // 3 MiB of two-byte chars
        let mut r = original.clone();
        cut_report(&mut r, MAX_FRAME_BYTES);
        assert!(r.len() <= MAX_REPORT_BYTES, "{}", r.len());
        let (kept, tail) = r
            .split_once("\n… [report truncated by catpaw-agent: ")
            .expect("marker");
        assert!(original.starts_with(kept));
        assert_eq!(tail, format!("{} bytes]", original.len() - kept.len()));
        // Nothing more would have fitted.
        assert!(MAX_REPORT_BYTES - r.len() < 2, "{}", r.len());
    }

    #[test]
    fn a_report_of_control_characters_is_cut_by_its_json() {
        let mut r = "\u{1}".repeat(MAX_REPORT_BYTES);
        cut_report(&mut r, 512 * 1024);
        let json = serde_json::to_string(&r).expect("json").len() - 2;
        assert!(json <= 512 * 1024, "{json}");
        assert!(r.ends_with(" bytes]"), "{}", &r[r.len() - 40..]);
    }

    #[test]
    fn a_budget_below_the_marker_leaves_nothing() {
        let mut r = "x".repeat(100);
        cut_report(&mut r, 10);
        assert_eq!(r, "");
    }

    #[test]
    fn an_error_text_is_cut_to_4_kib() {
        let mut e = "y".repeat(20_000);
        cut_error(&mut e);
        assert!(e.len() <= MAX_ERROR_BYTES);
        let (kept, tail) = e
            .split_once("… [truncated by catpaw-agent: ")
            .expect("marker");
        assert_eq!(tail, format!("{} bytes]", 20_000 - kept.len()));
        let mut short = "short".to_string();
        cut_error(&mut short);
        assert_eq!(short, "short");
    }
}
