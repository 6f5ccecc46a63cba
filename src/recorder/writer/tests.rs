//! The writer's promises: every line hashed into the seal, a crash leaves
//! whole lines, the cap writes `truncated` once, a failure is counted.

use std::path::Path;

use super::*;
use crate::recorder::read::{self, ReadError};

fn opts(max_size: u64) -> RecorderOptions {
    RecorderOptions {
        max_size,
        ..RecorderOptions::default()
    }
}

fn only_file(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

#[test]
fn a_sealed_recording_reads_back_and_its_audit_hash_is_the_whole_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = Recording::create(dir.path(), "s/1 é", &opts(1 << 20), None);
    rec.line("start", false, |b| b.extend_from_slice(b",\"x\":1"));
    rec.call("host.list-tools", true, |b| {
        b.extend_from_slice(b",\"args\":{},\"ret\":[]")
    });
    assert_eq!(rec.input("hello"), 1);
    let closed = rec.close(|b| b.extend_from_slice(b",\"outcome\":\"ok\""));
    let path = only_file(dir.path());
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(name.ends_with("-s_1___.jsonl"), "{name}");
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(
        closed,
        Closed::Sealed {
            file: name,
            sha256: crate::util::sha256_hex(&bytes)
        }
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let r = read::read(&path).expect("sealed");
    let kinds: Vec<_> = r
        .lines
        .iter()
        .map(|l| l["k"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["header", "start", "call", "input", "end"]);
    assert_eq!(r.lines[2]["n"], 1);
    assert_eq!(r.lines[3]["turn"], 1);
    assert_eq!(r.lines[0]["record_model_content"], true);
    // A second close writes nothing more.
    assert_eq!(rec.close(|_| {}), closed);
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
}

#[test]
fn one_changed_byte_is_a_hash_mismatch_and_a_missing_seal_says_unsealed() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = Recording::create(dir.path(), "s", &opts(1 << 20), None);
    rec.line("start", true, |b| {
        b.extend_from_slice(b",\"user\":\"alice\"")
    });
    rec.close(|_| {});
    let path = only_file(dir.path());
    let bytes = std::fs::read(&path).expect("read");
    let at = bytes.windows(5).position(|w| w == b"alice").expect("alice");
    let mut changed = bytes.clone();
    changed[at] = b'A';
    let e = read::parse("f", &changed).expect_err("tampered");
    assert!(matches!(e, ReadError::HashMismatch { .. }), "{e}");
    assert!(e.to_string().contains("hash mismatch"), "{e}");
    // A crash: everything but the seal line.
    let cut = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("lines");
    let e = read::parse("f", &bytes[..=cut]).expect_err("unsealed");
    assert!(e.to_string().starts_with("unsealed"), "{e}");
}

#[test]
fn lines_reach_the_file_before_the_seal_when_flushed() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = Recording::create(dir.path(), "s", &opts(1 << 20), None);
    rec.line("frame", false, |b| b.extend_from_slice(b",\"raw\":\"a\""));
    rec.call("host.call-tool", true, |b| {
        b.extend_from_slice(b",\"args\":{}")
    });
    // Not sealed yet: what a crash now would leave is whole lines.
    let text = std::fs::read_to_string(only_file(dir.path())).expect("read");
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a whole line");
    }
}

#[test]
fn past_max_size_one_truncated_line_names_the_last_call_then_end_and_seal() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = Recording::create(dir.path(), "s", &opts(2048), None);
    for _ in 0..100 {
        rec.call("host.emit", false, |b| {
            b.extend_from_slice(b",\"args\":{\"delta\":\"0123456789abcdef\"}")
        });
    }
    rec.close(|b| b.extend_from_slice(b",\"outcome\":\"ok\""));
    let r = read::read(&only_file(dir.path())).expect("sealed");
    let truncated: Vec<_> = r.all("truncated").collect();
    assert_eq!(truncated.len(), 1);
    let calls = r.all("call").count() as u64;
    assert!(calls > 5 && calls < 100, "{calls}");
    assert_eq!(truncated[0]["after_call"], calls);
    assert_eq!(truncated[0]["reason"], "max_size (2 KiB) reached");
    let kinds: Vec<_> = r
        .lines
        .iter()
        .rev()
        .take(2)
        .map(|l| l["k"].clone())
        .collect();
    assert_eq!(kinds, ["end", "truncated"]);
}

#[test]
fn an_unwritable_directory_fails_once_counted_and_says_why() {
    let telemetry = crate::telemetry::Telemetry::new();
    let rec = Recording::create(
        Path::new("/proc/catpaw-no-such-dir"),
        "s",
        &opts(1 << 20),
        Some(telemetry.clone()),
    );
    rec.call("host.list-tools", true, |_| {});
    match rec.close(|_| {}) {
        Closed::Failed(why) => assert!(why.contains("/proc/catpaw-no-such-dir"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(telemetry.recording_failures(), 1);
    assert!(
        telemetry
            .encode()
            .contains("catpaw_agent_recording_failures_total 1")
    );
}

#[test]
fn rfc3339_of_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_796_679_721), "2026-12-07T21:42:01Z");
}

#[test]
fn a_frame_reuses_the_delta_its_emit_line_masked_and_masks_any_other() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = Recording::create(dir.path(), "s", &opts(1 << 20), None);
    let seen = |rec: &Recording, delta: &str| {
        let mut got = None;
        rec.frame(Some(delta), None, |out, masked| {
            got = masked.map(str::to_string);
            out.extend_from_slice(b"{}");
        });
        got
    };
    rec.emit_call("password=hunter2x", Some("answer"), true, |_, _| {});
    assert_eq!(
        seen(&rec, "password=hunter2x").as_deref(),
        Some("password=***")
    );
    // Used once: the next frame with that text masks it itself.
    assert_eq!(seen(&rec, "password=hunter2x"), None);
    rec.emit_call("plain", Some("answer"), true, |_, _| {});
    assert_eq!(seen(&rec, "other"), None);
    rec.emit_call("plain", Some("answer"), true, |_, _| {});
    assert_eq!(seen(&rec, "plain").as_deref(), Some("plain"));
}

#[test]
fn a_waiting_session_holds_no_large_buffer_and_its_lines_still_seal() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = Recording::create(dir.path(), "chat", &opts(1 << 20), None);
    rec.line("start", false, |b| {
        b.extend_from_slice(b",\"params\":");
        json_str(b, &"p".repeat(4000));
    });
    // Lines that are not flushed keep the buffer they grew.
    for _ in 0..20 {
        rec.emit_call("a delta", Some("output"), true, |b, m| {
            b.extend_from_slice(b",\"args\":{\"delta\":");
            json_str(b, m);
            b.push(b'}');
        });
    }
    assert!(rec.lock().buf.capacity() >= 4000);
    // An input is flushed: the chat now waits for its next turn.
    rec.input("hello");
    let held = {
        let w = rec.lock();
        w.buf.capacity() + w.scratch.capacity()
    };
    assert!(
        held <= 2 * RETAINED_BYTES,
        "{held} bytes held while waiting"
    );
    // The next turn writes on, into a fresh buffer, and the hash holds.
    rec.input("again");
    let closed = rec.close(|_| {});
    let bytes = std::fs::read(only_file(dir.path())).expect("read");
    match closed {
        Closed::Sealed { sha256, .. } => assert_eq!(sha256, crate::util::sha256_hex(&bytes)),
        Closed::Failed(why) => panic!("{why}"),
    }
    let r = read::read(&only_file(dir.path())).expect("sealed");
    let inputs = r.lines.iter().filter(|l| l["k"] == "input").count();
    assert_eq!(inputs, 2);
}
