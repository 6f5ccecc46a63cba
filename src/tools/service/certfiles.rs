//! cert_files: expiry of the certificates in operator allow-listed files.

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::logs::not_configured;
use crate::tools::targets::{expand, locate_allowed};
use crate::tools::x509;

/// Largest certificate file read.
const MAX_FILE: u64 = 1024 * 1024;
/// Files read at most in one call.
const MAX_FILES: usize = 50;
/// Certificates reported per file (a CA bundle holds hundreds).
const MAX_CERTS: usize = 20;

fn file_row(path: &str, allowed: &[String], now: i64) -> Value {
    let read = || -> Result<Vec<u8>, String> {
        locate_allowed(path, allowed, "cert_files")?
            .open_regular(MAX_FILE)
            .and_then(|f| f.read_all())
            .map_err(|e| e.to_string())
    };
    match read().and_then(|b| x509::parse_file(&b)) {
        Ok(certs) => {
            let soonest = certs.iter().map(|c| c.not_after).min();
            let rows: Vec<Value> = certs
                .iter()
                .take(MAX_CERTS)
                .map(|c| x509::row(c, now))
                .collect();
            json!({
                "path": path,
                "certificates": certs.len(),
                "days_left": soonest.map(|s| (s - now).div_euclid(86_400)),
                "certs": rows,
            })
        }
        Err(e) => json!({ "path": path, "error": e }),
    }
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let allowed = &args.config().cert_files;
    let now = x509::now();
    let paths = match args.string("path", 4096)? {
        Some(p) => {
            // Refusals are errors for an explicit path.
            locate_allowed(&p, allowed, "cert_files")?;
            vec![p]
        }
        None if allowed.is_empty() => {
            return Ok(not_configured(
                "no certificate files are allow-listed: the operator lists them in [tools] cert_files",
                "[tools] cert_files",
            ));
        }
        None => expand(allowed, MAX_FILES),
    };
    let rows: Vec<Value> = paths.iter().map(|p| file_row(p, allowed, now)).collect();
    Ok(json!({ "available": true, "files": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::ToolConfig;

    #[test]
    fn allow_listed_certificates_are_read() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = std::fs::canonicalize(d.path()).expect("canon");
        std::fs::write(dir.join("site.pem"), include_str!("../fixtures/cert.pem")).expect("write");
        std::fs::write(dir.join("junk.pem"), "not a cert").expect("write");
        let cfg = ToolConfig {
            cert_files: vec![format!("{}/*.pem", dir.display())],
            ..ToolConfig::default()
        };
        let a = Args::of("{}", &["path"]).with_config(cfg.clone().into());
        let v = run(&a).expect("cert_files");
        let files = v["files"].as_array().expect("files");
        assert_eq!(files.len(), 2);
        assert!(
            files[0]["error"]
                .as_str()
                .unwrap_or("")
                .contains("no certificate"),
            "{v}"
        );
        assert_eq!(files[1]["certs"][0]["subject_cn"], "catpaw-test.example");
        assert!(files[1]["days_left"].as_i64().unwrap_or(0) > 0, "{v}");
        let a =
            Args::of(r#"{"path":"/etc/ssl/private/key.pem"}"#, &["path"]).with_config(cfg.into());
        assert!(run(&a).unwrap_err().contains("[tools] cert_files"));
    }
}
