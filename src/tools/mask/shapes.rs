//! Secrets recognised by their shape rather than by a key in front of
//! them: PEM private-key blocks, the password in URL userinfo, vendor
//! tokens with a fixed prefix (AWS key ids, GitHub, GitLab, Slack,
//! Stripe, Google, npm, Vault) and JWTs.
//!
//! Every scan here moves forward only and looks at each byte a bounded
//! number of times, so masking stays linear in the text: a prefix is tried
//! only where a token could start (after a byte that cannot be part of
//! it), and a failed try skips the run it looked at.

use std::borrow::Cow;

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &[u8] = b"-----";
/// Longest PEM label looked at (`ENCRYPTED PRIVATE KEY` is 21 bytes).
const MAX_LABEL: usize = 64;

/// Masks the body of every `-----BEGIN … PRIVATE KEY-----` block, keeping
/// both marker lines and the line breaks around the body. A block whose
/// END marker is missing (the text was cut) is masked to the end of the
/// text: hiding too much is better than leaking the rest of a key.
pub(super) fn mask_pem(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out = String::new();
    let (mut pos, mut copied) = (0, 0);
    // One searcher for every text: `str::find` would build its own at each
    // call, and this runs for every delta a recording masks.
    static BEGINS: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(BEGIN));
    while let Some(off) = BEGINS.find(&b[pos..]) {
        let label_start = pos + off + BEGIN.len();
        let window = &b[label_start..b.len().min(label_start + MAX_LABEL)];
        let Some(label_len) = window.windows(DASHES.len()).position(|w| w == DASHES) else {
            pos = label_start;
            continue;
        };
        let label = &b[label_start..label_start + label_len];
        if !contains(label, b"PRIVATE KEY") || label.contains(&b'\n') {
            pos = label_start;
            continue;
        }
        let body_start = label_start + label_len + DASHES.len();
        let body_end = text[body_start..]
            .find(END)
            .map_or(text.len(), |o| body_start + o);
        let body = &text[body_start..body_end];
        let lead = body.len() - body.trim_start().len();
        let trail = body.len() - body.trim_end().len();
        if lead < body.len() {
            out.push_str(&text[copied..body_start + lead]);
            out.push_str("***");
            copied = body_end - trail;
        }
        pos = body_end;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A vendor token: a fixed prefix, then at least `min` (exactly `min`
/// when `exact`) bytes that `body` accepts.
struct Prefixed {
    prefix: &'static str,
    min: usize,
    exact: bool,
    body: fn(u8) -> bool,
}

fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}
fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}
fn alnum_underscore(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}
fn alnum_dash(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}
fn base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Token prefixes; the prefix is kept (it says what kind of token was
/// there), the rest becomes `***`.
static PREFIXED: [Prefixed; 19] = [
    // AWS access key ids: long-term (AKIA) and temporary (ASIA).
    Prefixed {
        prefix: "AKIA",
        min: 16,
        exact: true,
        body: upper_digit,
    },
    Prefixed {
        prefix: "ASIA",
        min: 16,
        exact: true,
        body: upper_digit,
    },
    Prefixed {
        prefix: "ghp_",
        min: 20,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "gho_",
        min: 20,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "ghu_",
        min: 20,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "ghs_",
        min: 20,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "ghr_",
        min: 20,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "github_pat_",
        min: 20,
        exact: false,
        body: alnum_underscore,
    },
    Prefixed {
        prefix: "glpat-",
        min: 20,
        exact: false,
        body: base64url,
    },
    Prefixed {
        prefix: "xoxb-",
        min: 10,
        exact: false,
        body: alnum_dash,
    },
    Prefixed {
        prefix: "xoxp-",
        min: 10,
        exact: false,
        body: alnum_dash,
    },
    Prefixed {
        prefix: "xoxa-",
        min: 10,
        exact: false,
        body: alnum_dash,
    },
    Prefixed {
        prefix: "xoxr-",
        min: 10,
        exact: false,
        body: alnum_dash,
    },
    Prefixed {
        prefix: "xapp-",
        min: 10,
        exact: false,
        body: alnum_dash,
    },
    Prefixed {
        prefix: "sk_live_",
        min: 16,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "rk_live_",
        min: 16,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "AIza",
        min: 30,
        exact: false,
        body: base64url,
    },
    Prefixed {
        prefix: "npm_",
        min: 30,
        exact: false,
        body: alnum,
    },
    Prefixed {
        prefix: "hvs.",
        min: 20,
        exact: false,
        body: base64url,
    },
];

/// Length of the run of `ok` bytes at the start of `b`.
fn run(b: &[u8], ok: fn(u8) -> bool) -> usize {
    b.iter().position(|c| !ok(*c)).unwrap_or(b.len())
}

/// Length of a JWT (`eyJ….eyJ….sig`, or more dot-separated segments for
/// JWE) at the start of `b`, if there is one.
fn jwt_len(b: &[u8]) -> Option<usize> {
    let head = run(b, base64url);
    let rest = b.get(head + 1..)?;
    if head < 10 || b[head] != b'.' || !rest.starts_with(b"eyJ") {
        return None;
    }
    let payload = run(rest, base64url);
    if payload < 10 {
        return None;
    }
    let mut end = head + 1 + payload;
    while b.get(end) == Some(&b'.') {
        end += 1 + run(&b[end + 1..], base64url);
    }
    Some(end)
}

/// Bytes that can start a shape: `/` of `//`, `e` of `eyJ`, and the
/// first bytes of [`PREFIXED`]. A table, as it is asked for every byte.
static SHAPE_START: [bool; 256] = {
    let mut t = [false; 256];
    let starts = b"/eAghnrsx";
    let mut i = 0;
    while i < starts.len() {
        t[starts[i] as usize] = true;
        i += 1;
    }
    t
};

/// Masks the tokens, URL passwords and Go DSN passwords inside one
/// whitespace-free word.
pub(super) fn mask_in_word(word: &str) -> Cow<'_, str> {
    match mask_go_dsn(word) {
        Cow::Borrowed(word) => mask_tokens(word),
        Cow::Owned(dsn) => Cow::Owned(mask_tokens(&dsn).into_owned()),
    }
}

