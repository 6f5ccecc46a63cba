//! Signed runners, as an operator uses them: `runner keygen` and `runner
//! sign` through the CLI, `[sandbox] runner_keys` and
//! `require_signed_runners`, and the check at start, on SIGHUP, on
//! `--watch` and in `check-runner`; the signer in `status` and the audit.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::guest;
use common::process::{AgentHome, AgentProcess, server_toml};
use common::server::{ServerConn, TestServer};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(30);

/// A key pair made by `runner keygen --out DIR --name NAME`: (public,
/// secret, key id as printed).
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let out = common::process::command()
        .args(["runner", "keygen", "--out"])
        .arg(dir)
        .args(["--name", name])
        .output()
        .expect("keygen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("key "))
        .unwrap_or_else(|| panic!("no key id in {stdout}"))
        .to_string();
    (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
        id,
    )
}

/// `runner sign FILE --key KEY`.
fn sign(file: &Path, key: &Path) {
    let out = common::process::command()
        .args(["runner", "sign"])
        .arg(file)
        .arg("--key")
        .arg(key)
        .output()
        .expect("sign");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sig_of(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".minisig");
    PathBuf::from(p)
}

/// Writes `bytes` to `to` in one step (a rename), as a deploy tool would.
fn install_bytes(bytes: &[u8], to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, to).expect("rename");
}

/// The runner `d.wasm` (and its signature) put into each bad state.
#[derive(Debug, Clone, Copy)]
enum Bad {
    /// No `.minisig`.
    Unsigned,
    /// One byte of the runner changed after signing.
    Tampered,
    /// Signed by another key whose signature claims the trusted key's id.
    WrongKey,
    /// Signed by a key not in `runner_keys`.
    UnknownKey,
    /// A `.minisig` that is not a minisign signature.
    Malformed,
}

const BAD: [Bad; 5] = [
    Bad::Unsigned,
    Bad::Tampered,
    Bad::WrongKey,
    Bad::UnknownKey,
    Bad::Malformed,
];

impl Bad {
    /// What its refusal says.
    fn refusal(self) -> &'static str {
        match self {
            Bad::Unsigned => "is not signed",
            Bad::Tampered | Bad::WrongKey => "BAD signature",
            Bad::UnknownKey => "which is not in `[sandbox] runner_keys`",
            Bad::Malformed => "is not a minisign signature",
        }
    }
}

/// Keys for the tests: `trusted` is in `runner_keys`, `other` is not.
struct Keys {
    dir: tempfile::TempDir,
    trusted: (PathBuf, PathBuf, String),
    other: (PathBuf, PathBuf, String),
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().expect("tempdir");
        let trusted = keygen(dir.path(), "ci");
        let other = keygen(dir.path(), "other");
        Keys {
            dir,
            trusted,
            other,
        }
    }

    /// `[sandbox]` lines trusting `ci` by file.
    fn sandbox_toml(&self, require: bool) -> String {
        format!(
            "runner_keys = {{ ci = \"file:{}\" }}\nrequire_signed_runners = {require}\n",
            self.trusted.0.display()
        )
    }

    /// Installs `guest` at `to`, signed by the trusted key.
    fn install_signed(&self, guest: &Path, to: &Path) {
        let staged = self.dir.path().join("staged.wasm");
        std::fs::copy(guest, &staged).expect("copy");
        sign(&staged, &self.trusted.1);
        install_bytes(&std::fs::read(sig_of(&staged)).expect("sig"), &sig_of(to));
        install_bytes(&std::fs::read(&staged).expect("runner"), to);
    }

    /// Puts `guest` at `to` in the state `bad`.
    fn install_bad(&self, guest: &Path, to: &Path, bad: Bad) {
        let staged = self.dir.path().join("staged.wasm");
        let bytes = std::fs::read(guest).expect("guest");
        std::fs::write(&staged, &bytes).expect("stage");
        let key = match bad {
            Bad::UnknownKey | Bad::WrongKey => &self.other.1,
            _ => &self.trusted.1,
        };
        sign(&staged, key);
        let mut sig = std::fs::read_to_string(sig_of(&staged)).expect("sig");
        let mut runner = bytes;
        match bad {
            Bad::Unsigned => {
                let _ = std::fs::remove_file(sig_of(to));
                install_bytes(&runner, to);
                return;
            }
            // A byte in the middle: past the header, so only the
            // signature can tell.
            Bad::Tampered => {
                let at = runner.len() / 2;
                runner[at] ^= 0x01;
            }
            Bad::WrongKey => sig = with_key_id(&sig, &self.trusted.2),
            Bad::UnknownKey => {}
            Bad::Malformed => sig = "untrusted comment: hi\nnot a signature\n".into(),
        }
        install_bytes(sig.as_bytes(), &sig_of(to));
        install_bytes(&runner, to);
    }
}

