//! A whole config file (TOML), through what `catpaw-agent config check`
//! does with it: the parse with every problem located, the hygiene
//! warnings, and the effective config it prints.
//!
//! Promises checked: an error names the file; a config that loads prints
//! an effective config that loads again to the same effective config
//! (nothing lost, nothing made up), and that never shows the agent token.
//! (The file checks of `config check` open the paths the config names;
//! they are left out: a fuzzer's paths would reach this machine's files.)
#![no_main]

use catpaw_agent::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/conf.d/config.toml");
    let cfg = match Config::parse(text, path) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.to_string().contains("/fuzz/conf.d/config.toml"), "{e}");
            return;
        }
    };
    let _ = cfg.warnings();
    let shown = cfg.effective();
    let token = &cfg.server.agent_token;
    // (A token written once, and long enough not to be a word of the
    // effective config by chance.)
    if token.len() >= 12 && text.matches(token.as_str()).count() <= 1 {
        assert!(
            !shown.contains(token),
            "the effective config shows the agent token"
        );
    }
    let again = Config::parse(&shown, path)
        .unwrap_or_else(|e| panic!("the effective config does not load: {e}\n{shown}"));
    assert_eq!(
        again.effective(),
        shown,
        "the effective config is not a fixed point"
    );
});
