//! Alert events on their way to the server: the ring buffer that outlives
//! connections (`ringbuf.rs`), the local ingest socket
//! `<state_dir>/agent.sock` (`ingest.rs`), and the size cap of one
//! `alert_events` frame (`frame.rs`).

pub mod frame;
pub mod ingest;
pub mod ringbuf;
