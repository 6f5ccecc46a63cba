//! Server-sent events framing: bytes in, the `data` of each event out.
//! Only what chat-completion streams use: `data:` lines (several join
//! with `\n`), comments and other fields ignored, events end at a blank
//! line, `\n`, `\r\n` or `\r` line ends.
//!
//! Events are taken one at a time ([`Framer::next_event`]), so a reader
//! that stops at `[DONE]` never looks at what follows it, however the
//! body was cut into pieces; and each byte is looked at a bounded number
//! of times, so a body of a million short lines costs linear time.

/// Longest event accepted; a stream that never ends an event is broken.
const MAX_EVENT: usize = 4 << 20;

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub(super) struct Framer {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already read (dropped at the next feed).
    read: usize,
    data: Option<String>,
}

impl Framer {
    /// Takes the next bytes of the stream.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        self.buf.drain(..self.read);
        self.read = 0;
        self.buf.extend_from_slice(bytes);
    }

    /// The data of the next event the bytes fed so far complete, if any.
    pub(super) fn next_event(&mut self) -> Result<Option<String>, String> {
        loop {
            let rest = &self.buf[self.read..];
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                break;
            };
            // A `\r` at the very end may be the first half of `\r\n`.
            if rest[end] == b'\r' && end + 1 == rest.len() {
                break;
            }
            let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let line = std::str::from_utf8(&rest[..end])
                .map_err(|_| "the event stream is not UTF-8".to_string())?;
            let blank = line.is_empty();
            if !blank {
                data_line(&mut self.data, line);
            }
            self.read += end + skip;
            if blank && let Some(d) = self.data.take() {
                return Ok(Some(d));
            }
        }
        let pending = self.buf.len() - self.read + self.data.as_ref().map_or(0, String::len);
        if pending > MAX_EVENT {
            return Err(format!(
                "an event in the stream is longer than {MAX_EVENT} bytes"
            ));
        }
        Ok(None)
    }

    /// At the end of the stream: the last event, if it was not closed by
    /// a blank line.
    pub(super) fn finish(&mut self) -> Option<String> {
        let rest = self.buf.split_off(self.read);
        self.buf.clear();
        self.read = 0;
        if !rest.is_empty() {
            data_line(&mut self.data, &String::from_utf8_lossy(&rest));
        }
        self.data.take()
    }
}

/// Adds a `data:` line's value to the event being read (other fields are
/// ignored).
fn data_line(data: &mut Option<String>, line: &str) {
    if let Some(rest) = line.strip_prefix("data:") {
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match data {
            Some(d) => {
                d.push('\n');
                d.push_str(rest);
            }
            None => *data = Some(rest.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event `bytes` completes.
    fn push(f: &mut Framer, bytes: &[u8]) -> Vec<String> {
        f.feed(bytes);
        std::iter::from_fn(|| f.next_event().expect("framing")).collect()
    }

    #[test]
    fn events_split_across_chunks_and_line_ends() {
        let mut f = Framer::default();
        assert!(push(&mut f, b"data: {\"a\"").is_empty());
        assert_eq!(
            push(&mut f, b":1}\r\n\r\n: comment\n\ndata: x\r"),
            vec!["{\"a\":1}"]
        );
        assert_eq!(push(&mut f, b"\ndata: y\n\n"), vec!["x\ny"]);
        assert_eq!(push(&mut f, b"data: [DONE]"), Vec::<String>::new());
        assert_eq!(f.finish().as_deref(), Some("[DONE]"));
    }

    #[test]
    fn events_come_one_at_a_time_and_bad_bytes_only_when_reached() {
        let mut f = Framer::default();
        f.feed(b"data: a\n\ndata: b\n\n\xff\xfe\n\n");
        assert_eq!(f.next_event(), Ok(Some("a".into())));
        assert_eq!(f.next_event(), Ok(Some("b".into())));
        assert!(f.next_event().is_err(), "the line that is not UTF-8");
    }

    #[test]
    fn a_body_of_a_million_short_lines_is_read_in_linear_time() {
        // Found reading the framer for the `model_answer` fuzz target:
        // each line was drained from the front of the buffer, moving all
        // the rest, so n lines in one piece cost n²/2 byte moves (about
        // 5·10¹¹ for this body).
        let mut body = b"\n".repeat(1 << 20);
        body.extend_from_slice(b"data: end\n\n");
        let mut f = Framer::default();
        let started = std::time::Instant::now();
        assert_eq!(push(&mut f, &body), vec!["end"]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
