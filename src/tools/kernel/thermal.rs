//! thermal: /sys/class/thermal zones and their critical trip points.

use std::path::Path;

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::unavailable;

const BASE: &str = "/sys/class/thermal";

/// Millidegrees text → degrees Celsius with one decimal.
pub(crate) fn millideg(text: &str) -> Option<f64> {
    let m: i64 = text.trim().parse().ok()?;
    Some((m as f64 / 100.0).round() / 10.0)
}

/// One zone directory: type, temperature, the lowest `critical` or `hot`
/// trip point.
pub(crate) fn zone(dir: &Path) -> Option<Value> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let temp = read("temp").and_then(|t| millideg(&t));
    let mut critical: Option<f64> = None;
    for i in 0..32 {
        let Some(kind) = read(&format!("trip_point_{i}_type")) else {
            break;
        };
        if matches!(kind.trim(), "critical" | "hot")
            && let Some(t) = read(&format!("trip_point_{i}_temp")).and_then(|t| millideg(&t))
        {
            critical = Some(critical.map_or(t, |c: f64| c.min(t)));
        }
    }
    Some(json!({
        "zone": dir.file_name()?.to_string_lossy(),
        "type": read("type").unwrap_or_default().trim(),
        "temp_c": temp,
        "critical_c": critical,
    }))
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let mut dirs: Vec<_> = std::fs::read_dir(BASE)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .map(|e| e.path())
        .collect();
    if dirs.is_empty() {
        return Ok(unavailable(format!(
            "no thermal zones under {BASE} (usual in virtual machines and containers)"
        )));
    }
    dirs.sort();
    let zones: Vec<Value> = dirs.iter().filter_map(|d| zone(d)).collect();
    Ok(json!({ "available": true, "zones": zones }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_with_trip_points() {
        let d = tempfile::tempdir().expect("tempdir");
        let z = d.path().join("thermal_zone0");
        std::fs::create_dir(&z).expect("mkdir");
        for (f, t) in [
            ("type", "x86_pkg_temp\n"),
            ("temp", "67500\n"),
            ("trip_point_0_type", "passive\n"),
            ("trip_point_0_temp", "80000\n"),
            ("trip_point_1_type", "critical\n"),
            ("trip_point_1_temp", "105000\n"),
        ] {
            std::fs::write(z.join(f), t).expect("write");
        }
        let v = zone(&z).expect("zone");
        assert_eq!(v["type"], "x86_pkg_temp");
        assert_eq!(v["temp_c"], 67.5);
        assert_eq!(v["critical_c"], 105.0);
        assert_eq!(millideg("-1000"), Some(-1.0));
        assert_eq!(millideg("x"), None);
    }

    #[test]
    fn live_thermal() {
        let v = run(&Args::empty()).expect("thermal");
        assert!(v["available"].is_boolean(), "{v}");
    }
}
