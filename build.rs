//! Builds the built-in guest runners (`diagnose`, `chat`, `ai` in
//! `guest-runners/`) for `wasm32-wasip2` and stages them for embedding in
//! the binary. Only what the binary embeds is built here: the hazard, bench
//! and example guests are built by the test suite when it first needs them
//! (`tests/common/guests.rs`, which also holds the build command both use),
//! so a first `cargo run` does not wait for them.

#[path = "tests/common/guests.rs"]
mod guests;

use std::path::{Path, PathBuf};

/// (package, file stem) of each embedded runner.
const EMBEDDED: [(&str, &str); 3] = [
    ("catpaw-diagnose", "catpaw_diagnose"),
    ("catpaw-chat", "catpaw_chat"),
    ("catpaw-ai", "catpaw_ai"),
];

fn main() {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let guests = root.join("guest-runners");
    let out = PathBuf::from(env("OUT_DIR"));
    watch(&root, &guests);

    let selection: Vec<&str> = EMBEDDED.iter().flat_map(|(p, _)| ["-p", *p]).collect();
    guests::build(&guests, &selection);
    let built = guests::out_dir(&guests);
    for (_, name) in EMBEDDED {
        let from = built.join(format!("{name}.wasm"));
        let to = out.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

/// Rebuild when the WIT, the guest workspace's manifest or lock file, or
/// the sources of an embedded runner (or the code they share) change. The
/// test guests are not watched: changing one does not rebuild the host.
fn watch(root: &Path, guests: &Path) {
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed=tests/common/guests.rs");
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "common",
        "diagnose",
        "chat",
        "ai",
    ] {
        println!("cargo:rerun-if-changed={}", guests.join(path).display());
    }
}
