//! Tests of the command line (`main.rs`): its definition and flags.

use super::*;
use clap::CommandFactory;

#[test]
fn the_cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

/// The unit's `ExecStart` puts `run` last; an operator may as well add
/// flags after it. Both orders mean the same.
#[test]
fn the_agent_flags_are_taken_before_and_after_run() {
    let flags = [
        "--config",
        "c.toml",
        "--runner",
        "r.wasm",
        "--watch",
        "--fuel",
        "5",
        "--max-memory",
        "1MiB",
        "--timeout",
        "3s",
    ];
    let before = [&["catpaw-agent"][..], &flags, &["run"]].concat();
    let after = [&["catpaw-agent", "run"][..], &flags].concat();
    for args in [before, after] {
        let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(matches!(cli.command, Some(Command::Run(_))), "{args:?}");
        assert!(cli.watch(), "{args:?}");
        assert_eq!(cli.config.as_deref(), Some(Path::new("c.toml")));
        assert_eq!(cli.runner.as_deref(), Some(Path::new("r.wasm")));
        let budgets: Vec<_> = cli
            .budgets
            .flags()
            .into_iter()
            .map(|f| (f.key, f.value))
            .collect();
        assert_eq!(
            budgets,
            [("fuel", "5"), ("max_memory", "1MiB"), ("timeout", "3s")]
                .map(|(k, v)| (k, v.to_string()))
        );
    }
    let plain = Cli::try_parse_from(["catpaw-agent", "run"]).expect("run");
    assert!(!plain.watch());
    // `--watch` after another subcommand is an argument error there.
    assert!(Cli::try_parse_from(["catpaw-agent", "status", "--watch"]).is_err());
}
