//! Which keys name a secret.
//!
//! A key is what stands before `=` or `:` (`DB_PASSWORD=`, `"token":`,
//! `X-Api-Key:`) or a flag that takes a value (`--db-pass`, `-storepass`).
//! Keys are judged by their words, not by substrings alone: `auth` and
//! `x-auth-token` are secret, `author` is not; `accessKey` is, `monkey` and
//! `keyboard` are not. Words that only switch a secret on or off or point
//! at where it lives (`--no-password`, `--password-file`, `--askpass`,
//! `token_type`) hold no secret and are left alone, so the value after
//! them is not eaten.

/// Fragments that make a key secret wherever they occur in it, matched on
/// the key lowercased with everything but letters and digits removed, so
/// `db-password`, `DB_PASSWORD` and `dbPassword` all hold `password`.
const FRAGMENTS: [&str; 9] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "credential",
    "accesskey",
];

/// Words that make a key secret only as a whole word of it.
const WORDS: [&str; 10] = [
    "pass",
    "key",
    "auth",
    "authorization",
    "bearer",
    "psk",
    "sig",
    "signature",
    "passin",
    "passout",
];

/// A word ending in `pass` names a password (`dbpass`, `storepass`,
/// `srckeypass`), except these.
const NOT_PASS: [&str; 8] = [
    "askpass",
    "bypass",
    "compass",
    "encompass",
    "overpass",
    "surpass",
    "trespass",
    "underpass",
];

/// First words of keys that switch a secret on or off or list secrets
/// (`--no-password`, `--with-token`, `--list-secret-keys`).
const NOT_FIRST: [&str; 9] = [
    "no", "skip", "ask", "with", "without", "list", "show", "allow", "require",
];

/// Last words of keys that say something about a secret other than its
/// value (`--password-file`, `--password-stdin`, `token_type`,
/// `secret_name`).
const NOT_LAST: [&str; 14] = [
    "file", "path", "dir", "stdin", "env", "prompt", "type", "url", "uri", "name", "length", "ttl",
    "expiry", "expires",
];

