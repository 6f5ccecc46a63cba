//! The serve loop of a registered connection and its write path: the
//! biased select (inbound, heartbeat and alert timers, session output and
//! alert batches taking turns) and the graceful close on shutdown.
//!
//! Session output is written in batches: whatever the sessions queued
//! while the last write was under way is taken at once (bounded by
//! [`batch::MAX_EVENTS`] and [`batch::MAX_WRITE_BYTES`], a larger delta
//! split across writes), plain deltas merged ([`batch::merge`]), each
//! frame fed to the socket, and the socket flushed once: one write syscall
//! for a backlog instead of one per 16-byte delta.

use std::collections::VecDeque;

use futures_util::future::poll_fn;

use super::inbound::{Inbound, handle_text};
use super::*;
use super::{batch, frames};

pub(super) type Sink = futures_util::stream::SplitSink<Ws, Message>;
pub(super) type Stream = futures_util::stream::SplitStream<Ws>;

/// The write half of the connection and its progress clock.
pub(super) struct Out {
    pub(super) sink: Sink,
    pub(super) clock: WriteClock,
    /// The socket's send queue: how much of what was written the server
    /// has not acknowledged.
    pub(super) queue: SendQueue,
    /// No progress for this long = connection lost.
    pub(super) idle: Duration,
}

/// Why a write did not finish.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The socket failed or no byte moved for the whole limit (logged).
    Lost,
    /// Shutdown came first.
    Shutdown,
}

impl Out {
    /// Writes one envelope; as [`Out::write_frames`].
    pub(super) async fn write(
        &mut self,
        env: &Envelope,
        shutdown: &CancellationToken,
    ) -> Result<(), WriteError> {
        let mut one = VecDeque::from([env.to_json()]);
        self.write_frames(&mut one, &env.msg_type, shutdown).await
    }

