//! One server connection: dial → register → ack → serve, until it drops.
//!
//! The connection owns the socket and nothing else: the [`SessionTable`]
//! and the [`AlertBuffer`] outlive it. Sessions do not: a dropped
//! connection cancels them (PROTOCOL §5), and the output they had queued
//! is dropped with it (and logged).
//! The serve loop is biased: inbound frames first (they are rare and cheap,
//! and a `session_start` must be acked even while sessions stream), then
//! the heartbeat and alert timers, then session output and alert batches,
//! which take turns while both wait: a steady stream of deltas never stops
//! heartbeats or alerts, and a backlog of alerts holds a session's deltas
//! back by one alert batch at a time.
//!
//! # At most one alert batch in flight
//!
//! Writing in turns is not enough on a slow link: a write is done when the
//! kernel has the bytes, not when they have crossed, so a backlog of
//! alerts written back to back piles up in socket buffers along the way,
//! and an ack written after it waits for all of it (18 s behind 200 alerts
//! of 60 KiB on a 100 KiB/s link). `TCP_NOTSENT_LOWAT`
//! ([`transport::UNSENT_LOWAT`]) bounds only what the kernel has not sent
//! yet; bytes sent but not acknowledged, queued in the path, it does not.
//! So an alert batch (at most `serve::ALERT_BATCH_BYTES` of events; an
//! event larger than that goes alone, in a frame of at most 256 KiB,
//! [`crate::alerts::frame`]) is written only once the server's TCP has
//! acknowledged every byte up to the end of the batch before it. The
//! connection knows where that batch ended (the bytes the socket had
//! taken, counted by [`transport::WriteClock`]) and how much the server
//! has not acknowledged (the socket's `TIOCOUTQ`), and polls the latter
//! every 10 ms while a batch waits ([`transport::acked_through`]). All
//! that time the loop reads inbound frames and writes session frames at
//! once, so a `session_start`'s ack and a session's output wait behind at
//! most the one alert batch in flight (`tests/bounds.rs`: the ack comes
//! within 1 s on that link). Capping `SO_SNDBUF` instead would bound the
//! bytes in the kernel, not those in the path, and would cost every frame.
//! What a peer acknowledges and then holds (a proxy that reads ahead) is
//! out of the agent's sight.
//!
//! While the connection serves, every write goes through one path,
//! `Out::write_frames`: its deadline runs from the last byte that moved
//! ([`transport`]), and shutdown interrupts it. After shutdown, the
//! sessions' final messages and the close frame are written under the
//! shutdown grace and the write timeout, so SIGTERM never waits behind a
//! stuck socket longer than those.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::alerts::ringbuf::AlertBuffer;
use crate::config::redact_url;
use crate::link::reconnect::AttemptOutcome;
use crate::link::transport::{self, Metered, SendQueue, WriteClock};
use crate::proto::{
    self, AckPayload, AlertEvent, AlertEventsPayload, DisconnectPayload, Envelope,
    HeartbeatPayload, RegisterPayload, SessionCancelPayload, SessionInputPayload,
};
use crate::session::{InputOutcome, SessionEvent, SessionTable};

/// Largest inbound message accepted: the same 1 MiB the agent holds its
/// own frames to (PROTOCOL §1, §11).
pub const MAX_INBOUND: usize = proto::MAX_FRAME_BYTES;

/// The protocol's timers. Defaults are PROTOCOL.md's; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Dial + TLS + upgrade.
    pub dial_timeout: Duration,
    /// Wait for the register ack.
    pub ack_timeout: Duration,
    /// No inbound frame for this long = connection lost.
    pub read_timeout: Duration,
    /// A write that moves no byte for this long = connection lost.
    pub write_timeout: Duration,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Alert flush period.
    pub alert_flush: Duration,
    /// On shutdown, how long cancelled sessions get to send their `done`
    /// (the close frame then gets at most `write_timeout` more).
    pub shutdown_grace: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            dial_timeout: Duration::from_secs(15),
            ack_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(30),
            alert_flush: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Everything a connection needs; shared across reconnects.
