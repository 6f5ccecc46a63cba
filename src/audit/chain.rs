//! The hash chain: each line's `prev` is the SHA-256 of the line before
//! it, across rotated files; `verify` walks the whole trail.

use sha2::{Digest, Sha256};

/// `prev` of the very first record of a trail.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex SHA-256 of one line (without its newline).
pub(crate) fn line_hash(line: &[u8]) -> String {
    let digest = Sha256::digest(line);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
