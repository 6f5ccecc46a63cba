//! `[recorder]`: the flight recorder's switches and bounds
//! ([`crate::recorder::RecorderOptions`]), checked here so a bad value is
//! reported at its `file:line:col` like every other key.

use super::check::Ctx;
use super::raw::RawRecorder;
use super::{ConfigError, units::format_size};
use crate::recorder::RecorderOptions;

/// Least `max_size`: room for a session's header, start, end and seal.
const MIN_MAX_SIZE: u64 = 64 << 10;
/// Most `keep_days`: ten years.
const MAX_KEEP_DAYS: i64 = 3650;

pub(super) fn parse(cx: &Ctx<'_>, raw: RawRecorder) -> Result<RecorderOptions, ConfigError> {
    let d = RecorderOptions::default();
    let max_size = cx.size("[recorder] max_size", raw.max_size, d.max_size)?;
    if max_size < MIN_MAX_SIZE {
        return Err(cx.err(
            "[recorder] max_size",
            format!(
                "{max_size} bytes is too small (at least {})",
                format_size(MIN_MAX_SIZE)
            ),
        ));
    }
    let max_total = cx.size("[recorder] max_total", raw.max_total, d.max_total)?;
    if max_total < max_size {
        return Err(cx.err(
            "[recorder] max_total",
            format!(
                "{} is less than max_size ({}): one recording would not fit (raise max_total \
                 or lower max_size)",
                format_size(max_total),
                format_size(max_size)
            ),
        ));
    }
    let keep_days = match raw.keep_days {
        None => d.keep_days,
        Some(n) if (1..=MAX_KEEP_DAYS).contains(&n) => n as u32,
        Some(n) => {
            return Err(cx.err(
                "[recorder] keep_days",
                format!("{n} is outside 1..{MAX_KEEP_DAYS}"),
            ));
        }
    };
    Ok(RecorderOptions {
        enabled: raw.enabled.unwrap_or(d.enabled),
        record_model_content: raw.record_model_content.unwrap_or(d.record_model_content),
        max_size,
        max_total,
        keep_days,
        dir: cx.path_of(raw.dir),
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml"))
    }

    #[test]
    fn defaults_record_everything_in_the_state_dir_within_16mib_1gib_30_days() {
        let r = parse("").expect("defaults").recorder;
        assert!(r.enabled && r.record_model_content);
        assert_eq!(
            (r.max_size, r.max_total, r.keep_days),
            (16 << 20, 1 << 30, 30)
        );
        assert_eq!(r.dir_under(Path::new("/s")), PathBuf::from("/s/recordings"));
        let c = parse(
            "[recorder]\nenabled = false\nrecord_model_content = false\nmax_size = \"1MiB\"\n\
             max_total = \"8MiB\"\nkeep_days = 2\ndir = \"rec\"\n",
        )
        .expect("ok");
        let r = c.recorder;
        assert!(!r.enabled && !r.record_model_content);
        assert_eq!(
            (r.max_size, r.max_total, r.keep_days),
            (1 << 20, 8 << 20, 2)
        );
        assert_eq!(r.dir, Some(PathBuf::from("/etc/catpaw/rec")));
    }

    #[test]
    fn a_bad_value_is_reported_at_its_line_and_column() {
        for (text, at, says) in [
            (
                "[recorder]\nkeep_days = 0\n",
                "config.toml:2:1",
                "outside 1..3650",
            ),
            (
                "[recorder]\n\nmax_size = \"1KiB\"\n",
                "config.toml:3:1",
                "too small",
            ),
            (
                "[recorder]\nmax_size = \"8MiB\"\nmax_total = \"4MiB\"\n",
                "config.toml:3:1",
                "less than max_size",
            ),
            (
                "[recorder]\nmax_total = \"lots\"\n",
                "config.toml:2:1",
                "lots",
            ),
            (
                "[recorder]\nspeed = 2\n",
                "config.toml:2:1",
                "unknown field",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(at) && e.contains(says), "{text}: {e}");
        }
    }
}
