//! Signed sessions (PROTOCOL §9): the Ed25519 checks on `session_start` and
//! `session_input`. (Over 450 lines on purpose: the order of checks, the
//! signed text and the raw-frame reading are one argument, best read in one
//! file; the replay cache and the tests live beside it.)
//!
//! Why: TLS proves who the control plane is, not that it is still honest. With
//! keys pinned in `[server.signing]`, a server that is impersonated or
//! compromised past TLS cannot start a session or feed a chat turn, because it
//! does not hold the signer's private key.
//!
//! This module gets the frame text, the connection's agent id and the time
//! (`now_unix`), and answers with a verdict. Its only side effects are the
//! replay cache, which an agent keeps on disk too (`journal.rs`: one synced
//! line per accepted signed message), and a `warn!` when that cache refuses.
//! The caller acks, drops and audits.
//!
//! # Order of the checks
//!
//! 1. **Presence.** None of `timestamp`, `nonce`, `key_id`, `signature` in the
//!    payload → unsigned: [`Unauthorized::SignatureRequired`] when `require`,
//!    else passed through. Any of them present → all four must be present and
//!    well formed, else [`Unauthorized::BadSignature`]. A frame we cannot read
//!    field by field (e.g. a duplicated payload key, which the session layer
//!    would resolve differently than we do) is refused the same way when it
//!    mentions a signature field or is not JSON at all; it is never taken
//!    as signed.
//! 2. **Key known**, else [`Unauthorized::UnknownKey`].
//! 3. **Signature verifies** (`verify_strict`, canonical padded base64), else
//!    [`Unauthorized::BadSignature`]. A signed text line holding `\r` or `\n`
//!    is refused here too: lines must not be able to shift.
//! 4. **Timestamp** within `max_skew` of `now` either way, else
//!    [`Unauthorized::StaleTimestamp`].
//! 5. **Nonce** unseen, else [`Unauthorized::ReplayedNonce`].
//!
//! The signature is checked before time and nonce so that only the signer
//! can put entries into the replay cache: junk is refused at step 3 and never
//! recorded. A nonce is recorded only after a message passed every check, and
//! lookup and record happen under one lock, so two copies of one frame racing
//! on two connections cannot both pass.
//!
//! # Replay cache
//!
//! Remembers `(key_id, nonce)` (as a SHA-256 digest, 32 bytes) for
//! `2 × max_skew` after it was accepted: a message is only fresh while its
//! timestamp is within `max_skew` of now, so a copy can pass the time check
//! for at most `2 × max_skew` after the original did.
//!
//! It holds at most [`REPLAY_CACHE_CAP`] entries (about 10 MB at most). Expired
//! entries are evicted first, oldest first, on every check. When the cache is
//! still full of unexpired entries, the new message is refused with
//! [`Unauthorized::ReplayedNonce`]: **fail closed**. Forgetting a live nonce
//! would re-open the replay window it exists to close; refusing only costs
//! availability, and only the holder of a pinned private key can fill the
//! cache (every entry passed the signature check), at a sustained
//! `REPLAY_CACHE_CAP / (2 × max_skew)` messages per second (166/s at the
//! default 300 s), far above what one host's sessions and chat turns need.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::proto;
use crate::util::sha256_hex;

mod journal;
mod replay;

use replay::{ReplayCache, replay_id};

/// First line of every signed text. It names the scheme and its version, so
/// a signature made by the same key for anything else never verifies here.
const DOMAIN: &str = "catpaw-session-v1";

/// Most `(key_id, nonce)` pairs the replay cache holds (see the module doc).
pub(crate) const REPLAY_CACHE_CAP: usize = 100_000;

/// Default accepted clock difference either way.
pub(crate) const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(300);

/// Longest accepted nonce, in characters (all ASCII).
const NONCE_MAX: usize = 64;

/// The payload fields that make a message "signed".
const SIGNATURE_FIELDS: [&str; 4] = ["timestamp", "nonce", "key_id", "signature"];

/// `[server.signing]`: which keys may sign, and how strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    /// Key id (the payload's `key_id`) → pinned Ed25519 public key.
    pub keys: BTreeMap<String, VerifyingKey>,
    /// Refuse unsigned `session_start` / `session_input`.
    pub require: bool,
    /// Accepted clock difference either way, in whole seconds.
    pub max_skew: Duration,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            keys: BTreeMap::new(),
            require: false,
            max_skew: DEFAULT_MAX_SKEW,
        }
    }
}

