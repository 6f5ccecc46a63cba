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
//!    from the `log` crate, with no call site to forget. The JSON format
//!    escapes control characters itself; the writer then finds nothing to
//!    do.
//!
//!    Colour is on only when stderr is a terminal (and `NO_COLOR` is not
//!    set): a pipe, a file or the journal get plain text. On a terminal
//!    the field formatter escapes every value first, so the only escape
//!    sequences left for the writer to see are the formatter's own colour
//!    codes (SGR, `ESC [ … m`), which it lets through; anything else is
//!    still escaped.
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

/// One formatted event with its control characters escaped as
/// [`escape_controls`] does, except SGR colour sequences (`ESC [` digits
/// and `;` then `m`), which stay. Only for the coloured terminal format,
/// whose field formatter has escaped every value already.
pub(crate) fn escape_controls_keep_colour(event: &[u8]) -> Cow<'_, [u8]> {
    if !event.contains(&0x1b) {
        return escape_controls(event);
    }
    let mut out = Vec::with_capacity(event.len() + 8);
    let mut rest = event;
    while let Some(at) = rest.iter().position(|b| *b == 0x1b) {
        let seq_len = sgr_len(&rest[at..]);
        out.extend_from_slice(&escape_controls(&rest[..at]));
        match seq_len {
            Some(n) => {
                out.extend_from_slice(&rest[at..at + n]);
                rest = &rest[at + n..];
            }
            None => {
                out.extend_from_slice(b"\\x1b");
                rest = &rest[at + 1..];
            }
        }
    }
    out.extend_from_slice(&escape_controls(rest));
    Cow::Owned(out)
}

/// The length of the SGR sequence `b` starts with, if it starts with one.
fn sgr_len(b: &[u8]) -> Option<usize> {
    let body = b.strip_prefix(b"\x1b[")?;
    let params = body
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b';')
        .count();
    (body.get(params) == Some(&b'm')).then_some(2 + params + 1)
}

/// A writer that escapes each event it is handed (see [`escape_controls`];
/// with `keep_colour`, [`escape_controls_keep_colour`]). The formatter
/// hands over one whole event per `write` call.
#[derive(Debug)]
pub(crate) struct EscapeControls<W> {
    inner: W,
    keep_colour: bool,
}

