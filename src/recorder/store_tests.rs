use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Limits, Store, Usage, file_name, name_part, parse_name};

const ROOMY: Limits = Limits {
    max_total: 1 << 30,
    // The tests' recordings start near 1970.
    keep_days: 100_000,
};

/// The agent's store in `dir`, prepared.
fn opened(dir: &Path, limits: Limits) -> Store {
    let store = Store::new(dir, limits);
    store.prepare().expect("prepare");
    store
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Writes a closed recording of `bytes` bytes started at `ms`.
fn recording(store: &Store, ms: u64, id: &str, bytes: usize) -> std::path::PathBuf {
    let mut r = store.create(at_ms(ms), id).expect("create");
    r.write_all(&vec![b'x'; bytes]).expect("write");
    r.path().to_path_buf()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn names_keep_safe_bytes_replace_the_rest_and_stop_at_64() {
    assert_eq!(file_name(17, "s-1.a_b"), "17-s-1.a_b.jsonl");
    assert_eq!(name_part("../etc/passwd"), ".._etc_passwd");
    assert_eq!(name_part("sé ss"), "s___ss");
    assert_eq!(name_part(&"a".repeat(100)).len(), 64);
    assert_eq!(parse_name("17-s-1.jsonl"), Some((17, "s-1")));
    for not_one in [
        "x-s.jsonl",
        "17-s.json",
        "-s.jsonl",
        "17s.jsonl",
        "audit.jsonl",
    ] {
        assert_eq!(parse_name(not_one), None, "{not_one}");
    }
}

#[test]
fn the_dir_is_created_0700_and_files_0600() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("state/recordings");
    let store = opened(&dir, ROOMY);
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let path = recording(&store, 1000, "s1", 3);
    let mode = std::fs::metadata(&path).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some("1000-s1.jsonl")
    );
}

#[test]
fn an_existing_dir_open_to_others_is_narrowed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    opened(tmp.path(), ROOMY);
    let mode = std::fs::metadata(tmp.path())
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn the_same_id_in_the_same_millisecond_gets_the_next_free_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = opened(tmp.path(), ROOMY);
    let a = store.create(at_ms(5), "s").expect("first");
    let b = store.create(at_ms(5), "s").expect("second");
    assert_eq!(
        a.path().file_name().and_then(|n| n.to_str()),
        Some("5-s.jsonl")
    );
    assert_eq!(
        b.path().file_name().and_then(|n| n.to_str()),
        Some("6-s.jsonl")
    );
}

#[test]
fn a_symlink_in_the_way_is_not_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = opened(tmp.path(), ROOMY);
    let target = tmp.path().join("target");
    std::os::unix::fs::symlink(&target, tmp.path().join(file_name(9, "s"))).expect("symlink");
    // The name is taken, so the next millisecond is used; the target is
    // never created.
    let r = store.create(at_ms(9), "s").expect("create");
    assert_eq!(
        r.path().file_name().and_then(|n| n.to_str()),
        Some("10-s.jsonl")
    );
    assert!(!target.exists());
}

#[test]
fn max_total_removes_the_oldest_closed_recordings_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = opened(
        tmp.path(),
        Limits {
            max_total: 250,
            keep_days: 100_000,
        },
    );
    recording(&store, 3000, "c", 100);
    recording(&store, 1000, "a", 100);
    // Closing "b" (the third, 300 bytes in all) removes the oldest by
    // name: "a", even though it was written after "c".
    recording(&store, 2000, "b", 100);
    assert_eq!(names(tmp.path()), ["2000-b.jsonl", "3000-c.jsonl"]);
    let usage = store.usage();
    assert_eq!(
        usage,
        Usage {
            count: 2,
            bytes: 200,
            oldest_unix_ms: Some(2000)
        }
    );
}

#[test]
fn an_open_recording_is_never_removed_even_when_oldest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = opened(
        tmp.path(),
        Limits {
            max_total: 250,
            keep_days: 100_000,
        },
    );
    let mut long_chat = store.create(at_ms(1), "chat").expect("create");
    long_chat.write_all(&[b'x'; 100]).expect("write");
    assert!(store.is_open(long_chat.path()));
    recording(&store, 2, "b", 100);
    recording(&store, 3, "c", 100);
    // Over the total: the oldest closed one went, the open one stayed.
    assert_eq!(names(tmp.path()), ["1-chat.jsonl", "3-c.jsonl"]);
    long_chat.write_all(&[b'x'; 60]).expect("still writable");
    drop(long_chat);
    // Closed now, and the oldest: it goes when it closes.
    assert_eq!(names(tmp.path()), ["3-c.jsonl"]);
}

