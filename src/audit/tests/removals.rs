//! Every way to remove records is found by `verify`, with its reason, and
//! the agent writes down what it notices itself (`audit_gap`).

use super::*;

/// A trail of `n` tool records in `dir`, the writer dropped (the agent
/// stopped).
fn written(dir: &tempfile::TempDir, n: usize) -> Vec<String> {
    let log = AuditLog::open(&trail(dir)).expect("open");
    for i in 0..n {
        log.note(Record::new(&who(), kind::TOOL, &format!("t{i}"), "{}", ""));
    }
    drop(log);
    read_lines(&trail(dir))
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).expect("write");
}

#[test]
fn verify_finds_the_last_line_or_the_last_five_cut() {
    for cut in [1, 5] {
        let dir = tempfile::tempdir().expect("tempdir");
        let all = written(&dir, 10);
        write_lines(&trail(&dir), &all[..10 - cut]);
        let brk = verify(&trail(&dir)).expect_err("a cut tail");
        assert_eq!(brk.problem, Problem::TailMissing, "{brk}");
        let want = format!("records seq {}..10 are missing from the end", 11 - cut);
        assert!(brk.reason.contains(&want), "{brk}");
    }
}

#[test]
fn a_tail_cut_while_stopped_is_recorded_at_the_next_start_not_re_anchored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = written(&dir, 10);
    write_lines(&trail(&dir), &all[..5]);
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    let recs = lines(log.path());
    let gap = &recs[5];
    assert_eq!(gap["kind"], "audit");
    assert_eq!(gap["event"], "audit_gap");
    assert_eq!(gap["missing"], serde_json::json!([6, 10]));
    assert_eq!(gap["seq"], 11, "numbering goes on past the missing records");
    // Later records do not make the trail whole again.
    log.note(Record::new(&who(), kind::TOOL, "cpu", "{}", ""));
    drop(log);
    drop(AuditLog::open(&trail(&dir)).expect("third start"));
    assert_eq!(lines(&trail(&dir)).len(), 7, "one gap record, once");
    let brk = verify(&trail(&dir)).expect_err("the gap stays reported");
    assert_eq!(brk.problem, Problem::GapRecorded, "{brk}");
    assert_eq!(brk.line, 6, "{brk}");
    assert!(
        brk.reason.contains("records seq 6..10 are missing"),
        "{brk}"
    );
}

#[test]
fn verify_finds_the_first_five_lines_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = written(&dir, 10);
    write_lines(&trail(&dir), &all[5..]);
    let brk = verify(&trail(&dir)).expect_err("a cut start");
    assert_eq!(brk.problem, Problem::StartMissing, "{brk}");
    assert!(brk.reason.contains("records seq 1..5 are missing"), "{brk}");
    // An agent start does not make it whole either.
    drop(AuditLog::open(&trail(&dir)).expect("reopen"));
    let brk = verify(&trail(&dir)).expect_err("still cut");
    assert_eq!(brk.problem, Problem::StartMissing, "{brk}");
}

#[test]
fn a_trail_removed_while_the_agent_runs_is_noticed_at_the_next_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    for i in 0..4 {
        log.note(Record::new(&who(), kind::TOOL, &format!("t{i}"), "{}", ""));
    }
    std::fs::remove_file(trail(&dir)).expect("remove");
    // Before the agent writes again, verify finds the head past the trail.
    let brk = verify(&trail(&dir)).expect_err("removed");
    assert_eq!(brk.problem, Problem::TailMissing, "{brk}");
    assert!(brk.reason.contains("records seq 1..4 are missing"), "{brk}");
    assert!(brk.reason.contains("itself is missing"), "{brk}");
    // The agent's next record is preceded by the gap it found.
    log.note(Record::new(&who(), kind::TOOL, "cpu", "{}", ""));
    let recs = lines(log.path());
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["event"], "audit_gap");
    assert_eq!(recs[0]["missing"], serde_json::json!([1, 4]));
    assert!(
        recs[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("was removed while the agent ran"),
        "{recs:?}"
    );
    assert_eq!(recs[1]["seq"], 6);
    let brk = verify(&trail(&dir)).expect_err("reported");
    assert_eq!(brk.problem, Problem::GapRecorded, "{brk}");
}