impl<W: Write> Write for EscapeControls<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.keep_colour {
            self.inner.write_all(&escape_controls_keep_colour(buf))?;
        } else {
            self.inner.write_all(&escape_controls(buf))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Makes [`EscapeControls`] writers around the writers of `M`.
#[derive(Debug, Clone)]
pub(crate) struct Escaping<M> {
    make: M,
    keep_colour: bool,
}

impl<M> Escaping<M> {
    /// Escapes every control character.
    pub fn new(make: M) -> Self {
        Escaping {
            make,
            keep_colour: false,
        }
    }

    /// Lets SGR colour sequences through (see [`escape_controls_keep_colour`]).
    pub fn keeping_colour(make: M) -> Self {
        Escaping {
            make,
            keep_colour: true,
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapeControls<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapeControls {
            inner: self.make.make_writer(),
            keep_colour: self.keep_colour,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        EscapeControls {
            inner: self.make.make_writer_for(meta),
            keep_colour: self.keep_colour,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object per line (`[log] format = "json"`).
    Json,
    /// Plain text.
    Text,
    /// Text with colour: only for a terminal.
    Coloured,
}

impl Format {
    /// `json` → JSON; text otherwise, coloured when `stderr_is_terminal`
    /// and `NO_COLOR` is not set.
    pub fn choose(json: bool, stderr_is_terminal: bool, no_color: bool) -> Format {
        match (json, stderr_is_terminal && !no_color) {
            (true, _) => Format::Json,
            (false, true) => Format::Coloured,
            (false, false) => Format::Text,
        }
    }
}

/// The fmt layer for `format`, writing to `make`.
fn layer<S, M>(
    format: Format,
    make: M,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'s> tracing_subscriber::registry::LookupSpan<'s>,
    M: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::field::MakeExt;
    // A log write that fails (stderr closed: a collector restarted, a pipe
    // whose reader went away) drops that line; by default the subscriber
    // would report the failure with eprintln!, which panics on the same
    // closed stream and takes the agent down with it.
    let base = tracing_subscriber::fmt::layer().log_internal_errors(false);
    match format {
        Format::Json => base
            .json()
            .with_ansi(false)
            .with_writer(Escaping::new(make))
            .boxed(),
        Format::Text => base
            .with_ansi(false)
            .with_writer(Escaping::new(make))
            .boxed(),
        Format::Coloured => {
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                let text = format!("{value:?}");
                let text = crate::util::escape_control(&text);
                match field.name() {
                    "message" => write!(w, "{text}"),
                    name if name.starts_with("log.") => Ok(()),
                    name => write!(w, "{name}={text}"),
                }
            })
            .delimited(" ");
            base.fmt_fields(fields)
                .with_ansi(true)
                .with_writer(Escaping::keeping_colour(make))
                .boxed()
        }
    }
}

/// Installs the process's logger: stderr, `level` unless `RUST_LOG` says
/// otherwise, JSON or text (coloured only on a terminal), with both rules
/// of the module doc.
pub fn init(level: &str, json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
    use tracing_subscriber::prelude::*;

    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // The hint keeps the `log` bridge's max level at the env filter's, so
    // disabled `log::trace!` calls (cranelift has many) stay free.
    let cap = filter_fn(within_wire_cap).with_max_level_hint(LevelFilter::TRACE);
    let format = Format::choose(
        json,
        io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    );
    let layer = layer(format, io::stderr).with_filter(env.and(cap));
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

    /// Logs through the layer [`init`] installs, into a buffer.
    fn capture_as(format: Format, f: impl FnOnce()) -> String {
        use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
        use tracing_subscriber::prelude::*;
        let buf = Buf::default();
        let cap = filter_fn(within_wire_cap).with_max_level_hint(LevelFilter::TRACE);
        let filter = EnvFilter::new("trace,tungstenite::handshake=trace").and(cap);
        let sub =
            tracing_subscriber::registry().with(layer(format, buf.clone()).with_filter(filter));
        tracing::subscriber::with_default(sub, f);
        let bytes = buf.0.lock().expect("buf").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    fn capture(json: bool, f: impl FnOnce()) -> String {
        capture_as(if json { Format::Json } else { Format::Text }, f)
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_for_json() {
        assert_eq!(Format::choose(false, false, false), Format::Text);
        assert_eq!(Format::choose(false, true, false), Format::Coloured);
        assert_eq!(Format::choose(false, true, true), Format::Text, "NO_COLOR");
        assert_eq!(Format::choose(true, true, false), Format::Json);
    }

    #[test]
    fn coloured_lines_keep_their_colour_but_not_a_hostile_escape() {
        let reason = "bye\n2025 ERROR forged \u{1b}[2J\u{1b}]0;title\u{7}";
        let out = capture_as(Format::Coloured, || {
            tracing::warn!(reason = %reason, "server asked us to disconnect: {reason}");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains("\u{1b}[33m") || out.contains("\u{1b}[3"),
            "level in colour: {out:?}"
        );
        assert!(!out.contains("\u{1b}[2J"), "{out:?}");
        assert!(!out.contains("\u{1b}]"), "{out:?}");
        assert!(out.contains("\\x1b[2J"), "shown escaped: {out:?}");
        assert!(out.contains("reason=bye\\n2025"), "{out:?}");
    }

    #[test]
    fn only_sgr_sequences_pass_the_colour_writer() {
        let out = escape_controls_keep_colour(b"\x1b[1;31mred\x1b[0m \x1b[2J \x1b]0;t\x07\n");
        assert_eq!(
            String::from_utf8(out.into_owned()).expect("utf-8"),
            "\x1b[1;31mred\x1b[0m \\x1b[2J \\x1b]0;t\\x07\n"
        );
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
