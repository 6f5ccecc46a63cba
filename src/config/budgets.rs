//! The one funnel for session budgets: `[sandbox]` over the defaults,
//! `[sandbox.diagnose]` / `[sandbox.chat]` over that, then the command
//! line's `--fuel`, `--max-memory` and `--timeout` over both roles.
//!
//! Every value, wherever it came from, is parsed and bounded by the same
//! rules (the [`Slot`] its [`Budgets::KEYS`] entry gives), and every error
//! names the field and where it came from:
//!
//! ```text
//! config /etc/catpaw/conf.d/config.toml `[sandbox.chat] max_memory`: 100 bytes is outside 1MiB..4GiB
//! command line `--max-memory`: 100 bytes is outside 1MiB..4GiB
//! ```

use std::time::Duration;

use super::ConfigError;
use super::raw::RawBudgets;
use super::units::{duration_value, format_size, parse_duration, parse_size, size_value};
use crate::sandbox::{Budgets, Slot};

/// Budget keys that were renamed, `(old, new)`. The old key still works,
/// with one warning line naming the new one; setting both in one section
/// is an error.
const RENAMED: &[(&str, &str)] = &[("max_tool_calls", "max_host_calls")];

/// The budgets of each runner role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleBudgets {
    /// inspect and diagnose sessions.
    pub diagnose: Budgets,
    /// chat sessions.
    pub chat: Budgets,
}

/// A budget given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetFlag {
    /// Its config key: `max_memory` for `--max-memory`.
    pub key: &'static str,
    /// The value as typed, e.g. `64MiB`.
    pub value: String,
}

impl RoleBudgets {
    /// Resolves the file's sections of the config file at `path`. Each
    /// renamed key the file still uses adds one line to `deprecated`.
    pub(super) fn from_file(
        path: &str,
        sandbox: &RawBudgets,
        diagnose: &RawBudgets,
        chat: &RawBudgets,
        deprecated: &mut Vec<String>,
    ) -> Result<RoleBudgets, ConfigError> {
        let mut renamed = Vec::new();
        let mut base = Budgets::default();
        apply_section(&mut base, path, "sandbox", sandbox, &mut renamed)?;
        let mut roles = RoleBudgets {
            diagnose: base.clone(),
            chat: base,
        };
        apply_section(
            &mut roles.diagnose,
            path,
            "sandbox.diagnose",
            diagnose,
            &mut renamed,
        )?;
        apply_section(&mut roles.chat, path, "sandbox.chat", chat, &mut renamed)?;
        for &(old, new) in RENAMED {
            let sections: Vec<String> = renamed
                .iter()
                .filter(|(o, _)| *o == old)
                .map(|(_, section)| format!("[{section}]"))
                .collect();
            if !sections.is_empty() {
                deprecated.push(format!(
                    "config {path}: `{old}` (in {}) is deprecated; rename it to `{new}`",
                    sections.join(", ")
                ));
            }
        }
        Ok(roles)
    }

    /// Both roles with the command line's flags applied (flags beat the
    /// file).
    pub(crate) fn with_flags(&self, flags: &[BudgetFlag]) -> Result<RoleBudgets, ConfigError> {
        let mut out = self.clone();
        for flag in flags {
            for b in [&mut out.diagnose, &mut out.chat] {
                set(b, flag.key, Raw::Text(&flag.value), &Origin::Flag(flag.key))?;
            }
        }
        Ok(out)
    }
}

/// Where a value came from: every error names it.
enum Origin<'a> {
    /// Section `section` of the config file at `path`.
    File { path: &'a str, section: &'a str },
    /// The command-line flag for this key.
    Flag(&'a str),
}

impl Origin<'_> {
    /// The error for `key` (as written) from here.
    fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        match self {
            Origin::File { path, section } => ConfigError::Invalid {
                path: path.to_string(),
                field: format!("[{section}] {key}"),
                message: message.into(),
            },
            Origin::Flag(key) => ConfigError::Flag {
                flag: format!("--{}", key.replace('_', "-")),
                message: message.into(),
            },
        }
    }
}

/// A value as it arrived: from TOML (typed) or from the command line
/// (text).
enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

