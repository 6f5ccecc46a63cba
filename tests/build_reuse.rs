//! The README promises that the demo (`cargo run`) reuses what the test
//! command (`cargo test --all-targets`) built. Cargo unifies the features
//! of the dev-dependencies into shared crates only when it builds tests, so
//! a dev-dependency that turns on one more feature of a crate the agent
//! uses makes `cargo run` rebuild that crate and everything above it
//! (tokio-rustls's `logging` once cost five crates and 51 s).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// `cargo tree` over `edges`: each package's enabled features (a crate
/// built both for the target and for a build script may have two sets).
fn features(edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--offline", "--prefix", "none", "-e", edges])
        .args(["-f", "{p}|{f}"])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut all: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((p, f)) = l.trim_end_matches(" (*)").split_once('|') {
            all.entry(p.to_string()).or_default().insert(f.to_string());
        }
    }
    all
}

#[test]
fn dev_dependencies_add_no_feature_to_a_crate_the_agent_builds() {
    let agent = features("normal,build");
    let tests = features("normal,build,dev");
    let differ: Vec<String> = agent
        .iter()
        .filter_map(|(p, f)| {
            let t = tests.get(p)?;
            (t != f).then(|| format!("{p}: {f:?} for the agent, {t:?} for the tests"))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "give the dev-dependency the agent's features (or the agent the tests'): {differ:#?}"
    );
}
