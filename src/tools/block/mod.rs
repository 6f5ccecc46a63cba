//! Block storage: per-disk I/O and latency, block devices, filesystem
//! inodes, device-mapper/LVM volumes and software RAID.

mod blockdev;
mod diskio;
mod inodes;
mod lvm;
mod mdraid;

use super::tool::{NO_ARGS, Tool};

pub(super) const TOOLS: &[Tool] = &[
    Tool::new(
        "disk_io",
        "per-disk IOPS, throughput, average latency (await) and utilisation, sampled from /proc/diskstats",
        r#"{"type":"object","properties":{"sample_ms":{"type":"integer","minimum":200,"maximum":5000,"default":1000},"device":{"type":"string","description":"only this device, e.g. sda"},"show_idle":{"type":"boolean","default":false}},"additionalProperties":false}"#,
        diskio::run,
    ),
    Tool::new(
        "block_devices",
        "block devices: size, type (disk, partition, dm, md, loop), rotational, read-only, model, holders, scheduler",
        NO_ARGS,
        blockdev::run,
    ),
    Tool::new(
        "inodes",
        "inode use of every real filesystem, fullest first",
        r#"{"type":"object","properties":{"limit":{"type":"integer","minimum":1,"maximum":200,"default":50}},"additionalProperties":false}"#,
        inodes::run,
    ),
    Tool::new(
        "lvm",
        "device-mapper volumes (LVM logical volumes, crypt, multipath) with size, state and backing devices",
        NO_ARGS,
        lvm::run,
    ),
    Tool::new(
        "md_raid",
        "software RAID arrays from /proc/mdstat: level, members, failed or missing disks, resync progress",
        NO_ARGS,
        mdraid::run,
    ),
];
