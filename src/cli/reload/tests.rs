//! Tests of `cli/reload.rs`: fingerprints and what the watcher reads.

use super::*;

const CAP: u64 = DEFAULT_MAX_RUNNER_SIZE;

fn look(p: &Path, before: Option<&Fingerprint>) -> Fingerprint {
    fingerprint(p, before, CAP, SystemTime::now())
}

fn hash(f: &Fingerprint) -> Option<[u8; 32]> {
    match &f.seen {
        Seen::Present { hash, .. } => *hash,
        Seen::Absent(_) => None,
    }
}

#[test]
fn a_fingerprint_changes_with_the_content_even_at_the_same_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("r.wasm");
    std::fs::write(&p, b"aaaa").expect("write");
    let a = look(&p, None);
    assert_eq!(a, look(&p, Some(&a)));
    std::fs::write(&p, b"bbbb").expect("write");
    // A fresh file is not settled: its hash is taken again.
    let b = look(&p, Some(&a));
    assert_ne!(hash(&a), hash(&b));
    assert_ne!(a, b);
    std::fs::remove_file(&p).expect("rm");
    let gone = look(&p, Some(&b));
    assert!(matches!(&gone.seen, Seen::Absent(why) if why.ends_with("not found")));
}

#[test]
fn a_settled_file_is_not_read_again_while_its_stat_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("r.wasm");
    std::fs::write(&p, b"aaaa").expect("write");
    let later = SystemTime::now() + RACY + Duration::from_secs(2);
    let mut first = fingerprint(&p, None, CAP, later);
    assert!(first.settled);
    // A hash no read of the file gives: kept, so the file was not read.
    if let Seen::Present { hash, .. } = &mut first.seen {
        *hash = Some([7; 32]);
    }
    let again = fingerprint(&p, Some(&first), CAP, later);
    assert_eq!(hash(&again), Some([7; 32]));
    // Unsettled, the same stat is hashed again.
    first.settled = false;
    let fresh = fingerprint(&p, Some(&first), CAP, later);
    assert_eq!(hash(&fresh), Some(Sha256::digest(b"aaaa").into()));
}

#[test]
fn what_is_not_a_regular_file_within_the_cap_is_never_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.wasm");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("cstring");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let zero = dir.path().join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(CAP + 1))
        .expect("sparse file");
    for (p, kind) in [
        (&fifo, Kind::Fifo),
        (&zero, Kind::CharDevice),
        (&big, Kind::Regular),
    ] {
        // A read of any of these would hang or take long; the test
        // harness would time out rather than fail here.
        let f = look(p, None);
        match f.seen {
            Seen::Present { stat, hash } => {
                assert_eq!(stat.kind, kind, "{}", p.display());
                assert_eq!(hash, None, "{}", p.display());
            }
            Seen::Absent(why) => panic!("{}: {why}", p.display()),
        }
    }
}