#[derive(Clone)]
pub(crate) struct ConnContext {
    /// `ws://` or `wss://` URL of the agent endpoint.
    pub url: String,
    /// Sent as `X-Agent-Token` when not empty.
    pub token: String,
    /// Sent as `X-Agent-ID`.
    pub agent_id: uuid::Uuid,
    /// TLS settings for `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// What `register` says about this host.
    pub register: RegisterInfo,
    /// Running sessions.
    pub table: SessionTable,
    /// Buffered alerts.
    pub alerts: AlertBuffer,
    /// Protocol timers.
    pub timings: Timings,
    /// The agent's counters.
    pub telemetry: crate::telemetry::Telemetry,
}

/// Static parts of `register`.
#[derive(Debug, Clone)]
pub(crate) struct RegisterInfo {
    /// `[global.labels]` templates, resolved at each `register`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Plugin names from the config; empty: those the diagnose runner
    /// describes (read again for every connection, so a reload shows).
    pub plugins: Vec<String>,
    /// Process start, for `uptime_sec`.
    pub started: Instant,
}

type Ws = WebSocketStream<MaybeTlsStream<Metered<tokio::net::TcpStream>>>;

/// The connection's URL as logs may show it: without userinfo.
fn shown_url(ctx: &ConnContext) -> String {
    redact_url(&ctx.url)
}

/// Why a connection ended, for the reconnect policy.
fn dropped(reason: &str) -> AttemptOutcome {
    tracing::warn!(reason, "connection lost; will reconnect");
    AttemptOutcome::DroppedAfterRegister
}

/// Runs one connection attempt to its end.
pub(crate) async fn run_once(ctx: &ConnContext, shutdown: &CancellationToken) -> AttemptOutcome {
    let clock = WriteClock::new();
    let ws = tokio::select! {
        _ = shutdown.cancelled() => return AttemptOutcome::Shutdown,
        r = tokio::time::timeout(ctx.timings.dial_timeout, dial(ctx, &clock)) => match r {
            Err(_) => {
                tracing::warn!(url = %shown_url(ctx), "connecting timed out");
                return AttemptOutcome::DialFailed;
            }
            Ok(Err(outcome)) => return outcome,
            Ok(Ok(dialed)) => dialed,
        },
    };
    let (ws, queue) = ws;
    let (sink, mut stream) = ws.split();
    let mut out = Out {
        sink,
        clock,
        queue,
        idle: ctx.timings.write_timeout,
    };

    let register = Envelope::new(
        proto::MSG_REGISTER,
        register_payload(&ctx.register, &ctx.table),
    );
    match out.write(&register, shutdown).await {
        Ok(()) => {}
        Err(WriteError::Shutdown) => {
            close_for_shutdown(&mut out, &mut stream, ctx.timings.write_timeout).await;
            return AttemptOutcome::Shutdown;
        }
        Err(_) => {
            tracing::warn!("sending register failed");
            return AttemptOutcome::DialFailed;
        }
    }
    let sent_register = Instant::now();
    let ack = match first_message(ctx, &mut stream, shutdown).await {
        Ok(ack) => ack,
        Err(AttemptOutcome::Shutdown) => {
            // Registered or not, the server hears a normal close.
            close_for_shutdown(&mut out, &mut stream, ctx.timings.write_timeout).await;
            return AttemptOutcome::Shutdown;
        }
        Err(outcome) => return outcome,
    };
    match ack
        .filter(|e| e.msg_type == proto::MSG_ACK)
        .and_then(|e| e.decode::<AckPayload>())
    {
        Some(a) if a.ok => {
            ctx.telemetry.register_acked(sent_register.elapsed());
            if let Some(w) = a.warning.filter(|w| !w.is_empty()) {
                tracing::warn!(warning = %w, "server warning on register");
            }
        }
        Some(a) => {
            tracing::error!(error = %a.error.unwrap_or_default(), "server refused registration");
            return AttemptOutcome::DialFailed;
        }
        None => {
            tracing::warn!("first message from the server was not a register ack");
            return AttemptOutcome::DialFailed;
        }
    }
    tracing::info!(url = %shown_url(ctx), agent_id = %ctx.agent_id, "registered with the server");
    ctx.telemetry
        .set_link(crate::telemetry::LinkState::Connected);
    let outcome = serve(ctx, &mut out, &mut stream, shutdown).await;
    if outcome != AttemptOutcome::Shutdown {
        // The sessions' output has nowhere to go: end them (PROTOCOL §5).
        ctx.table.cancel_all();
    }
    outcome
}

