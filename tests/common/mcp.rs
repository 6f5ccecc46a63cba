//! The fake MCP server of tests/fixtures/mcp_server.py (python3 over
//! stdio) and the `[ai.mcp]` section that starts it.

use std::path::{Path, PathBuf};

/// The real interpreter behind `python3` (not a shim that needs the
/// caller's environment: the server's environment is cleared); None
/// when there is no python3.
pub fn python() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.is_file().then_some(p)
}

/// The fake server's script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_server.py")
}

/// `[ai.mcp]` with the fake server named `fake`, its `env` the inline
/// table body `env` (e.g. `A = "1"`), allowed the tools `allow`.
pub fn mcp_toml(python: &Path, env: &str, allow: &[&str]) -> String {
    let allow: Vec<String> = allow.iter().map(|t| format!("{t:?}")).collect();
    format!(
        "[ai.mcp]\nenabled = true\ndefault_identity = \"instance=${{SHORT_HOSTNAME}}:9100\"\n\
         [[ai.mcp.servers]]\nname = \"fake\"\ncommand = \"{}\"\nargs = [\"{}\"]\n\
         env = {{ {env} }}\ntools_allow = [{}]\n",
        python.display(),
        script().display(),
        allow.join(", ")
    )
}

/// A python3 that any user may run, with the fake server's script
/// readable by any user (each directory above them searchable by all):
/// what a server run as `[sandbox] shell_user` needs. None when there
/// is none (a pyenv python under /root, a checkout in a private home).
pub fn python_for_anyone() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let open_to_all = |path: &Path, bit: u32| {
        let Ok(path) = path.canonicalize() else {
            return false;
        };
        let mode = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode());
        mode(&path) & bit != 0 && path.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0)
    };
    if !open_to_all(&script(), 0o004) {
        return None;
    }
    python()
        .into_iter()
        .chain([PathBuf::from("/usr/bin/python3")])
        .find(|p| open_to_all(p, 0o001))
}
