//! catpaw-agent command line: parses arguments, builds the configuration,
//! and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use catpaw_agent::config::{Config, parse_duration, parse_size};
use catpaw_agent::harness::{LocalOutcome, LocalSession, run_local};
use catpaw_agent::setup::{self, LimitOverrides};

/// catpaw agent whose remote diagnosis sessions run in a WebAssembly sandbox.
#[derive(Debug, Parser)]
#[command(name = "catpaw-agent", version, about)]
struct Cli {
    /// Config file (default conf.d/config.toml; missing default = all defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Runner component that replaces the built-in ones.
    #[arg(long, global = true)]
    runner: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one session locally in the sandbox, without a server.
    Session(SessionArgs),
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
    /// Fuel per run / chat turn (overrides the config).
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear-memory cap, e.g. 64MiB (overrides the config).
    #[arg(long, value_parser = parse_size_arg)]
    max_memory: Option<u64>,
    /// Wall-clock limit per run / chat turn, e.g. 30s (overrides the config).
    #[arg(long, value_parser = parse_duration_arg)]
    timeout: Option<std::time::Duration>,
    /// Print the session_output / session_error payloads as JSON lines.
    #[arg(long)]
    json: bool,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s)
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
    use tracing_subscriber::EnvFilter;
    let level = cfg
        .map(|c| c.log.level.clone())
        .unwrap_or_else(|| "warn".into());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let json = cfg.is_some_and(|c| c.log.format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn session(cli: &Cli, args: &SessionArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(cli.config.as_deref())?;
    let overrides = LimitOverrides {
        fuel: args.fuel,
        max_memory: args.max_memory,
        timeout: args.timeout,
    };
    let setup = setup::build(&cfg, cli.runner.as_deref(), &overrides, 1)?;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The harness logs warnings only, so the transcript stays readable;
    // RUST_LOG overrides.
    init_logging(None);
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
            None => anyhow::bail!("no command given; try `catpaw-agent session --type diagnose`"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("catpaw-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}
