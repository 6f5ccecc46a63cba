use super::*;
use chain::line_hash;
use record::FIELD_MAX;

fn who() -> Who {
    Who {
        session_id: "s1".into(),
        session_type: "chat".into(),
        user: "alice".into(),
        key_id: Some("ops-1".into()),
    }
}

/// The trail file in a test's state dir.
fn trail(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("audit.jsonl")
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn an_act_writes_started_then_its_outcome_chained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    let act = log
        .begin(&who(), kind::SHELL, "df -h", "{}", true)
        .expect("begin");
    // The started record is on disk before the act.
    let before = lines(log.path());
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["event"], "started");
    assert_eq!(before[0]["key_id"], "ops-1");
    assert_eq!(before[0]["prev"], chain::GENESIS);
    act.finish(outcome::EXIT, "exit 0");
    let after = lines(log.path());
    assert_eq!(after.len(), 2);
    assert_eq!(after[1]["event"], "outcome");
    assert_eq!(after[1]["act"], before[0]["seq"]);
    assert_eq!(after[1]["outcome"], "exit");
    let v = verify(&trail(&dir)).expect("chain holds");
    assert_eq!(v.records, 2);
}

#[test]
fn a_dropped_act_is_recorded_as_cancelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    drop(
        log.begin(&who(), kind::TOOL, "cpu", "{}", false)
            .expect("begin"),
    );
    let recs = lines(log.path());
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["outcome"], "cancelled");
}

#[test]
fn a_restart_closes_acts_a_killed_agent_left_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    // As if an agent died while this ran: a `started` record whose writer
    // (pid) is no longer alive, and no outcome.
    let mut started = Record::new(&who(), kind::SHELL, event::STARTED, "sleep 300", "{}");
    started.pid = Some(4_194_999);
    log.append(started, true).expect("append");
    drop(log);
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    let recs = lines(log.path());
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[1]["outcome"], "killed");
    assert_eq!(recs[1]["act"], recs[0]["seq"]);
    // Opening again finds nothing left to close.
    drop(AuditLog::open(&trail(&dir)).expect("reopen"));
    assert_eq!(lines(log.path()).len(), 2);
    verify(&trail(&dir)).expect("chain holds");
}

#[test]
fn verify_finds_a_removed_a_changed_and_a_forged_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    for name in ["cpu", "memory", "uptime", "mounts"] {
        log.begin(&who(), kind::TOOL, name, "{}", false)
            .expect("begin")
            .finish(outcome::OK, "");
    }
    let good = std::fs::read_to_string(log.path()).expect("read");
    assert_eq!(verify(&trail(&dir)).expect("holds").records, 8);
    let all: Vec<&str> = good.lines().collect();

    // A line removed.
    let mut removed = all.clone();
    removed.remove(2);
    std::fs::write(log.path(), removed.join("\n") + "\n").expect("write");
    let brk = verify(&trail(&dir)).expect_err("removed line");
    assert_eq!(brk.line, 3, "{brk}");

    // A line changed.
    let changed = good.replacen("\"name\":\"memory\"", "\"name\":\"memorx\"", 1);
    std::fs::write(log.path(), &changed).expect("write");
    let brk = verify(&trail(&dir)).expect_err("changed line");
    assert_eq!(brk.line, 4, "{brk}");

    // A forged line appended by someone who computed the hash: the chain
    // holds on disk until the agent writes its next record, which chains
    // to the line it wrote itself.
    std::fs::write(log.path(), &good).expect("write");
    let last = all.last().expect("a line").as_bytes();
    let forged = format!(
        "{{\"seq\":9,\"kind\":\"shell\",\"event\":\"outcome\",\"outcome\":\"exit\",\"prev\":\"{}\"}}\n",
        line_hash(last)
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .expect("open");
    std::io::Write::write_all(&mut f, forged.as_bytes()).expect("forge");
    log.note(Record::new(&who(), kind::SESSION, event::ENDED, "", ""));
    let brk = verify(&trail(&dir)).expect_err("forged line");
    assert_eq!(brk.line, 10, "{brk}");
}

