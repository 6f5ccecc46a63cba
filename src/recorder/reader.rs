//! Reading a recording back (`play`, `replay`, `replay --suite`): the
//! header and its version, every line in order, and the seal.
//!
//! Why the reader is strict about the seal and lenient about kinds: the
//! seal (the SHA-256 of every byte before it) is what makes a recording
//! evidence, so a difference is an error naming the file, never a
//! warning. New kinds of lines may come with a later agent; they are kept
//! as they are, so `play` can show them and `replay` can decide whether it
//! needs them. A file without a seal is the prefix a crash left: it is
//! read, and said to be unsealed; a last line cut in the middle is dropped
//! and said too.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The `format` field of the header.
pub const FORMAT: &str = "catpaw-recording";
/// The one version this reader knows.
pub const VERSION: u64 = 1;
/// The largest file read. Recordings are capped by `[recorder] max_size`
/// (16 MiB by default); this keeps a stray huge file from taking the
/// memory of the command reading it.
pub const MAX_FILE: u64 = 1 << 30;

/// Why a recording could not be read. Each names the file, and the line
/// where it applies.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("recording {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE`].
    #[error(
        "recording {file}: {bytes} bytes is more than any recording holds (at most {MAX_FILE})"
    )]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        bytes: u64,
    },
    /// The first line is not a recording header.
    #[error("{file}:1: not a catpaw recording ({what})")]
    NotARecording {
        /// The file.
        file: String,
        /// What the first line is instead.
        what: String,
    },
    /// A version this reader does not know.
    #[error(
        "{file}:1: recording format version {version} is not known to this catpaw-agent \
         (it reads version {VERSION}); use the catpaw-agent that wrote it, or a newer one"
    )]
    UnknownVersion {
        /// The file.
        file: String,
        /// The version found.
        version: String,
    },
    /// A line that is not what the format says.
    #[error("{file}:{line}: {what}")]
    BadLine {
        /// The file.
        file: String,
        /// The line number (from 1).
        line: usize,
        /// What is wrong with it.
        what: String,
    },
    /// The seal does not match the bytes before it: the file was changed
    /// after it was written.
    #[error(
        "{file}:{line}: hash mismatch: the seal says sha256 {sealed} but the {bytes} bytes \
         before it hash to {actual}; the recording was changed after it was written"
    )]
    HashMismatch {
        /// The file.
        file: String,
        /// The seal's line number.
        line: usize,
        /// The hash the seal holds.
        sealed: String,
        /// The hash of the bytes before the seal.
        actual: String,
        /// How many bytes that is.
        bytes: usize,
    },
}

/// The header (line 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The agent version that wrote it.
    pub agent: String,
    /// When the recording started, RFC 3339 UTC.
    pub started_at: String,
    /// Whether model requests and answers were written in full.
    pub record_model_content: bool,
    /// The header as written (unknown fields included).
    pub raw: Map<String, Value>,
}

/// One line after the header: a `k` and a `t`, and the whole object.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Its line number in the file (from 1).
    pub number: usize,
    /// Its kind (`start`, `call`, `frame`…; unknown kinds kept as written).
    pub kind: String,
    /// Microseconds since the session was accepted.
    pub t: u64,
    /// The whole object.
    pub value: Map<String, Value>,
}

/// How the recording ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seal {
    /// Sealed, and the seal matches.
    Sealed {
        /// The SHA-256 the seal holds (of every byte before it).
        sha256: String,
    },
    /// No seal: the session had not ended when the file stopped (the
    /// prefix a crash leaves). `cut_line` is set when the last line was
    /// cut in the middle (and dropped).
    Unsealed {
        /// The number of a last line that was incomplete, if any.
        cut_line: Option<usize>,
    },
}

/// A recording, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// The file read.
    pub path: PathBuf,
    /// Line 1.
    pub header: Header,
    /// Every line between the header and the seal, in order.
    pub lines: Vec<Line>,
    /// Sealed or a prefix.
    pub seal: Seal,
}

impl Recording {
    /// The `start` line, when there is one.
    pub fn start(&self) -> Option<&Line> {
        self.lines.iter().find(|l| l.kind == "start")
    }

    /// The session type from the `start` line (`inspect`, `diagnose`,
    /// `chat`), when there is one.
    pub fn session_type(&self) -> Option<&str> {
        self.start()?.value.get("session")?.get("type")?.as_str()
    }

