//! Where a secret value starts and ends in a word: the key before a
//! separator, and the extent of the value after it. A value is as long as
//! its quoting says (`"a b"`, an argument opened with `'` before the key),
//! else as long as what precedes the key allows (`?` a query string, `,`
//! a list, `;` a connection string), else the rest of the word.

use super::keys;
use super::programs::Part;

/// Where an unquoted value ends, chosen by what precedes its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stops {
    /// At the end of the word.
    Word,
    /// In a query string (`?token=x&page=2`): at `&` or `#`.
    Query,
    /// In a list or JSON (`user=u,password=x,uid=0`, `{"n":1,"key":2}`).
    List,
    /// In an ADO connection string (`User Id=u;Password=x;`).
    Semi,
    /// An Oracle login (`scott/x@db`): at `@`.
    At,
}

impl Stops {
    /// The characters that end an unquoted value.
    fn chars(self) -> &'static [char] {
        match self {
            Stops::Word => &[],
            Stops::Query => &['&', '#'],
            Stops::List => &[',', '}', ']'],
            Stops::Semi => &[';'],
            Stops::At => &['@'],
        }
    }

    /// For a key preceded by `boundary`; a `"quoted"` key is JSON.
    pub(super) fn after(boundary: Option<u8>, quoted_key: bool) -> Self {
        match boundary {
            _ if quoted_key => Stops::List,
            Some(b'?' | b'&') => Stops::Query,
            Some(b',' | b'{' | b'[') => Stops::List,
            Some(b';') => Stops::Semi,
            _ => Stops::Word,
        }
    }
}

/// How to mask a value that starts the next word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ValueSpec {
    /// Which part of the value is secret.
    pub(super) part: Part,
    /// Where an unquoted value ends.
    pub(super) stops: Stops,
    /// A quote opened before the key (`'Authorization: Bearer x'`): the
    /// value ends where it closes, maybe words later.
    pub(super) open: Option<char>,
    /// Set by a flag: a following `--flag` or `-x` is not its value
    /// (`mysql --password -h db` prompts).
    pub(super) from_flag: bool,
}

impl ValueSpec {
    /// The value of a flag: the next word, or the `part` of it.
    pub(super) fn flag(part: Part) -> Self {
        ValueSpec {
            part,
            stops: Stops::Word,
            open: None,
            from_flag: true,
        }
    }

    /// The value of a flag, all of it secret.
    pub(super) fn whole() -> Self {
        ValueSpec::flag(Part::Whole)
    }
}

/// How a value ended.
pub(super) enum Flow {
    /// The word goes on at this byte.
    Resume(usize),
    /// An open quote: the value goes on over the next words.
    Quote(char),
    /// The value is the next word (`Authorization: Bearer` + `x`).
    NextWord(ValueSpec),
}

/// A key found before a separator.
pub(super) struct Key {
    /// Where the key (with its opening quote) starts.
    pub(super) start: usize,
    /// Where it ends: at its separator, or at the end of the word.
    pub(super) end: usize,
    /// Written as `"key"` (JSON) or `'key'`.
    pub(super) quoted: bool,
}

/// How the value of `key` ends.
pub(super) fn value_spec(b: &[u8], key: &Key) -> ValueSpec {
    let boundary = key.start.checked_sub(1).map(|i| b[i]);
    let open = match boundary {
        Some(q @ (b'"' | b'\'')) if !key.quoted => Some(char::from(q)),
        _ => None,
    };
    ValueSpec {
        part: Part::Whole,
        stops: Stops::after(boundary, key.quoted),
        open,
        from_flag: false,
    }
}

/// The key ending at `end` (a separator or the end of the word), not
/// reaching before `floor`: a run of key bytes, maybe in quotes. None
/// when there is none, or when it is the tail of a path (`/etc/passwd:`).
pub(super) fn key_before(b: &[u8], floor: usize, end: usize) -> Option<Key> {
    let mut j = end;
    let quote = match j.checked_sub(1).map(|p| b[p]) {
        Some(q @ (b'"' | b'\'')) if j > floor => {
            j -= 1;
            Some(q)
        }
        _ => None,
    };
    let name_end = j;
    while j > floor && keys::is_key_byte(b[j - 1]) {
        j -= 1;
    }
    if j == name_end {
        return None;
    }
    let start = match quote {
        Some(q) if j > floor && b[j - 1] == q => j - 1,
        Some(_) => return None,
        None => j,
    };
    if start > 0 && matches!(b[start - 1], b'/' | b'\\') {
        return None;
    }
    Some(Key {
        start,
        end,
        quoted: quote.is_some(),
    })
}

/// A word that is another option rather than a value: `--verbose`, `-h`,
/// `-new`. Taking it for the value would hide the option and, worse,
/// leave the word after it unjudged (`keytool -storepasswd -new X`).
/// The price: a password given as `-abc` after a secret flag shows.
pub(super) fn looks_like_flag(word: &str) -> bool {
    let name = word
        .strip_prefix("--")
        .or_else(|| word.strip_prefix('-'))
        .unwrap_or("");
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Index in `s` of the quote `q` closing a value; a `"` escaped with a
/// backslash (JSON, shell) does not close.
pub(super) fn closing(s: &str, q: char) -> Option<usize> {
    if q != '"' {
        return s.find(q);
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Writes `***` for the value starting at `start` in `word` and says where
/// the word goes on. A quoted value keeps its quotes and may run over the
/// next words; an empty one is left as it is. An unquoted value ends at
/// `stops`, or at the quote `open` opened before its key, else at the end
/// of the word (less trailing quotes, which close an enclosing argument).
/// An object or list (`{`, `[`) is not a value: its own keys are judged.
pub(super) fn mask_value(
    word: &str,
    start: usize,
    stops: Stops,
    open: Option<char>,
    out: &mut String,
) -> Flow {
    let value = &word[start..];
    if let Some(q) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) {
        out.push(q);
        return match closing(&value[1..], q) {
            Some(0) => {
                out.push(q);
                Flow::Resume(start + 2)
            }
            Some(end) => {
                out.push_str("***");
                out.push(q);
                Flow::Resume(start + end + 2)
            }
            None => {
                out.push_str("***");
                Flow::Quote(q)
            }
        };
    }
    if value.starts_with(['{', '[']) {
        return Flow::Resume(start);
    }
    let end = match open {
        Some(q) => match closing(value, q) {
            Some(end) => end,
            None => {
                out.push_str("***");
                return Flow::Quote(q);
            }
        },
        None => value
            .find(stops.chars())
            .unwrap_or_else(|| value.trim_end_matches(['"', '\'']).len()),
    };
    if end > 0 {
        out.push_str("***");
    }
    Flow::Resume(start + end)
}
