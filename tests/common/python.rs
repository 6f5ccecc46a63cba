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