/// Decodes a pinned public key as written in `[server.signing] keys`:
/// standard padded base64 of the 32-byte Ed25519 key. The error says what is
/// wrong with it, for the config error that names the key.
pub(crate) fn parse_public_key(base64: &str) -> Result<VerifyingKey, String> {
    let bytes = BASE64.decode(base64.trim()).map_err(|_| {
        "is not standard padded base64 (e.g. \"ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=\")"
            .to_string()
    })?;
    let n = bytes.len();
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("decodes to {n} bytes; an Ed25519 public key has 32"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "is not a valid Ed25519 public key (not a curve point)".to_string())?;
    // A small-order key verifies forged signatures under lax checks and
    // nothing under `verify_strict`: either way it is a mistake.
    if key.is_weak() {
        return Err("is a weak (small-order) Ed25519 key; pin the signer's real public key".into());
    }
    Ok(key)
}

pub use crate::proto::Unauthorized;

/// Checks signatures of inbound session messages. Cheap to clone: clones
/// share the configuration and one replay cache, so every connection must
/// use clones of one `Verifier` for replays across reconnects to be caught.
#[derive(Clone)]
pub(crate) struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SigningConfig,
    replay: Mutex<ReplayCache>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cache itself is up to 100k digests: show only its size.
        f.debug_struct("Verifier")
            .field("cfg", &self.inner.cfg)
            .field("replay_entries", &self.cache().len())
            .finish()
    }
}

/// Which message a signature is for; it is line 2 of the signed text.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Start,
    Input,
}

impl Verifier {
    /// A verifier with an empty replay cache of [`REPLAY_CACHE_CAP`] entries.
    pub fn new(cfg: SigningConfig) -> Verifier {
        Verifier::with_replay_capacity(cfg, REPLAY_CACHE_CAP)
    }

    /// A verifier whose replay cache is kept in the journal at `path` (§9:
    /// the window holds across restarts), loaded at `now_unix`. Without
    /// signing configured nothing is read or written. A journal that cannot
    /// be trusted refuses signed messages for one window (`2 × max_skew`)
    /// from now, with an error log line saying why; one that cannot be
    /// written at all is an error.
    pub fn persistent(cfg: SigningConfig, path: &Path, now_unix: i64) -> anyhow::Result<Verifier> {
        if cfg.keys.is_empty() && !cfg.require {
            return Ok(Verifier::new(cfg));
        }
        let loaded = journal::Journal::load(path, now_unix).with_context(|| {
            format!(
                "cannot keep the signed-session replay journal {} (PROTOCOL §9); check that the state dir is writable",
                path.display()
            )
        })?;
        let window = i64::try_from(cfg.max_skew.as_secs().saturating_mul(2)).unwrap_or(i64::MAX);
        let blind_until = loaded.distrusted.map(|why| {
            tracing::error!(
                path = %path.display(),
                why = %why,
                refuse_for_secs = window,
                "the signed-session replay journal cannot be trusted; refusing signed messages for one replay window (the file is kept as replay_nonces.bad)"
            );
            now_unix.saturating_add(window)
        });
        Ok(Verifier {
            inner: Arc::new(Inner {
                cfg,
                replay: Mutex::new(ReplayCache::persistent(
                    REPLAY_CACHE_CAP,
                    loaded.journal,
                    loaded.entries,
                    blind_until,
                )),
            }),
        })
    }

    /// As [`Verifier::new`] with a smaller cache, so tests can fill it.
    pub(crate) fn with_replay_capacity(cfg: SigningConfig, cap: usize) -> Verifier {
        Verifier {
            inner: Arc::new(Inner {
                cfg,
                replay: Mutex::new(ReplayCache::new(cap)),
            }),
        }
    }

    /// Whether signing is configured at all (any key, or `require`). When it
    /// is not, the checks pass every message without reading it: the feature
    /// is opt-in, and an agent without `[server.signing]` must keep accepting
    /// what the reference agent accepts, signature fields or not.
    pub fn enabled(&self) -> bool {
        !self.inner.cfg.keys.is_empty() || self.inner.cfg.require
    }

