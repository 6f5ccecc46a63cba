//! Reading a recording back: its seal checked first (a changed byte is a
//! hash mismatch), then its header (format and version), then every line
//! as JSON with its kind and time offset.
//!
//! Why the seal comes first: a changed byte can also break the line it is
//! in, and "line 7 is not JSON" would hide what happened; the hash names
//! it. Why [`scan`] also reads what has no seal: `play` shows the prefix a
//! crash left (and says so), while `replay` ([`read`]) refuses it. A last
//! line cut in the middle (no newline: the writer stopped there) is
//! dropped and said. Kinds this reader does not know are kept as they are:
//! `play` shows them, `replay` decides whether it needs them.

use std::path::Path;

use serde_json::Value;

use super::writer::{FORMAT, VERSION};

/// Largest recording read back (16 times the default `max_size`): a
/// recording is bounded when written; a bigger file is not one of ours.
pub const MAX_READ: u64 = 256 << 20;

/// Why a recording cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{0}")]
    Unreadable(String),
    /// No seal line: the session did not end (a crash left this prefix).
    #[error("unsealed: the session did not end ({0} holds the prefix a crash left)")]
    Unsealed(String),
    /// The seal's hash is not the hash of the bytes before it.
    #[error("hash mismatch: {file} was changed after it was sealed (sealed {sealed}, now {now})")]
    HashMismatch {
        /// The file.
        file: String,
        /// The hash the seal holds.
        sealed: String,
        /// The hash of the bytes before the seal now.
        now: String,
    },
    /// Not a recording, a version this agent does not know, or a line that
    /// is not what the format says (the message names file and line).
    #[error("{0}")]
    Format(String),
}

/// A sealed recording, read and checked.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Every line but the seal, in order (the header first).
    pub lines: Vec<Value>,
    /// The seal's SHA-256.
    pub sha256: String,
}

impl Recorded {
    /// The first line of kind `k`.
    pub fn first(&self, k: &str) -> Option<&Value> {
        self.lines.iter().find(|l| l["k"] == k)
    }

    /// Every line of kind `k`, in order.
    pub fn all<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["k"] == k)
    }
}

/// How a recording ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seal {
    /// Sealed, and the seal matches the bytes before it.
    Sealed {
        /// The SHA-256 the seal holds.
        sha256: String,
    },
    /// No seal: the session had not ended when the file stopped.
    Unsealed {
        /// The number of a last line that was cut in the middle (and is
        /// not in `lines`), if there was one.
        cut_line: Option<usize>,
    },
}

/// A recording as far as it goes, sealed or not (`play`).
#[derive(Debug, Clone)]
pub struct Scan {
    /// Every whole line but the seal, in order (the header first); line
    /// `i` of the file is `lines[i - 1]`.
    pub lines: Vec<Value>,
    /// How it ends.
    pub seal: Seal,
}

impl Scan {
    /// The session type of its `start` line (`inspect`, `diagnose`,
    /// `chat`), when it has one.
    pub fn session_type(&self) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l["k"] == "start")?
            .pointer("/session/type")?
            .as_str()
    }
}

/// Reads and checks the sealed recording at `path`.
pub fn read(path: &Path) -> Result<Recorded, ReadError> {
    let shown = path.display().to_string();
    parse(&shown, &read_bytes(path)?)
}

/// Reads the recording at `path` as far as it goes: [`scan`].
pub fn read_scan(path: &Path) -> Result<Scan, ReadError> {
    let shown = path.display().to_string();
    scan(&shown, &read_bytes(path)?)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ReadError> {
    crate::fsafe::read_file(path, MAX_READ)
        .map_err(|e| ReadError::Unreadable(format!("recording {e}")))
}

/// Checks and parses the bytes of a sealed recording named `file`.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Recorded, ReadError> {
    let s = scan(file, bytes)?;
    match s.seal {
        Seal::Sealed { sha256 } => Ok(Recorded {
            lines: s.lines,
            sha256,
        }),
        Seal::Unsealed { .. } => Err(ReadError::Unsealed(file.to_string())),
    }
}

