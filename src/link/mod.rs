//! The link to catpaw-server: one connection, the reconnect loop and its
//! policy, TLS and the transport under write deadlines. It stands above
//! what it connects: the wire types ([`crate::proto`]), sessions
//! ([`crate::session`]) and the alert buffer ([`crate::alerts`]).
//!
//! - `conn/`: one connection: dial, register, serve, with priorities
//! - `agent.rs`: the reconnect loop and what outlives connections
//! - `reconnect.rs`: the backoff policy (pure) and its jitter
//! - `transport.rs`: the TCP dial and the progress clock under write deadlines
//! - `tls.rs`: rustls client configuration
//! - `hostinfo.rs`: hostname and primary IPv4 for `register`

pub mod agent;
pub mod conn;
pub(crate) mod hostinfo;
pub mod reconnect;
pub mod tls;
pub(crate) mod transport;