/// Waits (within the ack timeout) for the first message after `register`
/// and returns it when it is a text frame. WebSocket pings and pongs are
/// not messages (PROTOCOL §10): a server, or a proxy in front of it, may
/// ping before it acks, so they are skipped within the same deadline.
async fn first_message(
    ctx: &ConnContext,
    stream: &mut Stream,
    shutdown: &CancellationToken,
) -> Result<Option<Envelope>, AttemptOutcome> {
    let deadline = tokio::time::Instant::now() + ctx.timings.ack_timeout;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Err(AttemptOutcome::Shutdown),
            r = tokio::time::timeout_at(deadline, stream.next()) => r,
        };
        match next {
            Err(_) => {
                tracing::warn!(timeout = %crate::util::human_duration(ctx.timings.ack_timeout),
                    "no register ack from the server");
                return Err(AttemptOutcome::DialFailed);
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Text(t)))) => return Ok(Envelope::parse(t.as_str()).ok()),
            Ok(_) => return Ok(None),
        }
    }
}

/// Dials, upgrades, and returns the WebSocket with its socket's send queue.
async fn dial(ctx: &ConnContext, clock: &WriteClock) -> Result<(Ws, SendQueue), AttemptOutcome> {
    let mut req = match ctx.url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(url = %shown_url(ctx), error = %e, "bad server URL");
            return Err(AttemptOutcome::DialFailed);
        }
    };
    let h = req.headers_mut();
    let header = |v: &str| http::HeaderValue::from_str(v).ok();
    if let Some(v) = header(&ctx.token).filter(|_| !ctx.token.is_empty()) {
        h.insert("X-Agent-Token", v);
    }
    if let Some(v) = header(&ctx.agent_id.to_string()) {
        h.insert("X-Agent-ID", v);
    }
    h.insert(
        "X-Proto-Version",
        http::HeaderValue::from_static(proto::PROTO_VERSION),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND))
        .max_frame_size(Some(MAX_INBOUND));
    let connector = ctx.tls.clone().map(Connector::Rustls);
    let (tcp, queue) = match transport::connect(req.uri()).await {
        Ok(tcp) => {
            let queue = SendQueue::of(&tcp);
            (Metered::new(tcp, clock.clone()), queue)
        }
        Err(e) => {
            tracing::warn!(url = %shown_url(ctx), error = %e, "connecting to the server failed");
            return Err(AttemptOutcome::DialFailed);
        }
    };
    match tokio_tungstenite::client_async_tls_with_config(req, tcp, Some(config), connector).await {
        Ok((ws, _)) => Ok((ws, queue)),
        Err(WsError::Http(resp)) if resp.status() == http::StatusCode::UNAUTHORIZED => {
            tracing::error!(url = %shown_url(ctx), "server rejected the agent token (HTTP 401); check [server] agent_token");
            Err(AttemptOutcome::Unauthorized)
        }
        Err(e) => {
            tracing::warn!(url = %shown_url(ctx), error = %e, "connecting to the server failed");
            Err(AttemptOutcome::DialFailed)
        }
    }
}

fn register_payload(info: &RegisterInfo, table: &SessionTable) -> RegisterPayload {
    let plugins = if info.plugins.is_empty() {
        table.runners().plugins
    } else {
        info.plugins.clone()
    };
    let host = crate::config::labels::HostFacts {
        hostname: crate::link::hostinfo::hostname(),
        ip: crate::link::hostinfo::primary_ipv4().unwrap_or_default(),
    };
    let labels = crate::config::labels::resolve(&info.labels, &host, |k| std::env::var(k).ok());
    RegisterPayload {
        hostname: labels.hostname().to_string(),
        ip: labels.ip().to_string(),
        os: proto::go_os().to_string(),
        arch: proto::go_arch().to_string(),
        labels: labels.labels,
        plugins,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_sec: info.started.elapsed().as_secs(),
    }
}

mod batch;
pub(crate) mod frames;
mod inbound;
mod serve;

use serve::{Out, Stream, WriteError, close_for_shutdown, serve};
