//! Masking of secret values in free text (command lines, log lines, shell
//! commands in the audit).
//!
//! A value is masked when its key looks secret: `--password=x`,
//! `--token x`, `DB_PASSWORD=x`, `api_key: x`, and URL credentials
//! `scheme://user:pass@host`.

/// Key fragments that mark a value as secret.
const SECRET_WORDS: [&str; 11] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "credential",
    "private",
];

fn is_secret_key(key: &str) -> bool {
    let k = key.trim_start_matches('-').to_ascii_lowercase();
    if k.is_empty() {
        return false;
    }
    SECRET_WORDS.iter().any(|w| k.contains(w))
        || k == "key"
        || k.ends_with("_key")
        || k.ends_with("-key")
}

/// Masks URL userinfo passwords: `://user:pass@` → `://user:***@`.
fn mask_url(word: &str) -> Option<String> {
    let scheme_end = word.find("://")? + 3;
    let rest = &word[scheme_end..];
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    if userinfo.contains('/') {
        return None;
    }
    let colon = userinfo.find(':')?;
    Some(format!(
        "{}{}:***{}",
        &word[..scheme_end],
        &userinfo[..colon],
        &rest[at..]
    ))
}

/// Returns `text` with secret values replaced by `***`.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut mask_next = false;
    for (i, piece) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if mask_next && !piece.is_empty() {
            out.push_str("***");
            mask_next = false;
            continue;
        }
        if let Some(masked) = mask_url(piece) {
            out.push_str(&masked);
            continue;
        }
        if let Some(pos) = piece.find(['=', ':']) {
            let (key, rest) = piece.split_at(pos);
            if is_secret_key(key) {
                out.push_str(key);
                out.push_str(&rest[..1]);
                if rest.len() > 1 {
                    out.push_str("***");
                } else {
                    // `token: value` — the value is the next word.
                    mask_next = true;
                }
                continue;
            }
        }
        if piece.starts_with("--") && is_secret_key(piece) {
            mask_next = true;
        }
        out.push_str(piece);
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
            ("api_key: abc", "api_key: ***"),
            (
                "--aws-secret-access-key=AKIA",
                "--aws-secret-access-key=***",
            ),
            ("plain text stays", "plain text stays"),
            ("path=/usr/bin mode=755", "path=/usr/bin mode=755"),
            ("https://example.com/a@b", "https://example.com/a@b"),
        ];
        for (input, want) in cases {
            assert_eq!(mask_secrets(input), want, "{input}");
        }
    }
}
