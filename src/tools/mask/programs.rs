//! Flags whose meaning depends on the program: `-p` is the password for
//! `mysql` (attached only: `-pSECRET`; a bare `-p` prompts) and
//! `sshpass`, but the port for `redis-cli` and `ssh`; `-k` is a password
//! for `openssl` but "insecure" for `curl` and a column for `sort`;
//! `docker -p` publishes a port except under `docker login`.
//!
//! The program is whichever known name the text last showed as a command
//! word (`mysql`, `/usr/bin/mysql`, `COMMAND=/usr/bin/mysql`), until a new
//! line or a shell separator (`|`, `;`, `&&`). Unknown programs get no
//! short-flag masking at all, which is what keeps `ssh -p 2222` and
//! `sort -k 2` intact.

use std::collections::HashMap;
use std::sync::OnceLock;

/// How a flag carries its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// Only glued to the flag (`-pSECRET`); the bare flag prompts.
    Attached,
    /// Only as the next word.
    Separate,
    /// Either.
    Both,
}

/// Which part of a value is the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// All of it.
    Whole,
    /// What follows the first `:` (`user:secret`); nothing without one.
    AfterColon,
    /// What follows the first `%` (`user%secret`, Samba).
    AfterPercent,
    /// What follows the `/` up to `@` (`scott/secret@db`, Oracle).
    UntilAt,
}

/// One flag that carries a secret.
struct Flag {
    name: &'static str,
    form: Form,
    part: Part,
}

/// Programs needing more than a flag table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    /// `htpasswd -b [-n] [file] user secret`: a positional argument.
    Htpasswd,
    /// `sqlplus scott/secret@db`: a positional `user/secret`.
    OracleLogin,
}

/// A family of programs sharing one flag table.
pub(super) struct Program {
    names: &'static [&'static str],
    /// A subcommand that must appear before the flags count (`login`).
    needs: Option<&'static str>,
    flags: &'static [Flag],
    special: Special,
}

const fn flag(name: &'static str, form: Form, part: Part) -> Flag {
    Flag { name, form, part }
}

/// A program whose flags count from its first word on.
const fn program(names: &'static [&'static str], flags: &'static [Flag]) -> Program {
    Program {
        names,
        needs: None,
        flags,
        special: Special::None,
    }
}

use Form::{Attached, Both, Separate};
use Part::{AfterColon, AfterPercent, Whole};

// A table, kept one program a line where it fits: rustfmt would put
// every name on a line of its own.
#[rustfmt::skip]
static PROGRAMS: [Program; 19] = [
    program(
        &["mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck", "mysqlshow",
          "mysqlbinlog", "mysqlpump", "mysqlslap", "mysqlsh", "mariadb", "mariadb-dump",
          "mariadb-admin", "mariadb-import", "mariadb-check"],
        &[flag("-p", Attached, Whole)],
    ),
    program(&["sshpass"], &[flag("-p", Both, Whole)]),
    program(&["redis-cli"], &[flag("-a", Both, Whole)]),
    program(
        &["curl"],
        &[flag("-u", Both, AfterColon), flag("-U", Both, AfterColon),
          flag("--user", Separate, AfterColon), flag("--proxy-user", Separate, AfterColon)],
    ),
    program(&["openssl"], &[flag("-k", Separate, Whole)]),
    // `-storepasswd -new SECRET`; the `*pass` flags are secret anywhere.
    program(&["keytool"], &[flag("-new", Separate, Whole)]),
    program(
        &["ldapsearch", "ldapadd", "ldapmodify", "ldapdelete", "ldapmodrdn", "ldapcompare",
          "ldapwhoami", "ldapexop", "ldapurl"],
        &[flag("-w", Both, Whole)],
    ),
    program(
        &["ldappasswd"],
        &[flag("-w", Both, Whole), flag("-s", Both, Whole), flag("-a", Both, Whole)],
    ),
    Program {
        names: &["docker", "podman", "nerdctl", "buildah", "skopeo", "az"],
        needs: Some("login"),
        flags: &[flag("-p", Both, Whole)],
        special: Special::None,
    },
    program(
        &["mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport",
          "mongostat", "mongotop"],
        &[flag("-p", Both, Whole)],
    ),
    program(&["sqlcmd", "bcp", "ipmitool"], &[flag("-P", Both, Whole)]),
    program(&["zip", "unzip", "zipcloak"], &[flag("-P", Separate, Whole)]),
    program(&["7z", "7za", "7zr", "rar", "unrar"], &[flag("-p", Attached, Whole)]),
    program(&["ssh-keygen"], &[flag("-N", Both, Whole), flag("-P", Both, Whole)]),
    program(
        &["smbclient", "rpcclient", "smbcacls", "smbget", "smbmap"],
        &[flag("-U", Both, AfterPercent), flag("--user", Separate, AfterPercent),
          flag("--user=", Attached, AfterPercent)],
    ),
    // The password is a hash, still not for a guest to see.
    program(&["useradd", "usermod"], &[flag("-p", Both, Whole)]),
    program(&["xfreerdp", "wlfreerdp"], &[flag("/p:", Attached, Whole)]),
    Program { names: &["htpasswd"], needs: None, flags: &[], special: Special::Htpasswd },
    Program {
        names: &["sqlplus", "rman", "expdp", "impdp", "exp", "imp", "sqlldr", "dgmgrl"],
        needs: None,
        flags: &[],
        special: Special::OracleLogin,
    },
];

