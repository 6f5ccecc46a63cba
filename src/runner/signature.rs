//! Runner signatures: who built or approved the exact bytes of a runner
//! file, checked every time the file is loaded (start, SIGHUP, `--watch`,
//! `check-runner`).
//!
//! Why minisign's format and not one of our own: operators can sign with
//! the `minisign` tool they may already use (`minisign -S -m runner.wasm`),
//! check our signatures with `minisign -V`, and keep their keys where they
//! keep others. A signature is a detached `FILE.minisig` beside the runner;
//! a trusted key is a minisign public key named in `[sandbox] runner_keys`.
//! Verification is `minisign-verify` (small, no dependencies); both the
//! prehashed (`ED`, BLAKE2b-512, minisign's default) and the legacy (`Ed`)
//! signature are accepted.
//!
//! The rules, in the order they are applied (fail closed: a signature that
//! is there but cannot be checked is a refusal, whether or not signatures
//! are required):
//! - no `FILE.minisig`: refused when `require_signed_runners = true`,
//!   otherwise loaded as "unsigned";
//! - a signature file that cannot be read (not a regular file, over
//!   [`MAX_SIGNATURE_SIZE`]) or is not a minisign signature: refused;
//! - signed by a key not in `runner_keys`: refused;
//! - a signature that does not match the bytes: refused.
//!
//! The bytes checked are the bytes the caller compiles: the runner is read
//! once, and this module never opens it.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// What a signature file's name adds to the runner's.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// The largest signature file read (minisign's are under 400 bytes; the
/// trusted comment is the only part that can grow).
pub const MAX_SIGNATURE_SIZE: u64 = 4096;

/// The largest public key file read (a minisign `.pub` is 113 bytes).
pub const MAX_KEY_FILE_SIZE: u64 = 4096;

/// A minisign key id: 8 bytes, shown as minisign shows it (16 uppercase
/// hex digits, the bytes read as a little-endian number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// A public key operators trust to sign runners.
#[derive(Clone)]
struct TrustedKey {
    /// The operator's name for it (the `runner_keys` entry).
    name: String,
    id: KeyId,
    /// The base64 key line (`RW…`), for the effective config.
    line: String,
    key: minisign_verify::PublicKey,
}

/// The keys runner signatures are checked against, and whether a runner
/// must be signed (`[sandbox] runner_keys`, `require_signed_runners`).
#[derive(Clone, Default)]
pub struct RunnerTrust {
    keys: Vec<TrustedKey>,
    require: bool,
}

impl fmt::Debug for RunnerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerTrust")
            .field("keys", &self.key_ids())
            .field("require", &self.require)
            .finish()
    }
}

impl PartialEq for RunnerTrust {
    fn eq(&self, other: &Self) -> bool {
        self.require == other.require && self.key_ids() == other.key_ids()
    }
}

impl RunnerTrust {
    /// No keys yet; `require`: whether an unsigned runner is refused.
    pub fn new(require: bool) -> RunnerTrust {
        RunnerTrust {
            keys: Vec::new(),
            require,
        }
    }

    /// Trusts the minisign public key `text` (the base64 line, or a whole
    /// `.pub` file) under `name`. Err says what is wrong with it.
    pub fn add(&mut self, name: &str, text: &str) -> Result<KeyId, String> {
        let (id, key, line) = parse_key(text)?;
        if let Some(other) = self.keys.iter().find(|k| k.id == id) {
            return Err(format!(
                "key {id} is already trusted as `{}`: name each key once",
                other.name
            ));
        }
        self.keys.push(TrustedKey {
            name: name.to_string(),
            id,
            key,
            line,
        });
        Ok(id)
    }

    /// Whether an unsigned runner is refused.
    pub fn require(&self) -> bool {
        self.require
    }

    /// The trusted keys: (name, base64 key line), in the order added.
    pub fn public_keys(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .map(|k| (k.name.clone(), k.line.clone()))
            .collect()
    }

    /// The trusted keys: (name, key id), in the order added.
    pub fn key_ids(&self) -> Vec<(String, String)> {
        self.keys
            .iter()
            .map(|k| (k.name.clone(), k.id.to_string()))
            .collect()
    }
}

