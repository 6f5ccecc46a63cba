//! block_devices: the block devices of /sys/block and their partitions.

use std::path::Path;

use serde_json::{Value, json};

use crate::tools::args::Args;

/// Devices listed at most.
const MAX: usize = 256;

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The active scheduler in `[mq-deadline] none`.
pub(crate) fn active_scheduler(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(text[start + 1..end].to_string())
}

/// The kind of a device by its name and sysfs entries.
fn kind(name: &str, dir: &Path) -> &'static str {
    if dir.join("dm").is_dir() {
        "dm"
    } else if dir.join("md").is_dir() {
        "md"
    } else if name.starts_with("loop") {
        "loop"
    } else if name.starts_with("zram") || name.starts_with("ram") {
        "ram"
    } else if name.starts_with("sr") {
        "rom"
    } else {
        "disk"
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// One device directory of /sys/block.
pub(crate) fn device(dir: &Path) -> Option<Value> {
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let sectors: u64 = read(dir, "size").parse().unwrap_or(0);
    let partitions: Vec<Value> = names_in(dir)
        .into_iter()
        .filter(|p| p.starts_with(&name) && dir.join(p).join("partition").exists())
        .map(|p| {
            let pd = dir.join(&p);
            json!({
                "name": p,
                "size_bytes": read(&pd, "size").parse::<u64>().unwrap_or(0) * 512,
                "holders": names_in(&pd.join("holders")),
            })
        })
        .collect();
    Some(json!({
        "name": name,
        "type": kind(&name, dir),
        "size_bytes": sectors * 512,
        "rotational": read(dir, "queue/rotational") == "1",
        "read_only": read(dir, "ro") == "1",
        "removable": read(dir, "removable") == "1",
        "model": read(dir, "device/model"),
        "dm_name": Some(read(dir, "dm/name")).filter(|s| !s.is_empty()),
        "scheduler": active_scheduler(&read(dir, "queue/scheduler")),
        "holders": names_in(&dir.join("holders")),
        "slaves": names_in(&dir.join("slaves")),
        "partitions": partitions,
    }))
}

pub(crate) fn list(base: &Path) -> Vec<Value> {
    names_in(base)
        .into_iter()
        .take(MAX)
        .filter_map(|n| device(&base.join(n)))
        .collect()
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let base = Path::new("/sys/block");
    if !base.is_dir() {
        return Err("cannot read /sys/block (sysfs not mounted)".into());
    }
    let all = list(base);
    // Unused loop devices (size 0) are noise.
    let devices: Vec<Value> = all
        .into_iter()
        .filter(|d| !(d["type"] == "loop" && d["size_bytes"] == 0))
        .collect();
    Ok(json!({ "devices": devices }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_tree_is_read() {
        let d = tempfile::tempdir().expect("tempdir");
        let b = d.path();
        for (p, t) in [
            ("sda/size", "2097152\n"),
            ("sda/ro", "0\n"),
            ("sda/removable", "0\n"),
            ("sda/queue/rotational", "1\n"),
            ("sda/queue/scheduler", "none [mq-deadline] kyber\n"),
            ("sda/device/model", "SAMSUNG HD\n"),
            ("sda/sda1/partition", "1\n"),
            ("sda/sda1/size", "2048\n"),
            ("dm-0/size", "1024\n"),
            ("dm-0/dm/name", "vg0-root\n"),
            ("dm-0/ro", "1\n"),
        ] {
            let f = b.join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, t).expect("write");
        }
        std::fs::create_dir_all(b.join("sda/sda1/holders/dm-0")).expect("holder");
        std::fs::create_dir_all(b.join("dm-0/slaves/sda1")).expect("slave");
        let v = list(b);
        assert_eq!(v.len(), 2);
        let dm = &v[0];
        assert_eq!(dm["type"], "dm");
        assert_eq!(dm["dm_name"], "vg0-root");
        assert_eq!(dm["read_only"], true);
        assert_eq!(dm["slaves"], json!(["sda1"]));
        let sda = &v[1];
        assert_eq!(sda["size_bytes"], 2097152u64 * 512);
        assert_eq!(sda["rotational"], true);
        assert_eq!(sda["scheduler"], "mq-deadline");
        assert_eq!(sda["model"], "SAMSUNG HD");
        assert_eq!(sda["partitions"][0]["name"], "sda1");
        assert_eq!(sda["partitions"][0]["holders"], json!(["dm-0"]));
        assert_eq!(active_scheduler("none"), None);
    }

    #[test]
    fn live_block_devices() {
        let v = run(&Args::empty()).expect("block_devices");
        assert!(v["devices"].is_array(), "{v}");
    }
}
