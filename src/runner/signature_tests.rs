use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/minisign")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// Trust in the key the real minisign made the fixture with.
fn trust(require: bool) -> RunnerTrust {
    let mut t = RunnerTrust::new(require);
    let public = String::from_utf8(read("minisign.pub")).expect("pub");
    t.add("fixture", &public).expect("key");
    t
}

const RUNNER: &str = "/srv/runner.bin";

#[test]
fn minisigns_own_signature_verifies_and_names_the_signer() {
    let p = check(
        &trust(true),
        Path::new(RUNNER),
        &read("runner.bin"),
        Some(&read("runner.bin.minisig")),
    )
    .expect("minisign's signature verifies");
    assert_eq!(
        p,
        Provenance::Signed(Signer {
            name: "fixture".into(),
            key_id: "C76AAF6D2B6D2868".into(),
        })
    );
    assert_eq!(p.to_string(), "fixture (key C76AAF6D2B6D2868)");
}

#[test]
fn a_legacy_ed_signature_by_minisign_verifies_too() {
    let sig = read("runner.bin.legacy-minisig");
    let line = String::from_utf8(sig.clone()).expect("text");
    let bin = base64::engine::general_purpose::STANDARD
        .decode(line.lines().nth(1).expect("line 2"))
        .expect("b64");
    assert_eq!(&bin[..2], b"Ed", "the fixture is a legacy signature");
    let p = check(
        &trust(true),
        Path::new(RUNNER),
        &read("runner.bin"),
        Some(&sig),
    )
    .expect("legacy verifies");
    assert!(matches!(p, Provenance::Signed(_)));
    let mut tampered = read("runner.bin");
    tampered[3] ^= 1;
    let e = check(&trust(true), Path::new(RUNNER), &tampered, Some(&sig)).expect_err("tampered");
    assert!(matches!(e, Refusal::BadSignature { .. }), "{e}");
}

#[test]
fn a_key_is_taken_as_its_line_or_its_whole_pub_file() {
    let public = String::from_utf8(read("minisign.pub")).expect("pub");
    let line = public.lines().nth(1).expect("line 2");
    for text in [public.as_str(), line] {
        let (id, _) = parse_public_key(text).expect(text);
        assert_eq!(id.to_string(), "C76AAF6D2B6D2868");
    }
    for bad in ["", "RW!!", "untrusted comment: x\nRW\nmore", "AAAA"] {
        let e = parse_public_key(bad).expect_err(bad);
        assert!(e.contains("not a minisign public key"), "{bad}: {e}");
    }
    let mut t = trust(false);
    let e = t.add("again", line).expect_err("same key twice");
    assert!(e.contains("already trusted as `fixture`"), "{e}");
}

#[test]
fn unsigned_is_refused_only_when_required() {
    let e = check(&trust(true), Path::new(RUNNER), b"x", None).expect_err("required");
    assert!(matches!(e, Refusal::Unsigned { .. }));
    let m = e.to_string();
    assert!(
        m.contains(RUNNER) && m.contains("/srv/runner.bin.minisig"),
        "{m}"
    );
    assert!(
        m.contains("runner sign") && m.contains("runner_keys"),
        "{m}"
    );
    assert_eq!(
        check(&trust(false), Path::new(RUNNER), b"x", None).expect("allowed"),
        Provenance::Unsigned
    );
}

#[test]
fn one_byte_changed_anywhere_is_a_bad_signature_required_or_not() {
    let bytes = read("runner.bin");
    let sig = read("runner.bin.minisig");
    for at in [0, bytes.len() / 2, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[at] ^= 1;
        for require in [true, false] {
            let e = check(&trust(require), Path::new(RUNNER), &tampered, Some(&sig))
                .expect_err("tampered");
            let Refusal::BadSignature { signer, .. } = &e else {
                panic!("{e}");
            };
            assert_eq!(signer.key_id, "C76AAF6D2B6D2868");
            let m = e.to_string();
            assert!(
                m.contains("BAD signature") && m.contains("C76AAF6D2B6D2868"),
                "{m}"
            );
            assert!(m.contains("sign these bytes again"), "{m}");
        }
    }
}

