//! `runner keygen` and `runner sign` on the command line: which files a
//! key pair goes to and what the operator is told. The keys and
//! signatures themselves are [`crate::runner::sign`]'s.

use std::path::Path;

use crate::runner::sign::{self, KeyPaths};

/// Makes a key pair: `public` and `secret` when both are given, else
/// `out/NAME.pub` and `out/NAME.key`. Returns what to print; its first
/// line is `key KEYID`.
pub fn keygen(
    out: &Path,
    name: &str,
    public: Option<&Path>,
    secret: Option<&Path>,
) -> anyhow::Result<String> {
    let paths = match (public, secret) {
        (Some(public), Some(secret)) => KeyPaths {
            public: public.to_path_buf(),
            secret: secret.to_path_buf(),
        },
        _ => KeyPaths::in_dir(out, name),
    };
    let id = sign::keygen(&paths)?;
    Ok(format!(
        "key {id}\npublic key: {} (name it in `[sandbox] runner_keys`)\nsecret key: {} \
         (unencrypted, mode 0600: keep it where only the signer can read it)\n",
        paths.public.display(),
        paths.secret.display()
    ))
}

/// Signs `file` with the secret key `key`. Returns what to print.
pub fn sign(file: &Path, key: &Path) -> anyhow::Result<String> {
    let (sig, id) = sign::sign(file, key)?;
    Ok(format!(
        "signed {} with key {id}: {}\n",
        file.display(),
        sig.display()
    ))
}
