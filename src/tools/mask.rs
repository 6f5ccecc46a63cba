//! Masking of secret values in free text (command lines, log lines, shell
//! commands and tool arguments in the audit), so that what a guest or an
//! audit reader sees never carries a password that happened to be typed
//! on a command line.
//!
//! A value is masked when its key looks secret: `--password=x`,
//! `--token x`, `DB_PASSWORD=x`, `api_key: x`, `"token":"x"`, and URL
//! credentials `scheme://user:pass@host`. The text is otherwise kept byte
//! for byte, whitespace included. Masking errs on the side of hiding: a
//! harmless value under a secret-looking key is hidden too.

/// Key fragments that mark a value as secret wherever they appear.
const SECRET_FRAGMENTS: [&str; 9] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "api_key",
    "credential",
    "private",
];

/// Key words that mark a value as secret only as a whole word of the key
/// (`auth`, `x-auth-token`, `accessKey`, but not `author` or `monkey`).
const SECRET_WORDS: [&str; 7] = [
    "pwd",
    "key",
    "auth",
    "authorization",
    "authentication",
    "authkey",
    "apikey",
];

/// HTTP auth schemes: `Authorization: Bearer x` masks `x`, not `Bearer`.
const AUTH_SCHEMES: [&str; 4] = ["bearer", "basic", "digest", "token"];

/// Whether `key` (as written before `=`, `:`, or as a `--flag`) names a
/// secret.
fn is_secret_key(key: &str) -> bool {
    let key = key
        .trim_start_matches(['-', '"', '\'', '{', '[', '(', ','])
        .trim_end_matches(['"', '\'']);
    if key.is_empty() {
        return false;
    }
    let lower = key.to_ascii_lowercase();
    if SECRET_FRAGMENTS.iter().any(|w| lower.contains(w)) {
        return true;
    }
    words(key).any(|w| SECRET_WORDS.contains(&w.to_ascii_lowercase().as_str()))
}

