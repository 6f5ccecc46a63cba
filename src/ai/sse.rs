//! Server-sent events framing: bytes in, the `data` of each event out.
//! Only what chat-completion streams use: `data:` lines (several join
//! with `\n`), comments and other fields ignored, events end at a blank
//! line, `\n`, `\r\n` or `\r` line ends.

/// Longest event accepted; a stream that never ends an event is broken.
const MAX_EVENT: usize = 4 << 20;

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub(super) struct Framer {
    buf: Vec<u8>,
    data: Option<String>,
}

impl Framer {
    /// Feeds bytes; returns the data of every event they complete.
    pub(super) fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            // A `\r` at the very end may be the first half of `\r\n`.
            if self.buf[end] == b'\r' && end + 1 == self.buf.len() {
                break;
            }
            let skip = if self.buf[end] == b'\r' && self.buf.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            let line: Vec<u8> = self.buf.drain(..end + skip).take(end).collect();
            let line =
                String::from_utf8(line).map_err(|_| "the event stream is not UTF-8".to_string())?;
            if line.is_empty() {
                if let Some(d) = self.data.take() {
                    events.push(d);
                }
                continue;
            }
            self.data_line(&line);
        }
        let pending = self.buf.len() + self.data.as_ref().map_or(0, String::len);
        if pending > MAX_EVENT {
            return Err(format!(
                "an event in the stream is longer than {MAX_EVENT} bytes"
            ));
        }
        Ok(events)
    }

    /// Adds a `data:` line's value to the event being read (other fields
    /// are ignored).
    fn data_line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => self.data = Some(rest.to_string()),
            }
        }
    }

    /// At the end of the stream: the last event, if it was not closed by
    /// a blank line.
    pub(super) fn finish(&mut self) -> Option<String> {
        if !self.buf.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            self.data_line(&line);
        }
        self.data.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_ends() {
        let mut f = Framer::default();
        assert!(f.push(b"data: {\"a\"").unwrap().is_empty());
        assert_eq!(
            f.push(b":1}\r\n\r\n: comment\n\ndata: x\r").unwrap(),
            vec!["{\"a\":1}"]
        );
        assert_eq!(f.push(b"\ndata: y\n\n").unwrap(), vec!["x\ny"]);
        assert_eq!(f.push(b"data: [DONE]").unwrap(), Vec::<String>::new());
        assert_eq!(f.finish().as_deref(), Some("[DONE]"));
    }
}
