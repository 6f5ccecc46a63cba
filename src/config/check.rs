//! Field checks: a raw value becomes a typed one, or an error that names
//! the file and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use super::labels;
use super::raw::RawSigning;
use super::units::{duration_value, size_value};
use crate::runner::signature::{self, RunnerTrust};
use crate::session::signing::{self, SigningConfig};

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
            Some(v) => size_value(&v).map_err(|m| self.err(field, m)),
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
            Some(v) => duration_value(&v).map_err(|m| self.err(field, m)),
        }
    }

    /// `[global.labels]`, or the older top-level `labels` (with a
    /// deprecation line); both at once is refused.
    pub(super) fn labels(
        &self,
        global: Option<BTreeMap<String, String>>,
        top: Option<BTreeMap<String, String>>,
        deprecated: &mut Vec<String>,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let labels = match (global, top) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "labels",
                    "is given twice: keep `[global.labels]` and remove the top-level `labels`",
                ));
            }
            (Some(g), None) => g,
            (None, Some(t)) => {
                deprecated.push(format!(
                    "config {}: top-level `labels` is deprecated; move them to `[global.labels]`",
                    self.path
                ));
                t
            }
            (None, None) => BTreeMap::new(),
        };
        for (k, v) in &labels {
            let field = format!("[global.labels] {k}");
            if k.is_empty() || k.chars().any(char::is_control) {
                return Err(self.err(&field, "a label name must be non-empty and one line"));
            }
            labels::check_template(v, |n| std::env::var_os(n).is_some())
                .map_err(|m| self.err(&field, m))?;
        }
        Ok(labels)
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
}

impl Ctx<'_> {
    /// `[sandbox] runner_keys` and `require_signed_runners`: each key
    /// given inline (the base64 line or the whole `.pub` text) or as
    /// `file:PATH` (relative to the config's base directory), read now and
    /// on every reload.
    pub(super) fn runner_trust(
        &self,
        keys: BTreeMap<String, String>,
        require: Option<bool>,
    ) -> Result<RunnerTrust, ConfigError> {
        let require = require.unwrap_or(false);
        let mut trust = RunnerTrust::new(require);
        for (name, value) in keys {
            let field = format!("[sandbox.runner_keys] {name}");
            // The name is shown in logs, `status` and the audit trail.
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(self.err(
                    &field,
                    "a key name must be non-empty and free of control characters",
                ));
            }
            let text = match value.trim().strip_prefix("file:") {
                Some(file) => {
                    let path = self.path_of(Some(file.to_string())).ok_or_else(|| {
                        self.err(
                            &field,
                            "`file:` names no file (e.g. \"file:/etc/catpaw-agent/ci.pub\")",
                        )
                    })?;
                    let bytes = crate::fsafe::read_file(&path, signature::MAX_KEY_FILE_SIZE)
                        .map_err(|e| self.err(&field, format!("reading the key: {e}")))?;
                    String::from_utf8(bytes).map_err(|_| {
                        self.err(
                            &field,
                            format!("{} is not a minisign public key (not text)", path.display()),
                        )
                    })?
                }
                None => value,
            };
            trust.add(&name, &text).map_err(|m| self.err(&field, m))?;
        }
        if require && trust.key_ids().is_empty() {
            return Err(self.err(
                "[sandbox] require_signed_runners",
                "is true but `[sandbox] runner_keys` names no key: add one (runner_keys = { ci = \"RW…\" } \
                 or { ci = \"file:/etc/catpaw-agent/ci.pub\" }) or set require_signed_runners = false",
            ));
        }
        Ok(trust)
    }
}

impl super::Config {
    /// Checks that every file the config names can be read (runners,
    /// `ca_file`, `tls_cert`, `tls_key`): what the agent would otherwise
    /// only find out at start. The error names the field.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let sb = &self.sandbox;
        let files = [
            ("[server] ca_file", &s.ca_file),
            ("[server] tls_cert", &s.tls_cert),
            ("[server] tls_key", &s.tls_key),
            ("[sandbox] runner", &sb.runner),
            ("[sandbox] diagnose_runner", &sb.diagnose_runner),
            ("[sandbox] chat_runner", &sb.chat_runner),
        ];
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: self.source.as_ref().map_or_else(
                || super::DEFAULT_PATH.to_string(),
                |p| p.display().to_string(),
            ),
            field: field.to_string(),
            message,
        };
        for (field, path) in files {
            let Some(path) = path else { continue };
            if let Err(e) = std::fs::File::open(path) {
                return Err(invalid(
                    field,
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
        state_dir_usable(&self.state_dir).map_err(|m| invalid("state_dir", m))
    }
}

/// Whether the agent can use `dir` as its state dir: an existing directory
/// it may write in, or one it can create (the nearest existing parent is a
/// directory it may write in).
fn state_dir_usable(dir: &Path) -> Result<(), String> {
    let writable = |p: &Path| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
    };
    let mut probe = dir.to_path_buf();
    loop {
        match std::fs::metadata(&probe) {
            Ok(m) if !m.is_dir() => {
                return Err(format!("{} is not a directory", probe.display()));
            }
            Ok(_) if writable(&probe) => return Ok(()),
            Ok(_) if probe == dir => {
                return Err(format!("{} is not writable by this user", dir.display()));
            }
            Ok(_) => {
                return Err(format!(
                    "{} does not exist and cannot be created: {} is not writable by this user",
                    dir.display(),
                    probe.display()
                ));
            }
            Err(_) => match probe.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => probe = parent.to_path_buf(),
                _ => probe = PathBuf::from("."),
            },
        }
    }
}

#[cfg(test)]
mod state_dir_tests {
    use super::state_dir_usable;

    #[test]
    fn a_state_dir_that_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(state_dir_usable(&dir.path().join("a/b/state.d")).is_ok());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = state_dir_usable(&file.join("state.d")).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        // Root may write anywhere: only a plain user can be refused by mode.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            use std::os::unix::fs::PermissionsExt;
            let locked = dir.path().join("locked");
            std::fs::create_dir(&locked).unwrap();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
            let e = state_dir_usable(&locked.join("state.d")).unwrap_err();
            assert!(e.contains("cannot be created"), "{e}");
        } else {
            eprintln!("skipped: the mode case (root may write in any directory)");
        }
    }
}

#[cfg(test)]
#[path = "runner_keys_tests.rs"]
mod runner_keys_tests;
