//! `catpaw-agent manpage`: one complete page, catpaw-agent(1).
//!
//! clap_mangen renders a page per command and, in the top page, points to
//! `catpaw-agent-run(1)` and the like, which nobody installs. Here the
//! subcommands are rendered inline instead (COMMANDS, each with its own
//! options), so the page refers to no other page, and the sections an
//! operator looks for that clap cannot know are added: EXIT STATUS,
//! SIGNALS and FILES, written from what `main.rs`, `serve.rs`, `reload.rs`
//! and [`StatePaths`] do.

use std::io::Write;
use std::path::PathBuf;

use roff::{Roff, bold, italic, roman};

use crate::config::{DEFAULT_PATH, StatePaths, UNIT_ENV_FILE};

/// The config file of the shipped systemd unit (`--config` in its
/// `ExecStart`).
pub const UNIT_CONFIG_FILE: &str = "/etc/catpaw-agent/config.toml";

/// The state dir of the shipped systemd unit (its `StateDirectory=`).
pub const UNIT_STATE_DIR: &str = "/var/lib/catpaw-agent";

/// Writes the page for `cmd` (the binary's whole clap definition, not yet
/// built) to `out`.
pub fn render(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone().disable_help_subcommand(true));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    let mut page = Roff::new();
    page.control("SH", ["COMMANDS"]);
    page.text([roman(
        "The options above are taken before or after the command; without a command, \
         the agent runs (as with run).",
    )]);
    commands(&mut page, "catpaw-agent", &cmd);
    exit_status(&mut page);
    signals(&mut page);
    files(&mut page);
    page.to_writer(out)?;
    man.render_version_section(out)
}

/// A `.TP` entry: `tag` in bold, then `text`.
fn entry(page: &mut Roff, tag: &str, text: &str) {
    page.control("TP", []).text([bold(tag)]).text([roman(text)]);
}

/// One `.SS` per subcommand of `cmd` (depth first), with its description
/// and the arguments it defines itself: the global ones are in OPTIONS.
fn commands(page: &mut Roff, prefix: &str, cmd: &clap::Command) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{prefix} {}", sub.get_name());
        page.control("SS", [name.as_str()]);
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        page.text([roman(about)]);
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
        {
            let mut tag = vec![];
            if let Some(long) = arg.get_long() {
                tag.push(bold(format!("--{long}")));
            }
            let values = arg.get_value_names().map(|v| v.join(" "));
            let takes_value = arg.get_action().takes_values();
            match (values, arg.get_long()) {
                (Some(v), Some(_)) if takes_value => tag.push(italic(format!(" {v}"))),
                (None, Some(_)) if takes_value => {
                    tag.push(italic(format!(" {}", arg.get_id().as_str().to_uppercase())))
                }
                (Some(v), None) => tag.push(italic(v)),
                (None, None) => tag.push(italic(arg.get_id().as_str().to_uppercase())),
                _ => {}
            }
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            let help = if values.is_empty() || !takes_value {
                help
            } else {
                format!("{help} One of: {}.", values.join(", "))
            };
            page.control("TP", []).text(tag).text([roman(help)]);
        }
        commands(page, &name, sub);
    }
}

fn exit_status(page: &mut Roff) {
    page.control("SH", ["EXIT STATUS"]);
    entry(
        page,
        "0",
        "Success. The agent (run) exits 0 after SIGTERM or SIGINT once its sessions are \
         cancelled and the connection is closed.",
    );
    entry(
        page,
        "1",
        "The command ran and its answer is no: session, the session failed; alert, an \
         event was refused; audit verify, the hash chain is broken (the first bad line is \
         printed); check-runner, a check failed (or, with --recordings, a recording did \
         not replay identical); status, no agent answers on the state dir's status \
         socket; replay, the replay differs (with --suite: some recording differs).",
    );
    entry(
        page,
        "2",
        "The command could not run: a usage error, a config that is not valid (config \
         check names the file and the field), a runner that does not load at start, a \
         state dir another agent holds, a recording that cannot be used (play and replay: \
         changed after it was sealed, \"hash mismatch\"; replay: unsealed, unknown format, \
         runner missing; replay --suite: some recording could not replay, or none in the \
         directory), or any other error, printed on stderr.",
    );
}

fn signals(page: &mut Roff) {
    page.control("SH", ["SIGNALS"]);
    entry(
        page,
        "SIGHUP",
        "The agent re-reads the config file for the runner paths and the [sandbox] budgets \
         (budget options still win) and reloads the runner files. Running sessions finish \
         on the runner they started with; a runner that does not load is refused, logged, \
         and the old one keeps serving. With --watch or [sandbox] watch_runners = true the \
         same reload also follows every change of a runner file.",
    );
    entry(
        page,
        "SIGTERM, SIGINT",
        "The agent cancels its sessions, sends their final messages, closes the connection \
         with a normal close frame and exits 0.",
    );
}

fn files(page: &mut Roff) {
    page.control("SH", ["FILES"]);
    entry(
        page,
        DEFAULT_PATH,
        "The config file when --config is not given, relative to the working directory; \
         a missing default means all defaults (and no server for run to connect to). Relative paths in a config resolve against \
         its directory, or that directory's parent when it is named conf.d.",
    );
    entry(
        page,
        UNIT_CONFIG_FILE,
        "The config of the systemd unit (packaging/catpaw-agent.service), mode 0640, owner \
         root, group catpaw.",
    );
    entry(
        page,
        UNIT_ENV_FILE,
        "The environment file the unit loads (EnvironmentFile=), mode 0600, owner root: \
         CATPAW_TOKEN=... for agent_token = \"${CATPAW_TOKEN}\" in the config.",
    );
    let state = StatePaths::new("STATE_DIR");
    let trail = state.audit_trail();
    entry(
        page,
        &state.root().display().to_string(),
        &format!(
            "[state_dir]: by default state.d in the directory relative paths resolve \
             against; {UNIT_STATE_DIR} under the unit. The agent keeps the files below in it."
        ),
    );
    let layout: [(PathBuf, &str); 10] = [
        (
            state.agent_id(),
            "This agent's UUID, created at first start.",
        ),
        (
            trail.clone(),
            "The audit trail, one hash-chained JSON record per line, mode 0600; rotated to \
             audit.jsonl.1 and on ([audit] keep).",
        ),
        (
            trail.with_extension("head"),
            "The audit chain's head as the last writer left it.",
        ),
        (state.compile_cache(), "Precompiled runner components."),
        (
            state.ingest_socket(),
            "The local alert socket (catpaw-agent alert), mode 0600.",
        ),
        (
            state.status_socket(),
            "The socket catpaw-agent status asks, mode 0600.",
        ),
        (
            state.llm_daily_tokens(),
            "LLM tokens used today, for [ai] daily_token_limit.",
        ),
        (
            state.replay_nonces(),
            "Signed messages accepted within the replay window, kept across restarts.",
        ),
        (
            state.root().join("recordings"),
            "One recording per session (mode 0600, the directory 0700), unless [recorder] \
             dir names another; bounded by [recorder] max_total and keep_days. Read by play \
             and replay.",
        ),
        (
            state.agent_lock(),
            "Held by the one agent serving this state dir; a second agent exits 2.",
        ),
    ];
    for (path, what) in layout {
        entry(page, &path.display().to_string(), what);
    }
}
