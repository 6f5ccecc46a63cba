//! file_check: what an operator allow-listed file looks like now:
//! existence, type, mode, owner, size, mtime and SHA-256 (for regular
//! files up to 50 MiB, read in chunks).

use std::io::Read;
use std::os::unix::fs::MetadataExt;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::fsafe::Kind;
use crate::tools::args::Args;
use crate::tools::logs::not_configured;
use crate::tools::targets::{expand, locate_allowed};

/// Largest file hashed.
const MAX_HASH: u64 = 50 * 1024 * 1024;
/// Files checked at most in one call.
const MAX_FILES: usize = 50;
/// Bytes hashed at most in one call, over all its files.
const HASH_BUDGET: u64 = 256 * 1024 * 1024;

/// The lowercase hex SHA-256 of what `r` yields.
pub(crate) fn sha256_hex(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::util::hex_digest(&h.finalize()))
}

/// One file's row; `path` as asked. `budget` is what this call may still
/// hash, in bytes, and shrinks by what this file takes. Everything but
/// `type` comes from the descriptor the allow-list check judged, so a
/// link swapped in meanwhile shows nothing of the file it leads to.
fn check(path: &str, allowed: &[String], budget: &mut u64) -> Value {
    let found = match locate_allowed(path, allowed, "files") {
        Ok(f) => f,
        Err(e) if e.ends_with(": not found") => return json!({ "path": path, "exists": false }),
        Err(e) => return json!({ "path": path, "error": e }),
    };
    // The entry the path names itself, for `type` alone.
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let kind = match found.kind() {
        _ if is_link => "symlink",
        Kind::Directory => "directory",
        Kind::Regular => "file",
        _ => "other",
    };
    let m = found.metadata();
    let sha256 = match found.kind() {
        Kind::Regular if m.len() > MAX_HASH => {
            json!(format!("not hashed: larger than {MAX_HASH} bytes"))
        }
        Kind::Regular if m.len() > *budget => {
            json!("not hashed: this call's hashing budget was spent; ask for the file alone")
        }
        Kind::Regular => {
            *budget -= m.len();
            found
                .open_regular(MAX_HASH)
                .and_then(|mut f| sha256_hex(f.bounded()).map_err(|e| f.read_error(e)))
                .map_or_else(|e| json!({ "error": e.to_string() }), Value::from)
        }
        _ => Value::Null,
    };
    json!({
        "path": path,
        "exists": true,
        "type": kind,
        "resolved": is_link.then(|| found.real_path().display().to_string()),
        "mode": format!("{:04o}", m.mode() & 0o7777),
        "uid": m.uid(),
        "gid": m.gid(),
        "size_bytes": m.len(),
        "mtime_unix": m.mtime(),
        "sha256": sha256,
    })
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let allowed = &args.config().files;
    let paths = match args.string("path", 4096)? {
        Some(p) => {
            // Refusals are errors for an explicit path.
            if let Err(e) = locate_allowed(&p, allowed, "files")
                && !e.ends_with(": not found")
            {
                return Err(e);
            }
            vec![p]
        }
        None if allowed.is_empty() => {
            return Ok(not_configured(
                "no files are allow-listed: the operator lists them in [tools] files",
                "[tools] files",
            ));
        }
        None => expand(allowed, MAX_FILES),
    };
    let mut budget = HASH_BUDGET;
    let rows: Vec<Value> = paths
        .iter()
        .map(|p| check(p, allowed, &mut budget))
        .collect();
    Ok(json!({ "available": true, "files": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::targets::ToolConfig;

    fn args(text: &str, allowed: Vec<String>) -> Args {
        Args::of(text, &["path"]).with_config(
            ToolConfig {
                files: allowed,
                ..ToolConfig::default()
            }
            .into(),
        )
    }

    #[test]
    fn hashes_match_known_values() {
        assert_eq!(
            sha256_hex(&b"abc"[..]).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn allow_listed_files_are_described_and_others_refused() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = std::fs::canonicalize(d.path()).expect("canon");
        let f = dir.join("app.conf");
        std::fs::write(&f, "abc").expect("write");
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .expect("chmod");
        let allowed = vec![
            format!("{}/app.conf", dir.display()),
            format!("{}/gone.conf", dir.display()),
        ];
        let v = run(&args("{}", allowed.clone())).expect("file_check");
        let rows = v["files"].as_array().expect("rows");
        assert_eq!(rows[0]["mode"], "0640");
        assert_eq!(rows[0]["size_bytes"], 3);
        assert_eq!(rows[0]["type"], "file");
        assert_eq!(
            rows[0]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(rows[1]["exists"], false);
        let e = run(&args(r#"{"path":"/etc/shadow"}"#, allowed)).unwrap_err();
        assert!(e.contains("not allow-listed in [tools] files"), "{e}");
        assert_eq!(
            run(&args("{}", Vec::new())).expect("none")["available"],
            false
        );
    }
}