    /// Checks a `session_start`. `frame` is the whole inbound text frame
    /// (the envelope JSON), `agent_id` this connection's `X-Agent-ID`.
    /// `Ok(None)`: unsigned and allowed; `Ok(Some(key_id))`: validly signed
    /// by that key, nonce now recorded.
    pub(crate) fn check_start(
        &self,
        frame: &str,
        agent_id: &str,
        now_unix: i64,
    ) -> Result<Option<String>, Unauthorized> {
        self.check(Kind::Start, frame, agent_id, now_unix)
    }

    /// Checks a `session_input`; as [`Verifier::check_start`].
    pub(crate) fn check_input(
        &self,
        frame: &str,
        agent_id: &str,
        now_unix: i64,
    ) -> Result<Option<String>, Unauthorized> {
        self.check(Kind::Input, frame, agent_id, now_unix)
    }

    fn check(
        &self,
        kind: Kind,
        frame: &str,
        agent_id: &str,
        now_unix: i64,
    ) -> Result<Option<String>, Unauthorized> {
        if !self.enabled() {
            return Ok(None);
        }
        let cfg = &self.inner.cfg;
        let fields = match parse_frame(frame) {
            Ok(f) if f.is_signed() => f,
            Ok(_) => return unsigned(cfg.require),
            Err(()) if mentions_signature(frame) => return Err(Unauthorized::BadSignature),
            Err(()) => return unsigned(cfg.require),
        };
        let sig = fields.signature_fields()?;
        let key = cfg.keys.get(&sig.key_id).ok_or(Unauthorized::UnknownKey)?;
        let text = signed_text(kind, agent_id, &fields, sig.timestamp, &sig.nonce)?;
        key.verify_strict(text.as_bytes(), &sig.signature)
            .map_err(|_| Unauthorized::BadSignature)?;
        let skew = cfg.max_skew.as_secs();
        if now_unix.abs_diff(sig.timestamp) > skew {
            return Err(Unauthorized::StaleTimestamp);
        }
        let keep = i64::try_from(skew.saturating_mul(2)).unwrap_or(i64::MAX);
        self.cache()
            .admit(replay_id(&sig.key_id, &sig.nonce), now_unix, keep)?;
        Ok(Some(sig.key_id))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ReplayCache> {
        // A panic while holding the lock can only be an allocation failure
        // inside `admit`, which leaves at worst an expiry entry without its
        // digest (harmless, evicted in time). Keep serving rather than
        // refuse every signed message from then on.
        self.inner
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The wall clock in unix seconds, as signed timestamps count it (0 before
/// 1970, which only makes every timestamp stale).
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unsigned(require: bool) -> Result<Option<String>, Unauthorized> {
    if require {
        Err(Unauthorized::SignatureRequired)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
/// The text a signer signs for this `session_start` frame (PROTOCOL §9): the
/// frame must hold `timestamp` and `nonce`; `key_id` and `signature` are not
/// signed and may be absent.
pub(crate) fn signed_text_start(frame: &str, agent_id: &str) -> Result<String, Unauthorized> {
    signed_text_of(Kind::Start, frame, agent_id)
}

#[cfg(test)]
/// The text a signer signs for this `session_input` frame; as
/// [`signed_text_start`].
pub(crate) fn signed_text_input(frame: &str, agent_id: &str) -> Result<String, Unauthorized> {
    signed_text_of(Kind::Input, frame, agent_id)
}

#[cfg(test)]
fn signed_text_of(kind: Kind, frame: &str, agent_id: &str) -> Result<String, Unauthorized> {
    let fields = parse_frame(frame).map_err(|()| Unauthorized::BadSignature)?;
    signed_text(
        kind,
        agent_id,
        &fields,
        fields.timestamp()?,
        fields.nonce()?,
    )
}

// ---- reading the frame ----

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    payload: Option<Fields<'a>>,
}

/// The payload fields §9 reads. Strings are decoded the way `proto` decodes
/// them, so the agent signs over the same values the session runs with;
/// `params` and the four signature fields stay raw. Serde refuses a field
/// given twice, so a frame cannot show us one `params` and the session
/// layer (last one wins) another.
#[derive(Default, Deserialize)]
struct Fields<'a> {
    session_id: Option<String>,
    session_type: Option<String>,
    user_name: Option<String>,
    message: Option<String>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    nonce: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    key_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    signature: Option<&'a RawValue>,
}

/// `Some` for any value that is there, `null` included: plain `Option`
/// would read `"params": null` as absent and hash the wrong bytes.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn parse_frame(frame: &str) -> Result<Fields<'_>, ()> {
    let f: Frame<'_> = serde_json::from_str(frame).map_err(|_| ())?;
    Ok(f.payload.unwrap_or_default())
}

/// For a frame `parse_frame` could not read: does its payload carry any
/// signature field? Anything unreadable even as plain JSON counts as yes.
fn mentions_signature(frame: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(frame) else {
        return true;
    };
    match v.get("payload") {
        Some(serde_json::Value::Object(p)) => SIGNATURE_FIELDS.iter().any(|k| p.contains_key(*k)),
        _ => false,
    }
}

/// The four signature fields, each well formed.
struct SignatureFields {
    timestamp: i64,
    nonce: String,
    key_id: String,
    signature: Signature,
}

impl<'a> Fields<'a> {
    fn is_signed(&self) -> bool {
        self.timestamp.is_some()
            || self.nonce.is_some()
            || self.key_id.is_some()
            || self.signature.is_some()
    }

    fn timestamp(&self) -> Result<i64, Unauthorized> {
        // A JSON integer only: `1.7e9`, `"1764115200"` and null are refused.
        let raw = self.timestamp.ok_or(Unauthorized::BadSignature)?;
        serde_json::from_str(raw.get()).map_err(|_| Unauthorized::BadSignature)
    }

    fn nonce(&self) -> Result<&'a str, Unauthorized> {
        let nonce = self.nonce.ok_or(Unauthorized::BadSignature)?.get();
        // Every valid nonce is a JSON string with no escapes, so its text is
        // the raw value minus the quotes.
        let inner = nonce
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .ok_or(Unauthorized::BadSignature)?;
        let ok = (1..=NONCE_MAX).contains(&inner.len())
            && inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(inner)
        } else {
            Err(Unauthorized::BadSignature)
        }
    }

    fn signature_fields(&self) -> Result<SignatureFields, Unauthorized> {
        let string = |raw: Option<&RawValue>| -> Result<String, Unauthorized> {
            let raw = raw.ok_or(Unauthorized::BadSignature)?;
            serde_json::from_str(raw.get()).map_err(|_| Unauthorized::BadSignature)
        };
        let bytes = BASE64
            .decode(string(self.signature)?)
            .map_err(|_| Unauthorized::BadSignature)?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| Unauthorized::BadSignature)?;
        Ok(SignatureFields {
            timestamp: self.timestamp()?,
            nonce: self.nonce()?.to_string(),
            key_id: string(self.key_id)?,
            signature: Signature::from_bytes(&bytes),
        })
    }
}

