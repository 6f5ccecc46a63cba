//! One server connection: dial → register → ack → serve, until it drops.
//!
//! The connection owns the socket and nothing else: sessions live in the
//! [`SessionTable`], alerts in the [`AlertBuffer`], and both outlive it.
//! The serve loop is biased: inbound frames first (they are rare and cheap,
//! and a `session_start` must be acked even while sessions stream), then
//! session output, then heartbeats, then alert batches one at a time, so a
//! backlog of alerts never holds a session's deltas back. An alert frame is
//! capped at 256 KiB ([`crate::alerts::frame`]) and the kernel's unsent queue
//! at [`transport::UNSENT_LOWAT`], so a session message waits behind about
//! one frame's worth of alerts, even on a slow link.
//!
//! Every write goes through one path, `Out::write`: its deadline runs from
//! the last byte that moved ([`transport`]), and shutdown interrupts it, so
//! SIGTERM never waits behind a stuck socket.

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
use crate::link::proto::{
    self, AckPayload, AlertEvent, AlertEventsPayload, DisconnectPayload, Envelope,
    HeartbeatPayload, RegisterPayload, SessionCancelPayload, SessionInputPayload,
};
use crate::link::reconnect::AttemptOutcome;
use crate::link::transport::{self, Metered, WriteClock};
use crate::session::{InputOutcome, SessionEvent, SessionTable};

/// Largest inbound message accepted.
pub const MAX_INBOUND: usize = 1 << 20;

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
pub struct ConnContext {
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
}

/// Static parts of `register`.
#[derive(Debug, Clone)]
pub struct RegisterInfo {
    /// Labels from the config.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Plugin names from the config.
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
pub async fn run_once(ctx: &ConnContext, shutdown: &CancellationToken) -> AttemptOutcome {
    let clock = WriteClock::new();
    let ws = tokio::select! {
        _ = shutdown.cancelled() => return AttemptOutcome::Shutdown,
        r = tokio::time::timeout(ctx.timings.dial_timeout, dial(ctx, &clock)) => match r {
            Err(_) => {
                tracing::warn!(url = %shown_url(ctx), "connecting timed out");
                return AttemptOutcome::DialFailed;
            }
            Ok(Err(outcome)) => return outcome,
            Ok(Ok(ws)) => ws,
        },
    };
    let (sink, mut stream) = ws.split();
    let mut out = Out {
        sink,
        clock,
        idle: ctx.timings.write_timeout,
    };

    let register = Envelope::new(proto::MSG_REGISTER, register_payload(&ctx.register));
    match out.write(&register, shutdown).await {
        Ok(()) => {}
        Err(WriteError::Shutdown) => return AttemptOutcome::Shutdown,
        Err(_) => {
            tracing::warn!("sending register failed");
            return AttemptOutcome::DialFailed;
        }
    }
    let ack = match first_message(ctx, &mut stream, shutdown).await {
        Ok(ack) => ack,
        Err(outcome) => return outcome,
    };
    match ack
        .filter(|e| e.msg_type == proto::MSG_ACK)
        .and_then(|e| e.decode::<AckPayload>())
    {
        Some(a) if a.ok => {
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
                tracing::warn!(timeout = ?ctx.timings.ack_timeout, "no register ack from the server");
                return Err(AttemptOutcome::DialFailed);
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Text(t)))) => return Ok(Envelope::parse(t.as_str()).ok()),
            Ok(_) => return Ok(None),
        }
    }
}

