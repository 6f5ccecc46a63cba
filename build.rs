//! Builds the guest runners in `guest-runners/` for `wasm32-wasip2` and
//! stages the built-in ones (`diagnose`, `chat`, `ai`) for embedding in the
//! binary.
//!
//! The guest workspace has its own target dir, so this nested cargo never
//! contends with the outer build's lock. Variables that the outer cargo sets
//! for its own compilation (wrappers, flags, target dir) are cleared so the
//! guests build the same way whether the host is built, tested or linted.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const EMBEDDED: [&str; 3] = ["catpaw_diagnose", "catpaw_chat", "catpaw_ai"];

fn main() {
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let guests = root.join("guest-runners");
    let out = PathBuf::from(env("OUT_DIR"));
    watch(&root, &guests);

    ensure_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests)
        .args(["build", "--release", "--locked", "--target", TARGET]);
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "RUSTDOCFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!(
            "could not run cargo to build the guest runners in {}: {e}",
            guests.display()
        )
    });
    if !status.success() {
        panic!(
            "building the guest runners failed (see the errors above). They are built with \
             `cd guest-runners && cargo build --release --target {TARGET}`; the target is \
             installed with `rustup target add {TARGET}`."
        );
    }
    let built = guests.join("target").join(TARGET).join("release");
    for name in EMBEDDED {
        let from = built.join(format!("{name}.wasm"));
        let to = out.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
    }
    // Tests and benchmarks find the test guests here.
    println!("cargo:rustc-env=CATPAW_GUEST_DIR={}", built.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo did not set {name}"))
}

/// Rebuild when the WIT or any guest source changes. The guest workspace's
/// own `target/` is deliberately not watched (it changes on every build).
fn watch(root: &Path, guests: &Path) {
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    let entries =
        std::fs::read_dir(guests).unwrap_or_else(|e| panic!("reading {}: {e}", guests.display()));
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
}

/// Installs the wasm32-wasip2 standard library through rustup when it is
/// missing, so a fresh machine with only rustup can build and test.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let installed =
        sysroot.is_some_and(|s| Path::new(&s).join("lib/rustlib").join(TARGET).is_dir());
    if installed {
        return;
    }
    println!(
        "cargo:warning=installing the {TARGET} target with rustup (needed for the guest runners)"
    );
    let ok = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and rebuild"
        );
    }
}