#[test]
fn rotation_keeps_the_chain_and_drops_the_oldest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = AuditOptions {
        max_size: 2048,
        keep: 2,
        append_only: false,
    };
    let log = AuditLog::open_with(&trail(&dir), opts).expect("open");
    for i in 0..60 {
        log.note(Record::new(
            &who(),
            kind::TOOL,
            &format!("tool-{i}"),
            "{}",
            "",
        ));
    }
    assert!(dir.path().join("audit.jsonl.1").exists());
    assert!(dir.path().join("audit.jsonl.2").exists());
    assert!(!dir.path().join("audit.jsonl.3").exists());
    let v = verify(&trail(&dir)).expect("chain holds across rotation");
    assert!(v.first_seq > 1, "the oldest records rotated away");
    assert_eq!(v.first_seq + v.records - 1, 60);
    for f in &v.files {
        assert!(std::fs::metadata(f).expect("meta").len() <= 2048);
    }
}

/// Appends `bytes` as they are: what a write cut short leaves behind.
fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    std::io::Write::write_all(&mut f, bytes).expect("append");
}

#[test]
fn a_torn_line_stays_one_bad_line_and_the_next_act_is_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    log.begin(&who(), kind::TOOL, "cpu", "{}", false)
        .expect("begin")
        .finish(outcome::OK, "");
    // A write a full disk cut short, kept by the append-only attribute.
    append_raw(log.path(), b"{\"seq\":3,\"kind\":\"shell\",\"ev");
    let act = log
        .begin(&who(), kind::SHELL, "df -h", "{}", true)
        .expect("begin");
    let text = std::fs::read_to_string(log.path()).expect("read");
    let started: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("a line of its own");
    assert_eq!(started["event"], "started");
    assert_eq!(started["seq"], 3, "chained to the last whole record");
    act.finish(outcome::EXIT, "exit 0");
    // The act is closed: a restart finds nothing open.
    drop(log);
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    assert_eq!(
        lines_lossy(log.path()).len(),
        4,
        "2 + 2 records, none added"
    );
    let brk = verify(&trail(&dir)).expect_err("the torn line is reported");
    assert_eq!(brk.line, 3, "{brk}");
    assert!(brk.reason.contains("not an audit record"), "{brk}");
}

#[test]
fn after_a_crash_mid_line_the_chain_goes_on_from_the_last_whole_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    log.begin(&who(), kind::TOOL, "cpu", "{}", false)
        .expect("begin")
        .finish(outcome::OK, "");
    drop(log);
    let whole = std::fs::read_to_string(trail(&dir)).expect("read");
    let last_whole = whole.lines().last().expect("a line").to_string();
    // The process died mid-line: its head still names the last whole
    // record, so nothing is missing.
    append_raw(&trail(&dir), b"{\"seq\":3,\"ki");
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    log.note(Record::new(&who(), kind::SESSION, event::ENDED, "", ""));
    let recs = lines_lossy(log.path());
    let next = recs.last().expect("a record");
    assert_eq!(next["seq"], 3);
    assert_eq!(next["prev"], line_hash(last_whole.as_bytes()));
    assert!(recs.iter().all(|r| r["event"] != "audit_gap"), "{recs:?}");
}