/// Who signed a runner: the operator's name for the key and its id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signer {
    /// The `[sandbox] runner_keys` entry.
    pub name: String,
    /// The minisign key id, 16 hex digits.
    pub key_id: String,
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (key {})", self.name, self.key_id)
    }
}

/// Where a loaded runner's trust comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Compiled into the binary: trusted as the binary is.
    BuiltIn,
    /// A file with no signature, loaded because signatures are not
    /// required.
    Unsigned,
    /// A file whose signature by a trusted key matched its bytes.
    Signed(Signer),
}

impl Provenance {
    /// The signer, for a signed runner.
    pub fn signer(&self) -> Option<&Signer> {
        match self {
            Provenance::Signed(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::BuiltIn => f.write_str("built-in"),
            Provenance::Unsigned => f.write_str("unsigned"),
            Provenance::Signed(s) => write!(f, "{s}"),
        }
    }
}

/// Why a runner was refused. Each names the runner, its signature file,
/// the key where one is known, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No signature, and one is required.
    #[error(
        "runner {runner} is not signed: there is no {sig} beside it, and `[sandbox] \
         require_signed_runners = true` (sign it with `catpaw-agent runner sign {runner} --key \
         KEY.key` or `minisign -S -m {runner}`, with a key whose public half is in `[sandbox] \
         runner_keys`)"
    )]
    Unsigned {
        /// The runner file.
        runner: String,
        /// The signature file looked for.
        sig: String,
    },
    /// The signature file is there but could not be read.
    #[error(
        "runner {runner}: its signature {reason} (a signature that is there is never ignored: \
         make {sig} a regular file of at most {MAX_SIGNATURE_SIZE} bytes, or remove it)"
    )]
    Unreadable {
        /// The runner file.
        runner: String,
        /// The signature file.
        sig: String,
        /// What the system or the size check said.
        reason: String,
    },
    /// The signature file is not a minisign signature.
    #[error(
        "runner {runner}: {sig} is not a minisign signature ({why}); sign the runner again \
         (`catpaw-agent runner sign {runner} --key KEY.key` or `minisign -S -m {runner}`)"
    )]
    Malformed {
        /// The runner file.
        runner: String,
        /// The signature file.
        sig: String,
        /// What is wrong with it.
        why: String,
    },
    /// Signed by a key that is not trusted.
    #[error(
        "runner {runner}: {sig} is signed by key {key_id}, which is not in `[sandbox] \
         runner_keys` (add that key's public key there if you trust it, or sign the runner \
         with a key that is listed)"
    )]
    UnknownKey {
        /// The runner file.
        runner: String,
        /// The signature file.
        sig: String,
        /// The key the signature names.
        key_id: String,
    },
    /// The signature does not match the bytes.
    #[error(
        "runner {runner}: BAD signature: {sig} (key {signer}) does not match the runner's \
         bytes: the file changed after it was signed, or the signature is another file's or \
         was not made by that key (deploy the runner and its .minisig together, or sign these \
         bytes again)"
    )]
    BadSignature {
        /// The runner file.
        runner: String,
        /// The signature file.
        sig: String,
        /// The trusted key the signature names.
        signer: Signer,
    },
}

/// The signature file of `runner`: `runner` + [`SIGNATURE_SUFFIX`].
pub fn signature_path(runner: &Path) -> PathBuf {
    let mut p = runner.as_os_str().to_owned();
    p.push(SIGNATURE_SUFFIX);
    PathBuf::from(p)
}

/// Checks the runner at `path` whose bytes (read once, by the caller, and
/// the same bytes it compiles) are `bytes`, against `trust`.
pub fn verify_file(trust: &RunnerTrust, path: &Path, bytes: &[u8]) -> Result<Provenance, Refusal> {
    let sig = read_signature(path)?;
    check(trust, path, bytes, sig.as_deref())
}

