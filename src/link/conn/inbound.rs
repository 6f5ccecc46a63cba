//! What one inbound text frame asks of the connection: PROTOCOL §4 by
//! message type (acks to send, sessions to start, input to queue, cancels,
//! a disconnect).

use super::*;

/// What an inbound frame asks of the connection.
pub(super) enum Inbound {
    Continue,
    /// `retry_after_sec` as the server sent it (the reconnect policy clamps).
    Disconnect(i64),
    /// The ack of a `session_start`, to send back.
    Ack(Envelope),
}

pub(super) fn handle_text(
    ctx: &ConnContext,
    text: &str,
    out: &mpsc::Sender<SessionEvent>,
) -> Inbound {
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
            tracing::debug!(
                ref_id = env.ref_id.as_deref().unwrap_or("none"),
                "ack from the server"
            );
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
                    tracing::debug!(session_id = %id, "session accepted");
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
            Inbound::Ack(Envelope::reply(proto::MSG_ACK, &env.id, ack))
        }
        proto::MSG_SESSION_INPUT => {
            let Some(p) = env.decode::<SessionInputPayload>() else {
                tracing::warn!("ignoring session_input without a valid payload");
                return Inbound::Continue;
            };
            if let Err(e) = ctx.table.check_input(text, env.payload.as_ref()) {
                tracing::warn!(session_id = %p.session_id, error = %e,
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
                    tracing::debug!(session_id = %p.session_id, "ignoring empty chat input")
                }
                InputOutcome::Unknown => {
                    tracing::debug!(session_id = %p.session_id, "ignoring input for an unknown session")
                }
                InputOutcome::NotChat => {
                    tracing::debug!(session_id = %p.session_id, "ignoring input for a session that is not a chat")
                }
            }
            Inbound::Continue
        }
        proto::MSG_SESSION_CANCEL => {
            let p = env.decode::<SessionCancelPayload>().unwrap_or_default();
            let found = ctx.table.cancel(&p.session_id);
            tracing::debug!(session_id = %p.session_id, reason = %p.reason, found, "session_cancel");
            Inbound::Continue
        }
        other => {
            // Debug, as the reference agent: a newer server may send types
            // this agent does not know yet, and that is no fault.
            tracing::debug!(msg_type = other, "ignoring a message of unknown type");
            Inbound::Continue
        }
    }
}
