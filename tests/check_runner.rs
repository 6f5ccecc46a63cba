//! `catpaw-agent check-runner`, run as a runner author runs it.

mod common;

use common::guest;
use common::process::AgentHome;
use serde_json::Value;

/// Runs `check-runner FILE --json`: (exit code, report).
fn check(file: &std::path::Path) -> (i32, Value) {
    let mut cmd = AgentHome::bare().into_command();
    cmd.arg("check-runner").arg(file).arg("--json");
    let out = cmd.output().expect("run");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), report)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report}"))
}

fn runs(report: &Value) -> Vec<String> {
    report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["what"].as_str().expect("what").to_string())
        .collect()
}

#[test]
fn the_builtin_runners_pass_with_receipts_and_timings() {
    let (code, r) = check(&guest("catpaw_diagnose"));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ok"], true);
    assert_eq!(r["wit"], "catpaw:runner@0.2.0");
    assert_eq!(r["world"], "diagnose-runner");
    assert!(
        step(&r, "describe")["detail"]
            .as_str()
            .unwrap()
            .contains("cpu, mem, disk")
    );
    // An inspect of every plugin of the built-in table, then a diagnose.
    let mut expected: Vec<String> = catpaw_guest_common::plugin_names()
        .iter()
        .map(|p| format!("inspect {p}"))
        .collect();
    expected.push("diagnose".to_string());
    assert_eq!(runs(&r), expected);
    for run in r["runs"].as_array().unwrap() {
        let receipt = &run["receipt"];
        let fuel = receipt["fuel_used"].as_u64().expect("fuel");
        assert!(
            fuel > 0 && fuel <= receipt["fuel_limit"].as_u64().unwrap(),
            "{run}"
        );
    }
    assert!(r["compile_ms"].as_f64().is_some_and(|t| t > 0.0), "{r}");
    assert!(r["cached_load_ms"].as_f64().is_some_and(|t| t > 0.0), "{r}");

    let (code, r) = check(&guest("catpaw_chat"));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["world"], "chat-runner");
    assert_eq!(runs(&r), ["chat (2 turns)"]);
    assert_eq!(r["runs"][0]["receipt"]["runs"], 3, "start and two turns");
}

#[test]
fn a_hazard_guest_fails_saying_why_and_what_to_change() {
    let (code, r) = check(&guest("hazard_spin"));
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["ok"], false);
    let run = &r["runs"][0];
    assert_eq!(run["ok"], false);
    let error = run["error"].as_str().expect("error");
    assert!(error.contains("fuel budget exhausted"), "{error}");
    assert!(error.contains("raise `fuel`"), "{error}");
    assert_eq!(run["receipt"]["fuel_used"], run["receipt"]["fuel_limit"]);

    // The text form ends with the verdict.
    let mut cmd = AgentHome::bare().into_command();
    cmd.arg("check-runner").arg(guest("hazard_trap"));
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL diagnose") && text.contains("deliberate panic"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("see above for what to change)"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_a_component_fails_at_the_first_step() {
    let home = AgentHome::bare();
    let text = home.write("notes.wasm", "just text");
    let core = home.write("core.wasm", b"\0asm\x01\x00\x00\x00");
    for (file, expect) in [
        (&text, "not a WebAssembly file"),
        (&core, "core WebAssembly module"),
    ] {
        let (code, r) = check(file);
        assert_eq!(code, 1, "{r}");
        let s = step(&r, "component");
        assert_eq!(s["ok"], false);
        assert!(s["detail"].as_str().unwrap().contains(expect), "{r}");
        assert!(r["runs"].as_array().unwrap().is_empty());
    }
    // A FIFO is refused without a read (which would wait for a writer).
    let fifo = home.path().join("pipe.wasm");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("cstring");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let (code, r) = check(&fifo);
    assert_eq!(code, 1, "{r}");
    let detail = step(&r, "read")["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.ends_with("pipe.wasm is a FIFO, not a regular file"),
        "{r}"
    );
    let (code, r) = check(&home.path().join("missing.wasm"));
    assert_eq!(code, 1);
    assert!(
        step(&r, "read")["detail"]
            .as_str()
            .unwrap()
            .contains("missing.wasm")
    );
}