/// The signature `sig` with its key id bytes set to `id` (hex as minisign
/// prints it): another key's signature that claims the trusted key.
fn with_key_id(sig: &str, id: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<String> = sig.lines().map(str::to_string).collect();
    let mut bin = b64.decode(&lines[1]).expect("b64");
    let id = u64::from_str_radix(id, 16).expect("hex id");
    bin[2..10].copy_from_slice(&id.to_le_bytes());
    lines[1] = b64.encode(&bin);
    lines.join("\n") + "\n"
}

/// `check-runner FILE --json` from `home`: (exit code, report).
fn check_runner(home: &AgentHome, file: &Path) -> (i32, Value) {
    let out = home
        .command()
        .arg("check-runner")
        .arg(file)
        .arg("--json")
        .output()
        .expect("check-runner");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exit code"), report)
}

fn signature_step(report: &Value) -> &Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "signature")
        .unwrap_or_else(|| panic!("no signature step: {report}"))
}

#[test]
fn keygen_writes_0600_keys_and_sign_makes_what_minisign_verifies() {
    use std::os::unix::fs::PermissionsExt;
    let keys = Keys::new();
    let (public, secret, id) = &keys.trusted;
    for p in [public, secret] {
        let mode = std::fs::metadata(p).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
    }
    let pubtext = std::fs::read_to_string(public).expect("pub");
    assert!(
        pubtext.starts_with(&format!("untrusted comment: minisign public key {id}\n")),
        "{pubtext}"
    );
    // A second keygen never writes over the pair.
    let again = common::process::command()
        .args(["runner", "keygen", "--out"])
        .arg(keys.dir.path())
        .args(["--name", "ci"])
        .output()
        .expect("keygen");
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(public).expect("pub"), pubtext);
    // Or to two paths of one's choosing.
    let (p, k) = (
        keys.dir.path().join("a/p.pub"),
        keys.dir.path().join("k.key"),
    );
    std::fs::create_dir(keys.dir.path().join("a")).expect("mkdir");
    let named = common::process::command()
        .args(["runner", "keygen", "--public"])
        .arg(&p)
        .arg("--secret")
        .arg(&k)
        .output()
        .expect("keygen");
    assert!(named.status.success(), "{named:?}");
    assert!(p.is_file() && k.is_file());
    let file = keys.dir.path().join("d.wasm");
    std::fs::copy(guest("catpaw_diagnose"), &file).expect("copy");
    sign(&file, secret);
    // The real minisign checks it, where it is installed.
    match std::process::Command::new("minisign")
        .arg("-Vm")
        .arg(&file)
        .arg("-p")
        .arg(public)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "minisign -V: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("skipping the minisign -V check: minisign is not installed ({e})"),
    }
}

