use std::io::{Read, Write};

use super::*;

fn fifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).expect("cstring");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn regular_files_within_the_cap_are_read_through_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v2 = dir.path().join("runner-v2.wasm");
    std::fs::write(&v2, b"component bytes").expect("write");
    let link = dir.path().join("runner.wasm");
    std::os::unix::fs::symlink(&v2, &link).expect("symlink");
    assert_eq!(read_file(&link, 15).expect("read"), b"component bytes");
    let e = read_file(&link, 14).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{} is too large: 15 bytes > 14 bytes", link.display())
    );
    let e = read_file(&dir.path().join("none"), 10).unwrap_err();
    assert!(
        e.is_not_found() && e.to_string().ends_with(": not found"),
        "{e}"
    );
}

#[test]
fn fifos_devices_and_directories_are_refused_without_a_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipe = dir.path().join("pipe");
    fifo(&pipe);
    let zero = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    // A read of the FIFO would wait for a writer and one of /dev/zero
    // would never end: returning at all shows neither was read.
    for (path, kind) in [
        (&pipe, "a FIFO"),
        (&zero, "a character device"),
        (&dir.path().to_path_buf(), "a directory"),
    ] {
        let e = read_file(path, 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is {kind}, not a regular file", path.display())
        );
    }
    let peeked = peek(&pipe).expect("a FIFO opens without blocking");
    assert_eq!(peeked.kind(), Kind::Fifo);
}

#[test]
fn a_file_that_grows_after_fstat_is_read_no_further_than_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("growing");
    std::fs::write(&p, b"12345").expect("write");
    let mut opened = open_following(&p, 8).expect("within the cap");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .and_then(|mut f| f.write_all(b"6789abcdef"))
        .expect("append");
    let mut buf = Vec::new();
    let e = opened.bounded().read_to_end(&mut buf).unwrap_err();
    assert!(buf.len() <= 9, "read {} bytes past a cap of 8", buf.len());
    let e = opened.read_error(e);
    assert!(
        matches!(
            e,
            FileError::TooLarge {
                size: 9,
                cap: 8,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_located_file_reports_where_it_really_is_and_reads_that_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = std::fs::canonicalize(dir.path()).expect("canon");
    let target = d.join("app.log");
    std::fs::write(&target, b"log line\n").expect("write");
    let link = d.join("current.log");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let found = locate(&link).expect("locate");
    assert_eq!(found.real_path(), target);
    assert_eq!(found.kind(), Kind::Regular);
    // The link now leads elsewhere: the located file is still the one read.
    std::fs::write(d.join("other"), b"other").expect("write");
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink(d.join("other"), &link).expect("symlink");
    let mut text = String::new();
    found
        .open_regular(1 << 20)
        .expect("open")
        .file()
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(text, "log line\n");
    let pipe = d.join("pipe");
    fifo(&pipe);
    let found = locate(&pipe).expect("O_PATH opens a FIFO without blocking");
    assert_eq!(found.kind(), Kind::Fifo);
    assert!(matches!(
        found.open_regular(1 << 20),
        Err(FileError::NotRegular {
            kind: Kind::Fifo,
            ..
        })
    ));
}

#[test]
fn a_file_removed_while_it_is_located_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("rotated.log");
    std::fs::write(&p, b"x").expect("write");
    let fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&p)
        .expect("open");
    // Unlinked after the open: the descriptor's path would read
    // "<path> (deleted)".
    std::fs::remove_file(&p).expect("rm");
    let e = located(fd, &p).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{} was removed while it was opened", p.display())
    );
}