#[test]
fn a_0_1_0_component_passes_and_says_it_has_no_describe() {
    let (code, r) = check(&guest("hazard_file_probe"));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["wit"], "catpaw:runner@0.1.0");
    let d = step(&r, "describe")["detail"].as_str().unwrap();
    assert!(
        d.contains("no describe") && d.contains("rebuild against 0.2.0"),
        "{d}"
    );
    assert_eq!(runs(&r), ["diagnose"]);
}

#[test]
fn a_component_with_an_import_the_host_lacks_fails_naming_it() {
    let (code, r) = check(&guest("hazard_foreign_import"));
    assert_eq!(code, 1, "{r}");
    let s = step(&r, "imports");
    assert_eq!(s["ok"], false);
    let detail = s["detail"].as_str().unwrap();
    assert!(detail.contains("test:foreign/probe"), "{detail}");
    assert!(
        detail.contains("may import only catpaw:runner/host"),
        "{detail}"
    );
    assert!(
        r["runs"].as_array().unwrap().is_empty(),
        "nothing runs: {r}"
    );
}

/// Runs `check-runner FILE --json` with `config` as the config file.
fn check_with(file: &std::path::Path, config: &str) -> (i32, Value) {
    let home = AgentHome::new(config);
    let out = home
        .command()
        .arg("check-runner")
        .arg(file)
        .arg("--json")
        .output()
        .expect("run");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), report)
}

#[test]
fn check_runner_shows_the_granted_capabilities_and_refuses_an_undeclared_runner_when_required() {
    let probe = guest("hazard_caps_probe");
    let sha = common::process::sha256_hex(&std::fs::read(&probe).expect("read"));
    let (code, r) = check(&probe);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["sha256"], sha);
    assert_eq!(r["capabilities"], "tools:cpu,uptime");
    let s = step(&r, "capabilities");
    assert_eq!(s["ok"], true);
    assert_eq!(
        s["detail"],
        "declared tools:cpu,uptime; granted tools:cpu,uptime"
    );
    // The config's policies narrow the grant it shows.
    let (code, r) = check_with(&probe, "[sandbox.policy.diagnose]\ntools = [\"cpu\"]\n");
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["capabilities"], "tools:cpu", "{r}");
    // The smoke runs run as the agent would run them: under the policy's
    // budgets too, so one too small for a run fails the check.
    let (code, r) = check_with(
        &probe,
        "[sandbox.policy.diagnose]\ntools = [\"cpu\"]\nfuel = 2000\n",
    );
    assert_eq!(code, 1, "{r}");
    let runs = r["runs"].as_array().expect("runs");
    assert!(
        !runs.is_empty()
            && runs.iter().all(|run| run["ok"] == false
                && run["error"].as_str().is_some_and(
                    |d| d.contains("2000 fuel units") && d.contains("[sandbox.policy.*]")
                )),
        "{r}"
    );

    // A 0.1.0 component declares nothing: a warning, and it passes...
    let legacy = guest("hazard_file_probe");
    let (code, r) = check(&legacy);
    assert_eq!(code, 0, "{r}");
    let s = step(&r, "capabilities");
    assert_eq!(s["ok"], true);
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("warning: declares none") && detail.contains("granted tools shell llm"),
        "{detail}"
    );
    // ...unless the config requires a declaration: then it fails, and
    // nothing runs.
    let (code, r) = check_with(&legacy, "[sandbox]\nrequire_declared_capabilities = true\n");
    assert_eq!(code, 1, "{r}");
    let s = step(&r, "capabilities");
    assert_eq!(s["ok"], false);
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.contains("declares no capabilities (it is built against catpaw:runner 0.1.0")
            && detail.contains("refused because [sandbox] require_declared_capabilities = true"),
        "{detail}"
    );
    assert!(r["runs"].as_array().unwrap().is_empty(), "{r}");

    // The text form shows the hash under the steps.
    let mut cmd = AgentHome::bare().into_command();
    cmd.arg("check-runner").arg(&probe);
    let out = cmd.output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok   capabilities declared tools:cpu,uptime; granted tools:cpu,uptime\n")
            && text.contains(&format!("sha256     {sha}\n")),
        "{text}"
    );
}