#[test]
fn check_runner_shows_the_signer_and_fails_each_bad_signature() {
    let keys = Keys::new();
    let home = AgentHome::new(&format!("[sandbox]\n{}", keys.sandbox_toml(true)));
    let file = home.path().join("d.wasm");
    keys.install_signed(&guest("catpaw_diagnose"), &file);
    let (code, r) = check_runner(&home, &file);
    assert_eq!(code, 0, "{r}");
    let signer = format!("ci (key {})", keys.trusted.2);
    assert_eq!(r["signer"], signer.as_str(), "{r}");
    let detail = signature_step(&r)["detail"].as_str().expect("detail");
    assert_eq!(detail, format!("signed by {signer}"));
    // The text report shows it too.
    let out = home
        .command()
        .arg("check-runner")
        .arg(&file)
        .output()
        .expect("check-runner");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("signature  signed by {signer}")),
        "{text}"
    );
    for bad in BAD {
        keys.install_bad(&guest("catpaw_diagnose"), &file, bad);
        let (code, r) = check_runner(&home, &file);
        assert_eq!(code, 1, "{bad:?}: {r}");
        assert_eq!(r["ok"], false, "{bad:?}");
        let step = signature_step(&r);
        assert_eq!(step["ok"], false, "{bad:?}: {r}");
        let detail = step["detail"].as_str().expect("detail");
        assert!(detail.contains(bad.refusal()), "{bad:?}: {detail}");
        assert!(detail.contains(&file.display().to_string()), "{detail}");
        // Refused before anything is compiled.
        assert!(r["runs"].as_array().expect("runs").is_empty(), "{r}");
    }
}

#[test]
fn without_require_an_unsigned_runner_passes_as_unsigned_and_a_bad_signature_still_fails() {
    let keys = Keys::new();
    let home = AgentHome::new(&format!("[sandbox]\n{}", keys.sandbox_toml(false)));
    let file = home.path().join("d.wasm");
    keys.install_bad(&guest("catpaw_diagnose"), &file, Bad::Unsigned);
    let (code, r) = check_runner(&home, &file);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["signer"], "unsigned");
    for bad in [
        Bad::Tampered,
        Bad::WrongKey,
        Bad::UnknownKey,
        Bad::Malformed,
    ] {
        keys.install_bad(&guest("catpaw_diagnose"), &file, bad);
        let (code, r) = check_runner(&home, &file);
        assert_eq!(code, 1, "{bad:?}: {r}");
        let detail = signature_step(&r)["detail"].as_str().expect("detail");
        assert!(detail.contains(bad.refusal()), "{bad:?}: {detail}");
    }
}

/// An agent whose diagnose runner is `d.wasm` in its home, signatures
/// required; `args` after `--config FILE`.
fn signed_agent(
    server: &TestServer,
    keys: &Keys,
    runner: &Path,
    args: &[&str],
) -> (AgentHome, AgentProcess) {
    let home = AgentHome::new(&agent_toml(server, &keys.sandbox_toml(true)));
    keys.install_signed(runner, &home.path().join("d.wasm"));
    let agent = home.agent().args(args).keep_log().spawn();
    (home, agent)
}

/// The config of [`signed_agent`], `keys` its `[sandbox]` key lines.
fn agent_toml(server: &TestServer, keys: &str) -> String {
    server_toml(
        server,
        Some("t"),
        &format!("[sandbox]\ndiagnose_runner = \"d.wasm\"\n{keys}[log]\nlevel = \"info\"\n"),
    )
}

/// An inspect of cpu; its report (a session error fails the test).
async fn inspect(c: &mut ServerConn, id: &str) -> String {
    assert!(
        c.start_session(id, "inspect", json!({"plugin": "cpu"}))
            .await
            .ok
    );
    let msgs = c.session_until_done(id).await;
    for m in &msgs {
        assert_ne!(m.msg_type, "session_error", "{m:?}");
    }
    let done = msgs
        .last()
        .expect("done")
        .payload
        .clone()
        .unwrap_or_default();
    done["report"].as_str().unwrap_or("").to_string()
}

/// The refused-reload lines of the log that hold `needle`.
fn refusals(agent: &AgentProcess, needle: &str) -> usize {
    agent
        .log()
        .lines()
        .filter(|l| l.contains("runner reload refused") && l.contains(needle))
        .count()
}

