//! Small text helpers shared across modules.

/// Lowercase hex of a SHA-256 digest.
pub(crate) fn hex_digest(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest
        .iter()
        .fold(String::with_capacity(digest.len() * 2), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex_digest(&sha2::Sha256::digest(bytes))
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char
/// boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Code points of Unicode general category Cf (format), Unicode 16, as
/// inclusive ranges: bidi embeddings, overrides and isolates (U+202A…202E,
/// U+2066…2069), zero-width characters, the BOM, tag characters.
const FORMAT_CHARS: [(u32, u32); 22] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    // Zl and Zp: the line and paragraph separators.
    (0x2028, 0x2029),
];

/// Whether `c` is of Unicode general category Cc (control), Cf (format),
/// Zl or Zp (PROTOCOL §10): characters that move or hide text when it is
/// shown (a U+202E makes `exe.txt` display as `txt.exe`) or that start a
/// line.
pub(crate) fn is_control_or_format(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    let c = c as u32;
    // Every listed range lies at or above U+00AD: ASCII text returns here.
    c >= 0xAD && FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// `s` with every control, format and separator character (Unicode Cc,
/// Cf, Zl, Zp: C0, DEL, C1, bidi overrides, zero-widths) written as an
/// escape (`\n`, `\r`, `\t`, `\x1b`, `\u{9b}`, `\u{202e}`), so text that
/// came from a server or a local client cannot start a forged line, drive
/// a terminal or reorder what a reader sees. Text that needs nothing comes
/// back borrowed.
pub(crate) fn escape_control(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_control_or_format) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    std::borrow::Cow::Owned(out)
}

/// Appends `c` to `out`, escaped when it is a control character.
fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if !is_control_or_format(c) => out.push(c),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// What a panic said, when it said it with a string.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// A duration as an operator reads it in a log line: `250 ms`, `2 s`,
/// `1.5 s`, `3 min 5 s`, `2 h 10 min`.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 if ms.is_multiple_of(1_000) => format!("{} s", ms / 1_000),
        1_000..60_000 => format!("{:.1} s", d.as_secs_f64()),
        60_000..3_600_000 => {
            let s = d.as_secs();
            match s % 60 {
                0 => format!("{} min", s / 60),
                r => format!("{} min {r} s", s / 60),
            }
        }
        _ => {
            let m = d.as_secs() / 60;
            match m % 60 {
                0 => format!("{} h", m / 60),
                r => format!("{} h {r} min", m / 60),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{escape_control, human_duration, is_control_or_format, truncate_utf8};

    #[test]
    fn durations_read_as_an_operator_says_them() {
        use std::time::Duration;
        for (d, want) in [
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_secs(2), "2 s"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_secs(185), "3 min 5 s"),
            (Duration::from_secs(120), "2 min"),
            (Duration::from_secs(7800), "2 h 10 min"),
        ] {
            assert_eq!(human_duration(d), want);
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("plain text é"), "plain text é");
        assert_eq!(
            escape_control("a\nfake line\r\u{1b}[31mred\u{7f}\u{9b}"),
            "a\\nfake line\\r\\x1b[31mred\\x7f\\u{9b}"
        );
    }

    #[test]
    fn bidi_format_and_separator_characters_are_escaped() {
        assert_eq!(
            escape_control("invoice\u{202e}fdp.exe\u{2066}\u{200b}\u{2028}\u{feff}"),
            "invoice\\u{202e}fdp.exe\\u{2066}\\u{200b}\\u{2028}\\u{feff}"
        );
        for c in [
            '\u{0}',
            '\u{7f}',
            '\u{9b}',
            '\u{ad}',
            '\u{61c}',
            '\u{202a}',
            '\u{2069}',
            '\u{2029}',
            '\u{e0041}',
        ] {
            assert!(is_control_or_format(c), "{:x}", c as u32);
        }
        for c in [
            'a', 'é', ' ', '\u{2010}', '\u{2070}', '\u{fffc}', '中', '😀',
        ] {
            assert!(!is_control_or_format(c), "{:x}", c as u32);
        }
    }

    #[test]
    fn cuts_on_char_boundaries() {
        assert_eq!(truncate_utf8("hello", 10), "hello");
        assert_eq!(truncate_utf8("hello", 3), "hel");
        // "é" is two bytes: cutting inside it backs off to before it.
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("", 0), "");
    }
}