/// The network names of Go's `database/sql` DSN (`user:pw@tcp(db:3306)/x`,
/// `user:pw@unix(/run/mysqld.sock)/x`), each with its `(`, after the `@`.
const DSN_NETS: [&[u8]; 6] = [b"tcp(", b"tcp4(", b"tcp6(", b"unix(", b"udp(", b"unixgram("];

/// Masks the password of a Go DSN: the text from the colon that ends the
/// user name up to the `@` before a network name and `(`. The user name is
/// the first run of `[A-Za-z0-9_.-]` before a `:` that starts the word or
/// follows `=`, a quote, `(`, `,` or `;` (an empty one only at the word's
/// start or after `=`), so `dsn="root:p=w@tcp(h)/x"` hides `p=w` and
/// `{"dsn":"app:p@ss@tcp(h)/x"}` hides `p@ss`. Without such a colon the
/// first one counts: when in doubt more is hidden, never less.
fn mask_go_dsn(word: &str) -> Cow<'_, str> {
    let b = word.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|c| *c == b'@') {
        let at = from + off;
        from = at + 1;
        if !DSN_NETS.iter().any(|n| b[at + 1..].starts_with(n)) {
            continue;
        }
        let Some(colon) = user_colon(b, copied, at) else {
            continue;
        };
        let pw = colon + 1;
        if pw < at {
            // `pw` and `at` sit on ASCII bytes (`:` and `@`).
            out.push_str(&word[copied..pw]);
            out.push_str("***");
            copied = at;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(word);
    }
    out.push_str(&word[copied..]);
    Cow::Owned(out)
}

/// The index of the colon that ends a DSN's user name in `b[from..at]`
/// (see [`mask_go_dsn`]).
fn user_colon(b: &[u8], from: usize, at: usize) -> Option<usize> {
    let user_char = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-');
    let colons = || (from..at).filter(|&i| b[i] == b':');
    colons()
        .find(|&c| {
            let start = (from..c)
                .rev()
                .find(|&i| !user_char(b[i]))
                .map_or(from, |i| i + 1);
            let before = start.checked_sub(1).filter(|&i| i >= from).map(|i| b[i]);
            match before {
                None => true,
                Some(b'=') => true,
                Some(b'"' | b'\'' | b'(' | b',' | b';') => start < c,
                Some(_) => false,
            }
        })
        .or_else(|| colons().next())
}

