//! `catpaw-agent runner new`: what it generates builds and passes
//! `check-runner` as it is, in both languages.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::process::AgentHome;

/// Runs `runner new NAME --lang LANG` in a fresh home; returns the home
/// and the project directory.
fn new_project(name: &str, lang: &str) -> (AgentHome, PathBuf) {
    let home = AgentHome::bare();
    let out = home
        .command()
        .args(["runner", "new", name, "--lang", lang])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("check-runner"),
        "it says what to do next: {text}"
    );
    let dir = home.path().join(name);
    assert!(dir.join("wit/runner.wit").is_file());
    // Build output and what `session` and `check-runner` keep in the
    // project (the default state_dir) stay out of its repository.
    let ignored = std::fs::read_to_string(dir.join(".gitignore")).expect(".gitignore");
    let lines: Vec<&str> = ignored.lines().collect();
    let wanted: &[&str] = if lang == "rust" {
        &["/state.d/", "/target/"]
    } else {
        &["/state.d/", "__pycache__/", "*.wasm"]
    };
    for w in wanted {
        assert!(lines.contains(w), "{w} in .gitignore: {ignored}");
    }
    (home, dir)
}

/// `check-runner FILE --json` passes.
fn passes_check(home: &AgentHome, file: &Path) -> serde_json::Value {
    let out = home
        .command()
        .arg("check-runner")
        .arg(file)
        .arg("--json")
        .output()
        .expect("run");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["world"], "runner", "it serves every role: {report}");
    report
}

#[test]
fn a_new_rust_runner_builds_and_passes_check_runner() {
    let (home, dir) = new_project("scaffold-probe", "rust");
    // A shared target dir keeps the dependencies built across runs.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scaffold-guests");
    let build = |offline: bool| {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&dir)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        if offline {
            cmd.arg("--offline");
        }
        cmd.status().expect("cargo").success()
    };
    // Offline first (the crates are usually in the local registry), then
    // with the network.
    assert!(build(true) || build(false), "the generated project builds");
    let wasm = target.join("wasm32-wasip2/release/scaffold_probe.wasm");
    let report = passes_check(&home, &wasm);
    assert!(
        report["steps"]
            .to_string()
            .contains("plugins [uptime, mem]"),
        "{report}"
    );
}

#[test]
fn a_new_python_runner_builds_and_passes_check_runner() {
    let (home, dir) = new_project("py-probe", "python");
    let wasm = dir.join("py-probe.wasm");
    common::python::build(&dir, Path::new("wit"), &wasm);
    let report = passes_check(&home, &wasm);
    let runs: Vec<&str> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["what"].as_str().expect("what"))
        .collect();
    assert_eq!(
        runs,
        [
            "inspect uptime",
            "inspect mem",
            "diagnose",
            "chat (2 turns)"
        ]
    );
}