    /// Writes `frames` in order and flushes once: done when the last is
    /// flushed to the socket, lost when no byte moves for `idle`,
    /// interrupted by shutdown. A frame leaves `frames` only once the sink
    /// has taken it whole, so after an interruption `frames` holds exactly
    /// what was not sent, and a frame the sink took goes out first on the
    /// next flush: the stream's framing stays whole. `what` names the
    /// frames in the log.
    pub(super) async fn write_frames(
        &mut self,
        frames: &mut VecDeque<String>,
        what: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), WriteError> {
        let Out {
            sink, clock, idle, ..
        } = self;
        let sending = transport::unless_stalled(clock, *idle, async {
            while !frames.is_empty() {
                poll_fn(|cx| sink.poll_ready_unpin(cx)).await?;
                if let Some(m) = frames.pop_front().and_then(|f| frames::message(f, what)) {
                    sink.start_send_unpin(m)?;
                }
            }
            sink.flush().await
        });
        let r = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(WriteError::Shutdown),
            r = sending => r,
        };
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, msg_type = %what, "write failed");
                Err(WriteError::Lost)
            }
            Err(stalled) => {
                tracing::warn!(error = %stalled, msg_type = %what, "write stalled: the server takes no data");
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

/// What one turn of the serve loop decided.
enum Step {
    /// Nothing to write.
    Idle,
    /// Write this envelope.
    Write(Envelope),
    /// Write this ack of a `session_start` read at that instant.
    Ack(Envelope, std::time::Instant),
    /// Write these session events (one batch).
    Events(Vec<SessionEvent>),
    /// Write this alert batch; on failure it goes back into the buffer.
    Alerts(Envelope, Vec<AlertEvent>),
    /// The connection ends.
    End(AttemptOutcome),
    /// The server asked us to go (`retry_after_sec` as sent).
    Disconnect(i64),
}

pub(super) async fn serve(
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
    // Where the last alert batch written ends in the byte stream: the next
    // batch waits until the server has acknowledged it (module doc).
    let mut alerts_end: u64 = 0;
    let (clock, queue) = (out.clock.clone(), out.queue);
    // Whether the last write was an alert batch: while session output and
    // alerts both wait, they take turns.
    let mut alerts_last = false;
    // Session output taken from the channel but not yet written: the rest
    // of a delta split to bound one write (`batch::take`).
    let mut pending: VecDeque<SessionEvent> = VecDeque::new();
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
                        tracing::info!(close = %frame.as_ref().map_or_else(
                            || "no close frame".to_string(),
                            |f| format!("code {}: {}", u16::from(f.code), f.reason),
                        ), "server closed the connection");
                        Step::End(AttemptOutcome::DroppedAfterRegister)
                    }
                    Some(Ok(Message::Text(text))) => match handle_text(ctx, text.as_str(), &out_tx) {
                        Inbound::Continue => Step::Idle,
                        Inbound::Ack(env) => Step::Ack(env, std::time::Instant::now()),
                        Inbound::Disconnect(retry_after_sec) => Step::Disconnect(retry_after_sec),
                    },
                    Some(Ok(Message::Binary(b))) => {
                        tracing::warn!(bytes = b.len(), "ignoring a binary frame");
                        Step::Idle
                    }
                    Some(Ok(_)) => Step::Idle,
                }
            }
            // Timers before session output: a steady stream must not stop
            // heartbeats or alert flushes (both are cheap and rare).
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
            _ = transport::acked_through(&clock, queue, alerts_end), if alerts_due && !alerts_last => {
                alert_step(ctx, &mut alerts_due)
            }
            // The rest of a split delta goes before anything newer.
            _ = std::future::ready(()), if !pending.is_empty() => {
                Step::Events(batch::take(&mut pending, &mut out_rx))
            }
            Some(ev) = out_rx.recv(), if pending.is_empty() => {
                pending.push_back(ev);
                Step::Events(batch::take(&mut pending, &mut out_rx))
            }
            _ = &mut read_deadline => Step::End(dropped("no frame from the server within the read timeout")),
            // One batch per turn of the loop when nothing else waits.
            _ = transport::acked_through(&clock, queue, alerts_end), if alerts_due => {
                alert_step(ctx, &mut alerts_due)
            }
        };
        // Only the two that take turns change whose turn it is (a timer
        // firing in between must not hand it back to the alerts).
        match step {
            Step::Alerts(..) => alerts_last = true,
            Step::Events(..) => alerts_last = false,
            _ => {}
        }
        let mut w = match step {
            Step::Idle => continue,
            Step::Write(env) => Write::one(&env),
            Step::Ack(env, received) => Write {
                session_start: Some(received),
                ..Write::one(&env)
            },
            Step::Events(events) => Write::events(events),
            Step::Alerts(env, batch) => Write {
                alerts: Some(batch),
                ..Write::one(&env)
            },
            Step::End(AttemptOutcome::Shutdown) => {
                let unsent = frames::unsent_frames(&pending);
                return graceful_close(ctx, out, stream, &mut out_rx, unsent).await;
            }
            Step::End(outcome) => {
                log_dropped_output(&mut out_rx, pending.len());
                return outcome;
            }
            Step::Disconnect(retry_after_sec) => {
                log_dropped_output(&mut out_rx, pending.len());
                out.close("disconnect requested", t.write_timeout).await;
                return AttemptOutcome::ServerDisconnect { retry_after_sec };
            }
        };
        match out.write_frames(&mut w.frames, &w.what, shutdown).await {
            Ok(()) => {
                if let Some(batch) = &w.alerts {
                    ctx.telemetry.alerts_sent(batch.len() as u64);
                    alerts_end = out.clock.written();
                }
                for bytes in w.outputs {
                    ctx.telemetry.output_sent(bytes);
                }
                if let Some(received) = w.session_start {
                    ctx.telemetry.session_acked(received.elapsed());
                }
            }
            Err(e) => {
                // Sent or not, the server may not have it: at least once
                // beats never for alerts.
                if let Some(batch) = w.alerts {
                    ctx.alerts.push_front_batch(batch);
                    w.frames.clear();
                }
                return match e {
                    WriteError::Shutdown => {
                        let mut unsent = w.frames;
                        unsent.extend(frames::unsent_frames(&pending));
                        graceful_close(ctx, out, stream, &mut out_rx, unsent).await
                    }
                    WriteError::Lost => {
                        log_dropped_output(&mut out_rx, w.outputs.len() + pending.len());
                        dropped("write failed")
                    }
                };
            }
        }
    }
}

/// Logs the session output a dropped connection takes with it: `unsent`
/// frames of the write that failed, and whatever the sessions had queued.
/// The sessions themselves are cancelled by the caller.
fn log_dropped_output(out_rx: &mut mpsc::Receiver<SessionEvent>, unsent: usize) {
    let mut queued = 0usize;
    while out_rx.try_recv().is_ok() {
        queued += 1;
    }
    if queued + unsent > 0 {
        tracing::warn!(
            queued,
            unsent,
            "the connection dropped with session output not sent; those sessions are cancelled"
        );
    }
}