/// The §9 signed text: lines joined by `\n`, no trailing newline.
fn signed_text(
    kind: Kind,
    agent_id: &str,
    f: &Fields<'_>,
    timestamp: i64,
    nonce: &str,
) -> Result<String, Unauthorized> {
    let timestamp = timestamp.to_string();
    let session_id = f.session_id.as_deref().unwrap_or("");
    let lines: Vec<&str>;
    let digest;
    match kind {
        Kind::Start => {
            digest = sha256_hex(f.params.map_or("", |p| p.get()).as_bytes());
            lines = vec![
                DOMAIN,
                proto::MSG_SESSION_START,
                agent_id,
                session_id,
                f.session_type.as_deref().unwrap_or(""),
                f.user_name.as_deref().unwrap_or(""),
                &timestamp,
                nonce,
                &digest,
            ];
        }
        Kind::Input => {
            digest = sha256_hex(f.message.as_deref().unwrap_or("").as_bytes());
            lines = vec![
                DOMAIN,
                proto::MSG_SESSION_INPUT,
                agent_id,
                session_id,
                &timestamp,
                nonce,
                &digest,
            ];
        }
    }
    // A line break inside a field would let two different messages share
    // one signed text (e.g. user "a\nb" vs user "a" plus a shifted line).
    if lines.iter().any(|l| l.contains(['\r', '\n'])) {
        return Err(Unauthorized::BadSignature);
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests;
