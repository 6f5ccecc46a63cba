//! Reading a recording back: its seal checked first (a changed byte is a
//! hash mismatch), then its header (format and version), then every line
//! as JSON.

use std::path::Path;

use serde_json::Value;

use super::writer::{FORMAT, VERSION};

/// Largest recording read back (16 times the default `max_size`): a
/// recording is bounded when written; a bigger file is not one of ours.
const MAX_READ: u64 = 256 << 20;

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
    /// Not a recording, or a version this agent does not know.
    #[error("{0}")]
    Format(String),
}

/// A recording, read and checked.
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

/// Reads and checks the recording at `path`.
pub fn read(path: &Path) -> Result<Recorded, ReadError> {
    let shown = path.display().to_string();
    let bytes = crate::fsafe::read_file(path, MAX_READ)
        .map_err(|e| ReadError::Unreadable(format!("recording {e}")))?;
    parse(&shown, &bytes)
}

/// Checks and parses the bytes of a recording named `file`.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Recorded, ReadError> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let seal_at = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let seal: Value = serde_json::from_slice(&body[seal_at..]).unwrap_or(Value::Null);
    if seal["k"] != "seal" {
        return Err(ReadError::Unsealed(file.to_string()));
    }
    let sealed = seal["sha256"].as_str().unwrap_or_default().to_string();
    let now = crate::util::sha256_hex(&bytes[..seal_at]);
    if now != sealed {
        return Err(ReadError::HashMismatch {
            file: file.to_string(),
            sealed,
            now,
        });
    }
    let mut lines = Vec::new();
    for (i, line) in bytes[..seal_at].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| ReadError::Format(format!("{file}: line {} is not JSON: {e}", i + 1)))?;
        lines.push(v);
    }
    let header = lines.first().cloned().unwrap_or(Value::Null);
    if header["k"] != "header" || header["format"] != FORMAT {
        return Err(ReadError::Format(format!(
            "{file} is not a catpaw recording (its first line is not a `{FORMAT}` header)"
        )));
    }
    if header["version"].as_u64() != Some(VERSION) {
        return Err(ReadError::Format(format!(
            "{file}: recording format version {} is not known to this agent (it reads \
             version {VERSION}; use the agent that wrote it, {})",
            header["version"], header["agent"]
        )));
    }
    Ok(Recorded {
        lines,
        sha256: sealed,
    })
}
