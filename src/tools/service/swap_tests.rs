//! The allow-listed readers (`log_tail`, `file_check`, `cert_files` shares
//! their check) against paths whose links another thread swaps as fast as
//! it can: no call may return anything of a file outside the allow-list.
//!
//! Two swaps: the last component (a link renamed over between an allowed
//! file and a secret one), and a directory component (an allowed
//! directory exchanged with a link to a secret directory). A check on the
//! path followed by an open of the path loses the second race: the check
//! sees the allowed directory, the open the secret one.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::tools::args::Args;
use crate::tools::targets::ToolConfig;

const SECRET: &str = "TOPSECRET-CONTENT-0451";
const CALLS: usize = 1000;

/// A thread that swaps until dropped, counting its swaps.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swapper {
    fn start(mut swap: impl FnMut() + Send + 'static) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, swaps) = (stop.clone(), swaps.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    swap();
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("swapper thread");
        }
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("cstring")
}

/// `base/logs/` (allowed: `app.log`) and `base/secret/app.log`; the
/// allow-list is `base/logs/*.log`.
struct Tree {
    _dir: tempfile::TempDir,
    base: PathBuf,
    allowed: Vec<String>,
    secret_sha: String,
    secret_len: u64,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::canonicalize(dir.path()).expect("canon");
    std::fs::create_dir(base.join("logs")).expect("mkdir");
    std::fs::create_dir(base.join("secret")).expect("mkdir");
    std::fs::write(base.join("logs/app.log"), "allowed line\n").expect("write");
    let secret = format!("{SECRET}\nand more of it\n");
    std::fs::write(base.join("secret/app.log"), &secret).expect("write");
    Tree {
        allowed: vec![format!("{}/logs/*.log", base.display())],
        secret_sha: crate::util::sha256_hex(secret.as_bytes()),
        secret_len: secret.len() as u64,
        base,
        _dir: dir,
    }
}

fn args(path: &Path, cfg: &ToolConfig) -> Args {
    let text = serde_json::json!({ "path": path }).to_string();
    Args::of(&text, &["path", "lines", "contains"]).with_config(Arc::new(cfg.clone()))
}

/// `CALLS` log_tail and file_check calls on `path` while `swapper` runs:
/// none shows the secret; some read the allowed file.
fn hammer(t: &Tree, path: &Path, swapper: &Swapper) {
    let cfg = ToolConfig {
        log_files: t.allowed.clone(),
        files: t.allowed.clone(),
        ..ToolConfig::default()
    };
    let (mut leaks, mut read) = (Vec::new(), 0);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for i in 0..CALLS {
        // Each call races at least one swap, however the two threads are
        // scheduled on a busy machine.
        while swapper.swaps() <= i as u64 && std::time::Instant::now() < give_up {
            std::thread::yield_now();
        }
        let tail = super::logtail::run(&args(path, &cfg));
        let text = match &tail {
            Ok(v) => v.to_string(),
            Err(e) => e.clone(),
        };
        if text.contains(SECRET) {
            leaks.push(text);
        } else if text.contains("allowed line") {
            read += 1;
        }
        let check = super::filecheck::run(&args(path, &cfg));
        if let Ok(v) = &check {
            let row = &v["files"][0];
            if row["sha256"].as_str() == Some(t.secret_sha.as_str())
                || row["size_bytes"].as_u64() == Some(t.secret_len)
            {
                leaks.push(row.to_string());
            }
        }
    }
    assert!(
        // Call i waited for swap i + 1: CALLS swaps at least.
        swapper.swaps() >= CALLS as u64,
        "the swapper ran {} times: no race was run",
        swapper.swaps()
    );
    assert!(read > 0, "no call read the allowed file");
    assert!(leaks.is_empty(), "{} calls leaked: {leaks:?}", leaks.len());
}

#[test]
fn a_last_component_link_swapped_during_the_calls_never_leaks() {
    let t = tree();
    let link = t.base.join("logs/cur.log");
    let tmp = t.base.join("logs/.cur.tmp");
    std::os::unix::fs::symlink("app.log", &link).expect("symlink");
    let swapper = {
        let (link, tmp) = (link.clone(), tmp.clone());
        let targets = [
            "app.log".to_string(),
            format!("{}/secret/app.log", t.base.display()),
        ];
        let mut i = 0;
        Swapper::start(move || {
            i += 1;
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&targets[i % 2], &tmp).expect("symlink");
            std::fs::rename(&tmp, &link).expect("rename");
        })
    };
    hammer(&t, &link, &swapper);
}

#[test]
fn a_directory_swapped_for_a_link_during_the_calls_never_leaks() {
    let t = tree();
    let logs = t.base.join("logs");
    let other = t.base.join("other");
    std::os::unix::fs::symlink(t.base.join("secret"), &other).expect("symlink");
    let swapper = {
        let (a, b) = (cstr(&logs), cstr(&other));
        Swapper::start(move || {
            // SAFETY: two valid NUL-terminated paths.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        })
    };
    hammer(&t, &logs.join("app.log"), &swapper);
}
