//! Making runner signatures: `catpaw-agent runner keygen` and `runner
//! sign`, in minisign's format (the `minisign` crate writes the same
//! files the `minisign` tool does), so either tool's key signs and either
//! tool checks.
//!
//! Keys are unencrypted: signing in a build pipeline has nobody to type a
//! password, so the secret key file's protection is its mode (0600) and
//! where it is kept. A key made by `minisign -G` without `-W` is encrypted
//! (scrypt, a gigabyte of memory to open): `runner sign` refuses it and
//! says to sign with `minisign -S` itself or make an unencrypted key
//! (`minisign -G -W`, `runner keygen`). The signatures are the same.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;

use super::signature::{KeyId, signature_path};

/// The largest secret key file read (minisign's are 262 bytes).
const MAX_SECRET_KEY_SIZE: u64 = 4096;

/// The largest file signed: `[sandbox] max_runner_size`'s upper bound.
const MAX_SIGNED_SIZE: u64 = 1 << 30;

/// Where `runner keygen` writes a key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// The public key, `.pub`.
    pub public: PathBuf,
    /// The secret key, `.key`.
    pub secret: PathBuf,
}

impl KeyPaths {
    /// `DIR/NAME.pub` and `DIR/NAME.key`.
    pub fn in_dir(dir: &Path, name: &str) -> KeyPaths {
        KeyPaths {
            public: dir.join(format!("{name}.pub")),
            secret: dir.join(format!("{name}.key")),
        }
    }
}

/// Makes an unencrypted key pair and writes it to `paths`, both files
/// mode 0600 and never over an existing file. Returns the key id.
pub fn keygen(paths: &KeyPaths) -> anyhow::Result<KeyId> {
    for p in [&paths.public, &paths.secret] {
        if p.symlink_metadata().is_ok() {
            bail!(
                "{} exists; keygen never replaces a key (move it away, or name other files \
                 with --public/--secret or --out)",
                p.display()
            );
        }
    }
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| anyhow::anyhow!("making a key pair: {e}"))?;
    let id = key_id(pair.pk.keynum())?;
    // Written as the minisign tool writes it (the crate's box adds a
    // colon after "key"), so the two tools' files read the same.
    let public = format!(
        "untrusted comment: minisign public key {id}\n{}\n",
        pair.pk.to_base64()
    )
    .into_bytes();
    let secret = pair
        .sk
        .to_box(Some(&format!(
            "catpaw-agent runner secret key {id} (unencrypted: keep this file private)"
        )))
        .map_err(|e| anyhow::anyhow!("encoding the secret key: {e}"))?
        .to_bytes();
    write_new(&paths.secret, &secret)?;
    write_new(&paths.public, &public)?;
    Ok(id)
}

/// Signs `file` with the secret key at `key`, writing `file.minisig`
/// (replaced atomically when there is one). Returns the signature's path
/// and the key id.
pub fn sign(file: &Path, key: &Path) -> anyhow::Result<(PathBuf, KeyId)> {
    let sk = secret_key(key)?;
    let id = key_id(sk.keynum())?;
    // Read once; the signature is of these bytes.
    let bytes = crate::fsafe::read_file(file, MAX_SIGNED_SIZE)
        .map_err(|e| anyhow::anyhow!("reading the file to sign: {e}"))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // The trusted comment minisign writes, so `minisign -V` shows the same.
    let trusted = format!("timestamp:{now}\tfile:{name}\tprehashed");
    let pk = minisign::PublicKey::from_secret_key(&sk)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let sig = minisign::sign(
        Some(&pk),
        &sk,
        std::io::Cursor::new(&bytes),
        Some(&trusted),
        Some("signature from catpaw-agent runner sign"),
    )
    .map_err(|e| anyhow::anyhow!("signing {}: {e}", file.display()))?;
    let out = signature_path(file);
    replace(&out, sig.into_string().as_bytes())?;
    Ok((out, id))
}