async fn dial(ctx: &ConnContext, clock: &WriteClock) -> Result<Ws, AttemptOutcome> {
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
    let tcp = match transport::connect(req.uri()).await {
        Ok(tcp) => Metered::new(tcp, clock.clone()),
        Err(e) => {
            tracing::warn!(url = %shown_url(ctx), error = %e, "connecting to the server failed");
            return Err(AttemptOutcome::DialFailed);
        }
    };
    match tokio_tungstenite::client_async_tls_with_config(req, tcp, Some(config), connector).await {
        Ok((ws, _)) => Ok(ws),
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

fn register_payload(info: &RegisterInfo) -> RegisterPayload {
    RegisterPayload {
        hostname: crate::link::hostinfo::hostname(),
        ip: crate::link::hostinfo::primary_ipv4().unwrap_or_default(),
        os: proto::go_os().to_string(),
        arch: proto::go_arch().to_string(),
        labels: info.labels.clone(),
        plugins: info.plugins.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_sec: info.started.elapsed().as_secs(),
    }
}

type Sink = futures_util::stream::SplitSink<Ws, Message>;
type Stream = futures_util::stream::SplitStream<Ws>;

/// The write half of the connection and its progress clock.
struct Out {
    sink: Sink,
    clock: WriteClock,
    /// No progress for this long = connection lost.
    idle: Duration,
}

/// Why a write did not finish.
#[derive(Debug)]
enum WriteError {
    /// The socket failed or no byte moved for the whole limit (logged).
    Lost,
    /// Shutdown came first.
    Shutdown,
}

impl Out {
    /// Writes one envelope: done when the frame is flushed to the socket,
    /// lost when no byte moves for `idle`, interrupted by shutdown. An
    /// interrupted frame's rest stays queued in the sink and goes out
    /// first on the next flush, so the stream's framing stays whole.
    async fn write(
        &mut self,
        env: &Envelope,
        shutdown: &CancellationToken,
    ) -> Result<(), WriteError> {
        let msg = Message::text(env.to_json());
        let sending = transport::unless_stalled(&self.clock, self.idle, self.sink.send(msg));
        let r = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(WriteError::Shutdown),
            r = sending => r,
        };
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, msg_type = %env.msg_type, "write failed");
                Err(WriteError::Lost)
            }
            Err(stalled) => {
                tracing::warn!(error = %stalled, msg_type = %env.msg_type, "write stalled: the server takes no data");
                Err(WriteError::Lost)
            }
        }
    }

    /// Sends a close frame, spending at most `limit` in all (the peer may
    /// be the reason we are closing).
    async fn close(&mut self, reason: &'static str, limit: Duration) {
        let frame = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(limit, async {
            if self.sink.send(frame).await.is_ok() {
                let _ = self.sink.close().await;
            }
        })
        .await;
    }
}

fn event_envelope(ev: SessionEvent) -> Envelope {
    match ev {
        SessionEvent::Output(p) => Envelope::new(proto::MSG_SESSION_OUTPUT, p),
        SessionEvent::Error(p) => Envelope::new(proto::MSG_SESSION_ERROR, p),
    }
}

/// What an inbound frame asks of the connection.
enum Inbound {
    Continue,
    /// `retry_after_sec` as the server sent it (the reconnect policy clamps).
    Disconnect(i64),
    /// An ack to send back.
    Reply(Envelope),
}