/// Applies one section of the file to `b`, noting each renamed key used.
fn apply_section(
    b: &mut Budgets,
    path: &str,
    section: &'static str,
    table: &RawBudgets,
    renamed: &mut Vec<(&'static str, &'static str)>,
) -> Result<(), ConfigError> {
    let origin = Origin::File { path, section };
    for (written, value) in table {
        let key = match RENAMED.iter().find(|(old, _)| old == written) {
            Some(&(_, new)) if table.contains_key(new) => {
                return Err(origin.error(
                    written,
                    format!("is the old name of `{new}`, which is also set; keep only `{new}`"),
                ));
            }
            Some(&(old, new)) => {
                renamed.push((old, section));
                new
            }
            None => written.as_str(),
        };
        set_as(b, key, written, Raw::Toml(value), &origin)?;
    }
    Ok(())
}

/// Sets budget `key` from `raw`.
fn set(b: &mut Budgets, key: &str, raw: Raw<'_>, origin: &Origin<'_>) -> Result<(), ConfigError> {
    set_as(b, key, key, raw, origin)
}

/// Sets budget `key`, which the source spelled `written`, from `raw`:
/// parsed by the budget's unit, refused outside its bounds.
fn set_as(
    b: &mut Budgets,
    key: &str,
    written: &str,
    raw: Raw<'_>,
    origin: &Origin<'_>,
) -> Result<(), ConfigError> {
    let err = |message: String| origin.error(written, message);
    let Some(budget) = Budgets::key(key) else {
        let names: Vec<&str> = Budgets::KEYS.iter().map(|k| k.name).collect();
        return Err(err(format!(
            "unknown key (the budgets are {}; see README, Sandbox limits)",
            names.join(", ")
        )));
    };
    match budget.slot(b) {
        Slot::Count(n) => *n = count(&raw).map_err(err)?,
        Slot::Bytes(n, range) => {
            let v = match raw {
                Raw::Toml(v) => size_value(v),
                Raw::Text(s) => parse_size(s),
            }
            .map_err(err)?;
            if !range.contains(&v) {
                return Err(err(format!(
                    "{v} bytes is outside {}..{}",
                    format_size(*range.start()),
                    format_size(*range.end())
                )));
            }
            *n = v;
        }
        Slot::Time(d) => {
            let v: Duration = match raw {
                Raw::Toml(v) => duration_value(v),
                Raw::Text(s) => parse_duration(s),
            }
            .map_err(err)?;
            if v.is_zero() {
                return Err(err("must be greater than 0".into()));
            }
            *d = v;
        }
    }
    Ok(())
}

/// A whole number of at least 1.
fn count(raw: &Raw<'_>) -> Result<u64, String> {
    let n: i128 = match raw {
        Raw::Toml(toml::Value::Integer(i)) => i128::from(*i),
        Raw::Toml(other) => return Err(format!("{other} is not a whole number (use e.g. 1000)")),
        Raw::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a whole number (use e.g. 1000)"))?,
    };
    if n <= 0 {
        return Err(format!("{n} must be greater than 0"));
    }
    u64::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// The `[sandbox]` budgets over the defaults, before the per-role
/// sections: what a `[sandbox.policy.<name>]` may not go above.
pub(super) fn sandbox_section(path: &str, sandbox: &RawBudgets) -> Result<Budgets, ConfigError> {
    let mut base = Budgets::default();
    apply_section(&mut base, path, "sandbox", sandbox, &mut Vec::new())?;
    Ok(base)
}

/// The budgets a policy table `[section]` sets, each parsed and bounded
/// by the funnel's rules: the key and `base` with that one value set.
pub(super) fn policy_budgets(
    path: &str,
    section: &str,
    table: &RawBudgets,
    base: &Budgets,
) -> Result<Vec<(&'static crate::sandbox::BudgetKey, Budgets)>, ConfigError> {
    let origin = Origin::File { path, section };
    let mut out = Vec::new();
    for (written, value) in table {
        let Some(key) = Budgets::key(written) else {
            let names: Vec<&str> = Budgets::KEYS.iter().map(|k| k.name).collect();
            return Err(origin.error(
                written,
                format!(
                    "unknown key (a policy holds tools, shell, llm and the budgets {})",
                    names.join(", ")
                ),
            ));
        };
        let mut b = base.clone();
        set(&mut b, written, Raw::Toml(value), &origin)?;
        out.push((key, b));
    }
    Ok(out)
}
