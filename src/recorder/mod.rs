//! The flight recorder: every accepted session written down as it runs,
//! at the WIT boundary, so it can be shown afterwards (`play`) and
//! re-executed against any runner (`replay`).
//!
//! Why at the WIT boundary: a WebAssembly guest is deterministic given
//! what its imports answer (the `host` and `llm` functions, WASI clocks and
//! random). A recording that holds every answer in order makes a session
//! replayable bit for bit, without this host's tools, shell, model or
//! clock, and it holds only what already crossed the masking boundary.
//!
//! The format is documented in `docs/recordings.md`.

pub(crate) mod frame;
pub mod junit;
pub mod options;
pub mod read;
mod spares;
pub mod store;
pub mod suite;
pub mod tape;
#[cfg(test)]
pub(crate) mod testing;
pub mod verdict;
pub mod writer;

pub use options::RecorderOptions;
pub use read::{ReadError, Recorded};
pub use tape::{Script, Tape};
pub use verdict::Verdict;
pub use writer::{Closed, Recording};
