//! The one way guests in `guest-runners/` are built for `wasm32-wasip2`.
//!
//! `build.rs` uses it (through `#[path]`) for the three runners the binary
//! embeds; the tests and benchmarks use [`guest`], which builds the whole
//! guest workspace (hazard, bench and example guests) the first time a
//! process asks for one. Cargo makes that a no-op when nothing changed, and
//! it serialises concurrent builds on the guest workspace's own target dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// The guest workspace of this checkout.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-runners")
}

/// Where the release builds of the guests land.
pub fn out_dir(guests: &Path) -> PathBuf {
    guests.join("target").join(TARGET).join("release")
}

/// Path of a built guest component, e.g. `guest("hazard_spin")`. The first
/// call in a process builds the guest workspace (a no-op when it is up to
/// date), so a changed hazard source is never tested stale.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let guests = workspace();
        build(&guests, &["--workspace"]);
        out_dir(&guests)
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "no guest {} after building the guest workspace",
        path.display()
    );
    path
}

/// `cargo build --release --locked --target wasm32-wasip2 <selection>` in
/// `guests`; panics saying how to reproduce it when the build fails.
///
/// The guest workspace has its own target dir, so this nested cargo never
/// contends with the outer build's lock. Variables that the outer cargo
/// sets for its own compilation (wrappers, flags, target dir) are cleared
/// so the guests build the same way whether the host is built, tested or
/// linted.
pub fn build(guests: &Path, selection: &[&str]) {
    ensure_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(guests)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .args(selection);
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
             `cd guest-runners && cargo build --release --target {TARGET} {}`; the target is \
             installed with `rustup target add {TARGET}`.",
            selection.join(" ")
        );
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
