//! `Config::parse` case by case: defaults, units, each section's keys, their
//! errors and warnings. (Just over 450 lines on purpose: the cases of one
//! parse read best as one table.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::units::{parse_duration, parse_size};
use super::*;
use crate::session::signing::{self, SigningConfig};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml"))
}

#[test]
fn defaults_when_the_file_is_empty() {
    let c = parse("").expect("ok");
    assert_eq!(c.state_dir, PathBuf::from("/etc/catpaw/state.d"));
    assert!(!c.server.enabled);
    assert_eq!(c.server.alert_buffer_size, 1000);
    assert_eq!(c.sandbox.max_concurrent_sessions, 3);
    assert!(!c.sandbox.allow_remote_shell);
    assert_eq!(c.sandbox.budgets, RoleBudgets::default());
    assert_eq!(c.sandbox.max_runner_size, 64 << 20);
    assert!(c.warnings().is_empty());
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("64MiB"), Ok(64 << 20));
    assert_eq!(parse_size("512k"), Ok(512 << 10));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("1MB"), Ok(1_000_000));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert!(parse_size("64XB").is_err());
    assert!(parse_size("MiB").is_err());
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
    assert!(parse_duration("soon").is_err());
    use super::units::format_size;
    assert_eq!(format_size(4 << 30), "4GiB");
    assert_eq!(format_size(1 << 20), "1MiB");
    assert_eq!(format_size(3 << 10), "3KiB");
    assert_eq!(
        (format_size(1500), format_size(0)),
        ("1500".into(), "0".into())
    );
}

#[test]
fn ws_urls_follow_the_protocol() {
    let ok = [
        ("example.com:8080", "ws://example.com:8080/api/v1/agent/ws"),
        ("http://h", "ws://h/api/v1/agent/ws"),
        ("https://h:443/", "wss://h:443/api/v1/agent/ws"),
        ("ws://h?x=1#f", "ws://h/api/v1/agent/ws"),
        ("wss://[::1]:9000", "wss://[::1]:9000/api/v1/agent/ws"),
    ];
    for (a, want) in ok {
        assert_eq!(ws_url(a).as_deref(), Ok(want), "{a}");
    }
    for bad in ["ftp://h", "http://h/api", "", "http://"] {
        assert!(ws_url(bad).is_err(), "{bad}");
    }
    assert!(ws_url("ftp://h").unwrap_err().contains("scheme `ftp`"));
}

#[test]
fn bad_values_name_the_file_and_field() {
    let e = parse("[sandbox]\nmax_memory = \"64XB\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("config.toml") && e.contains("[sandbox] max_memory") && e.contains("64XB"),
        "{e}"
    );
    let e = parse("[server]\nenabled = true\naddress = \"ftp://x\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("[server] address") && e.contains("ftp"), "{e}");
    let e = parse("[sandbox]\nbogus = 1").unwrap_err().to_string();
    assert!(e.contains("bogus"), "{e}");
    let e = parse("[sandbox]\nmax_concurrent_sessions = 0")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_concurrent_sessions"), "{e}");
    let e = parse("[sandbox]\nmax_concurrent_sessions = 4294967296")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_concurrent_sessions") && e.contains("more than 100000"),
        "{e}"
    );
    let e = parse("[log]\nlevel = \"loud\"").unwrap_err().to_string();
    assert!(e.contains("[log] level"), "{e}");
    let sized = |v: &str| parse(&format!("[sandbox]\nmax_runner_size = {v}"));
    assert_eq!(
        sized("\"8MiB\"").expect("8MiB").sandbox.max_runner_size,
        8 << 20
    );
    for (bad, says) in [
        ("\"2GiB\"", "outside 1MiB..1GiB"),
        ("\"lots\"", "not a size"),
    ] {
        let e = sized(bad).unwrap_err().to_string();
        assert!(
            e.contains("[sandbox] max_runner_size") && e.contains(says),
            "{e}"
        );
    }
}

#[test]
fn per_role_overrides_apply() {
    let c = parse(
        "[sandbox]\nfuel = 5\ntimeout = \"10s\"\n[sandbox.chat]\nfuel = 7\nmax_memory = \"32MiB\"",
    )
    .expect("ok");
    assert_eq!(c.sandbox.budgets.diagnose.fuel, 5);
    let chat = &c.sandbox.budgets.chat;
    assert_eq!(chat.fuel, 7);
    assert_eq!(chat.max_memory, 32 << 20);
    assert_eq!(chat.timeout, Duration::from_secs(10));
}

