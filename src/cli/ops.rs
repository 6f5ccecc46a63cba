//! The operator commands: `config check`, `status` and `audit verify`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

/// `catpaw-agent config check [--quiet]`: exit 0 and the effective config
/// (defaults shown, secrets redacted) on stdout, warnings on stderr; exit 2
/// with the error, which names the file and the field. `quiet` keeps the
/// warnings and the error and drops the rest, so a check run before every
/// start (the unit's `ExecStartPre`) writes nothing to the journal when
/// there is nothing to fix.
pub fn config_check(config: Option<&Path>, quiet: bool) -> ExitCode {
    let checked = Config::load(config).and_then(|c| c.check_files().map(|()| c));
    let cfg = match checked {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "catpaw-agent: config is not valid: {e}");
            return ExitCode::from(2);
        }
    };
    let source = cfg.source.as_ref().map_or_else(
        || format!("{} (not found: all defaults)", crate::config::DEFAULT_PATH),
        |p| p.display().to_string(),
    );
    let mut err = std::io::stderr();
    for warning in cfg.warnings() {
        let _ = writeln!(err, "warning: {warning}");
    }
    if quiet {
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(
        err,
        "config {source} is valid; the effective config follows"
    );
    let _ = write!(std::io::stdout(), "{}", cfg.effective());
    ExitCode::SUCCESS
}

/// `catpaw-agent status [--json]`: exit 1 with a message naming the state
/// dir when no agent answers.
pub async fn status(config: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let paths = cfg.paths();
    match crate::ops::status::query(paths.root(), &paths.status_socket()).await {
        Ok(s) if json => {
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(s) => {
            print!("{}", crate::ops::status::render(&s));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "catpaw-agent: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `catpaw-agent audit verify`: exit 0 when the trail in the state dir
/// holds every record it should; exit 1 when it is broken, when what is
/// there is not a trail (a device, say), or when there is no trail at all —
/// each said on stdout with the file (or dir) and the reason.
pub fn audit_verify(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    use crate::audit::{Problem, verify};
    let cfg = Config::load(config)?;
    let mut out = std::io::stdout();
    match verify(&cfg.paths().audit_trail()) {
        Ok(v) => {
            let _ = writeln!(
                out,
                "audit trail intact: {} records (seq {}..{}) in {} file(s) under {}; \
                 head seq {} hash {}",
                v.records,
                v.first_seq,
                v.last_seq,
                v.files.len(),
                cfg.state_dir.display(),
                v.last_seq,
                v.last_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(brk) if brk.problem == Problem::NoTrail => {
            let _ = writeln!(out, "no audit trail: {brk}");
            Ok(ExitCode::from(1))
        }
        Err(brk) if brk.problem == Problem::NotAFile => {
            let _ = writeln!(out, "not an audit trail: {brk}");
            Ok(ExitCode::from(1))
        }
        Err(brk) => {
            let _ = writeln!(out, "audit trail broken at {brk}");
            Ok(ExitCode::from(1))
        }
    }
}