/// Reads `path`'s signature file as every file read on someone's behalf
/// is: opened once, judged on the descriptor (a regular file of at most
/// [`MAX_SIGNATURE_SIZE`]), read no further than that. `None`: there is
/// none.
pub fn read_signature(path: &Path) -> Result<Option<Vec<u8>>, Refusal> {
    let sig = signature_path(path);
    match crate::fsafe::read_file(&sig, MAX_SIGNATURE_SIZE) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(Refusal::Unreadable {
            runner: path.display().to_string(),
            sig: sig.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// The rules of the module doc, over the signature file's content `sig`
/// (`None`: there is none).
pub fn check(
    trust: &RunnerTrust,
    path: &Path,
    bytes: &[u8],
    sig: Option<&[u8]>,
) -> Result<Provenance, Refusal> {
    let runner = path.display().to_string();
    let sig_path = signature_path(path).display().to_string();
    let Some(sig) = sig else {
        if trust.require {
            return Err(Refusal::Unsigned {
                runner,
                sig: sig_path,
            });
        }
        return Ok(Provenance::Unsigned);
    };
    let malformed = |why: &str| Refusal::Malformed {
        runner: runner.clone(),
        sig: sig_path.clone(),
        why: why.to_string(),
    };
    let text = std::str::from_utf8(sig).map_err(|_| malformed("it is not text"))?;
    let id = signature_key_id(text).map_err(|why| malformed(&why))?;
    let decoded = minisign_verify::Signature::decode(text)
        .map_err(|e| malformed(&format!("{e}; it must be 4 lines as minisign writes them")))?;
    let Some(key) = trust.keys.iter().find(|k| k.id == id) else {
        return Err(Refusal::UnknownKey {
            runner,
            sig: sig_path,
            key_id: id.to_string(),
        });
    };
    let signer = Signer {
        name: key.name.clone(),
        key_id: id.to_string(),
    };
    // Legacy (`Ed`, unhashed) signatures are accepted: minisign -V still
    // checks them, and they are as strong for files of this size.
    match key.key.verify(bytes, &decoded, true) {
        Ok(()) => Ok(Provenance::Signed(signer)),
        Err(minisign_verify::Error::InvalidSignature | minisign_verify::Error::UnexpectedKeyId) => {
            Err(Refusal::BadSignature {
                runner,
                sig: sig_path,
                signer,
            })
        }
        Err(e) => Err(malformed(&e.to_string())),
    }
}

/// The key id a signature names (bytes 2..10 of its second line).
fn signature_key_id(text: &str) -> Result<KeyId, String> {
    let line = text
        .lines()
        .nth(1)
        .ok_or("it has no signature line (the second line)")?;
    let bin = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .map_err(|_| "its second line is not base64")?;
    if bin.len() != 74 {
        return Err(format!(
            "its signature line holds {} bytes, not 74",
            bin.len()
        ));
    }
    match &bin[..2] {
        b"Ed" | b"ED" => {}
        other => {
            return Err(format!(
                "algorithm {:?} is neither Ed nor ED",
                String::from_utf8_lossy(other)
            ));
        }
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bin[2..10]);
    Ok(KeyId(id))
}

/// A minisign public key: the base64 line (`RW…`), or the whole `.pub`
/// text (an `untrusted comment:` line, then that line).
pub fn parse_public_key(text: &str) -> Result<(KeyId, minisign_verify::PublicKey), String> {
    parse_key(text).map(|(id, key, _)| (id, key))
}

/// [`parse_public_key`], with the key line.
fn parse_key(text: &str) -> Result<(KeyId, minisign_verify::PublicKey, String), String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = match lines.as_slice() {
        [comment, key] if comment.starts_with("untrusted comment:") => *key,
        [key] => *key,
        _ => {
            return Err(
                "is not a minisign public key: give the base64 line (RW…) or the whole .pub \
                 file (`untrusted comment: …` and that line)"
                    .into(),
            );
        }
    };
    let bin = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| "is not a minisign public key: the key line is not base64".to_string())?;
    if bin.len() != 42 || &bin[..2] != b"Ed" {
        return Err(format!(
            "is not a minisign public key: it decodes to {} bytes, a minisign key is 42 \
             starting with `Ed` (`RW…` in base64)",
            bin.len()
        ));
    }
    let key = minisign_verify::PublicKey::from_base64(line)
        .map_err(|e| format!("is not a minisign public key: {e}"))?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&bin[2..10]);
    Ok((KeyId(id), key, line.to_string()))
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