#[test]
fn every_budget_can_be_overridden_per_role() {
    let c = parse(
        "[sandbox]\nguest_stdio = \"4KiB\"\nshell_timeout = \"5s\"\n\
         [sandbox.diagnose]\nshell_output = 1024\n[sandbox.chat]\nguest_stdio = 100",
    )
    .expect("ok");
    let RoleBudgets { diagnose, chat } = &c.sandbox.budgets;
    assert_eq!((diagnose.guest_stdio, chat.guest_stdio), (4096, 100));
    assert_eq!(diagnose.shell_timeout, Duration::from_secs(5));
    assert_eq!(chat.shell_timeout, Duration::from_secs(5));
    assert_eq!((diagnose.shell_output, chat.shell_output), (1024, 64 << 10));
    let e = parse("[sandbox.chat]\nallow_remote_shell = true")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`[sandbox.chat] allow_remote_shell`") && e.contains("unknown key"),
        "{e}"
    );
}

#[test]
fn host_call_budget_defaults_overrides_and_validation() {
    let c = parse("").expect("ok");
    assert_eq!(c.sandbox.budgets.diagnose.max_host_calls, 256);
    let c =
        parse("[sandbox]\nmax_host_calls = 40\n[sandbox.chat]\nmax_host_calls = 8").expect("ok");
    assert_eq!(c.sandbox.budgets.diagnose.max_host_calls, 40);
    assert_eq!(c.sandbox.budgets.chat.max_host_calls, 8);
    assert!(c.warnings().is_empty());
    for (bad, field) in [
        ("[sandbox]\nmax_host_calls = 0", "[sandbox] max_host_calls"),
        (
            "[sandbox.chat]\nmax_tool_calls = -3",
            "[sandbox.chat] max_tool_calls",
        ),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains("greater than 0"), "{e}");
    }
    let e = parse("[sandbox]\nfuel = -1").unwrap_err().to_string();
    assert!(e.contains("[sandbox] fuel"), "{e}");
}

#[test]
fn the_old_tool_call_key_still_works_with_one_warning() {
    let c =
        parse("[sandbox]\nmax_tool_calls = 40\n[sandbox.chat]\nmax_tool_calls = 8").expect("ok");
    assert_eq!(c.sandbox.budgets.diagnose.max_host_calls, 40);
    assert_eq!(c.sandbox.budgets.chat.max_host_calls, 8);
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("`max_tool_calls`")
            && w[0].contains("[sandbox], [sandbox.chat]")
            && w[0].contains("rename it to `max_host_calls`"),
        "{}",
        w[0]
    );
    let e = parse("[sandbox.diagnose]\nmax_tool_calls = 4\nmax_host_calls = 5")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`[sandbox.diagnose] max_tool_calls`")
            && e.contains("keep only `max_host_calls`"),
        "{e}"
    );
    // Old key in one section, new key in another: two layers, no conflict.
    let c = parse("[sandbox]\nmax_tool_calls = 4\n[sandbox.chat]\nmax_host_calls = 5").expect("ok");
    assert_eq!(c.sandbox.budgets.chat.max_host_calls, 5);
}

#[test]
fn file_and_command_line_budgets_pass_one_check_with_one_message() {
    let flag = |key, value: &str| BudgetFlag {
        key,
        value: value.to_string(),
    };
    // (file section body, flag, the message both must give)
    let cases = [
        (
            "max_memory = 100",
            flag("max_memory", "100"),
            "100 bytes is outside 1MiB..4GiB",
        ),
        (
            "max_memory = \"5GiB\"",
            flag("max_memory", "5GiB"),
            "5368709120 bytes is outside 1MiB..4GiB",
        ),
        (
            "max_memory = \"lots\"",
            flag("max_memory", "lots"),
            "\"lots\" is not a size",
        ),
        ("fuel = 0", flag("fuel", "0"), "0 must be greater than 0"),
        (
            "timeout = \"0s\"",
            flag("timeout", "0s"),
            "must be greater than 0",
        ),
        (
            "timeout = \"soon\"",
            flag("timeout", "soon"),
            "\"soon\" is not a duration",
        ),
    ];
    for (body, flag, words) in cases {
        let key = flag.key;
        let e = parse(&format!("[sandbox.chat]\n{body}"))
            .expect_err(body)
            .to_string();
        // The key's line and column follow the file's name.
        let want =
            format!("config /etc/catpaw/conf.d/config.toml:2:1 `[sandbox.chat] {key}`: {words}");
        assert!(e.starts_with(&want), "{e}\nwant {want}");
        let e = RoleBudgets::default()
            .with_flags(&[flag])
            .expect_err(body)
            .to_string();
        let want = format!("command line `--{}`: {words}", key.replace('_', "-"));
        assert!(e.starts_with(&want), "{e}\nwant {want}");
    }
}