fn handle_text(ctx: &ConnContext, text: &str, out: &mpsc::Sender<SessionEvent>) -> Inbound {
    let env = match Envelope::parse(text) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, bytes = text.len(), "ignoring a frame that is not a valid message");
            return Inbound::Continue;
        }
    };
    match env.msg_type.as_str() {
        proto::MSG_PING => Inbound::Continue,
        proto::MSG_ACK => {
            tracing::debug!(ref_id = ?env.ref_id, "ack from the server");
            Inbound::Continue
        }
        proto::MSG_DISCONNECT => {
            let d = env.decode::<DisconnectPayload>().unwrap_or_default();
            tracing::warn!(reason = %d.reason, retry_after_sec = d.retry_after_sec, "server asked us to disconnect");
            Inbound::Disconnect(d.retry_after_sec)
        }
        proto::MSG_SESSION_START => {
            let ack = match ctx.table.start(env.payload.as_ref(), text, out.clone()) {
                Ok(id) => {
                    tracing::info!(session_id = %id, "session accepted");
                    AckPayload {
                        ok: true,
                        error: None,
                        warning: None,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "session refused");
                    AckPayload {
                        ok: false,
                        error: Some(e.to_string()),
                        warning: None,
                    }
                }
            };
            Inbound::Reply(Envelope::reply(proto::MSG_ACK, &env.id, ack))
        }
        proto::MSG_SESSION_INPUT => {
            let Some(p) = env.decode::<SessionInputPayload>() else {
                tracing::warn!("ignoring session_input without a valid payload");
                return Inbound::Continue;
            };
            if let Err(e) = ctx.table.check_input(text) {
                tracing::warn!(session_id = %crate::util::escape_control(&p.session_id), error = %e,
                    "dropping session_input that failed its signature check");
                return Inbound::Continue;
            }
            match ctx.table.input(&p.session_id, p.message) {
                InputOutcome::Queued => {
                    tracing::debug!(session_id = %p.session_id, "chat input queued")
                }
                InputOutcome::QueueFull => {
                    tracing::warn!(session_id = %p.session_id, "chat input queue full; message dropped")
                }
                InputOutcome::Empty => {
                    tracing::info!(session_id = %p.session_id, "ignoring empty chat input")
                }
                InputOutcome::Unknown => {
                    tracing::info!(session_id = %p.session_id, "ignoring input for an unknown session")
                }
                InputOutcome::NotChat => {
                    tracing::info!(session_id = %p.session_id, "ignoring input for a session that is not a chat")
                }
            }
            Inbound::Continue
        }
        proto::MSG_SESSION_CANCEL => {
            let p = env.decode::<SessionCancelPayload>().unwrap_or_default();
            let found = ctx.table.cancel(&p.session_id);
            tracing::info!(session_id = %p.session_id, reason = %p.reason, found, "session_cancel");
            Inbound::Continue
        }
        other => {
            tracing::warn!(msg_type = other, "ignoring a message of unknown type");
            Inbound::Continue
        }
    }
}

/// What one turn of the serve loop decided.
enum Step {
    /// Nothing to write.
    Idle,
    /// Write this envelope.
    Write(Envelope),
    /// Write this alert batch; on failure it goes back into the buffer.
    Alerts(Envelope, Vec<AlertEvent>),
    /// The connection ends.
    End(AttemptOutcome),
    /// The server asked us to go (`retry_after_sec` as sent).
    Disconnect(i64),
}