/// `nmcli` takes `password SECRET` and `wifi-sec.psk SECRET` as word
/// pairs; kept apart from [`PROGRAMS`] as its "flags" have no dash.
static NMCLI: Program = program(
    &["nmcli"],
    &[
        flag("password", Separate, Whole),
        flag("wifi-sec.psk", Separate, Whole),
        flag("802-11-wireless-security.psk", Separate, Whole),
    ],
);

/// Programs with no secret flags, known so that they end the previous
/// program's context: in `sshpass -p x ssh -p 2222 host` the second `-p`
/// is ssh's port, in `PGPASSWORD=x psql -p 5432` psql's.
#[rustfmt::skip]
static NEUTRAL: Program = program(
    &["ssh", "scp", "sftp", "rsync", "psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_isready",
      "nc", "ncat", "telnet", "sudo", "env", "nohup", "timeout", "xargs", "git", "kubectl",
      "helm", "sh", "bash"],
    &[],
);

/// The known program a word names, if any: its last path component,
/// after any `KEY=` and without surrounding quotes or parens. A URL names
/// no program, whatever its path ends with.
pub(super) fn named(word: &str) -> Option<&'static Program> {
    let w = word.trim_start_matches(['"', '\'', '(', '`', '$']);
    let w = w.trim_end_matches(['"', '\'', ')', ';', '`']);
    let w = w
        .bytes()
        .rposition(|b| b == b'/' || b == b'=')
        .map_or(w, |i| &w[i + 1..]);
    // Names are short and of lowercase letters, digits, `-` and `_`:
    // most words fail this before any hashing.
    let name_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
    if !(2..=MAX_NAME).contains(&w.len()) || !w.bytes().all(name_byte) {
        return None;
    }
    // Looked up for every word of every text: a map, not a scan of ~120
    // names, with a hash cheaper than SipHash for these short keys.
    static BY_NAME: OnceLock<HashMap<&'static str, &'static Program, Fnv>> = OnceLock::new();
    BY_NAME
        .get_or_init(|| {
            PROGRAMS
                .iter()
                .chain([&NMCLI, &NEUTRAL])
                .flat_map(|p| p.names.iter().map(move |n| (*n, p)))
                .collect()
        })
        .get(w)
        .copied()
        .filter(|_| !word.contains("://"))
}

/// Longest program name, in bytes: a longer word names no program.
const MAX_NAME: usize = 14;

/// FNV-1a: program names are short and not chosen by an attacker to
/// collide (a collision would only cost a comparison).
#[derive(Default, Clone, Copy)]
struct Fnv;

/// The running FNV-1a state.
struct FnvHasher(u64);

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Whether a word ends the current command (`|`, `;`, `&&`, `(`…).
pub(super) fn ends_command(word: &str) -> bool {
    matches!(word, "|" | "||" | "&&" | "&" | ";" | "(" | ")") || word.ends_with([';', '|'])
}

