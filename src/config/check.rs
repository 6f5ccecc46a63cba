//! Field checks: a raw value becomes a typed one, or an error that names
//! the file and the field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawLimits, RawSigning};
use super::units::{parse_duration, parse_size};
use super::{ConfigError, LimitOverride, Limits};
use crate::link::signing::{self, SigningConfig};

/// Largest accepted `[server.signing] max_skew`, in seconds (one day).
const MAX_SIGNING_SKEW_SECS: u64 = 24 * 3600;

/// The variable a `${NAME}` value names, if it is one.
pub(super) fn env_name(value: &str) -> Option<&str> {
    value.trim().strip_prefix("${")?.strip_suffix('}')
}

/// Expands `${NAME}` (the whole value) from the environment.
pub(super) fn expand_env(value: &str) -> Result<String, String> {
    if let Some(name) = env_name(value) {
        return std::env::var(name).map_err(|_| format!("environment variable {name} is not set"));
    }
    Ok(value.to_string())
}

/// The file being checked: its name for messages, and the directory
/// relative paths in it are resolved against.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a str,
    pub(super) base: PathBuf,
}

impl Ctx<'_> {
    pub(super) fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn path_of(&self, v: Option<String>) -> Option<PathBuf> {
        v.filter(|s| !s.trim().is_empty()).map(|s| {
            let p = PathBuf::from(s);
            if p.is_absolute() {
                p
            } else {
                self.base.join(p)
            }
        })
    }

    pub(super) fn size(
        &self,
        field: &str,
        v: Option<toml::Value>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(toml::Value::Integer(i)) if i >= 0 => Ok(i as u64),
            Some(toml::Value::String(s)) => parse_size(&s).map_err(|m| self.err(field, m)),
            Some(other) => {
                Err(self.err(field, format!("{other} is not a size (use e.g. \"64MiB\")")))
            }
        }
    }

    pub(super) fn duration(
        &self,
        field: &str,
        v: Option<toml::Value>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(toml::Value::Integer(i)) if i >= 0 => Ok(Duration::from_secs(i as u64)),
            Some(toml::Value::String(s)) => parse_duration(&s).map_err(|m| self.err(field, m)),
            Some(other) => Err(self.err(
                field,
                format!("{other} is not a duration (use e.g. \"30s\")"),
            )),
        }
    }

    pub(super) fn limits(
        &self,
        section: &str,
        raw: RawLimits,
        defaults: &Limits,
    ) -> Result<LimitOverride, ConfigError> {
        let f = |name: &str| format!("[{section}] {name}");
        let o = LimitOverride {
            fuel: raw.fuel.map(|n| self.count(&f("fuel"), n)).transpose()?,
            max_memory: match raw.max_memory {
                None => None,
                v => Some(self.memory(&f("max_memory"), v, defaults.max_memory)?),
            },
            timeout: match raw.timeout {
                None => None,
                v => Some(self.positive(
                    &f("timeout"),
                    self.duration(&f("timeout"), v, defaults.timeout)?,
                )?),
            },
            max_output: match raw.max_output {
                None => None,
                v => Some(self.size(&f("max_output"), v, defaults.max_output)?),
            },
            max_tool_calls: raw
                .max_tool_calls
                .map(|n| self.count(&f("max_tool_calls"), n))
                .transpose()?,
        };
        Ok(o)
    }

    /// A count that must be at least 1.
    pub(super) fn count(&self, field: &str, n: i64) -> Result<u64, ConfigError> {
        u64::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| self.err(field, format!("{n} must be greater than 0")))
    }

    pub(super) fn memory(
        &self,
        field: &str,
        v: Option<toml::Value>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let m = self.size(field, v, default)?;
        if !((1 << 20)..=(4u64 << 30)).contains(&m) {
            return Err(self.err(field, format!("{m} bytes is outside 1MiB..4GiB")));
        }
        Ok(m)
    }

    /// `[server.signing]` (PROTOCOL §9).
    pub(super) fn signing(&self, raw: RawSigning) -> Result<SigningConfig, ConfigError> {
        let mut keys = BTreeMap::new();
        for (id, text) in raw.keys {
            let field = format!("[server.signing] keys.{id}");
            // The id is matched against the payload's `key_id` and written
            // to logs and the audit trail: keep it visible and one line.
            if id.is_empty() || id.chars().any(char::is_control) {
                return Err(self.err(
                    &field,
                    "a key id must be non-empty and free of control characters",
                ));
            }
            let key = signing::parse_public_key(&text).map_err(|m| self.err(&field, m))?;
            keys.insert(id, key);
        }
        let require = raw.require.unwrap_or(!keys.is_empty());
        if require && keys.is_empty() {
            return Err(self.err(
                "[server.signing] require",
                "is true but no keys are configured: add keys = { \"<id>\" = \"<base64 public key>\" } or set require = false",
            ));
        }
        let field = "[server.signing] max_skew";
        let max_skew = self.duration(field, raw.max_skew, signing::DEFAULT_MAX_SKEW)?;
        // Timestamps are whole seconds; more than a day of skew would make
        // the replay window (2 × max_skew) and its cache pointlessly large.
        if max_skew.subsec_nanos() != 0 {
            return Err(self.err(
                field,
                "must be a whole number of seconds, as timestamps are (e.g. \"300s\")",
            ));
        }
        let secs = max_skew.as_secs();
        if !(1..=MAX_SIGNING_SKEW_SECS).contains(&secs) {
            return Err(self.err(field, format!("{secs}s is outside 1s..24h (e.g. \"300s\")")));
        }
        Ok(SigningConfig {
            keys,
            require,
            max_skew,
        })
    }

    pub(super) fn positive(&self, field: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            return Err(self.err(field, "must be greater than 0"));
        }
        Ok(d)
    }
}
