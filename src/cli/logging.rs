//! Log output: what every line may and may not carry, whatever the level or
//! `RUST_LOG` say.
//!
//! 1. **No raw control character.** Values from the server or a local
//!    client (a disconnect reason, a session id, a field name in a refused
//!    alert) are logged as they came; a `\n` in one would forge a second
//!    log line, an ESC would drive the reader's terminal. The writer
//!    escapes every control character of an event except the newline that
//!    ends it. It sits at the writer, not in the field formatter, so it
//!    covers every field, every message, span fields and records bridged
//!    from the `log` crate, with no call site to forget. The formatter's
//!    own colour codes would be escaped too, so colours are off. The JSON
//!    format escapes control characters itself; the writer then finds
//!    nothing to do.
//! 2. **No wire secrets.** At debug and trace, tungstenite logs the upgrade
//!    request (with the `X-Agent-Token` header) and frames as they are
//!    read. The WebSocket crates are capped at info here, a filter ANDed
//!    with `RUST_LOG`, so no directive can lift the cap.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Crates whose debug and trace output carries secrets or raw frames.
const WIRE_CRATES: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// True when the cap lets an event or span of `meta` through.
pub(crate) fn within_wire_cap(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let wire = WIRE_CRATES.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    });
    !wire || *meta.level() <= Level::INFO
}

/// One formatted event with its control characters (C0, DEL, C1) escaped,
/// except a final `\n`, which ends the line. Text that needs nothing comes
/// back borrowed.
pub(crate) fn escape_controls(event: &[u8]) -> Cow<'_, [u8]> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    let text = String::from_utf8_lossy(body);
    let escaped = crate::util::escape_control(&text);
    if matches!((&text, &escaped), (Cow::Borrowed(_), Cow::Borrowed(_))) {
        return Cow::Borrowed(event);
    }
    let mut bytes = escaped.into_owned().into_bytes();
    bytes.extend_from_slice(end);
    Cow::Owned(bytes)
}

/// A writer that escapes each event it is handed (see [`escape_controls`]).
/// The formatter hands over one whole event per `write` call.
#[derive(Debug)]
pub(crate) struct EscapeControls<W>(pub W);

impl<W: Write> Write for EscapeControls<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape_controls(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Makes [`EscapeControls`] writers around the writers of `M`.
#[derive(Debug, Clone)]
pub(crate) struct Escaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapeControls<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapeControls(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EscapeControls(self.0.make_writer_for(meta))
    }
}

/// Installs the process's logger: stderr, `level` unless `RUST_LOG` says
/// otherwise, text or JSON, with both rules of the module doc.
pub fn init(level: &str, json: bool) {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
    use tracing_subscriber::prelude::*;

    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The hint keeps the `log` bridge's max level at the env filter's, so
    // disabled `log::trace!` calls (cranelift has many) stay free.
    let cap = filter_fn(within_wire_cap).with_max_level_hint(LevelFilter::TRACE);
    // A log write that fails (stderr closed: a collector restarted, a pipe
    // whose reader went away) drops that line; by default the subscriber
    // would report the failure with eprintln!, which panics on the same
    // closed stream and takes the agent down with it.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(Escaping(io::stderr))
        .with_ansi(false)
        .log_internal_errors(false);
    let layer = if json {
        layer.json().with_filter(env.and(cap)).boxed()
    } else {
        layer.with_filter(env.and(cap)).boxed()
    };
    tracing_subscriber::registry().with(layer).init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn escaped(s: &str) -> String {
        String::from_utf8(escape_controls(s.as_bytes()).into_owned()).expect("utf-8")
    }

    #[test]
    fn control_characters_are_escaped_but_the_line_end_stays() {
        let cases = [
            ("plain line\n", "plain line\n"),
            ("no newline", "no newline"),
            (
                "reason=bye\nFAKE ERROR forged\n",
                "reason=bye\\nFAKE ERROR forged\n",
            ),
            ("a\r\nb\n", "a\\r\\nb\n"),
            ("\u{1b}[31mred\u{1b}[0m\n", "\\x1b[31mred\\x1b[0m\n"),
            ("nul\0 bel\u{7} del\u{7f}\n", "nul\\x00 bel\\x07 del\\x7f\n"),
            ("c1\u{85}csi\u{9b}\n", "c1\\u{85}csi\\u{9b}\n"),
            ("tab\there\n", "tab\\there\n"),
            ("two\n\n", "two\\n\n"),
            (
                "é 日本 \"quoted\" back\\slash\n",
                "é 日本 \"quoted\" back\\slash\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(escaped(input), want, "{input:?}");
        }
        assert!(matches!(
            escape_controls(b"nothing to do\n"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn invalid_utf8_cannot_smuggle_a_control_byte() {
        let out = escape_controls(b"bad \xff\x1b[2J\n").into_owned();
        assert!(!out[..out.len() - 1].iter().any(|b| *b < 0x20 || *b == 0x7f));
        assert_eq!(out.last(), Some(&b'\n'));
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buf").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// Logs through the same layer shape as [`init`], into a buffer.
    fn capture(json: bool, f: impl FnOnce()) -> String {
        use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
        use tracing_subscriber::prelude::*;
        let buf = Buf::default();
        let cap = filter_fn(within_wire_cap).with_max_level_hint(LevelFilter::TRACE);
        let filter = EnvFilter::new("trace,tungstenite::handshake=trace").and(cap);
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(Escaping(buf.clone()))
            .with_ansi(false);
        let layer = if json {
            layer.json().with_filter(filter).boxed()
        } else {
            layer.with_filter(filter).boxed()
        };
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, f);
        let bytes = buf.0.lock().expect("buf").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn a_hostile_value_cannot_forge_a_line_in_either_format() {
        let reason = "bye\n2025-01-01T00:00:00Z ERROR forged: \u{1b}[31mred";
        for json in [false, true] {
            let out = capture(json, || {
                tracing::warn!(reason = %reason, "server asked us to disconnect");
                tracing::info!("message text: {reason}");
            });
            assert_eq!(out.lines().count(), 2, "{out}");
            assert!(!out.contains('\u{1b}'), "{out}");
            assert!(out.lines().all(|l| !l.starts_with("2025")), "{out}");
        }
    }

    #[test]
    fn wire_crates_are_capped_at_info_even_when_asked_for_trace() {
        let out = capture(false, || {
            tracing::trace!(target: "tungstenite::handshake::client", "Request: X-Agent-Token: s3cret");
            tracing::debug!(target: "tokio_tungstenite", "frame s3cret");
            tracing::info!(target: "tungstenite::protocol", "info passes");
            tracing::trace!(target: "tungstenite_lookalike", "other crates keep trace");
        });
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("info passes"), "{out}");
        assert!(out.contains("other crates keep trace"), "{out}");
    }
}