/// Most bytes of events in one alert batch the serve loop writes (an event
/// larger than this goes alone, in a frame of at most
/// [`crate::alerts::frame::MAX_FRAME_BYTES`]): what a session's ack or
/// output may wait behind.
pub(super) const ALERT_BATCH_BYTES: usize = 64 * 1024;

/// The next alert batch to write, or `Idle` (and no longer due) when the
/// buffer is empty.
fn alert_step(ctx: &ConnContext, alerts_due: &mut bool) -> Step {
    let batch = ctx
        .alerts
        .drain_batch(crate::alerts::frame::MAX_EVENTS, ALERT_BATCH_BYTES);
    if batch.is_empty() {
        *alerts_due = false;
        return Step::Idle;
    }
    let env = Envelope::new(
        proto::MSG_ALERT_EVENTS,
        AlertEventsPayload {
            events: batch.clone(),
        },
    );
    Step::Alerts(env, batch)
}

/// One write of the serve loop and what to account once it is done.
struct Write {
    /// The frames, in order.
    frames: VecDeque<String>,
    /// What they are, for the log.
    what: String,
    /// The alert batch they carry (back into the buffer if not sent).
    alerts: Option<Vec<AlertEvent>>,
    /// Output bytes of each `session_output` among them.
    outputs: Vec<u64>,
    /// When the `session_start` this write acks was read.
    session_start: Option<std::time::Instant>,
}

impl Write {
    fn one(env: &Envelope) -> Write {
        Write {
            frames: VecDeque::from([env.to_json()]),
            what: env.msg_type.clone(),
            alerts: None,
            outputs: Vec::new(),
            session_start: None,
        }
    }

    fn events(events: Vec<SessionEvent>) -> Write {
        let (frames, outputs) = frames::event_frames(events);
        Write {
            frames,
            what: proto::MSG_SESSION_OUTPUT.to_string(),
            alerts: None,
            outputs,
            session_start: None,
        }
    }
}

/// Shutdown: cancel sessions, send their final messages while the socket is
/// up (after `unsent`, the frames a shutdown interrupted), then close with
/// a normal close frame. Bounded: sessions get
/// `shutdown_grace` to finish (the rest of a frame a shutdown interrupted
/// goes out with the first of their messages), the close frame
/// `write_timeout` more; a socket that takes nothing costs no more than
/// that.
async fn graceful_close(
    ctx: &ConnContext,
    out: &mut Out,
    stream: &mut Stream,
    out_rx: &mut mpsc::Receiver<SessionEvent>,
    unsent: VecDeque<String>,
) -> AttemptOutcome {
    ctx.table.cancel_all();
    let deadline = tokio::time::Instant::now() + ctx.timings.shutdown_grace;
    let drained = tokio::time::timeout_at(deadline, async {
        for m in unsent
            .into_iter()
            .filter_map(|f| frames::message(f, proto::MSG_SESSION_OUTPUT))
        {
            if out.sink.send(m).await.is_err() {
                return;
            }
        }
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
            for f in frames::session_frames(ev) {
                let Some(m) = frames::message(f.text, proto::MSG_SESSION_OUTPUT) else {
                    continue;
                };
                if out.sink.send(m).await.is_err() {
                    return;
                }
                if let Some(bytes) = f.output {
                    ctx.telemetry.output_sent(bytes);
                }
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("sessions did not finish within the shutdown grace period");
    }
    close_for_shutdown(out, stream, ctx.timings.write_timeout).await;
    AttemptOutcome::Shutdown
}

/// Sends our Close frame and finishes the closing handshake: reads until
/// the server's Close (or the end of the stream), briefly. A socket closed
/// with unread frames in its receive buffer (a register ack not read yet,
/// say) is reset, and the server may then lose our Close frame and see
/// "connection reset" instead of a normal close.
pub(super) async fn close_for_shutdown(
    out: &mut Out,
    stream: &mut Stream,
    write_timeout: Duration,
) {
    out.close("agent shutting down", write_timeout).await;
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(m)) = stream.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

/// How long shutdown waits for the server's answer to our Close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);
