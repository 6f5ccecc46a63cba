use std::path::Path;

use serde_json::json;

use super::{ReadError, Seal, parse, read};
use crate::recorder::testing::{diagnose_lines, header, sealed, unsealed};

fn at() -> &'static Path {
    Path::new("/r/1-s1.jsonl")
}

#[test]
fn a_sealed_recording_reads_in_order_with_its_seal_checked() {
    let bytes = sealed(&diagnose_lines());
    let r = parse(at(), &bytes).expect("reads");
    assert_eq!(r.header.agent, "0.1.0");
    let kinds: Vec<&str> = r.lines.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "start", "call", "frame", "frame", "run_end", "receipt", "end"
        ]
    );
    assert_eq!(r.lines[1].number, 3);
    assert_eq!(r.lines[1].t, 1500);
    assert_eq!(r.session_type(), Some("diagnose"));
    let want = crate::util::sha256_hex(&unsealed(&diagnose_lines()));
    assert_eq!(r.seal, Seal::Sealed { sha256: want });
}

#[test]
fn one_changed_byte_is_a_hash_mismatch_naming_the_file_and_seal_line() {
    let mut bytes = sealed(&diagnose_lines());
    let at_byte = bytes
        .windows(4)
        .position(|w| w == b"fine")
        .expect("report text");
    bytes[at_byte] = b'F';
    let err = parse(at(), &bytes).expect_err("tampered");
    assert!(
        matches!(err, ReadError::HashMismatch { line: 9, .. }),
        "{err:?}"
    );
    let said = err.to_string();
    assert!(said.starts_with("/r/1-s1.jsonl:9: hash mismatch"), "{said}");
}

#[test]
fn a_prefix_without_a_seal_reads_as_unsealed_and_a_cut_last_line_is_dropped() {
    let whole = unsealed(&diagnose_lines());
    let r = parse(at(), &whole).expect("reads");
    assert_eq!(r.seal, Seal::Unsealed { cut_line: None });
    assert_eq!(r.lines.len(), 7);
    // Cut in the middle of line 5 (the second frame).
    let cut = unsealed(&diagnose_lines()[..4]).len() + 10;
    let r = parse(at(), &whole[..cut]).expect("reads");
    assert_eq!(r.seal, Seal::Unsealed { cut_line: Some(5) });
    assert_eq!(r.lines.len(), 3);
}

#[test]
fn unknown_kinds_and_fields_are_kept() {
    let mut lines = diagnose_lines();
    lines.insert(2, json!({"k":"weather","t":7,"sky":"grey"}));
    let r = parse(at(), &sealed(&lines)).expect("reads");
    let odd = &r.lines[1];
    assert_eq!((odd.kind.as_str(), odd.t), ("weather", 7));
    assert_eq!(odd.value["sky"], "grey");
}

#[test]
fn what_is_not_a_recording_is_refused_naming_file_and_line() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"".to_vec(),
            "/r/1-s1.jsonl:1: not a catpaw recording (the file is empty)",
        ),
        (
            b"hello\n".to_vec(),
            "/r/1-s1.jsonl:1: not a catpaw recording",
        ),
        (
            unsealed(&[json!({"k":"header","format":"other","version":1})]),
            "not \"catpaw-recording\"",
        ),
        (
            unsealed(&[json!({"k":"header","format":"catpaw-recording","version":2})]),
            "/r/1-s1.jsonl:1: recording format version 2 is not known",
        ),
        (
            [unsealed(&[header()]), b"{not json\n".to_vec()].concat(),
            "/r/1-s1.jsonl:2: not valid JSON",
        ),
        (
            unsealed(&[header(), json!({"k":"call"})]),
            "/r/1-s1.jsonl:2: a \"call\" line without a \"t\" offset",
        ),
        (
            unsealed(&[header(), json!({"t":1})]),
            "/r/1-s1.jsonl:2: no \"k\"",
        ),
        (
            [sealed(&[header()]), b"{\"k\":\"end\",\"t\":1}\n".to_vec()].concat(),
            "/r/1-s1.jsonl:3: a line after the seal",
        ),
    ];
    for (bytes, want) in cases {
        let err = parse(at(), &bytes).expect_err(want).to_string();
        assert!(err.contains(want), "{err} lacks {want}");
    }
}

#[test]
fn a_file_is_read_from_disk_and_a_missing_one_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("5-s.jsonl");
    std::fs::write(&path, sealed(&diagnose_lines())).expect("write");
    assert_eq!(read(&path).expect("reads").lines.len(), 7);
    let missing = dir.path().join("nope.jsonl");
    let err = read(&missing).expect_err("missing").to_string();
    assert!(err.contains("nope.jsonl"), "{err}");
    // A sparse file past the cap is refused before it is read.
    let huge = dir.path().join("6-s.jsonl");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(super::MAX_FILE + 1))
        .expect("sparse file");
    assert!(matches!(read(&huge), Err(ReadError::TooLarge { .. })));
}