async fn serve(
    ctx: &ConnContext,
    out: &mut Out,
    stream: &mut Stream,
    shutdown: &CancellationToken,
) -> AttemptOutcome {
    let t = &ctx.timings;
    let (out_tx, mut out_rx) = mpsc::channel::<SessionEvent>(256);
    let start = tokio::time::Instant::now();
    let mut heartbeat = tokio::time::interval_at(start + t.heartbeat, t.heartbeat);
    let mut alert_tick = tokio::time::interval_at(start + t.alert_flush, t.alert_flush);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    alert_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let read_deadline = tokio::time::sleep(t.read_timeout);
    tokio::pin!(read_deadline);
    let mut alerts_due = false;
    loop {
        let step = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Step::End(AttemptOutcome::Shutdown),
            msg = stream.next() => {
                read_deadline.as_mut().reset(tokio::time::Instant::now() + t.read_timeout);
                match msg {
                    None => Step::End(dropped("server closed the stream")),
                    Some(Err(e)) => Step::End(dropped(&format!("read failed: {e}"))),
                    Some(Ok(Message::Close(frame))) => {
                        tracing::info!(?frame, "server closed the connection");
                        Step::End(AttemptOutcome::DroppedAfterRegister)
                    }
                    Some(Ok(Message::Text(text))) => match handle_text(ctx, text.as_str(), &out_tx) {
                        Inbound::Continue => Step::Idle,
                        Inbound::Reply(env) => Step::Write(env),
                        Inbound::Disconnect(retry_after_sec) => Step::Disconnect(retry_after_sec),
                    },
                    Some(Ok(Message::Binary(b))) => {
                        tracing::warn!(bytes = b.len(), "ignoring a binary frame");
                        Step::Idle
                    }
                    Some(Ok(_)) => Step::Idle,
                }
            }
            Some(ev) = out_rx.recv() => Step::Write(event_envelope(ev)),
            _ = &mut read_deadline => Step::End(dropped("no frame from the server within the read timeout")),
            _ = heartbeat.tick() => {
                let hb = HeartbeatPayload {
                    active_sessions: ctx.table.active() as u64,
                    active_alerts: ctx.alerts.len() as u64,
                    cpu_pct: crate::tools::cpu_busy_pct_since_last(),
                    mem_pct: crate::tools::mem_used_pct(),
                };
                Step::Write(Envelope::new(proto::MSG_HEARTBEAT, hb))
            }
            _ = alert_tick.tick() => {
                alerts_due = true;
                Step::Idle
            }
            // One batch per turn of the loop, after everything above.
            _ = std::future::ready(()), if alerts_due => {
                let batch = ctx.alerts.drain_frame();
                if batch.is_empty() {
                    alerts_due = false;
                    Step::Idle
                } else {
                    let env = Envelope::new(proto::MSG_ALERT_EVENTS, AlertEventsPayload { events: batch.clone() });
                    Step::Alerts(env, batch)
                }
            }
        };
        let (env, batch) = match step {
            Step::Idle => continue,
            Step::Write(env) => (env, None),
            Step::Alerts(env, batch) => (env, Some(batch)),
            Step::End(AttemptOutcome::Shutdown) => {
                return graceful_close(ctx, out, &mut out_rx).await;
            }
            Step::End(outcome) => return outcome,
            Step::Disconnect(retry_after_sec) => {
                out.close("disconnect requested", t.write_timeout).await;
                return AttemptOutcome::ServerDisconnect { retry_after_sec };
            }
        };
        match out.write(&env, shutdown).await {
            Ok(()) => {}
            Err(e) => {
                // Sent or not, the server may not have it: at least once
                // beats never for alerts.
                if let Some(batch) = batch {
                    ctx.alerts.push_front_batch(batch);
                }
                return match e {
                    WriteError::Shutdown => graceful_close(ctx, out, &mut out_rx).await,
                    WriteError::Lost => dropped("write failed"),
                };
            }
        }
    }
}

/// Shutdown: cancel sessions, send their final messages while the socket is
/// up, then close with a normal close frame. Bounded: sessions get
/// `shutdown_grace` to finish (the rest of a frame a shutdown interrupted
/// goes out with the first of their messages), the close frame
/// `write_timeout` more; a socket that takes nothing costs no more than
/// that.
async fn graceful_close(
    ctx: &ConnContext,
    out: &mut Out,
    out_rx: &mut mpsc::Receiver<SessionEvent>,
) -> AttemptOutcome {
    ctx.table.cancel_all();
    let deadline = tokio::time::Instant::now() + ctx.timings.shutdown_grace;
    let drained = tokio::time::timeout_at(deadline, async {
        loop {
            let ev = if ctx.table.active() == 0 {
                // Sessions are gone; flush what they left in the channel.
                match out_rx.try_recv() {
                    Ok(ev) => ev,
                    Err(_) => return,
                }
            } else {
                match tokio::time::timeout(Duration::from_millis(20), out_rx.recv()).await {
                    Ok(Some(ev)) => ev,
                    _ => continue,
                }
            };
            if out
                .sink
                .send(Message::text(event_envelope(ev).to_json()))
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("sessions did not finish within the shutdown grace period");
    }
    out.close("agent shutting down", ctx.timings.write_timeout)
        .await;
    AttemptOutcome::Shutdown
}
