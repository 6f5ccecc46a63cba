//! catpaw-agent command line: parses arguments, builds the configuration,
//! and hands over to the library.
//!
//! (Just over 450 lines on purpose: this file is the whole clap surface,
//! every subcommand's arguments and its one-line dispatch into `cli::`,
//! which the man page and shell completions are generated from; the work
//! behind each command lives in `src/cli/`.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use catpaw_agent::cli::session::{LocalOutcome, LocalSession, run_local};
use catpaw_agent::cli::{ops, setup};
use catpaw_agent::config::{BudgetFlag, Config};

/// catpaw agent whose remote diagnosis sessions run in a WebAssembly sandbox.
#[derive(Debug, Parser)]
#[command(name = "catpaw-agent", version, about)]
struct Cli {
    /// Config file (default conf.d/config.toml; missing default = all defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Runner component that replaces the built-in ones (for the roles it
    /// serves).
    #[arg(long, global = true)]
    runner: Option<PathBuf>,
    /// Reload the runner files when they change (the agent; SIGHUP always
    /// reloads). Same as `[sandbox] watch_runners = true`.
    #[arg(long)]
    watch: bool,
    /// Session budgets for `run` (the default) and `session`.
    #[command(flatten)]
    budgets: BudgetArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// `--watch`, given before `run` or after it.
    fn watch(&self) -> bool {
        self.watch || matches!(&self.command, Some(Command::Run(r)) if r.watch)
    }
}

/// Session budgets that beat the config file's. Taken as text: the config
/// funnel parses and checks them by the same rules as the file's values.
#[derive(Debug, Default, clap::Args)]
struct BudgetArgs {
    /// Fuel per run / chat turn (overrides the config).
    #[arg(long, global = true, value_name = "N")]
    fuel: Option<String>,
    /// Linear-memory cap, e.g. 64MiB (overrides the config).
    #[arg(long, global = true, value_name = "SIZE")]
    max_memory: Option<String>,
    /// Wall-clock limit per run / chat turn, e.g. 30s (overrides the config).
    #[arg(long, global = true, value_name = "DURATION")]
    timeout: Option<String>,
}

impl BudgetArgs {
    /// The flags given, by config key.
    fn flags(&self) -> Vec<BudgetFlag> {
        [
            ("fuel", &self.fuel),
            ("max_memory", &self.max_memory),
            ("timeout", &self.timeout),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            Some(BudgetFlag {
                key,
                value: value.clone()?,
            })
        })
        .collect()
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect to catpaw-server and serve sessions (the default).
    Run(RunArgs),
    /// Run the whole product locally: a loopback server, a real agent, and
    /// an inspect, a diagnose and a two-turn chat in the sandbox.
    Demo,
    /// Run one session locally in the sandbox, without a server.
    Session(SessionArgs),
    /// Push alert events to the running agent's local socket.
    Alert(AlertArgs),
    /// Work with the audit trail in the state dir.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check a runner component: does it load, what it serves, and a run
    /// of each role under the default limits (lowered by any matching
    /// `[sandbox.policy.*]`) with its receipt. Exit 0 only
    /// when everything passes. The compiled code is kept in the state
    /// dir's compile cache, so a second check of the same file is quick.
    CheckRunner(CheckArgs),
    /// Work with runner projects.
    #[command(subcommand)]
    Runner(RunnerCommand),
    /// Check the config file, or print a commented example.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve the sandboxed read-only tools, and inspect / diagnose
    /// sessions, to an MCP client: over stdin/stdout (the client starts
    /// this command), or streamable HTTP with --http. No shell; every call
    /// is audited with the client's name.
    Mcp(McpArgs),
    /// Ask the running agent (same state_dir) what it is doing.
    Status(StatusArgs),
    /// Show a recorded session as it streamed: tool calls and results,
    /// shell commands and output, model turns, deltas at their offsets,
    /// the report, the receipt. A changed recording exits 2 (hash
    /// mismatch); one without a seal (a crash's prefix) is shown and said
    /// to be unsealed.
    Play(PlayArgs),
    /// Re-execute a recorded session with every import answered from its
    /// recording (no tool, shell, model or clock of this host is touched):
    /// the recorded runner (built in) or --runner. Exit 0 identical, 1
    /// differs, 2 could not replay (tampered, unknown format, runner
    /// missing).
    Replay(ReplayArgs),
    /// Print a shell completion script, e.g. `catpaw-agent completions bash`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): the whole CLI on one page, with exit
    /// status, signals and files.
    Manpage,
}