/// Masks the tokens and URL passwords inside one whitespace-free word.
fn mask_tokens(word: &str) -> Cow<'_, str> {
    let b = word.as_bytes();
    let mut out = String::new();
    let (mut i, mut copied) = (0, 0);
    // Every index compared or sliced at below is an ASCII byte (a prefix,
    // a token body, a delimiter), hence a char boundary.
    while i < b.len() {
        if !SHAPE_START[usize::from(b[i])] {
            i += 1;
            continue;
        }
        let prev = i.checked_sub(1).map(|p| b[p]);
        let starts_token = prev.is_none_or(|p| !base64url(p) && p != b'.');
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') && url_may_start(prev) {
            if let Some((from, to)) = userinfo_password(&b[i + 2..]) {
                out.push_str(&word[copied..i + 2 + from]);
                out.push_str("***");
                copied = i + 2 + to;
                // The scan goes on after the masked password: a token
                // shape inside it is already hidden, and slicing from
                // before `copied` would split the output.
                i = copied;
            } else {
                i += 2;
            }
            continue;
        }
        if starts_token {
            if b[i..].starts_with(b"eyJ")
                && let Some(len) = jwt_len(&b[i..])
            {
                out.push_str(&word[copied..i]);
                out.push_str("***");
                i += len;
                copied = i;
                continue;
            }
            if let Some((p, len)) = PREFIXED.iter().find_map(|p| {
                let prefix = p.prefix.as_bytes();
                if prefix[0] != b[i] {
                    return None;
                }
                let body = b[i..].strip_prefix(prefix)?;
                let len = run(body, p.body);
                let fits = if p.exact { len == p.min } else { len >= p.min };
                (fits && !body.get(len).is_some_and(|c| alnum(*c))).then_some((p, len))
            }) {
                let body_start = i + p.prefix.len();
                out.push_str(&word[copied..body_start]);
                out.push_str("***");
                i = body_start + len;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(word);
    }
    out.push_str(&word[copied..]);
    Cow::Owned(out)
}

/// Whether `//` after this byte may open a URL authority: after a scheme
/// (`https://`), at the start of a word (`//svc:pw@nas/share`), or after
/// `=`, a quote or a paren.
fn url_may_start(prev: Option<u8>) -> bool {
    prev.is_none_or(|p| matches!(p, b':' | b'=' | b'"' | b'\'' | b'(' | b','))
}

/// Within an authority (the text after `//`), the byte range of the
/// password in `user:password@host`, if there is a non-empty one. The
/// authority ends at `/`, `?` or `#`; the last `@` in it ends the
/// userinfo, so a password holding `@` is masked whole.
fn userinfo_password(rest: &[u8]) -> Option<(usize, usize)> {
    let end = rest
        .iter()
        .position(|c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (at, colon) = match rest[..end].iter().rposition(|c| *c == b'@') {
        Some(at) => (at, rest[..at].iter().position(|c| *c == b':')?),
        None => {
            // `user:pa/ss@host`: a `/` in the password ended the authority
            // early. Not a port (`host:8080/a@b`), so the `@` further on
            // ends the userinfo.
            // An IPv6 literal's colons are not the userinfo's.
            let host = match rest.first() {
                Some(b'[') => rest[..end].iter().position(|c| *c == b']')?,
                _ => 0,
            };
            let colon = host + rest[host..end].iter().position(|c| *c == b':')?;
            let port = &rest[colon + 1..end];
            if port.iter().all(u8::is_ascii_digit) {
                return None;
            }
            (end + rest[end..].iter().position(|c| *c == b'@')?, colon)
        }
    };
    (colon + 1 < at).then_some((colon + 1, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_starts_with_a_shape_start() {
        for p in &PREFIXED {
            assert!(
                SHAPE_START[usize::from(p.prefix.as_bytes()[0])],
                "{}",
                p.prefix
            );
        }
        assert!(SHAPE_START[usize::from(b'/')] && SHAPE_START[usize::from(b'e')]);
    }
}