/// The secret key in the unencrypted minisign key file `path`.
fn secret_key(path: &Path) -> anyhow::Result<minisign::SecretKey> {
    let bytes = crate::fsafe::read_file(path, MAX_SECRET_KEY_SIZE)
        .map_err(|e| anyhow::anyhow!("reading the secret key: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: not a minisign secret key (not text)", path.display()))?;
    let not_a_key = || {
        anyhow::anyhow!(
            "{}: not a minisign secret key (make one with `catpaw-agent runner keygen` or \
             `minisign -G -W`)",
            path.display()
        )
    };
    let line = text.lines().nth(1).ok_or_else(not_a_key)?;
    let bin = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .map_err(|_| not_a_key())?;
    // Bytes 0..2: the signature algorithm (`Ed`); 2..4: the key
    // derivation, `Sc` (scrypt) for an encrypted key, zeros for none.
    let encrypted = match bin.get(..4) {
        Some([b'E', b'd', 0, 0]) => false,
        Some([b'E', b'd', b'S', b'c']) => true,
        _ => return Err(not_a_key()),
    };
    if encrypted {
        bail!(
            "{} is encrypted with a password (minisign's default), which `runner sign` does \
             not open: sign with `minisign -S -s {} -m FILE` (the signature is the same), or \
             make an unencrypted key for automation with `minisign -G -W` or `catpaw-agent \
             runner keygen`",
            path.display(),
            path.display()
        );
    }
    // Not through the crate's key box: the minisign tool (0.11) leaves
    // an unencrypted key's checksum zeroed, and the box refuses that as
    // corrupt. A damaged key is still caught: `sign` checks each
    // signature against the public half the key holds.
    if bin.len() != 158 {
        return Err(not_a_key());
    }
    minisign::SecretKey::from_bytes(&bin).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn key_id(keynum: &[u8]) -> anyhow::Result<KeyId> {
    let id: [u8; 8] = keynum
        .try_into()
        .map_err(|_| anyhow::anyhow!("a minisign key id is 8 bytes"))?;
    Ok(KeyId(id))
}

/// Creates `path` (never over an existing file), mode 0600.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes `path` whole or not at all: a temporary file beside it, renamed
/// over it, so an agent reloading at that moment sees the old signature or
/// the new one.
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let tmp = dir
        .unwrap_or(Path::new("."))
        .join(format!(".minisig-{}", uuid::Uuid::new_v4()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::signature::{Provenance, RunnerTrust, check};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/minisign")
            .join(name)
    }

    #[test]
    fn keygen_writes_both_files_0600_and_never_over_a_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = KeyPaths::in_dir(dir.path(), "ci");
        let id = keygen(&paths).expect("keygen");
        for p in [&paths.public, &paths.secret] {
            let mode = std::fs::metadata(p).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
        let pubtext = std::fs::read_to_string(&paths.public).expect("pub");
        assert!(
            pubtext.starts_with(&format!("untrusted comment: minisign public key {id}\n")),
            "{pubtext}"
        );
        let e = keygen(&paths).expect_err("second keygen");
        assert!(e.to_string().contains("never replaces a key"), "{e}");
    }

    #[test]
    fn a_signature_made_here_verifies_and_names_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = KeyPaths::in_dir(dir.path(), "ci");
        let id = keygen(&paths).expect("keygen");
        let file = dir.path().join("r.wasm");
        std::fs::write(&file, b"\0asm component bytes").expect("write");
        let (sig, signed_by) = sign(&file, &paths.secret).expect("sign");
        assert_eq!(sig, dir.path().join("r.wasm.minisig"));
        assert_eq!(signed_by, id);
        let text = std::fs::read_to_string(&sig).expect("sig");
        // Prehashed, as minisign writes by default.
        let line = text.lines().nth(1).expect("line 2");
        let bin = base64::engine::general_purpose::STANDARD
            .decode(line)
            .expect("b64");
        assert_eq!(&bin[..2], b"ED");
        let mut trust = RunnerTrust::new(true);
        trust
            .add("ci", &std::fs::read_to_string(&paths.public).expect("pub"))
            .expect("key");
        let p = check(
            &trust,
            &file,
            b"\0asm component bytes",
            Some(text.as_bytes()),
        )
        .expect("verifies");
        assert_eq!(p.signer().map(|s| s.key_id.clone()), Some(id.to_string()));
    }

    #[test]
    fn the_real_minisigns_unencrypted_key_signs_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("runner.bin");
        std::fs::copy(fixture("runner.bin"), &file).expect("copy");
        let (sig, id) = sign(&file, &fixture("minisign.key")).expect("sign");
        assert_eq!(id.to_string(), "C76AAF6D2B6D2868");
        let mut trust = RunnerTrust::new(true);
        trust
            .add(
                "fixture",
                &std::fs::read_to_string(fixture("minisign.pub")).expect("pub"),
            )
            .expect("key");
        let bytes = std::fs::read(&file).expect("runner");
        let text = std::fs::read(&sig).expect("sig");
        assert!(matches!(
            check(&trust, &file, &bytes, Some(&text)),
            Ok(Provenance::Signed(_))
        ));
    }

    #[test]
    fn an_encrypted_key_is_refused_naming_what_to_do() {
        let key = fixture("encrypted.key");
        let e = secret_key(&key).expect_err("encrypted");
        let m = e.to_string();
        assert!(
            m.contains("encrypted.key") && m.contains("encrypted"),
            "{m}"
        );
        assert!(
            m.contains("minisign -G -W") && m.contains("minisign -S"),
            "{m}"
        );
    }

    #[test]
    fn a_damaged_key_makes_no_signature() {
        let text = std::fs::read_to_string(fixture("minisign.key")).expect("key");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut bin = b64.decode(&lines[1]).expect("b64");
        // A byte of the secret seed (bytes 62..94).
        bin[70] ^= 1;
        lines[1] = b64.encode(&bin);
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("damaged.key");
        std::fs::write(&key, lines.join("\n") + "\n").expect("key");
        let file = dir.path().join("runner.bin");
        std::fs::copy(fixture("runner.bin"), &file).expect("copy");
        let e = sign(&file, &key).expect_err("damaged key");
        assert!(e.to_string().contains("signing"), "{e}");
        assert!(!signature_path(&file).exists());
    }

    #[test]
    fn what_is_not_a_secret_key_is_refused_by_name() {
        let e = secret_key(&fixture("minisign.pub")).expect_err("a public key");
        assert!(e.to_string().contains("not a minisign secret key"), "{e}");
    }
}
