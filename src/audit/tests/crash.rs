//! A crash or a power cut between the two writes of a record (the line,
//! then the head in place), and a head write cut short, are told apart
//! from records removed: the head is never trusted when it does not hold
//! together, and a head one record behind a trail that chains to it is a
//! crash, not a gap.

use super::*;

fn head_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    trail(dir).with_extension("head")
}

fn gaps(path: &Path) -> usize {
    lines(path)
        .iter()
        .filter(|r| r["event"] == "audit_gap")
        .count()
}

#[test]
fn a_crash_between_a_record_and_its_head_is_no_gap_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    log.note(Record::new(&who(), kind::TOOL, "t1", "{}", ""));
    let head_before = std::fs::read(head_path(&dir)).expect("head");
    log.note(Record::new(&who(), kind::TOOL, "t2", "{}", ""));
    drop(log);
    // The line of t2 reached the disk, its head did not.
    std::fs::write(head_path(&dir), &head_before).expect("old head back");
    verify(&trail(&dir)).expect("a head one record behind is a crash, not a removal");
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    log.note(Record::new(&who(), kind::TOOL, "t3", "{}", ""));
    let recs = lines(log.path());
    assert_eq!(gaps(log.path()), 0, "{recs:?}");
    let text = std::fs::read_to_string(log.path()).expect("read");
    let all: Vec<&str> = text.lines().collect();
    let last = recs.last().expect("a record");
    assert_eq!(last["event"], "t3");
    assert_eq!(last["prev"], line_hash(all[all.len() - 2].as_bytes()));
    assert_eq!(verify(&trail(&dir)).expect("holds").last_seq, 3);
}

#[test]
fn a_head_two_records_behind_is_a_gap_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    log.note(Record::new(&who(), kind::TOOL, "t1", "{}", ""));
    let head_before = std::fs::read(head_path(&dir)).expect("head");
    log.note(Record::new(&who(), kind::TOOL, "t2", "{}", ""));
    log.note(Record::new(&who(), kind::TOOL, "t3", "{}", ""));
    drop(log);
    // One write can be lost in a crash; two records the head never knew
    // were written by something else.
    std::fs::write(head_path(&dir), &head_before).expect("old head back");
    let brk = verify(&trail(&dir)).expect_err("unanchored records");
    assert_eq!(brk.problem, Problem::Unanchored, "{brk}");
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    assert_eq!(gaps(log.path()), 1);
}

#[test]
fn a_head_write_cut_short_in_place_is_recorded_never_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    log.note(Record::new(&who(), kind::TOOL, "t1", "{}", ""));
    let old = std::fs::read(head_path(&dir)).expect("head");
    log.note(Record::new(&who(), kind::TOOL, "t2", "{}", ""));
    drop(log);
    let new = std::fs::read(head_path(&dir)).expect("head");
    assert_eq!(old.len(), new.len(), "written in place, same size");
    // The new head reached the disk up to some sector, the old one stays
    // after it: every cut point between the fields that changed.
    let first_diff = old
        .iter()
        .zip(&new)
        .position(|(a, b)| a != b)
        .expect("differ");
    let last_diff = old.len()
        - old
            .iter()
            .rev()
            .zip(new.iter().rev())
            .position(|(a, b)| a != b)
            .expect("differ");
    for cut in [first_diff + 1, (first_diff + last_diff) / 2, last_diff - 1] {
        let mut torn = new[..cut].to_vec();
        torn.extend_from_slice(&old[cut..]);
        assert!(
            matches!(head::parse(&torn), head::HeadState::Torn(_)),
            "cut at {cut}: a mix of two heads must not parse"
        );
    }
    let mut torn = new[..(first_diff + last_diff) / 2].to_vec();
    torn.extend_from_slice(&old[(first_diff + last_diff) / 2..]);
    std::fs::write(head_path(&dir), &torn).expect("torn head");
    let brk = verify(&trail(&dir)).expect_err("a torn head cannot vouch for the end");
    assert_eq!(brk.problem, Problem::HeadUnusable, "{brk}");
    let log = AuditLog::open(&trail(&dir)).expect("reopen");
    let recs = lines(log.path());
    assert_eq!(gaps(log.path()), 1, "{recs:?}");
    assert_eq!(
        recs.last().expect("gap")["seq"],
        3,
        "chained to the trail's end"
    );
    assert!(
        recs.last().expect("gap")["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("audit.head is"),
        "{recs:?}"
    );
}

#[test]
fn a_line_appended_by_another_process_after_this_ones_record_is_still_cut_off() {
    // The writer skips reading the file's last byte when the file ends
    // where its own last record did; a torn line someone else left after
    // that record must still start a new line.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(&trail(&dir)).expect("open");
    log.note(Record::new(&who(), kind::TOOL, "t1", "{}", ""));
    log.note(Record::new(&who(), kind::TOOL, "t2", "{}", ""));
    append_raw(log.path(), b"{\"seq\":3,\"torn");
    log.note(Record::new(&who(), kind::TOOL, "t3", "{}", ""));
    let text = std::fs::read_to_string(log.path()).expect("read");
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("line")).expect("a whole record");
    assert_eq!(last["event"], "t3");
    assert_eq!(last["seq"], 3);
}