/// The agent's own flags after `run` (`catpaw-agent run --watch`, as the
/// systemd unit's `ExecStart` spells it). `--config`, `--runner` and the
/// budget flags are global, so they are taken on either side of `run`;
/// `--watch` means something to the agent only, so it is defined here and
/// before the subcommand, and nowhere else.
#[derive(Debug, Default, clap::Args)]
struct RunArgs {
    /// Reload the runner files when they change (SIGHUP always reloads).
    /// Same as `[sandbox] watch_runners = true`.
    #[arg(long)]
    watch: bool,
}

#[derive(Debug, Subcommand)]
enum RunnerCommand {
    /// Create a runner project NAME in the current directory that builds
    /// as generated and passes check-runner.
    New {
        /// Project (and component) name: lowercase letters, digits, - and _.
        name: String,
        /// Language of the runner.
        #[arg(long, value_enum)]
        lang: catpaw_agent::cli::scaffold::Lang,
    },
    /// Make a key pair for signing runners, in minisign's format: NAME.pub
    /// (for `[sandbox] runner_keys`) and NAME.key (the secret key,
    /// unencrypted so a build can sign unattended). Both files are mode
    /// 0600 and never written over an existing file.
    Keygen {
        /// Directory the two files go to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// File name of the pair (NAME.pub, NAME.key).
        #[arg(long, default_value = "runner")]
        name: String,
        /// Write the public key here instead (with --secret).
        #[arg(long, requires = "secret", conflicts_with_all = ["out", "name"])]
        public: Option<PathBuf>,
        /// Write the secret key here instead (with --public).
        #[arg(long, requires = "public")]
        secret: Option<PathBuf>,
    },
    /// Sign a runner file: writes FILE.minisig, which `minisign -V` also
    /// checks. The key must be unencrypted (`runner keygen`, or
    /// `minisign -G -W`).
    Sign {
        /// The runner component (.wasm).
        file: PathBuf,
        /// The secret key (`runner keygen`'s NAME.key, or minisign's).
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The runner component (.wasm).
    file: PathBuf,
    /// Also replay every recording (*.jsonl) in DIR against the runner
    /// (as `replay --suite`); the check passes only when each replays
    /// identical.
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the config and print the effective config (defaults shown,
    /// secrets redacted): exit 0 when good, 2 with the field named when not.
    Check {
        /// Print only warnings and errors: nothing at all for a good config
        /// that draws no warning (for the unit's `ExecStartPre`).
        #[arg(long)]
        quiet: bool,
    },
    /// Print a commented config with every key at its default.
    Example,
}

#[derive(Debug, clap::Args)]
struct McpArgs {
    /// Serve streamable HTTP on ADDR (e.g. 127.0.0.1:8765) at /mcp instead
    /// of stdio. Needs a bearer token: --token-file, or CATPAW_MCP_TOKEN.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// File whose first line is the bearer token HTTP clients must send
    /// (at least 16 characters). Without it, CATPAW_MCP_TOKEN is read.
    #[arg(long, value_name = "FILE", requires = "http")]
    token_file: Option<PathBuf>,
    /// Let --http listen on an address that is not loopback.
    #[arg(long, requires = "http")]
    allow_non_loopback: bool,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// A recording file, or a session id (its newest recording in the
    /// recordings directory).
    #[arg(
        value_name = "ID|FILE",
        required_unless_present = "suite",
        conflicts_with = "suite"
    )]
    recording: Option<String>,
    /// Replay every recording (*.jsonl) in DIR against --runner (without
    /// it, each against the built-in runner it recorded), print a table
    /// (recording, type, verdict, detail) and a summary: exit 0 all
    /// identical, 1 some differ, 2 some could not replay.
    #[arg(long, value_name = "DIR")]
    suite: Option<PathBuf>,
    /// With --suite: also write the results as JUnit XML to FILE (one
    /// testcase per recording; a difference is a failure, a recording that
    /// could not replay an error).
    #[arg(long, value_name = "FILE", requires = "suite")]
    junit: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct PlayArgs {
    /// A session id (its newest recording in the recordings dir) or a
    /// recording's path.
    #[arg(value_name = "ID|FILE")]
    recording: String,
    /// Play N times as fast as it happened (e.g. 4, or 0.5).
    #[arg(long, value_name = "N", value_parser = parse_speed, conflicts_with = "no_wait")]
    speed: Option<f64>,
    /// Print everything at once.
    #[arg(long)]
    no_wait: bool,
    /// Print the recorded lines as they are, one JSON object a line (notes
    /// on the recording go to stderr).
    #[arg(long)]
    json: bool,
}

/// `--speed`: a finite number above 0.
fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a speed (a number above 0, e.g. 2 or 0.5)"
        )),
    }
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain (rotated files included): prints the
    /// record count (exit 0) or the first line where it breaks (exit 1).
    Verify,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct AlertArgs {
    /// One event as a JSON object.
    #[arg(long)]
    json: Option<String>,
    /// A file of newline-delimited JSON events, or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    json_lines: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct SessionArgs {
    /// Session type: inspect, diagnose or chat.
    #[arg(long = "type", value_parser = ["inspect", "diagnose", "chat"])]
    session_type: String,
    /// Session parameter KEY=VALUE (repeatable), e.g. plugin=mem.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Let the runner run shell commands.
    #[arg(long)]
    allow_shell: bool,
    /// Print the session_output / session_error payloads as JSON lines.
    #[arg(long)]
    json: bool,
}