#[test]
fn a_changed_trusted_comment_is_a_bad_signature() {
    let sig = String::from_utf8(read("runner.bin.minisig")).expect("sig");
    let forged = sig.replace("signed by minisign", "signed by someone else");
    let e = check(
        &trust(true),
        Path::new(RUNNER),
        &read("runner.bin"),
        Some(forged.as_bytes()),
    )
    .expect_err("forged comment");
    assert!(matches!(e, Refusal::BadSignature { .. }), "{e}");
}

/// A signature by another key that claims a trusted key's id (its key id
/// bytes rewritten) fails the cryptographic check.
#[test]
fn another_keys_signature_under_a_trusted_id_is_a_bad_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = super::super::sign::KeyPaths::in_dir(dir.path(), "other");
    super::super::sign::keygen(&paths).expect("keygen");
    let file = dir.path().join("runner.bin");
    std::fs::write(&file, read("runner.bin")).expect("copy");
    let (sig, _) = super::super::sign::sign(&file, &paths.secret).expect("sign");
    let text = std::fs::read_to_string(sig).expect("sig");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut bin = b64.decode(&lines[1]).expect("b64");
    let trusted_id = u64::from_str_radix("C76AAF6D2B6D2868", 16).expect("hex");
    bin[2..10].copy_from_slice(&trusted_id.to_le_bytes());
    lines[1] = b64.encode(&bin);
    let forged = lines.join("\n") + "\n";
    let e = check(
        &trust(false),
        Path::new(RUNNER),
        &read("runner.bin"),
        Some(forged.as_bytes()),
    )
    .expect_err("wrong key");
    assert!(matches!(e, Refusal::BadSignature { .. }), "{e}");
}

#[test]
fn a_key_not_trusted_is_refused_by_its_id_required_or_not() {
    for require in [true, false] {
        let e = check(
            &RunnerTrust::new(require),
            Path::new(RUNNER),
            &read("runner.bin"),
            Some(&read("runner.bin.minisig")),
        )
        .expect_err("unknown key");
        assert!(matches!(e, Refusal::UnknownKey { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("C76AAF6D2B6D2868") && m.contains("runner_keys"),
            "{m}"
        );
        assert!(m.contains("/srv/runner.bin.minisig"), "{m}");
    }
}

#[test]
fn what_is_not_a_signature_is_malformed() {
    let sig = String::from_utf8(read("runner.bin.minisig")).expect("sig");
    let lines: Vec<&str> = sig.lines().collect();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "no signature line"),
        ("hello\nworld\n".into(), "not base64"),
        (format!("{}\n{}\n", lines[0], lines[1]), "4 lines"),
        (format!("{}\nRWRoKG0r\n", lines[0]), "bytes, not 74"),
        (
            format!(
                "{}\n{}\nnot a trusted comment\n{}\n",
                lines[0], lines[1], lines[3]
            ),
            "4 lines",
        ),
    ];
    for (text, why) in cases {
        let e = check(
            &trust(false),
            Path::new(RUNNER),
            &read("runner.bin"),
            Some(text.as_bytes()),
        )
        .expect_err(&text);
        assert!(matches!(e, Refusal::Malformed { .. }), "{text:?}: {e}");
        let m = e.to_string();
        assert!(
            m.contains(why) && m.contains("not a minisign signature"),
            "{m}"
        );
    }
    let e = check(
        &trust(false),
        Path::new(RUNNER),
        b"x",
        Some(&[0xff, 0xfe, 0x00]),
    )
    .expect_err("binary");
    assert!(e.to_string().contains("not text"), "{e}");
}

#[test]
fn a_signature_file_that_is_not_a_small_regular_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runner = dir.path().join("r.wasm");
    std::fs::write(&runner, b"x").expect("runner");
    assert!(read_signature(&runner).expect("none").is_none());
    std::fs::create_dir(signature_path(&runner)).expect("dir");
    let e = read_signature(&runner).expect_err("a directory");
    assert!(matches!(e, Refusal::Unreadable { .. }), "{e}");
    assert!(e.to_string().contains("never ignored"), "{e}");
    std::fs::remove_dir(signature_path(&runner)).expect("rmdir");
    std::fs::write(signature_path(&runner), vec![b'a'; 5000]).expect("big");
    let e = read_signature(&runner).expect_err("too large");
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn key_ids_read_as_minisign_prints_them() {
    assert_eq!(
        KeyId([0x68, 0x28, 0x6d, 0x2b, 0x6d, 0xaf, 0x6a, 0xc7]).to_string(),
        "C76AAF6D2B6D2868"
    );
}