/// Words of a key: split on non-alphanumerics and on camelCase humps.
fn words(key: &str) -> impl Iterator<Item = &str> {
    key.split(|c: char| !c.is_ascii_alphanumeric())
        .flat_map(|part| {
            let mut cuts = vec![0];
            let b = part.as_bytes();
            for i in 1..b.len() {
                if b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase() {
                    cuts.push(i);
                }
            }
            cuts.push(b.len());
            // All cut points are ASCII positions, hence char boundaries.
            (0..cuts.len() - 1)
                .filter_map(move |i| part.get(cuts[i]..cuts[i + 1]))
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
}

/// Masks every URL userinfo password in `word`: `://user:pass@` →
/// `://user:***@`. None when there is none.
fn mask_urls(word: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        rest = tail;
        let auth_end = tail.find(['/', '?', '#']).unwrap_or(tail.len());
        let Some(at) = tail[..auth_end].rfind('@') else {
            continue;
        };
        let Some(colon) = tail[..at].find(':') else {
            continue;
        };
        out.push_str(&tail[..=colon]);
        out.push_str("***");
        rest = &tail[at..];
        changed = true;
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// What the next word means.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Normal,
    /// The previous word was a secret key whose value is this word.
    MaskNext,
    /// Inside a quoted secret value that spans words: drop until `q`.
    InQuote(char),
}

/// Writes `***` for the value starting at `start` in `word` and returns
/// where the rest of the word resumes, or `Err(quote)` when the value is a
/// quote left open (it goes on over the next words). A quoted value keeps
/// its quotes. An unquoted one runs to the end of the word, except after a
/// `?`/`&` (query string: up to `&`) or a `,`/`{` (list or JSON: up to
/// `,` `}` `]`); a closing quote of an enclosing argument is kept.
fn mask_value(
    word: &str,
    start: usize,
    boundary: Option<u8>,
    out: &mut String,
) -> Result<usize, char> {
    let value = &word[start..];
    if let Some(q) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
        out.push(q);
        out.push_str("***");
        let end = value[1..].find(q).ok_or(q)?;
        out.push(q);
        return Ok(start + end + 2);
    }
    let stops: &[char] = match boundary {
        Some(b'?' | b'&') => &['&', '#'],
        Some(b',' | b'{' | b'[') => &[',', '}', ']'],
        _ => &[],
    };
    let end = value
        .find(stops)
        .unwrap_or_else(|| value.trim_end_matches(['"', '\'']).len());
    out.push_str("***");
    Ok(start + end)
}

/// Masks one whitespace-free word. With `value_first`, the word starts
/// with the value of a secret key written in the previous word.
fn mask_word(word: &str, value_first: bool, out: &mut String) -> State {
    let masked_urls = mask_urls(word);
    let word = masked_urls.as_deref().unwrap_or(word);
    let b = word.as_bytes();
    // Every index below sits on an ASCII byte, so slicing is safe.
    let (mut i, mut emitted, mut key_start) = (0, 0, 0);
    let mut boundary: Option<u8> = None;
    let mut saw_sep = false;
    if value_first {
        match mask_value(word, 0, None, out) {
            Ok(next) => (i, emitted, key_start) = (next, next, next),
            Err(q) => return State::InQuote(q),
        }
    }
    while i < b.len() {
        match b[i] {
            sep @ (b'=' | b':') => {
                saw_sep = true;
                if is_secret_key(&word[key_start..i]) {
                    out.push_str(&word[emitted..=i]);
                    if i + 1 == b.len() {
                        // `token: x`: the value is the next word.
                        return if sep == b':' {
                            State::MaskNext
                        } else {
                            State::Normal
                        };
                    }
                    match mask_value(word, i + 1, boundary, out) {
                        Ok(next) => (i, emitted, key_start) = (next, next, next),
                        Err(q) => return State::InQuote(q),
                    }
                    boundary = None;
                    continue;
                }
                key_start = i + 1;
                boundary = Some(sep);
            }
            c @ (b',' | b'{' | b'[' | b'&' | b'?' | b';') => {
                key_start = i + 1;
                boundary = Some(c);
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&word[emitted..]);
    if !saw_sep && word.starts_with('-') && is_secret_key(word) {
        State::MaskNext
    } else {
        State::Normal
    }
}

/// Returns `text` with secret values replaced by `***`.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut state = State::Normal;
    let mut rest = text;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        if ws > 0 {
            // Words of an open quoted secret are dropped with their spaces.
            if !matches!(state, State::InQuote(_)) {
                out.push_str(&rest[..ws]);
            }
            rest = &rest[ws..];
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        state = match state {
            State::Normal => mask_word(word, false, &mut out),
            State::MaskNext if AUTH_SCHEMES.contains(&word.to_ascii_lowercase().as_str()) => {
                out.push_str(word);
                State::MaskNext
            }
            State::MaskNext => mask_word(word, true, &mut out),
            State::InQuote(q) => match word.find(q) {
                Some(i) => {
                    out.push(q);
                    mask_word(&word[i + 1..], false, &mut out)
                }
                None => State::InQuote(q),
            },
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::mask_secrets;

    #[test]
    fn secrets_are_masked() {
        let cases = [
            ("app --password=hunter2 -v", "app --password=*** -v"),
            ("app --token abc def", "app --token *** def"),
            ("DB_PASSWORD=x ./run", "DB_PASSWORD=*** ./run"),
            ("curl https://u:p@h/x", "curl https://u:***@h/x"),
            ("https://u:p@h/", "https://u:***@h/"),
            ("api_key: abc", "api_key: ***"),
            ("token: abc rest", "token: *** rest"),
            ("PGPASSWD=x psql", "PGPASSWD=*** psql"),
            ("--key=abc --auth=u:p", "--key=*** --auth=***"),
            ("-Dapp.secret=s java", "-Dapp.secret=*** java"),
            ("--client-credential x", "--client-credential ***"),
            ("PRIVATE_KEY=abc", "PRIVATE_KEY=***"),
            ("accessKey=abc", "accessKey=***"),
            (
                "--aws-secret-access-key=AKIA",
                "--aws-secret-access-key=***",
            ),
            (
                "DATABASE_URL=postgres://app:s3cr3t@db:5432/x",
                "DATABASE_URL=postgres://app:***@db:5432/x",
            ),
            (
                "a https://x:y@h b ftp://p:q@g",
                "a https://x:***@h b ftp://p:***@g",
            ),
            // Whitespace is kept as is.
            ("a\t--token\tabc\nb", "a\t--token\t***\nb"),
            // Quoted values keep their quotes; a quoted value may span words.
            (
                r#"{"password":"hunter2","user":"bob"}"#,
                r#"{"password":"***","user":"bob"}"#,
            ),
            (r#"{"token": "abc", "n": 1}"#, r#"{"token": "***", "n": 1}"#),
            (
                r#"{"user":"bob","token":"x"}"#,
                r#"{"user":"bob","token":"***"}"#,
            ),
            (
                r#"{"a": "b","api_key": "k"}"#,
                r#"{"a": "b","api_key": "***"}"#,
            ),
            (r#"{"n":1,"secret":42}"#, r#"{"n":1,"secret":***}"#),
            (
                "https://h/x?token=abc&page=2",
                "https://h/x?token=***&page=2",
            ),
            ("-o user=x,password=y,uid=0", "-o user=x,password=***,uid=0"),
            ("--opt=passwd=z", "--opt=passwd=***"),
            (r#"--password="my long pass" -v"#, r#"--password="***" -v"#),
            (
                r#"curl -H "Authorization: Bearer abc.def" url"#,
                r#"curl -H "Authorization: Bearer ***" url"#,
            ),
            // Not secret: stays as is.
            ("plain text stays", "plain text stays"),
            ("path=/usr/bin mode=755", "path=/usr/bin mode=755"),
            (
                "author=bob monkey=1 keyboard=us",
                "author=bob monkey=1 keyboard=us",
            ),
            ("https://example.com/a@b", "https://example.com/a@b"),
            ("ssh://git@host/repo", "ssh://git@host/repo"),
            ("--password= -v", "--password= -v"),
            ("", ""),
            ("  ", "  "),
            ("naïve ünïcode: ok", "naïve ünïcode: ok"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_secrets(input), want, "input: {input}");
        }
    }

    #[test]
    fn odd_input_never_panics_and_a_flagged_secret_never_survives() {
        let pieces = [
            "=", ":", "\"", "'", "é", "://", "@", "--token", " ", "\t", "{", ",", "?", "&",
            "password", "x", "-", "\n", "Bearer", "key", "日本",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let masked = mask_secrets(&format!("{text} --password=hunter2 {text}"));
            assert!(!masked.contains("hunter2"), "{text:?} -> {masked:?}");
        }
    }
}
