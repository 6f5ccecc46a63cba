//! A full disk: a record of what already happened is held, not lost, and
//! written in order once there is room; a `started` record cannot
//! overtake it (the act is refused meanwhile). Needs a small tmpfs, so
//! root.

use super::*;

/// A tmpfs of `kib` KiB on a fresh temp dir, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(kib: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// Fills the filesystem of `dir` with a file; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = [0u8; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write(&block[..64]).is_ok_and(|n| n > 0) {}
    path
}

/// A tmpfs (or why there is none), a trail on it with a shell act
/// started, and the disk then full: records noted until one is held.
/// Returns the trail's path, the log, the act, the filler and how many
/// records were noted.
fn full_with_an_act_open() -> Option<(
    Tmpfs,
    std::path::PathBuf,
    AuditLog,
    Act,
    std::path::PathBuf,
    usize,
)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can mount the tmpfs this needs");
        return None;
    }
    let fs = match Tmpfs::mount(256) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: no tmpfs here: {e}");
            return None;
        }
    };
    let path = fs.0.path().join("audit.jsonl");
    let log = AuditLog::open(&path).expect("open");
    let act = log
        .begin(&who(), kind::SHELL, "touch x", "{}", true)
        .expect("started");
    let filler = fill(fs.0.path());
    // The file's last page may still have room: records go on until it
    // is spent.
    let mut n = 0;
    while log.held() == 0 {
        log.note(Record::new(
            &who(),
            kind::TOOL,
            "note",
            &format!("t{n}"),
            "{}",
        ));
        n += 1;
        assert!(n < 1000, "the full disk never refused a record");
    }
    Some((fs, path, log, act, filler, n))
}

#[test]
fn records_the_full_disk_refuses_are_held_and_written_in_order_once_there_is_room() {
    let Some((_fs, path, log, act, filler, n)) = full_with_an_act_open() else {
        return;
    };
    act.finish(outcome::OK, "ran");
    assert_eq!(log.held(), 2, "the refused tool record and the outcome");
    // A new act must not overtake them: it is refused while they wait.
    assert!(
        log.begin(&who(), kind::SHELL, "touch y", "{}", true)
            .is_err()
    );

    std::fs::remove_file(filler).expect("free the disk");
    log.note(Record::new(&who(), kind::TOOL, "note", "after", "{}"));
    assert_eq!(log.held(), 0);
    let recs = lines(&path);
    let names: Vec<&str> = recs
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.last(), Some(&"after"), "{names:?}");
    let outcome = recs
        .iter()
        .find(|r| r["event"] == "outcome")
        .expect("the outcome was written");
    assert_eq!(outcome["act"], recs[0]["seq"]);
    assert_eq!(outcome["outcome"], "ok");
    // In the order things happened: the held tool record, the outcome,
    // then the record that found room.
    let tail: Vec<&str> = names[names.len() - 3..].to_vec();
    assert_eq!(tail, [format!("t{}", n - 1).as_str(), "touch x", "after"]);
    verify(&path).expect("the trail is whole");
}

#[test]
fn held_records_are_written_as_the_trail_closes() {
    let Some((_fs, path, log, act, filler, _)) = full_with_an_act_open() else {
        return;
    };
    act.finish(outcome::OK, "ran");
    std::fs::remove_file(filler).expect("free the disk");
    // No record follows: the agent stops.
    drop(log);
    let recs = lines(&path);
    let outcome = recs
        .iter()
        .find(|r| r["event"] == "outcome")
        .expect("the outcome was written as the trail closed");
    assert_eq!(outcome["act"], recs[0]["seq"]);
    verify(&path).expect("the trail is whole");
}
