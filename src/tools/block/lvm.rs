//! lvm: device-mapper volumes from /sys/block/dm-* (LVM logical volumes,
//! dm-crypt, multipath), and volume group free space from `vgs` when
//! lvm2 is installed and the agent may ask it (root).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::cmd::{Keep, on_path, run as run_cmd};

/// What a dm uuid prefix says the volume is.
pub(crate) fn dm_kind(uuid: &str) -> &'static str {
    let prefix = uuid.split('-').next().unwrap_or("");
    match prefix {
        "LVM" => "lvm",
        "CRYPT" => "crypt",
        "mpath" => "multipath",
        "part1" | "part2" | "part3" => "partition",
        _ if uuid.is_empty() => "unknown",
        _ => "other",
    }
}

/// `vgs --reportformat json` → rows of (name, size, free, pvs, lvs).
pub(crate) fn parse_vgs(text: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let bytes = |x: &Value| {
        x.as_str()
            .and_then(|s| s.trim_end_matches('B').parse::<u64>().ok())
            .unwrap_or(0)
    };
    v["report"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["vg"].as_array().cloned().unwrap_or_default())
        .map(|vg| {
            let (size, free) = (bytes(&vg["vg_size"]), bytes(&vg["vg_free"]));
            json!({
                "vg": vg["vg_name"],
                "size_bytes": size,
                "free_bytes": free,
                "pv_count": vg["pv_count"].as_str().and_then(|s| s.parse::<u64>().ok()),
                "lv_count": vg["lv_count"].as_str().and_then(|s| s.parse::<u64>().ok()),
            })
        })
        .collect()
}

/// The dm-* devices under a /sys/block-like `base`.
pub(crate) fn dm_volumes(base: &Path) -> Vec<Value> {
    let mut names: Vec<String> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dm-"))
        .collect();
    names.sort_by_key(|n| n[3..].parse::<u64>().unwrap_or(0));
    names
        .into_iter()
        .map(|n| {
            let dir = base.join(&n);
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            };
            let uuid = read("dm/uuid");
            let mut slaves: Vec<String> = std::fs::read_dir(dir.join("slaves"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            slaves.sort();
            json!({
                "device": n,
                "name": read("dm/name"),
                "kind": dm_kind(&uuid),
                "size_bytes": read("size").parse::<u64>().unwrap_or(0) * 512,
                "suspended": read("dm/suspended") == "1",
                "read_only": read("ro") == "1",
                "backing": slaves,
            })
        })
        .collect()
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let volumes = dm_volumes(Path::new("/sys/block"));
    let vgs = if !on_path("vgs") {
        json!({ "available": false, "reason": "vgs is not on PATH (lvm2 not installed)" })
    } else {
        let args = [
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,vg_size,vg_free,pv_count,lv_count",
        ];
        match run_cmd("vgs", &args, Duration::from_secs(10), Keep::Head) {
            Ok(t) => json!({ "available": true, "groups": parse_vgs(&t) }),
            Err(e) => json!({ "available": false, "reason": format!("{e} (vgs needs root)") }),
        }
    };
    Ok(json!({ "volumes": volumes, "volume_groups": vgs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vgs_report_and_dm_kinds() {
        let rows = parse_vgs(include_str!("../fixtures/vgs.json"));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["vg"], "vg0");
        assert_eq!(rows[0]["size_bytes"], 107369988096u64);
        assert_eq!(rows[0]["free_bytes"], 4294967296u64);
        assert_eq!(rows[1]["lv_count"], 1);
        assert!(parse_vgs("not json").is_empty());
        assert_eq!(dm_kind("LVM-abc"), "lvm");
        assert_eq!(dm_kind("CRYPT-LUKS2-x"), "crypt");
        assert_eq!(dm_kind(""), "unknown");
    }

    #[test]
    fn dm_devices_from_sysfs() {
        let d = tempfile::tempdir().expect("tempdir");
        for (p, t) in [
            ("dm-0/dm/name", "vg0-root\n"),
            ("dm-0/dm/uuid", "LVM-xyz\n"),
            ("dm-0/size", "2048\n"),
            ("dm-0/dm/suspended", "0\n"),
            ("sda/size", "1\n"),
        ] {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().expect("p")).expect("mkdir");
            std::fs::write(f, t).expect("write");
        }
        std::fs::create_dir_all(d.path().join("dm-0/slaves/sda2")).expect("slave");
        let v = dm_volumes(d.path());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0]["name"], "vg0-root");
        assert_eq!(v[0]["kind"], "lvm");
        assert_eq!(v[0]["size_bytes"], 1048576);
        assert_eq!(v[0]["backing"], json!(["sda2"]));
    }

    #[test]
    fn live_lvm() {
        let v = run(&Args::empty()).expect("lvm");
        assert!(v["volume_groups"]["available"].is_boolean(), "{v}");
    }
}