/// `KEY=VALUE` → a JSON param. `true`/`false` and integers become JSON
/// booleans and numbers (so `allow_shell=true` and `count=5` mean what they
/// say); everything else is a string.
fn parse_params(raw: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut params = Map::new();
    for p in raw {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?}: expected KEY=VALUE"))?;
        if k.is_empty() {
            anyhow::bail!("--param {p:?}: the key is empty");
        }
        let value = match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.to_string())),
        };
        params.insert(k.to_string(), value);
    }
    Ok(params)
}

fn init_logging(cfg: Option<&Config>) {
    let level = cfg.map_or("warn", |c| c.log.level.as_str());
    let json = cfg.is_some_and(|c| c.log.format == "json");
    catpaw_agent::cli::logging::init(level, json);
}

async fn session(cli: &Cli, args: &SessionArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    // The append-only attribute protects the agent's trail; a local harness
    // run (often in a scratch dir) does not add it.
    cfg.audit.append_only = false;
    let setup = setup::build(&cfg, cli.runner.as_deref(), &cli.budgets.flags(), 1)?;
    let outcome = run_local(
        setup.runners.clone(),
        LocalSession {
            session_type: args.session_type.clone(),
            params: parse_params(&args.params)?,
            allow_shell: args.allow_shell,
            json: args.json,
        },
    )
    .await?;
    Ok(match outcome {
        LocalOutcome::Ok => ExitCode::SUCCESS,
        LocalOutcome::Failed(code, error) => {
            eprintln!("catpaw-agent: session failed ({code}): {error}");
            ExitCode::from(1)
        }
    })
}

