//! `[sandbox] runner_keys` and `require_signed_runners`, through
//! `Config::parse`: each way to give a key, and each error at its place.

use std::path::Path;

use crate::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml"))
}

/// The key the real minisign made `tests/fixtures/minisign` with.
const FIXTURE_KEY: &str = "RWRoKG0rba9qx6xPRN8R+vrD22rLWiO4VNa+Z1bGPpy7lUM7Bqz1dVoU";

#[test]
fn runner_keys_are_read_inline_whole_or_from_a_file() {
    let c = parse("").expect("ok");
    assert!(!c.sandbox.runner_trust.require(), "off unless asked");
    assert!(c.sandbox.runner_trust.key_ids().is_empty());
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minisign/minisign.pub"
    );
    let whole = std::fs::read_to_string(fixture).expect("pub");
    let cases = [
        format!("runner_keys = {{ ci = \"{FIXTURE_KEY}\" }}"),
        format!("runner_keys = {{ ci = '''{whole}''' }}"),
        format!("runner_keys = {{ ci = \"file:{fixture}\" }}"),
        format!("[sandbox.runner_keys]\nci = \"{FIXTURE_KEY}\""),
    ];
    for body in cases {
        let c = parse(&format!("[sandbox]\nrequire_signed_runners = true\n{body}")).expect(&body);
        let t = &c.sandbox.runner_trust;
        assert!(t.require(), "{body}");
        assert_eq!(
            t.key_ids(),
            vec![("ci".to_string(), "C76AAF6D2B6D2868".to_string())],
            "{body}"
        );
    }
}

#[test]
fn runner_key_errors_name_the_file_line_column_and_key() {
    let cases = [
        (
            "[sandbox]\nrunner_keys = { ci = \"RWQnope\" }".to_string(),
            "config.toml:2:17 `[sandbox.runner_keys] ci`",
            "not a minisign public key",
        ),
        (
            "[sandbox]\nrunner_keys = { ci = \"file:/nonexistent/ci.pub\" }".into(),
            "config.toml:2:17 `[sandbox.runner_keys] ci`",
            "/nonexistent/ci.pub",
        ),
        (
            format!("[sandbox]\nrunner_keys = {{ a = \"{FIXTURE_KEY}\", b = \"{FIXTURE_KEY}\" }}"),
            "`[sandbox.runner_keys] b`",
            "already trusted as `a`",
        ),
        (
            "[sandbox]\nrequire_signed_runners = true".into(),
            "config.toml:2:1 `[sandbox] require_signed_runners`",
            "names no key",
        ),
    ];
    for (body, at, words) in cases {
        let e = parse(&body).expect_err(&body).to_string();
        assert!(e.contains(at) && e.contains(words), "{body}: {e}");
        // Every one at its line and column.
        assert!(
            e.starts_with("config /etc/catpaw/conf.d/config.toml:2:"),
            "{e}"
        );
    }
}