#[test]
fn command_line_budgets_beat_the_file_for_both_roles() {
    let c = parse("[sandbox]\nfuel = 5\n[sandbox.chat]\nfuel = 7\ntimeout = \"9s\"").expect("ok");
    let flags = [
        BudgetFlag {
            key: "fuel",
            value: "1000".into(),
        },
        BudgetFlag {
            key: "max_memory",
            value: "32MiB".into(),
        },
    ];
    let b = c.sandbox.budgets.with_flags(&flags).expect("ok");
    assert_eq!((b.diagnose.fuel, b.chat.fuel), (1000, 1000));
    assert_eq!(
        (b.diagnose.max_memory, b.chat.max_memory),
        (32 << 20, 32 << 20)
    );
    assert_eq!(b.chat.timeout, Duration::from_secs(9));
    assert_eq!(
        c.sandbox.budgets.with_flags(&[]).expect("ok"),
        c.sandbox.budgets
    );
}

#[test]
fn a_root_agent_with_remote_shells_needs_a_shell_user() {
    assert!(shell_user_rule(true, None, true).is_err());
    assert!(shell_user_rule(true, Some("nobody"), true).is_ok());
    assert!(shell_user_rule(true, None, false).is_ok());
    assert!(shell_user_rule(false, None, true).is_ok());
    assert!(shell_user_rule(true, Some("root"), true).is_err());
    if unsafe { libc::geteuid() } == 0 {
        let e = parse("[sandbox]\nallow_remote_shell = true\n").expect_err("root needs shell_user");
        assert!(e.to_string().contains("[sandbox] shell_user"), "{e}");
    }
    let c = parse("[sandbox]\nallow_remote_shell = true\nshell_user = \"nobody\"\n").expect("ok");
    assert_eq!(c.sandbox.shell_user.as_deref(), Some("nobody"));
}

#[test]
fn audit_rotation_settings() {
    let c = parse("").expect("defaults");
    assert_eq!(c.audit.max_size, 64 << 20);
    assert_eq!(c.audit.keep, 5);
    assert!(c.audit.append_only);
    let c = parse("[audit]\nmax_size = \"1MiB\"\nkeep = 2\nappend_only = false\n").expect("ok");
    assert_eq!(
        (c.audit.max_size, c.audit.keep, c.audit.append_only),
        (1 << 20, 2, false)
    );
    assert!(parse("[audit]\nkeep = 0\n").is_err());
    assert!(parse("[audit]\nmax_size = 100\n").is_err());
}