async fn run_agent(cli: &Cli) -> anyhow::Result<ExitCode> {
    catpaw_agent::cli::serve::run(catpaw_agent::cli::serve::ServeArgs {
        config: cli.config.clone(),
        runner: cli.runner.clone(),
        flags: cli.budgets.flags(),
        watch: cli.watch(),
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn alert(cli: &Cli, args: &AlertArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(cli.config.as_deref())?;
    let lines: Vec<String> = match (&args.json, &args.json_lines) {
        (Some(one), _) => vec![one.clone()],
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading stdin")?;
            text.lines().map(str::to_string).collect()
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .map(str::to_string)
            .collect(),
        (None, None) => anyhow::bail!("give --json or --json-lines"),
    };
    let report =
        catpaw_agent::alerts::ingest::send_lines(&cfg.paths().ingest_socket(), &lines).await?;
    for (line, error) in &report.refused {
        eprintln!("catpaw-agent: event on line {line} refused: {error}");
    }
    println!(
        "{} event(s) accepted, {} refused",
        report.accepted,
        report.refused.len()
    );
    Ok(if report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn replay(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    use catpaw_agent::cli::replay;
    let recording = match (&args.suite, &args.recording) {
        (Some(dir), _) => {
            return catpaw_agent::cli::suite::run(
                dir,
                cli.runner.as_deref(),
                args.junit.as_deref(),
            )
            .await;
        }
        (None, Some(r)) => r,
        (None, None) => anyhow::bail!("give a recording (ID|FILE) or --suite DIR"),
    };
    let path = if Path::new(recording).is_file() {
        PathBuf::from(recording)
    } else {
        catpaw_agent::cli::play::recordings(cli.config.as_deref())?.resolve(recording)?
    };
    let r = replay::replay(&path, cli.runner.as_deref()).await;
    print!("{}", replay::render(&path, &r));
    Ok(ExitCode::from(r.verdict.exit_code() as u8))
}

async fn check_runner(cli: &Cli, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let report = catpaw_agent::cli::check::check(
        &args.file,
        cli.config.as_deref(),
        args.recordings.as_deref(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", catpaw_agent::cli::check::render(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "catpaw-agent", &mut std::io::stdout());
    ExitCode::SUCCESS
}

fn manpage() -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    catpaw_agent::cli::manpage::render(Cli::command(), &mut std::io::stdout())
        .context("writing the man page")?;
    Ok(ExitCode::SUCCESS)
}

async fn demo() -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("catpaw-demo-{}", uuid::Uuid::new_v4()));
    let result = catpaw_agent::cli::demo::run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.watch && !matches!(cli.command, None | Some(Command::Run(_))) {
        eprintln!("catpaw-agent: --watch applies to the agent (`run`)");
        return ExitCode::from(2);
    }
    if !cli.budgets.flags().is_empty()
        && !matches!(
            cli.command,
            None | Some(Command::Run(_) | Command::Session(_) | Command::Mcp(_))
        )
    {
        eprintln!(
            "catpaw-agent: --fuel, --max-memory and --timeout apply to the agent (`run`), `session` and `mcp`"
        );
        return ExitCode::from(2);
    }
    // The agent logs at the config's level; the harness and demo log
    // warnings only so their transcript stays readable. RUST_LOG overrides.
    // The MCP server runs as long as its client: it logs like the agent
    // (to stderr; stdout is the protocol).
    let agent_mode = matches!(cli.command, None | Some(Command::Run(_) | Command::Mcp(_)));
    let cfg_for_log = if agent_mode {
        Config::load(cli.config.as_deref()).ok()
    } else {
        None
    };
    init_logging(cfg_for_log.as_ref());
    if !matches!(
        cli.command,
        None | Some(Command::Run(_) | Command::Alert(_) | Command::Audit(_) | Command::Mcp(_))
    ) {
        // These print a transcript or a document to stdout; like other Unix filters they
        // end quietly when the reader goes away (`... | head`) instead of
        // panicking on the failed write. Their sockets send with
        // MSG_NOSIGNAL and spawned commands get the default anyway; the
        // agent keeps ignoring SIGPIPE.
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("catpaw-agent: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        match &cli.command {
            Some(Command::Session(args)) => session(&cli, args).await,
            Some(Command::Demo) => demo().await,
            Some(Command::Alert(args)) => alert(&cli, args).await,
            Some(Command::Audit(AuditCommand::Verify)) => ops::audit_verify(cli.config.as_deref()),
            Some(Command::CheckRunner(args)) => check_runner(&cli, args).await,
            Some(Command::Runner(RunnerCommand::New { name, lang })) => {
                let dir = catpaw_agent::cli::scaffold::create(Path::new("."), name, *lang)?;
                print!(
                    "{}",
                    catpaw_agent::cli::scaffold::next_steps(&dir, name, *lang)
                );
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Runner(RunnerCommand::Keygen {
                out,
                name,
                public,
                secret,
            })) => {
                let said = catpaw_agent::cli::sign::keygen(
                    out,
                    name,
                    public.as_deref(),
                    secret.as_deref(),
                )?;
                print!("{said}");
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Runner(RunnerCommand::Sign { file, key })) => {
                print!("{}", catpaw_agent::cli::sign::sign(file, key)?);
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Config(ConfigCommand::Check { quiet })) => {
                Ok(ops::config_check(cli.config.as_deref(), *quiet))
            }
            Some(Command::Config(ConfigCommand::Example)) => {
                print!("{}", catpaw_agent::config::EXAMPLE);
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Mcp(args)) => {
                catpaw_agent::cli::mcp::run(catpaw_agent::cli::mcp::McpArgs {
                    config: cli.config.clone(),
                    runner: cli.runner.clone(),
                    flags: cli.budgets.flags(),
                    http: args.http,
                    token_file: args.token_file.clone(),
                    allow_non_loopback: args.allow_non_loopback,
                })
                .await?;
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Status(args)) => ops::status(cli.config.as_deref(), args.json).await,
            Some(Command::Play(args)) => {
                let opts = catpaw_agent::cli::play::PlayOptions {
                    speed: (!args.no_wait).then_some(args.speed.unwrap_or(1.0)),
                    json: args.json,
                };
                catpaw_agent::cli::play::run(cli.config.as_deref(), &args.recording, opts).await
            }
            Some(Command::Replay(args)) => replay(&cli, args).await,
            Some(Command::Completions { shell }) => Ok(completions(*shell)),
            Some(Command::Manpage) => manpage(),
            Some(Command::Run(_)) | None => run_agent(&cli).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not eprintln!: with stderr closed it would panic over the error.
            let _ = writeln!(std::io::stderr(), "catpaw-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
