//! The link to catpaw-server: wire types (PROTOCOL.md), one connection, the
//! reconnect loop and its policy, TLS, the transport under write deadlines,
//! and the checks of signed sessions.
//!
//! - `proto.rs`: envelope, payloads, every wire string
//! - `conn.rs`: one connection: dial, register, serve, with priorities
//! - `agent.rs`: the reconnect loop and what outlives connections
//! - `reconnect.rs`: the backoff policy (pure) and its jitter
//! - `transport.rs`: the TCP dial and the progress clock under write deadlines
//! - `tls.rs`: rustls client configuration
//! - `signing.rs`: Ed25519 checks of signed `session_start` / `session_input`
//!   (§9) and their bounded replay cache (pure)
//! - `hostinfo.rs`: hostname and primary IPv4 for `register`

pub mod agent;
pub mod conn;
pub mod hostinfo;
pub mod proto;
pub mod reconnect;
pub mod signing;
pub mod tls;
pub mod transport;