/// Waits until `refusals(needle)` reaches `n`.
async fn refused(agent: &AgentProcess, needle: &str, n: usize) {
    let deadline = std::time::Instant::now() + SOON;
    while refusals(agent, needle) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} refused reloads for {needle:?}:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sighup(agent: &AgentProcess) {
    // SAFETY: kill with a pid of a child this test spawned.
    assert_eq!(unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_each_bad_runner_keeps_the_old_and_takes_a_resigned_one() {
    let keys = Keys::new();
    let mut server = TestServer::start().await;
    let (mut home, agent) = signed_agent(&server, &keys, &guest("catpaw_diagnose"), &[]);
    let (mut c, _) = server.accept_registered().await;
    let d = home.path().join("d.wasm");
    let signer = format!("ci (key {})", keys.trusted.2);

    // Provenance in `status` (text and JSON) and in the audit.
    let (code, s, stderr) = home.status_json();
    assert_eq!(code, 0, "{stderr}");
    let diagnose = s["runners"]
        .as_array()
        .expect("runners")
        .iter()
        .find(|r| r["role"] == "diagnose")
        .cloned()
        .expect("diagnose runner");
    assert_eq!(diagnose["signer"], signer.as_str(), "{s}");
    let chat = s["runners"]
        .as_array()
        .expect("runners")
        .iter()
        .find(|r| r["role"] == "chat")
        .cloned()
        .expect("chat runner");
    assert_eq!(chat["signer"], "built-in", "{s}");
    let out = home.command().arg("status").output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("  signer:    {signer}")), "{text}");
    let report = inspect(&mut c, "i0").await;
    assert!(report.contains("# Inspection: cpu"), "{report}");
    let accepted = home
        .audit()
        .into_iter()
        .find(|r| r["event"] == "accepted" && r["session_id"] == "i0")
        .expect("accepted record");
    let sha = common::process::sha256_hex(&std::fs::read(&d).expect("runner"));
    assert_eq!(accepted["runner_sha256"], sha.as_str(), "{accepted}");
    assert_eq!(accepted["runner_signer"], signer.as_str(), "{accepted}");

    let mut seen = std::collections::HashMap::new();
    for (i, bad) in BAD.into_iter().enumerate() {
        keys.install_bad(&guest("hazard_echo"), &d, bad);
        sighup(&agent);
        let n = seen.entry(bad.refusal()).or_insert(0);
        *n += 1;
        refused(&agent, bad.refusal(), *n).await;
        let line = agent
            .log()
            .lines()
            .rfind(|l| l.contains("runner reload refused") && l.contains(bad.refusal()))
            .map(str::to_string)
            .expect("refusal");
        assert!(line.contains("d.wasm"), "{bad:?}: {line}");
        // The old runner serves the next session.
        let report = inspect(&mut c, &format!("i{}", i + 1)).await;
        assert!(report.contains("# Inspection: cpu"), "{bad:?}: {report}");
    }
    // Signed again (by the trusted key): taken.
    keys.install_signed(&guest("hazard_echo"), &d);
    sighup(&agent);
    agent.expect_log_count("runners reloaded", 1, SOON).await;
    let report = inspect(&mut c, "i9").await;
    assert!(report.contains("echo report"), "{report}");
    // The key taken out of runner_keys (a leak): the next reload re-reads
    // the keys and refuses the runner it signed; the one in service stays.
    home.configure(&agent_toml(
        &server,
        &format!(
            "runner_keys = {{ other = \"file:{}\" }}\nrequire_signed_runners = true\n",
            keys.other.0.display()
        ),
    ));
    sighup(&agent);
    let n = seen.entry(Bad::UnknownKey.refusal()).or_insert(0);
    *n += 1;
    refused(&agent, Bad::UnknownKey.refusal(), *n).await;
    let report = inspect(&mut c, "i10").await;
    assert!(report.contains("echo report"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refuses_each_bad_runner_keeps_the_old_and_takes_a_resigned_one() {
    let keys = Keys::new();
    let mut server = TestServer::start().await;
    let (home, agent) = signed_agent(
        &server,
        &keys,
        &guest("catpaw_diagnose"),
        &["run", "--watch"],
    );
    let (mut c, _) = server.accept_registered().await;
    let d = home.path().join("d.wasm");
    let mut seen = std::collections::HashMap::new();
    for (i, bad) in BAD.into_iter().enumerate() {
        keys.install_bad(&guest("hazard_echo"), &d, bad);
        let n = seen.entry(bad.refusal()).or_insert(0);
        *n += 1;
        refused(&agent, bad.refusal(), *n).await;
        let report = inspect(&mut c, &format!("w{i}")).await;
        assert!(report.contains("# Inspection: cpu"), "{bad:?}: {report}");
        // Counted from the last refusal on: a watcher may see a deploy's
        // two files in two looks.
        *n = refusals(&agent, bad.refusal());
    }
    // The last bad state left hazard_echo's own bytes in place under a
    // malformed signature: a new .minisig alone, the runner untouched,
    // is seen and taken.
    let staged = keys.dir.path().join("resigned.wasm");
    std::fs::copy(guest("hazard_echo"), &staged).expect("copy");
    assert_eq!(
        std::fs::read(&staged).expect("staged"),
        std::fs::read(&d).expect("deployed")
    );
    sign(&staged, &keys.trusted.1);
    install_bytes(&std::fs::read(sig_of(&staged)).expect("sig"), &sig_of(&d));
    agent.expect_log_count("runners reloaded", 1, SOON).await;
    let report = inspect(&mut c, "w9").await;
    assert!(report.contains("echo report"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_a_bad_runner_fails_naming_it_and_the_fix() {
    let keys = Keys::new();
    let server = TestServer::start().await;
    for bad in BAD {
        let home = AgentHome::new(&server_toml(
            &server,
            Some("t"),
            &format!(
                "[sandbox]\ndiagnose_runner = \"d.wasm\"\n{}",
                keys.sandbox_toml(true)
            ),
        ));
        let d = home.path().join("d.wasm");
        keys.install_bad(&guest("catpaw_diagnose"), &d, bad);
        let mut agent = home.agent().keep_log().spawn();
        let exit = agent.wait_within(SOON).await;
        let log = agent.log();
        assert_eq!(exit.and_then(|s| s.code()), Some(2), "{bad:?}: {log}");
        assert!(log.contains(bad.refusal()), "{bad:?}: {log}");
        assert!(log.contains(&d.display().to_string()), "{bad:?}: {log}");
    }
}

/// The signing lines of a generated project's README, run as written in
/// the project (the build replaced by a built-in runner at the path the
/// README names), give a runner `check-runner` accepts as signed.
#[test]
fn the_scaffold_readmes_signing_steps_run_as_written() {
    for lang in ["rust", "python"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = common::process::command()
            .current_dir(dir.path())
            .args(["runner", "new", "probe", "--lang", lang])
            .output()
            .expect("runner new");
        assert!(out.status.success(), "{lang}: {out:?}");
        let project = dir.path().join("probe");
        let readme = std::fs::read_to_string(project.join("README.md")).expect("README");
        let steps: Vec<Vec<String>> = readme
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| l.starts_with("catpaw-agent runner "))
            .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
            .collect();
        assert_eq!(steps.len(), 2, "{lang}: keygen and sign in\n{readme}");
        let mut signed = None;
        for args in &steps {
            if args[1] == "sign" {
                let wasm = project.join(&args[2]);
                std::fs::create_dir_all(wasm.parent().expect("dir")).expect("mkdir");
                std::fs::copy(guest("catpaw_diagnose"), &wasm).expect("build stand-in");
                signed = Some(wasm);
            }
            let out = common::process::command()
                .current_dir(&project)
                .args(args)
                .output()
                .expect("step");
            assert!(out.status.success(), "{lang}: {args:?}: {out:?}");
        }
        let wasm = signed.expect("a sign step");
        let home = AgentHome::new(&format!(
            "[sandbox]\nrunner_keys = {{ ci = \"file:{}\" }}\nrequire_signed_runners = true\n",
            project.join("ci.pub").display()
        ));
        let (code, r) = check_runner(&home, &wasm);
        assert_eq!(code, 0, "{lang}: {r}");
        assert!(
            r["signer"]
                .as_str()
                .is_some_and(|s| s.starts_with("ci (key ")),
            "{lang}: {r}"
        );
    }
}