#[test]
fn a_tail_cut_while_the_agent_runs_is_noticed_at_the_next_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    for i in 0..6 {
        log.note(Record::new(&who(), kind::TOOL, &format!("t{i}"), "{}", ""));
    }
    let all = read_lines(log.path());
    write_lines(log.path(), &all[..3]);
    log.note(Record::new(&who(), kind::TOOL, "cpu", "{}", ""));
    let recs = lines(log.path());
    assert_eq!(recs[3]["event"], "audit_gap", "{recs:?}");
    assert_eq!(recs[3]["missing"], serde_json::json!([4, 6]));
    assert_eq!(recs[3]["prev"], line_hash(all[2].as_bytes()));
}

#[test]
fn verify_walks_past_a_removed_rotated_file_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = AuditOptions {
        max_size: 1024,
        keep: 4,
        append_only: false,
    };
    let log = AuditLog::open_with(&trail(&dir), opts).expect("open");
    for i in 0..20 {
        log.note(Record::new(&who(), kind::TOOL, &format!("t{i}"), "{}", ""));
    }
    drop(log);
    let one = dir.path().join("audit.jsonl.1");
    assert!(dir.path().join("audit.jsonl.2").exists(), "rotated twice");
    std::fs::remove_file(&one).expect("remove .1");
    let brk = verify(&trail(&dir)).expect_err("a file removed");
    assert_eq!(brk.problem, Problem::FileMissing, "{brk}");
    assert_eq!(brk.file, one);
}

#[test]
fn rotation_away_by_policy_is_not_a_removal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = AuditOptions {
        max_size: 1024,
        keep: 2,
        append_only: false,
    };
    let log = AuditLog::open_with(&trail(&dir), opts.clone()).expect("open");
    for i in 0..40 {
        log.note(Record::new(&who(), kind::TOOL, &format!("t{i}"), "{}", ""));
    }
    drop(log);
    let v = verify(&trail(&dir)).expect("dropped by policy");
    assert!(v.first_seq > 1);
    // The oldest kept file removed by hand is not policy.
    std::fs::remove_file(dir.path().join("audit.jsonl.2")).expect("remove");
    let brk = verify(&trail(&dir)).expect_err("removed by hand");
    assert_eq!(brk.problem, Problem::StartMissing, "{brk}");
}

#[test]
fn no_trail_at_all_is_an_error_naming_the_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brk = verify(&trail(&dir)).expect_err("nothing there");
    assert_eq!(brk.problem, Problem::NoTrail);
    assert_eq!(brk.file, dir.path());
    let brk = verify(&dir.path().join("nope/audit.jsonl")).expect_err("no dir");
    assert_eq!(brk.problem, Problem::NoTrail);
}

#[test]
fn a_device_is_not_a_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/dev/null", trail(&dir)).expect("symlink");
    let err = AuditLog::open(&trail(&dir)).expect_err("fails closed");
    let said = format!("{err:#}");
    assert!(said.contains("is a character device"), "{said}");
    assert!(said.contains("audit.jsonl"), "{said}");
    let brk = verify(&trail(&dir)).expect_err("not a trail");
    assert_eq!(brk.problem, Problem::NotAFile, "{brk}");
    // A FIFO neither (and opening it does not block).
    let dir = tempfile::tempdir().expect("tempdir");
    let c = std::ffi::CString::new(trail(&dir).as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = AuditLog::open(&trail(&dir)).expect_err("fails closed");
    assert!(format!("{err:#}").contains("is a FIFO"), "{err:#}");
}

#[test]
fn the_head_is_overwritten_in_place_and_fixed_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    let head = trail(&dir).with_extension("head");
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("m"));
    let before = ino(&head);
    for i in 0..5 {
        log.note(Record::new(&who(), kind::TOOL, &format!("t{i}"), "{}", ""));
    }
    assert_eq!(ino(&head), before);
    assert_eq!(
        std::fs::metadata(&head).expect("head").len(),
        head::HEAD_LEN as u64
    );
}

#[test]
fn a_head_from_before_the_anchor_is_upgraded_without_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = written(&dir, 3);
    // What agents wrote before the head anchored the start and the file.
    let legacy = format!("3 {}\n", line_hash(all[2].as_bytes()));
    std::fs::write(trail(&dir).with_extension("head"), legacy).expect("head");
    verify(&trail(&dir)).expect("a legacy head that matches");
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    log.note(Record::new(&who(), kind::TOOL, "cpu", "{}", ""));
    assert_eq!(lines(log.path()).len(), 4, "no gap record");
    assert_eq!(verify(&trail(&dir)).expect("holds").last_seq, 4);
}
