//! Masking of secret values in free text: tool output (command lines,
//! mount sources and options, log lines), shell commands and tool
//! arguments in the audit. Whatever a guest or an audit reader sees must
//! not carry a password that happened to be typed on a command line or
//! put in a mount option.
//!
//! Three kinds of rule, applied in this order:
//!
//! 1. Shapes ([`shapes`]): PEM private-key bodies over any number of
//!    lines, the password in URL userinfo (`scheme://user:pw@host`,
//!    `//user:pw@nas/share`), vendor tokens by prefix (`AKIA…`, `ghp_…`,
//!    `xoxb-…`) and JWTs, wherever they appear.
//! 2. Keys ([`keys`]): the value after a secret key, with `=` or `:` and
//!    with or without spaces around it (`--db-pass=x`, `DB_PASSWORD=x`,
//!    `"token" : "x"`, `db_password : x`, `Authorization: Bearer x`), or
//!    the word after a secret flag (`--token x`, `-storepass x`).
//! 3. Programs ([`programs`]): short flags judged per program (`mysql
//!    -pX`, `sshpass -p X`, `redis-cli -a X`, `curl -u user:X`), since the
//!    same letter is a port or a switch elsewhere.
//!
//! The text is otherwise kept byte for byte, whitespace included; a quoted
//! value keeps its quotes (`"password":"***"`), so a masked JSON string is
//! still a JSON string. Masking errs on the side of hiding: a harmless
//! value under a secret-looking key is hidden too, and a quote left open
//! after a secret key hides everything up to where it closes. Masking is
//! idempotent (masked text masks to itself), so a field masked before a
//! tool cuts it may be masked again by the dispatcher.
//!
//! Masking runs on every tool output (up to 32 KiB), so its cost is
//! linear in the text: one pass for PEM blocks, one over words, each
//! word's bytes looked at a bounded number of times, no backtracking, no
//! allocation per word unless it changes. Measured on 32 KiB of the
//! ordinary-text corpus in `tests.rs` (the module built alone with
//! `rustc -O`, on a 2-core box at load 8–10): about 0.37 ms of CPU,
//! 5.5 M instructions, where the masker this one replaced took 0.47 ms
//! and 7.1 M while catching far less.

mod keys;
mod programs;
mod shapes;
mod value;

#[cfg(test)]
mod tests;

use programs::{Action, Context, Part};
use serde_json::Value;
use value::{Flow, Stops, ValueSpec, closing, key_before, looks_like_flag, mask_value, value_spec};

/// HTTP auth schemes: `Authorization: Bearer x` masks `x`, not `Bearer`.
const AUTH_SCHEMES: [&str; 5] = ["bearer", "basic", "digest", "token", "negotiate"];

/// What the next word means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The next word stands on its own.
    Nothing,
    /// A secret key stood alone (`"password"`, `db_password`): a next
    /// word starting with `=` or `:` is its separator.
    Sep(ValueSpec),
    /// The next word starts with a secret value.
    Value(ValueSpec),
    /// Inside a quoted secret value that spans words: drop until `q`.
    Quote(char),
}

/// `text` masked, then cut to at most `cap` bytes (on a char boundary), and
/// whether it was cut. Masking comes first: a cut first could leave a
/// secret's prefix in a shape masking no longer recognises.
pub(crate) fn masked_cut(text: &str, cap: usize) -> (String, bool) {
    let masked = mask_secrets(text);
    let kept = crate::util::truncate_utf8(&masked, cap);
    (kept.to_string(), kept.len() < masked.len())
}

/// Returns `text` with secret values replaced by `***`.
pub(crate) fn mask_secrets(text: &str) -> String {
    let text = shapes::mask_pem(text);
    let mut m = Masker {
        out: String::with_capacity(text.len()),
        pending: Pending::Nothing,
        program: None,
    };
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let word_at = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        if word_at > 0 {
            m.space(&rest[..word_at]);
            rest = &rest[word_at..];
            continue;
        }
        let end = word_end(rest);
        m.word(&rest[..end]);
        rest = &rest[end..];
    }
    m.out
}

/// Length of the word that starts `s`: up to whitespace, Unicode
/// whitespace included. Bytes are tested as ASCII first, as every byte of
/// the text passes here; a char is decoded only at a non-ASCII byte.
fn word_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii() {
            // `char::is_whitespace` on ASCII: these five and space.
            if matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                return i;
            }
            i += 1;
            continue;
        }
        // `i` is a char boundary: every step so far was one whole char.
        match s[i..].chars().next() {
            Some(c) if c.is_whitespace() => return i,
            Some(c) => i += c.len_utf8(),
            None => break,
        }
    }
    b.len()
}