    /// The `truncated` line, when the recording reached its size cap.
    pub fn truncated(&self) -> Option<&Line> {
        self.lines.iter().find(|l| l.kind == "truncated")
    }
}

/// Reads and checks the recording at `path`.
pub fn read(path: &Path) -> Result<Recording, ReadError> {
    let file = path.display().to_string();
    let io = |source| ReadError::Io {
        file: file.clone(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if size > MAX_FILE {
        return Err(ReadError::TooLarge { file, bytes: size });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(io)?;
    parse(path, &bytes)
}

/// Checks and splits `bytes`, the contents of the recording at `path`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Recording, ReadError> {
    let file = path.display().to_string();
    let bad = |line: usize, what: String| ReadError::BadLine {
        file: file.clone(),
        line,
        what,
    };
    let mut header = None;
    let mut lines = Vec::new();
    let mut seal = None;
    let mut offset = 0;
    let mut number = 0;
    while offset < bytes.len() {
        number += 1;
        let rest = &bytes[offset..];
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            // No newline: the writer was stopped in the middle of this line.
            if seal.is_some() {
                return Err(bad(number, "text after the seal line".into()));
            }
            let Some(header) = header else {
                return Err(not_a_recording(&file, rest));
            };
            return Ok(Recording {
                path: path.to_path_buf(),
                header,
                lines,
                seal: Seal::Unsealed {
                    cut_line: Some(number),
                },
            });
        };
        let text = &rest[..len];
        let line_start = offset;
        offset += len + 1;
        if seal.is_some() {
            return Err(bad(number, "a line after the seal".into()));
        }
        let object = match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) if number == 1 => return Err(not_a_recording(&file, text)),
            Ok(_) => return Err(bad(number, "not a JSON object".into())),
            Err(_) if number == 1 => return Err(not_a_recording(&file, text)),
            Err(e) => return Err(bad(number, format!("not valid JSON: {e}"))),
        };
        if number == 1 {
            header = Some(read_header(&file, object)?);
            continue;
        }
        let kind = match object.get("k") {
            Some(Value::String(k)) => k.clone(),
            _ => return Err(bad(number, "no \"k\" (kind) string".into())),
        };
        if kind == "header" {
            return Err(bad(number, "a second header".into()));
        }
        if kind == "seal" {
            let sealed = object
                .get("sha256")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(number, "a seal without a \"sha256\" string".into()))?;
            let actual = crate::util::sha256_hex(&bytes[..line_start]);
            if !sealed.eq_ignore_ascii_case(&actual) {
                return Err(ReadError::HashMismatch {
                    file,
                    line: number,
                    sealed: sealed.to_string(),
                    actual,
                    bytes: line_start,
                });
            }
            seal = Some(Seal::Sealed { sha256: actual });
            continue;
        }
        let t = object
            .get("t")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(number, format!("a {kind:?} line without a \"t\" offset")))?;
        lines.push(Line {
            number,
            kind,
            t,
            value: object,
        });
    }
    let Some(header) = header else {
        return Err(ReadError::NotARecording {
            file,
            what: "the file is empty".into(),
        });
    };
    Ok(Recording {
        path: path.to_path_buf(),
        header,
        lines,
        seal: seal.unwrap_or(Seal::Unsealed { cut_line: None }),
    })
}

fn not_a_recording(file: &str, first: &[u8]) -> ReadError {
    let shown = String::from_utf8_lossy(&first[..first.len().min(60)]).into_owned();
    ReadError::NotARecording {
        file: file.to_string(),
        what: format!("its first line is {shown:?}"),
    }
}

fn read_header(file: &str, object: Map<String, Value>) -> Result<Header, ReadError> {
    let wrong = |what: String| ReadError::NotARecording {
        file: file.to_string(),
        what,
    };
    if object.get("k").and_then(Value::as_str) != Some("header") {
        return Err(wrong("line 1 is not a header".into()));
    }
    if object.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(wrong(format!(
            "the header's format is {}, not {FORMAT:?}",
            object.get("format").unwrap_or(&Value::Null)
        )));
    }
    match object.get("version") {
        Some(v) if v.as_u64() == Some(VERSION) => {}
        Some(v) => {
            return Err(ReadError::UnknownVersion {
                file: file.to_string(),
                version: v.to_string(),
            });
        }
        None => return Err(wrong("the header has no version".into())),
    }
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(Header {
        agent: text("agent"),
        started_at: text("started_at"),
        record_model_content: object
            .get("record_model_content")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        raw: object,
    })
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