#[test]
fn env_values_are_expanded() {
    // SAFETY: test-only env mutation with a name unique to this test.
    unsafe { std::env::set_var("CATPAW_TEST_TOKEN_7731", "s3cret") };
    let c = parse("[server]\nagent_token = \"${CATPAW_TEST_TOKEN_7731}\"").expect("ok");
    assert_eq!(c.server.agent_token, "s3cret");
    let e = parse("[server]\nagent_token = \"${CATPAW_TEST_UNSET_7731}\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("CATPAW_TEST_UNSET_7731"), "{e}");
}

#[test]
fn signing_section_defaults() {
    let vector_key = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";
    let keys = format!("keys = {{ \"ops-1\" = \"{vector_key}\" }}");
    // (section body, require, max_skew seconds, key ids)
    let cases = [
        (String::new(), false, 300, vec![]),
        (keys.clone(), true, 300, vec!["ops-1"]),
        (
            format!("{keys}\nrequire = false"),
            false,
            300,
            vec!["ops-1"],
        ),
        (
            format!("{keys}\nmax_skew = \"2m\""),
            true,
            120,
            vec!["ops-1"],
        ),
        (format!("{keys}\nmax_skew = 60"), true, 60, vec!["ops-1"]),
        ("max_skew = \"24h\"".into(), false, 86400, vec![]),
    ];
    for (body, require, skew, ids) in cases {
        let c = parse(&format!("[server.signing]\n{body}")).expect(&body);
        let s = &c.server.signing;
        assert_eq!(s.require, require, "{body}");
        assert_eq!(s.max_skew, Duration::from_secs(skew), "{body}");
        assert_eq!(s.keys.keys().collect::<Vec<_>>(), ids, "{body}");
    }
    let c = parse(&format!("[server.signing]\n{keys}")).expect("ok");
    assert_eq!(
        c.server.signing.keys["ops-1"],
        signing::parse_public_key(vector_key).expect("vector key")
    );
    assert_eq!(
        parse("").expect("ok").server.signing,
        SigningConfig::default()
    );
}

#[test]
fn signing_section_errors_name_the_field() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let key = |v: &str| format!("keys = {{ \"ops-1\" = \"{v}\" }}");
    let good = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=";
    // (section body, field named, words in the message)
    let cases = [
        (key("not base64!"), "[server.signing] keys.ops-1", "base64"),
        (
            key(good.trim_end_matches('=')),
            "[server.signing] keys.ops-1",
            "base64",
        ),
        (
            key(&b64(&[9; 31])),
            "[server.signing] keys.ops-1",
            "31 bytes",
        ),
        (key(&b64(&identity)), "[server.signing] keys.ops-1", "weak"),
        (
            format!("keys = {{ \"\" = \"{good}\" }}"),
            "[server.signing] keys.",
            "non-empty",
        ),
        (
            "require = true".into(),
            "[server.signing] require",
            "no keys",
        ),
        (
            format!("{}\nmax_skew = \"0s\"", key(good)),
            "[server.signing] max_skew",
            "1s..24h",
        ),
        (
            format!("{}\nmax_skew = \"25h\"", key(good)),
            "[server.signing] max_skew",
            "1s..24h",
        ),
        (
            format!("{}\nmax_skew = \"1500ms\"", key(good)),
            "[server.signing] max_skew",
            "whole number",
        ),
        (
            format!("{}\nmax_skew = \"soon\"", key(good)),
            "[server.signing] max_skew",
            "soon",
        ),
        ("bogus = 1".into(), "", "bogus"),
    ];
    for (body, field, words) in cases {
        let e = parse(&format!("[server.signing]\n{body}"))
            .expect_err(&body)
            .to_string();
        assert!(
            e.contains("config.toml") && e.contains(field) && e.contains(words),
            "{body}: {e}"
        );
    }
}

#[test]
fn agent_id_is_created_kept_and_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = StatePaths::new(dir.path());
    let a = paths.load_or_create_agent_id().expect("create");
    let b = paths.load_or_create_agent_id().expect("reuse");
    assert_eq!(a, b);
    std::fs::write(dir.path().join("agent_id"), "garbage").expect("write");
    let c = paths.load_or_create_agent_id().expect("repair");
    assert_ne!(a, c);
    let text = std::fs::read_to_string(dir.path().join("agent_id")).expect("read");
    assert_eq!(text, format!("{c}\n"));
}

#[test]
fn global_labels_as_the_reference_spells_them() {
    let c = parse(
        "[global.labels]\nfrom_hostname = \"${HOSTNAME}\"\nfrom_hostip = \"${IP}\"\nteam = \"db\"\n",
    )
    .expect("ok");
    assert_eq!(
        c.labels["from_hostname"], "${HOSTNAME}",
        "kept for register"
    );
    assert_eq!(c.labels["team"], "db");
    assert!(c.warnings().is_empty());

    let c = parse("labels = { team = \"db\" }\n").expect("older spelling");
    assert_eq!(c.labels["team"], "db");
    assert!(
        c.warnings().iter().any(|w| w.contains("[global.labels]")),
        "{:?}",
        c.warnings()
    );

    let e = parse("labels = { a = \"b\" }\n[global.labels]\nc = \"d\"\n").expect_err("twice");
    assert!(e.to_string().contains("`labels`"), "{e}");
    let e = parse("[global.labels]\nwhere = \"${CATPAW_SURELY_UNSET_VAR}\"\n").expect_err("unset");
    let msg = e.to_string();
    assert!(msg.contains("[global.labels] where"), "{msg}");
    assert!(msg.contains("CATPAW_SURELY_UNSET_VAR"), "{msg}");
    // catpaw's collection interval means nothing here: one warning, no error.
    let c = parse("[global]\ninterval = \"30s\"\n").expect("catpaw's key");
    assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
    assert!(c.warnings()[0].contains("`[global] interval`"));
    // A key catpaw does not have either is refused, named with its place.
    let e = parse("[global]\nintervall = \"30s\"\n").expect_err("unknown");
    assert!(
        e.to_string()
            .contains("config.toml:2:1 `[global] intervall`: unknown field"),
        "{e}"
    );
}
