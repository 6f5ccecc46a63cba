use serde_json::json;

use super::{ReadError, Seal, parse, read, read_scan, scan};
use crate::recorder::testing::{diagnose_lines, header, sealed, unsealed};

const AT: &str = "/r/1-s1.jsonl";

#[test]
fn a_sealed_recording_reads_in_order_with_its_seal_checked() {
    let bytes = sealed(&diagnose_lines());
    let s = scan(AT, &bytes).expect("reads");
    let kinds: Vec<&str> = s.lines.iter().filter_map(|l| l["k"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "header", "start", "call", "frame", "frame", "run_end", "receipt", "end"
        ]
    );
    assert_eq!(s.session_type(), Some("diagnose"));
    let want = crate::util::sha256_hex(&unsealed(&diagnose_lines()));
    assert_eq!(
        s.seal,
        Seal::Sealed {
            sha256: want.clone()
        }
    );
    assert_eq!(parse(AT, &bytes).expect("sealed").sha256, want);
}

#[test]
fn one_changed_byte_is_a_hash_mismatch_even_where_it_breaks_the_json() {
    let good = sealed(&diagnose_lines());
    let report = good.windows(4).position(|w| w == b"fine").expect("report");
    let brace = good.iter().position(|&b| b == b'{').expect("a brace");
    for at in [
        report,
        brace + good.iter().position(|&b| b == b'\n').expect("nl") + 1,
    ] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x20;
        let err = scan(AT, &bytes).expect_err("tampered");
        assert!(matches!(err, ReadError::HashMismatch { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("hash mismatch: /r/1-s1.jsonl"),
            "{err}"
        );
    }
}

#[test]
fn a_prefix_without_a_seal_scans_as_unsealed_and_a_cut_last_line_is_dropped() {
    let whole = unsealed(&diagnose_lines());
    let s = scan(AT, &whole).expect("reads");
    assert_eq!(s.seal, Seal::Unsealed { cut_line: None });
    assert_eq!(s.lines.len(), 8);
    // Cut in the middle of line 5 (the second frame).
    let cut = unsealed(&diagnose_lines()[..4]).len() + 10;
    let s = scan(AT, &whole[..cut]).expect("reads");
    assert_eq!(s.seal, Seal::Unsealed { cut_line: Some(5) });
    assert_eq!(s.lines.len(), 4);
    // A seal line cut in the middle is a cut line too.
    let all = sealed(&diagnose_lines());
    let s = scan(AT, &all[..all.len() - 5]).expect("reads");
    assert_eq!(s.seal, Seal::Unsealed { cut_line: Some(9) });
    // replay refuses what play shows.
    let err = parse(AT, &whole).expect_err("unsealed");
    assert!(
        err.to_string()
            .starts_with("unsealed: the session did not end"),
        "{err}"
    );
}

#[test]
fn unknown_kinds_and_fields_are_kept() {
    let mut lines = diagnose_lines();
    lines.insert(2, json!({"k":"weather","t":7,"sky":"grey"}));
    let s = scan(AT, &sealed(&lines)).expect("reads");
    assert_eq!(s.lines[2]["sky"], "grey");
}

#[test]
fn what_is_not_a_recording_is_refused_naming_file_and_line() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"".to_vec(),
            "/r/1-s1.jsonl is not a catpaw recording (it has no whole line)",
        ),
        (b"hello\n".to_vec(), "/r/1-s1.jsonl:1: not JSON"),
        (
            unsealed(&[json!({"k":"header","format":"other","version":1})]),
            "/r/1-s1.jsonl is not a catpaw recording",
        ),
        (
            unsealed(&[json!({"k":"header","format":"catpaw-recording","version":3})]),
            "/r/1-s1.jsonl: recording format version 3 is not known",
        ),
        (
            [unsealed(&[header()]), b"{not json\n".to_vec()].concat(),
            "/r/1-s1.jsonl:2: not JSON",
        ),
        (
            unsealed(&[header(), json!({"k":"call"})]),
            "/r/1-s1.jsonl:2: a \"call\" line without its \"t\" offset",
        ),
        (
            unsealed(&[header(), json!({"t":1})]),
            "/r/1-s1.jsonl:2: no \"k\"",
        ),
        (
            [sealed(&[header()]), b"{\"k\":\"end\",\"t\":1}\n".to_vec()].concat(),
            "/r/1-s1.jsonl:2: a seal before the last line",
        ),
    ];
    for (bytes, want) in cases {
        let err = scan(AT, &bytes).expect_err(want).to_string();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    }
}

#[test]
fn files_are_read_from_disk_and_a_missing_or_huge_one_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("5-s.jsonl");
    std::fs::write(&path, sealed(&diagnose_lines())).expect("write");
    assert_eq!(read(&path).expect("reads").lines.len(), 8);
    assert_eq!(read_scan(&path).expect("reads").lines.len(), 8);
    let missing = dir.path().join("nope.jsonl");
    let err = read_scan(&missing).expect_err("missing").to_string();
    assert!(err.contains("nope.jsonl"), "{err}");
    let huge = dir.path().join("6-s.jsonl");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(super::MAX_READ + 1))
        .expect("sparse file");
    assert!(matches!(read_scan(&huge), Err(ReadError::Unreadable(_))));
}

#[test]
fn a_frame_by_reference_is_rebuilt_from_its_emit_and_a_dangling_one_is_refused() {
    let mut lines = diagnose_lines();
    lines[0]["version"] = json!(2);
    let emit = json!({"k":"call","t":1800,"n":2,"fn":"host.emit",
        "args":{"delta":"looking at memory","stage":"thinking","metadata-json":null},"ret":null});
    lines.insert(3, emit);
    lines[4] = json!({"k":"frame","t":2000,"emit":2});
    let back = parse(AT, &sealed(&lines)).expect("reads");
    let raw = back.all("frame").next().expect("a frame")["raw"].clone();
    assert_eq!(
        raw,
        json!(
            r#"{"type":"session_output","payload":{"session_id":"s1","delta":"looking at memory","stage":"thinking","done":false}}"#
        )
    );
    lines[4] = json!({"k":"frame","t":2000,"emit":1});
    match parse(AT, &sealed(&lines)) {
        Err(ReadError::Format(m)) => {
            assert!(m.contains(":5: a frame names host.emit call 1"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // A version this agent does not know is still refused.
    lines[0]["version"] = json!(3);
    assert!(
        matches!(parse(AT, &sealed(&lines)), Err(ReadError::Format(m)) if m.contains("version 3"))
    );
}

#[test]
fn every_emit_stage_has_the_wire_spelling_the_session_sends() {
    for (wit, stage) in crate::sandbox::emit_stages() {
        assert_eq!(
            crate::recorder::frame::wire_stage(wit),
            Some(stage),
            "{wit}"
        );
    }
}