/// What a word means to the current program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// The next word is the secret.
    Next(Part),
    /// The secret starts at this byte of the word.
    Here(usize, Part),
}

/// The program in force and what has been seen of its arguments.
pub(super) struct Context {
    program: &'static Program,
    /// Its subcommand was seen, or it needs none.
    armed: bool,
    /// htpasswd: `-b` (password on the command line) was given.
    batch: bool,
    /// htpasswd: `-n` (no file argument) was given.
    no_file: bool,
    /// htpasswd: the next word is a flag's value (`-C 10`).
    skip: bool,
    /// htpasswd: positional arguments seen.
    positional: usize,
}

impl Context {
    pub(super) fn new(program: &'static Program) -> Self {
        Context {
            program,
            armed: program.needs.is_none(),
            batch: false,
            no_file: false,
            skip: false,
            positional: 0,
        }
    }

    /// What `word` (a whole word) means here; None when nothing secret.
    pub(super) fn action(&mut self, word: &str) -> Option<Action> {
        let p = self.program;
        if !self.armed {
            self.armed = p.needs == Some(word);
            return None;
        }
        for f in p.flags {
            if word == f.name {
                return (f.form != Attached).then_some(Action::Next(f.part));
            }
            if f.form != Separate && word.len() > f.name.len() && word.starts_with(f.name) {
                return Some(Action::Here(f.name.len(), f.part));
            }
        }
        match p.special {
            Special::None => None,
            Special::Htpasswd => self.htpasswd(word),
            Special::OracleLogin => oracle_login(word),
        }
    }

    fn htpasswd(&mut self, word: &str) -> Option<Action> {
        if std::mem::take(&mut self.skip) {
            return None;
        }
        if let Some(flags) = word.strip_prefix('-').filter(|f| !f.is_empty()) {
            self.batch |= flags.contains('b');
            self.no_file |= flags.contains('n');
            // `-C cost` and `-r rounds` take the next word.
            self.skip = flags.ends_with(['C', 'r']);
            return None;
        }
        self.positional += 1;
        let secret_at = if self.no_file { 2 } else { 3 };
        (self.batch && self.positional == secret_at).then_some(Action::Here(0, Part::Whole))
    }
}

/// `user/secret[@db]`, possibly as `userid=user/secret@db`: where the
/// secret starts. `/`, `/nolog` and `@script.sql` have no user, hence no
/// secret.
fn oracle_login(word: &str) -> Option<Action> {
    if word.starts_with('-') {
        return None;
    }
    let from = word.rfind('=').map_or(0, |i| i + 1);
    let slash = from + word[from..].find('/')?;
    let user = &word[from..slash];
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'#');
    (!user.is_empty() && user.bytes().all(plain) && slash + 1 < word.len())
        .then_some(Action::Here(slash + 1, Part::UntilAt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_found_and_names_one_program() {
        let all: Vec<&str> = PROGRAMS
            .iter()
            .chain([&NMCLI, &NEUTRAL])
            .flat_map(|p| p.names.iter().copied())
            .collect();
        for name in &all {
            assert!(name.len() <= MAX_NAME, "{name} is longer than MAX_NAME");
            assert_eq!(all.iter().filter(|n| *n == name).count(), 1, "{name} twice");
            let p = named(name).map(|p| p.names);
            assert!(p.is_some_and(|names| names.contains(name)), "{name}");
        }
        for (word, want) in [
            ("/usr/bin/mysql", Some("mysql")),
            ("COMMAND=/usr/bin/sshpass", Some("sshpass")),
            ("\"redis-cli", Some("redis-cli")),
            ("$(mysql", Some("mysql")),
            ("https://example.com/ssh", None),
            ("mysql:8", None),
            ("m", None),
        ] {
            assert_eq!(
                named(word).map(|p| p.names[0]),
                want.and_then(|w| named(w).map(|p| p.names[0])),
                "{word}"
            );
            assert_eq!(named(word).is_some(), want.is_some(), "{word}");
        }
    }
}
