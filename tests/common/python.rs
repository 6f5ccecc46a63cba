//! componentize-py for the Python runner tests: found, not installed
//! (scripts/test.sh installs it into `target/py-venv`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py to use: `$CATPAW_COMPONENTIZE_PY`, the one
/// scripts/test.sh installs in `target/py-venv`, or one on PATH. Panics
/// saying how to get it when there is none.
pub fn componentize_py() -> PathBuf {
    let candidates = [
        std::env::var_os("CATPAW_COMPONENTIZE_PY").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/componentize-py")),
        Some(PathBuf::from("componentize-py")),
    ];
    for c in candidates.into_iter().flatten() {
        let works = Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return c;
        }
    }
    panic!(
        "componentize-py is needed for the Python runner tests: run scripts/test.sh (it \
         installs it into target/py-venv), or `pip install componentize-py`, or set \
         CATPAW_COMPONENTIZE_PY"
    );
}

/// Builds the componentize-py project in `dir` (world `runner`, module
/// `app`, WIT in `wit`) into `out`, via a temporary file so a reader never
/// sees half a component.
pub fn build(dir: &Path, wit: &Path, out: &Path) {
    let tmp = out.with_extension(format!("{}.tmp", std::process::id()));
    let status = Command::new(componentize_py())
        .current_dir(dir)
        .arg("-d")
        .arg(wit)
        .args(["-w", "runner", "componentize", "app", "-o"])
        .arg(&tmp)
        .status()
        .expect("run componentize-py");
    assert!(
        status.success(),
        "componentize-py failed in {}",
        dir.display()
    );
    std::fs::rename(&tmp, out).expect("rename the built component");
}

/// The example Python runner (`guest-runners/python`), built once per
/// change of its sources or the WIT: cached in `target/python-runner/`
/// under a hash of them, so a test run builds it at most once.
pub fn example_runner() -> PathBuf {
    use sha2::{Digest, Sha256};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("guest-runners/python");
    let wit = root.join("wit/runner.wit");
    let mut h = Sha256::new();
    for f in [src.join("app.py"), src.join("chat.py"), wit] {
        h.update(std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    let hash: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = root.join("target/python-runner");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = dir.join(format!("catpaw_py-{hash}.wasm"));
    if !out.is_file() {
        build(&src, &root.join("wit"), &out);
    }
    out
}

/// A compile cache shared by every test that loads a Python runner (one
/// compile of its interpreter takes tens of seconds in a debug build).
pub fn compile_cache() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python-runner/compiled");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}