#[test]
fn a_lost_or_torn_head_is_recorded_and_the_trail_is_the_fallback() {
    for damage in ["remove", "tear"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(&trail(&dir)).expect("open");
        log.note(Record::new(&who(), kind::TOOL, "cpu", "{}", ""));
        drop(log);
        let head = trail(&dir).with_extension("head");
        match damage {
            "remove" => std::fs::remove_file(&head).expect("remove head"),
            _ => {
                let text = std::fs::read(&head).expect("head");
                std::fs::write(&head, &text[..text.len() / 2]).expect("tear head");
            }
        }
        let log = AuditLog::open(&trail(&dir)).expect("reopen");
        let recs = lines(log.path());
        assert_eq!(recs.len(), 2, "{damage}: {recs:?}");
        assert_eq!(recs[1]["event"], "audit_gap", "{damage}");
        assert_eq!(recs[1]["seq"], 2, "chained to the trail's last record");
        assert!(
            recs[1]["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("audit.head is"),
            "{damage}: {recs:?}"
        );
        let brk = verify(&trail(&dir)).expect_err("the gap is reported");
        assert_eq!(brk.problem, Problem::GapRecorded, "{damage}: {brk}");
    }
}

/// The records of a trail, skipping lines that are not records.
fn lines_lossy(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn two_handles_share_one_chain_across_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = AuditOptions {
        max_size: 2048,
        keep: 3,
        append_only: false,
    };
    let a = AuditLog::open_with(&trail(&dir), opts.clone()).expect("open a");
    let b = AuditLog::open_with(&trail(&dir), opts).expect("open b");
    for i in 0..20 {
        a.note(Record::new(&who(), kind::TOOL, &format!("a{i}"), "", ""));
        b.note(Record::new(&who(), kind::TOOL, &format!("b{i}"), "", ""));
    }
    assert!(dir.path().join("audit.jsonl.2").exists(), "rotated");
    // Each writer saw the other's rotation as one: no gap recorded.
    let v = verify(&trail(&dir)).expect("holds");
    assert_eq!(v.last_seq, 40);
}

#[test]
fn server_supplied_fields_are_cut_and_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    let w = Who {
        session_id: "x".repeat(1 << 20),
        session_type: "chat".into(),
        user: "eve\n{\"forged\":1}\u{1b}[31m".into(),
        key_id: None,
    };
    log.note(Record::new(&w, kind::SESSION, event::REFUSED, "", ""));
    let text = std::fs::read_to_string(log.path()).expect("read");
    assert!(text.len() < 4 * FIELD_MAX, "{} bytes", text.len());
    assert_eq!(text.lines().count(), 1);
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn audit_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    let mode = std::fs::metadata(log.path())
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn as_root_the_trail_is_append_only_where_the_filesystem_allows() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can set the append-only attribute");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Whether the filesystem keeps the flag at all (tmpfs and some
    // container filesystems do not), asked of a probe file: a trail the
    // code failed to mark must fail the test, not skip it.
    let probe = dir.path().join("probe");
    let f = std::fs::File::create(&probe).expect("probe");
    let kept = file::set_flag(&f, true).is_ok() && file::append_only(&f) == Some(true);
    let _ = file::set_flag(&f, false);
    if !kept {
        eprintln!(
            "skipped: the filesystem of {} does not keep the append-only attribute",
            dir.path().display()
        );
        return;
    }
    let opts = AuditOptions {
        max_size: 64 * 1024,
        keep: 1,
        append_only: true,
    };
    let log = AuditLog::open_with(&trail(&dir), opts).expect("open");
    log.note(Record::new(&who(), kind::TOOL, "cpu", "{}", ""));
    let f = std::fs::File::open(log.path()).expect("open");
    assert_eq!(
        file::append_only(&f),
        Some(true),
        "the trail was not marked"
    );
    // Appending still works; rewriting does not.
    log.note(Record::new(&who(), kind::TOOL, "memory", "{}", ""));
    assert!(std::fs::write(log.path(), "forged\n").is_err());
    assert!(std::fs::remove_file(log.path()).is_err());
    assert_eq!(verify(&trail(&dir)).expect("holds").records, 2);
    file::set_append_only(log.path(), false);
}

#[test]
fn a_live_pid_that_started_after_the_record_is_not_its_writer() {
    let me = std::process::id();
    assert!(
        writer_alive(me, record::now()),
        "written now by this process"
    );
    // A record from 1970 with this pid: the pid was reused since.
    assert!(!writer_alive(me, 0.0));
    assert!(!writer_alive(4_194_999, record::now()), "no such process");
}

mod crash;
mod full_disk;
mod removals;