/// Whether a byte may be part of a key.
pub(super) fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// First bytes of the stems [`has_stem`] looks for, in both cases.
static STEM_START: [bool; 256] = {
    let mut t = [false; 256];
    let starts = b"pstkabcPSTKABC";
    let mut i = 0;
    while i < starts.len() {
        t[starts[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether `key` holds, in any case, a stem that every secret key holds
/// (each fragment and word above contains one): a quick test without
/// allocation, as most keys and words of ordinary text hold none.
fn has_stem(key: &[u8]) -> bool {
    (0..key.len()).any(|i| {
        // `p s t k a b c`, either case: a table, as most bytes are none.
        if !STEM_START[usize::from(key[i])] {
            return false;
        }
        let stems: &[&[u8]] = match key[i].to_ascii_lowercase() {
            b'p' => &[b"pass", b"pwd", b"psk"],
            b's' => &[b"secret", b"sig"],
            b't' => &[b"token"],
            b'k' => &[b"key"],
            b'a' => &[b"auth"],
            b'b' => &[b"bearer"],
            b'c' => &[b"credential"],
            _ => return false,
        };
        stems.iter().any(|s| {
            key[i..]
                .get(..s.len())
                .is_some_and(|k| k.eq_ignore_ascii_case(s))
        })
    })
}

/// Whether `key` (as written before `=`/`:`, or a flag with its dashes)
/// names a secret.
pub(super) fn is_secret_key(key: &str) -> bool {
    if !has_stem(key.as_bytes()) {
        return false;
    }
    // No allocation below: this runs for most words of most texts.
    let key = key.trim_start_matches('-').trim_matches(['"', '\'']);
    let count = words(key).count();
    let (Some(first), Some(last)) = (words(key).next(), words(key).last()) else {
        return false;
    };
    let is = |w: &str, list: &[&str]| list.iter().any(|l| w.eq_ignore_ascii_case(l));
    if count > 1 && (is(first, &NOT_FIRST) || is(last, &NOT_LAST)) {
        return false;
    }
    if FRAGMENTS
        .iter()
        .any(|f| squeezed_contains(key.as_bytes(), f.as_bytes()))
    {
        return true;
    }
    words(key).any(|w| {
        let ends_pass = w.len() >= 4 && w[w.len() - 4..].eq_ignore_ascii_case("pass");
        is(w, &WORDS)
            || (ends_pass && !is(w, &NOT_PASS))
            // `MYSQL_PWD` is a password; `PWD` alone is the working directory.
            || (count > 1 && w.eq_ignore_ascii_case("pwd"))
    })
}

/// Whether `key`, lowercased with all but letters and digits dropped,
/// contains `frag` (lowercase letters).
fn squeezed_contains(key: &[u8], frag: &[u8]) -> bool {
    (0..key.len()).any(|start| {
        let mut rest = key[start..]
            .iter()
            .filter(|b| b.is_ascii_alphanumeric())
            .map(u8::to_ascii_lowercase);
        key[start].to_ascii_lowercase() == frag[0] && frag.iter().all(|f| rest.next() == Some(*f))
    })
}

/// Words of a key: split on anything but letters and digits, and on
/// camelCase humps (`accessKey` → `access`, `Key`).
fn words(key: &str) -> Words<'_> {
    Words { rest: key }
}

/// Iterator behind [`words`].
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.rest.as_bytes();
        let start = b.iter().position(u8::is_ascii_alphanumeric)?;
        let mut end = start + 1;
        while end < b.len()
            && b[end].is_ascii_alphanumeric()
            && !(b[end].is_ascii_uppercase() && b[end - 1].is_ascii_lowercase())
        {
            end += 1;
        }
        // Both ends sit next to ASCII bytes, so they are char boundaries.
        let word = &self.rest[start..end];
        self.rest = &self.rest[end..];
        Some(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_fragment_and_word_holds_a_stem() {
        for w in FRAGMENTS.iter().chain(&WORDS).chain(&["pwd", "dbpass"]) {
            assert!(
                has_stem(w.as_bytes()),
                "{w} would be dropped by the prefilter"
            );
        }
        assert!(has_stem(b"X-API-KEY") && !has_stem(b"username") && !has_stem(b""));
        let split: Vec<&str> = words("--aws_secretAccessKey.v2").collect();
        assert_eq!(split, ["aws", "secret", "Access", "Key", "v2"]);
        assert!(squeezed_contains(b"DB_PASS-word", b"password"));
        assert!(!squeezed_contains(b"pass", b"password"));
    }

    #[test]
    fn keys_are_judged_by_their_words() {
        let cases = [
            ("password", true),
            ("--db-pass", true),
            ("-storepass", true),
            ("-srckeypass", true),
            ("dbpass", true),
            ("MYSQL_PWD", true),
            ("PGPASSWORD", true),
            ("accessKey", true),
            ("X-Api-Key", true),
            ("\"apiKey\"", true),
            ("aws_secret_access_key", true),
            ("private_key", true),
            ("Authorization", true),
            ("--oauth2-bearer", true),
            ("wifi-sec.psk", true),
            ("-passin", true),
            ("sig", true),
            ("PWD", false),
            ("OLDPWD", false),
            ("author", false),
            ("monkey", false),
            ("keyboard", false),
            ("publickey", false),
            ("PrivateTmp", false),
            ("private", false),
            ("--askpass", false),
            ("SSH_ASKPASS", false),
            ("--bypass", false),
            ("--passive", false),
            ("--no-password", false),
            ("--password-stdin", false),
            ("--password-file", false),
            ("PASSWORD_FILE", false),
            ("--with-token", false),
            ("--list-secret-keys", false),
            ("token_type", false),
            ("secretName", false),
            ("username", false),
            ("", false),
            ("--", false),
        ];
        for (key, want) in cases {
            assert_eq!(is_secret_key(key), want, "{key}");
        }
    }
}