/// Checks and parses the bytes of a recording named `file`, sealed or
/// not: a seal that does not match is an error, no seal is
/// [`Seal::Unsealed`].
pub fn scan(file: &str, bytes: &[u8]) -> Result<Scan, ReadError> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let last_at = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let last: Value = serde_json::from_slice(&body[last_at..]).unwrap_or(Value::Null);
    let (content, seal) = if last["k"] == "seal" && bytes.ends_with(b"\n") {
        let sealed = last["sha256"].as_str().unwrap_or_default().to_string();
        let now = crate::util::sha256_hex(&bytes[..last_at]);
        if now != sealed {
            return Err(ReadError::HashMismatch {
                file: file.to_string(),
                sealed,
                now,
            });
        }
        (&bytes[..last_at], Seal::Sealed { sha256: sealed })
    } else if bytes.ends_with(b"\n") || bytes.is_empty() {
        (bytes, Seal::Unsealed { cut_line: None })
    } else {
        // The writer ends every line with a newline: one without it was
        // being written when the file stopped.
        let cut_line = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        (
            &bytes[..last_at],
            Seal::Unsealed {
                cut_line: Some(cut_line),
            },
        )
    };
    let mut lines = Vec::new();
    let mut refs = FrameRefs::default();
    let text = content.strip_suffix(b"\n").unwrap_or(content);
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if content.is_empty() {
            break;
        }
        let number = i + 1;
        let bad = |what: String| ReadError::Format(format!("{file}:{number}: {what}"));
        let v: Value = serde_json::from_slice(line).map_err(|e| {
            bad(format!(
                "not JSON ({e}); a recording is one JSON object a line"
            ))
        })?;
        if number == 1 {
            check_header(file, &v)?;
        } else {
            match v["k"].as_str() {
                None => return Err(bad("no \"k\" (the line's kind)".into())),
                Some("header") => return Err(bad("a second header".into())),
                Some("seal") => return Err(bad("a seal before the last line".into())),
                Some(k) if !v["t"].is_u64() => {
                    return Err(bad(format!("a {k:?} line without its \"t\" offset")));
                }
                Some(_) => {}
            }
        }
        let mut v = v;
        refs.see(&mut v).map_err(bad)?;
        lines.push(v);
    }
    if lines.is_empty() {
        return Err(ReadError::Format(format!(
            "{file} is not a catpaw recording (it has no whole line)"
        )));
    }
    Ok(Scan { lines, seal })
}

/// What a `frame` line written by reference (`"emit":N`, version 2)
/// needs: the session's id and the last `host.emit` call. Each such line
/// gets its `raw` frame rebuilt here, so every reader sees `raw`.
#[derive(Default)]
struct FrameRefs {
    session_id: Option<String>,
    /// The last `host.emit` call: its number, delta and stage.
    emit: Option<(u64, String, String)>,
}

impl FrameRefs {
    fn see(&mut self, line: &mut Value) -> Result<(), String> {
        match line["k"].as_str() {
            Some("start") => {
                self.session_id = line
                    .pointer("/session/id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            Some("call") if line["fn"] == "host.emit" => {
                let args = &line["args"];
                self.emit = match (
                    line["n"].as_u64(),
                    args["delta"].as_str(),
                    args["stage"].as_str(),
                ) {
                    (Some(n), Some(d), Some(st)) => Some((n, d.to_string(), st.to_string())),
                    _ => None,
                };
            }
            Some("frame") if line.get("raw").is_none() => {
                let Some(n) = line["emit"].as_u64() else {
                    return Err("a frame line with neither \"raw\" nor \"emit\"".into());
                };
                let (Some((at, delta, stage)), Some(id)) = (&self.emit, &self.session_id) else {
                    return Err(format!(
                        "a frame names host.emit call {n}, which no line before it holds"
                    ));
                };
                let wire = super::frame::wire_stage(stage)
                    .ok_or_else(|| format!("host.emit call {n} has an unknown stage {stage:?}"))?;
                if *at != n {
                    return Err(format!(
                        "a frame names host.emit call {n}, but the last one is {at}"
                    ));
                }
                line["raw"] = Value::String(super::frame::plain_output(id, delta, wire));
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_header(file: &str, header: &Value) -> Result<(), ReadError> {
    if header["k"] != "header" || header["format"] != FORMAT {
        return Err(ReadError::Format(format!(
            "{file} is not a catpaw recording (its first line is not a `{FORMAT}` header)"
        )));
    }
    if !header["version"]
        .as_u64()
        .is_some_and(|v| (1..=VERSION).contains(&v))
    {
        return Err(ReadError::Format(format!(
            "{file}: recording format version {} is not known to this agent (it reads \
             version {VERSION}; use the agent that wrote it, {})",
            header["version"], header["agent"]
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
