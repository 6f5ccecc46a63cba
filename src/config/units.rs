//! Units a value may be written in: sizes (`64MiB`) and durations
//! (`30s`), for the config file and the command line alike.

use std::time::Duration;

/// Parses a size: bare bytes (`1048576`), or a number with `K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB` (binary, case-insensitive), `KB`/`MB`/`GB` (decimal).
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use e.g. 64MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("{s:?} is not a size (use e.g. 64MiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: `500ms`, `30s`, `2m`, `1h`, or a bare number of
/// seconds.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 30s, 500ms, 2m)"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?} is not a duration (use e.g. 30s, 500ms, 2m)")),
    };
    Ok(d)
}

/// A size as TOML holds it: a non-negative integer (bytes) or a string
/// with a unit.
pub(super) fn size_value(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        toml::Value::String(s) => parse_size(s),
        other => Err(format!("{other} is not a size (use e.g. \"64MiB\")")),
    }
}

/// A duration as TOML holds it: a non-negative integer (seconds) or a
/// string with a unit.
pub(super) fn duration_value(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
        toml::Value::String(s) => parse_duration(s),
        other => Err(format!("{other} is not a duration (use e.g. \"30s\")")),
    }
}

/// `n` bytes in the largest binary unit that holds it exactly (`4GiB`,
/// `1MiB`, `1500`), as a message shows a bound.
pub(super) fn format_size(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n != 0 && n.trailing_zeros() >= shift {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}
