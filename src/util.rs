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

/// `s` with every control character (C0, DEL, C1) written as an escape
/// (`\n`, `\r`, `\t`, `\x1b`, `\u{9b}`), so text that came from a server
/// or a local client cannot start a forged line or drive a terminal. Text
/// that needs nothing comes back borrowed.
pub(crate) fn escape_control(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
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
        c if !c.is_control() => out.push(c),
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

#[cfg(test)]
mod tests {
    use super::{escape_control, truncate_utf8};

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("plain text é"), "plain text é");
        assert_eq!(
            escape_control("a\nfake line\r\u{1b}[31mred\u{7f}\u{9b}"),
            "a\\nfake line\\r\\x1b[31mred\\x7f\\u{9b}"
        );
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