#[test]
fn keep_days_removes_old_recordings_at_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64
    };
    for (t, id) in [(now - day * 3, "old"), (now - day / 2, "new")] {
        std::fs::write(tmp.path().join(file_name(ms(t), id)), b"x").expect("write");
    }
    std::fs::write(tmp.path().join("notes.txt"), b"mine").expect("write");
    let store = opened(
        tmp.path(),
        Limits {
            max_total: 1 << 20,
            keep_days: 2,
        },
    );
    let left = names(tmp.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|n| n.ends_with("-new.jsonl")), "{left:?}");
    assert!(
        left.contains(&"notes.txt".to_string()),
        "not a recording: kept"
    );
    assert_eq!(store.usage().count, 1);
}

#[test]
fn a_reading_store_removes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join(file_name(1, "ancient")), b"x").expect("write");
    let store = Store::at(tmp.path());
    assert_eq!(store.enforce(), super::Pruned::default());
    assert_eq!(store.usage().count, 1);
    assert_eq!(
        Store::at(&tmp.path().join("missing")).usage(),
        Usage::default()
    );
}

#[test]
fn a_thousand_sessions_stay_under_max_total() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let max_total = 20_000;
    let store = opened(
        tmp.path(),
        Limits {
            max_total,
            keep_days: 100_000,
        },
    );
    for i in 0..1000u64 {
        recording(
            &store,
            1_000_000 + i,
            &format!("s{i}"),
            700 + (i as usize % 5) * 100,
        );
        assert!(store.usage().bytes <= max_total, "after session {i}");
    }
    let usage = store.usage();
    assert!(usage.count > 10, "{usage:?}");
    // The newest survived.
    assert!(tmp.path().join(file_name(1_000_999, "s999")).exists());
}

#[test]
fn resolve_takes_a_path_or_the_newest_recording_of_a_session() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = opened(tmp.path(), ROOMY);
    let older = recording(&store, 100, "sess/1", 1);
    let newer = recording(&store, 200, "sess/1", 1);
    recording(&store, 300, "other", 1);
    assert_eq!(store.resolve("sess/1").ok(), None, "a / means a path");
    assert_eq!(store.resolve("sess_1").expect("by id"), newer);
    let shown = older.display().to_string();
    assert_eq!(store.resolve(&shown).expect("by path"), older);
    let err = format!("{:#}", store.resolve("nope").expect_err("none"));
    assert!(err.contains("no recording of session \"nope\""), "{err}");
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    let err = format!("{:#}", store.resolve("./missing.jsonl").expect_err("none"));
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn a_session_recording_is_open_in_the_store_until_sealed_then_bounded() {
    use crate::recorder::{Closed, RecorderOptions, Recording};
    let tmp = tempfile::tempdir().expect("tempdir");
    // Room for one recording: a second one's close removes the first.
    let store = opened(
        tmp.path(),
        Limits {
            max_total: 400,
            keep_days: 30,
        },
    );
    let opts = RecorderOptions::default();
    let first = Recording::create_in(&store, "s1", &opts, None);
    first.line("frame", false, |b| b.extend_from_slice(&[b'x'; 10]));
    let second = Recording::create_in(&store, "s2", &opts, None);
    second.line("frame", false, |b| b.extend_from_slice(&[b'y'; 10]));
    let paths: Vec<_> = store.list().into_iter().map(|e| e.path).collect();
    assert_eq!(paths.len(), 2);
    assert!(paths.iter().all(|p| store.is_open(p)));
    let Closed::Sealed { file, .. } = first.close(|_| {}) else {
        panic!("sealed");
    };
    assert!(!store.is_open(&tmp.path().join(&file)));
    // The second is still being written: it stays whatever the total.
    assert!(matches!(second.close(|_| {}), Closed::Sealed { .. }));
    let left = store.list();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].path.to_string_lossy().ends_with("-s2.jsonl"));
    assert!(store.usage().bytes <= 400);
}

#[test]
fn a_close_within_the_tally_lists_nothing_and_one_past_it_applies_the_limits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = opened(
        tmp.path(),
        Limits {
            max_total: 100,
            keep_days: 100_000,
        },
    );
    // Put there behind the store's back, after its last pass: the tally
    // does not know it, so a close within the tally leaves it.
    let planted = tmp.path().join(file_name(1, "planted"));
    std::fs::write(&planted, vec![b'p'; 90]).expect("plant");
    recording(&store, 2, "a", 40);
    assert!(planted.exists(), "a close within the tally listed the dir");
    // The tally passes max_total: the directory is listed again, and the
    // oldest go until the rest fit.
    recording(&store, 3, "b", 70);
    assert_eq!(names(tmp.path()), [file_name(3, "b")]);
    assert!(store.usage().bytes <= 100);
}

#[test]
fn recordings_take_spare_files_and_only_recordings_are_in_the_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = opened(tmp.path(), ROOMY);
    for i in 0..20u64 {
        let path = recording(&store, 1000 + i, "s", 10);
        assert_eq!(std::fs::read(&path).expect("read").len(), 10);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(names(tmp.path()).len(), 20);
    assert_eq!(store.usage().count, 20);
}