/// Masks every string in a JSON value (object keys are left alone: tools
/// choose them). Each string is masked on its own, as the text it holds,
/// so the value stays valid JSON whatever the masks do.
pub(crate) fn mask_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            let masked = mask_secrets(s);
            if masked != *s {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        Value::Object(map) => map.values_mut().for_each(mask_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The word-by-word pass.
struct Masker {
    /// The masked text so far.
    out: String,
    /// What the previous word says about the next one.
    pending: Pending,
    /// The program whose flags are in force, if a known one.
    program: Option<Context>,
}

impl Masker {
    fn space(&mut self, ws: &str) {
        if ws.contains('\n') {
            self.program = None;
            if let Pending::Sep(_) = self.pending {
                self.pending = Pending::Nothing;
            }
        }
        // Whitespace inside an open quoted secret goes with the secret.
        if !matches!(self.pending, Pending::Quote(_)) {
            self.out.push_str(ws);
        }
    }

    fn word(&mut self, word: &str) {
        let start = match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Nothing => 0,
            Pending::Quote(q) => match closing(word, q) {
                Some(i) => {
                    self.out.push(q);
                    i + 1
                }
                None => {
                    self.pending = Pending::Quote(q);
                    return;
                }
            },
            Pending::Sep(spec) if word.starts_with(['=', ':']) => {
                self.out.push_str(&word[..1]);
                if word.len() == 1 {
                    self.pending = Pending::Value(spec);
                    return;
                }
                match self.value(word, 1, spec) {
                    Some(next) => next,
                    None => return,
                }
            }
            Pending::Sep(_) => 0,
            Pending::Value(spec) if spec.from_flag && looks_like_flag(word) => 0,
            Pending::Value(spec) => match self.value(word, 0, spec) {
                Some(next) => next,
                None => return,
            },
        };
        if start > 0 {
            self.scan(&word[start..]);
            return;
        }
        if programs::ends_command(word) {
            self.program = None;
        }
        if let Some(action) = self.program.as_mut().and_then(|c| c.action(word)) {
            match action {
                Action::Next(part) => {
                    self.out.push_str(word);
                    self.pending = Pending::Value(ValueSpec::flag(part));
                }
                Action::Here(at, part) => {
                    self.out.push_str(&word[..at]);
                    let spec = ValueSpec {
                        from_flag: false,
                        ..ValueSpec::flag(part)
                    };
                    if let Some(next) = self.value(word, at, spec) {
                        self.scan(&word[next..]);
                    }
                }
            }
            return;
        }
        self.scan(word);
        if let Some(p) = programs::named(word) {
            self.program = Some(Context::new(p));
        }
    }

    /// Masks the value at `start` of `word` as `spec` says. Some(byte the
    /// word goes on at), or None when the value goes on over the next
    /// words (then [`Masker::pending`] says how).
    fn value(&mut self, word: &str, start: usize, spec: ValueSpec) -> Option<usize> {
        match self.value_flow(word, start, spec) {
            Flow::Resume(next) => Some(next),
            Flow::Quote(q) => {
                self.pending = Pending::Quote(q);
                None
            }
            Flow::NextWord(spec) => {
                self.pending = Pending::Value(spec);
                None
            }
        }
    }

    fn value_flow(&mut self, word: &str, start: usize, spec: ValueSpec) -> Flow {
        let rest = &word[start..];
        match spec.part {
            Part::Whole => {
                let bare = rest.trim_end_matches(['"', '\'']);
                if AUTH_SCHEMES.iter().any(|s| bare.eq_ignore_ascii_case(s)) {
                    self.out.push_str(rest);
                    return Flow::NextWord(ValueSpec {
                        from_flag: false,
                        ..spec
                    });
                }
                // `openssl -passin pass:SECRET`: keep the source kind.
                let start = match rest.get(..5) {
                    Some(p) if p.eq_ignore_ascii_case("pass:") => {
                        self.out.push_str(p);
                        start + 5
                    }
                    _ => start,
                };
                mask_value(word, start, spec.stops, spec.open, &mut self.out)
            }
            Part::AfterColon | Part::AfterPercent | Part::UntilAt => {
                // `-u 'user:secret'`: the quote is the value's, not the secret's.
                let (open, from) = match rest.chars().next() {
                    Some(q @ ('"' | '\'')) => (Some(q), start + 1),
                    _ => (spec.open, start),
                };
                let after = |sep: char| word[from..].find(sep).map(|i| from + i + 1);
                let at = match spec.part {
                    Part::AfterColon => after(':'),
                    Part::AfterPercent => after('%'),
                    // The secret starts right here, after `user/`.
                    _ => Some(from),
                };
                // `curl -u alice` (no secret: curl prompts for it).
                let Some(at) = at else {
                    return Flow::Resume(start);
                };
                self.out.push_str(&word[start..at]);
                let stops = if spec.part == Part::UntilAt {
                    Stops::At
                } else {
                    Stops::Word
                };
                mask_value(word, at, stops, open, &mut self.out)
            }
        }
    }

    /// Masks shapes and key values in one word (or the rest of one).
    fn scan(&mut self, word: &str) {
        let shaped = shapes::mask_in_word(word);
        let word: &str = &shaped;
        let b = word.as_bytes();
        // Every index below sits on an ASCII byte, so slicing is safe.
        let (mut i, mut emitted) = (0, 0);
        while i < b.len() {
            if !matches!(b[i], b'=' | b':') {
                i += 1;
                continue;
            }
            let Some(key) = key_before(b, emitted, i) else {
                i += 1;
                continue;
            };
            if !keys::is_secret_key(&word[key.start..key.end]) {
                i += 1;
                continue;
            }
            self.out.push_str(&word[emitted..=i]);
            let spec = value_spec(b, &key);
            if i + 1 == b.len() {
                // `token: x` and `Authorization: Bearer x`: the value is
                // the next word. `--password= -v` is an empty value.
                if b[i] == b':' {
                    self.pending = Pending::Value(spec);
                }
                return;
            }
            match self.value(word, i + 1, spec) {
                Some(next) => (i, emitted) = (next.max(i + 1), next.max(i + 1)),
                None => return,
            }
        }
        self.out.push_str(&word[emitted..]);
        // A secret key ending the word: a flag whose value is the next
        // word, or a key whose `=`/`:` follows after a space.
        if let Some(key) = key_before(b, emitted, b.len()) {
            let text = &word[key.start..key.end];
            if keys::is_secret_key(text) {
                let spec = value_spec(b, &key);
                self.pending = if key.start == 0 && text.starts_with('-') {
                    Pending::Value(ValueSpec::whole())
                } else {
                    Pending::Sep(spec)
                };
            }
        }
    }
}
