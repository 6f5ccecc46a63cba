//! The wasm implementation of the chat runner trait: one conversation per
//! session, one store per turn or per session.
//!
//! Why an idle chat may hold no instance: an open chat waits for its user
//! far longer than it runs, and a live instance between turns (its store,
//! linear memory, async stack and pool slot) cost some 80 KiB resident per
//! chat (BENCHMARKS.md, open chats). When the runner exports `snapshot`,
//! each turn (and the start) ends by saving the conversation; the chat
//! then keeps only those bytes and the host state that spans turns
//! ([`store::Parked`]), and the next turn instantiates the runner afresh
//! and restores the conversation before it handles the message. Restore,
//! turn and save share the turn's budgets (fuel, time, memory, calls).
//! A runner without the export, a state over `max_chat_state`, or a save
//! that fails keep the instance alive between turns instead, as before.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::Sandbox;
use super::budgets::{self, Budgets};
use super::capabilities::Grant;
use super::limits::{self, Guarded};
use super::run::{Meter, charge_reply, failed, finish, guest_failure, instantiated, session_store};
use super::snapshot::{Saved, SnapshotExports};
use super::store::{self, SessionState};
use super::versions::{ChatInstance, ChatPre};
use crate::runner::Receipt;
use crate::runner::{ChatHandle, ChatRunner, ChatSessionOpts, RunError, SessionInfo, StreamSink};

/// Serves chat sessions with a wasm component.
pub struct WasmChatRunner {
    sandbox: Arc<Sandbox>,
    pre: ChatPre,
    /// The runner's `snapshot` export, if it has one.
    snapshot: Option<SnapshotExports>,
    limits: Budgets,
    /// What its sessions may reach.
    grant: Grant,
}

impl WasmChatRunner {
    pub(crate) fn new(
        sandbox: Arc<Sandbox>,
        pre: ChatPre,
        snapshot: Option<SnapshotExports>,
        limits: Budgets,
        grant: Grant,
    ) -> Self {
        WasmChatRunner {
            sandbox,
            pre,
            snapshot,
            limits,
            grant,
        }
    }

    /// What its sessions may reach.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The budgets each session (each turn, for fuel and time) gets.
    pub fn limits(&self) -> &Budgets {
        &self.limits
    }
}

#[async_trait]
impl ChatRunner for WasmChatRunner {
    async fn start(
        &self,
        info: &SessionInfo,
        opts: ChatSessionOpts,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<Box<dyn ChatHandle>, RunError> {
        self.start_metered(info, opts, sink, cancel).await.0
    }

    async fn start_metered(
        &self,
        info: &SessionInfo,
        opts: ChatSessionOpts,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> (Result<Box<dyn ChatHandle>, RunError>, Option<Receipt>) {
        let mut meter = Meter::new(&self.limits);
        match self.start_in(info, opts, sink, cancel, &mut meter).await {
            Ok(chat) => (Ok(chat), None),
            Err(e) => (Err(e), Some(meter.session)),
        }
    }
}

impl WasmChatRunner {
    /// Opens the conversation; the start's receipt goes to `meter` (and
    /// on to the chat, which keeps metering its turns).
    async fn start_in(
        &self,
        info: &SessionInfo,
        opts: ChatSessionOpts,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
        meter: &mut Meter,
    ) -> Result<Box<dyn ChatHandle>, RunError> {
        let deadline = Instant::now() + self.limits.timeout;
        let limits = &self.limits;
        let mut store = session_store(&self.sandbox, limits, &self.grant, info, sink)?;
        let outcome =
            limits::guard(self.pre.instantiate(&mut store), limits.timeout, &cancel).await;
        let inst = instantiated(&mut store, limits, meter, outcome)?;
        let outcome = limits::guard(
            inst.create(&mut store, opts.allow_shell),
            limits.timeout,
            &cancel,
        )
        .await;
        let mut chat = WasmChat {
            held: Held::Lost(String::new()),
            sandbox: self.sandbox.clone(),
            pre: self.pre.clone(),
            snapshot: self.snapshot.clone(),
            limits: self.limits.clone(),
            session_id: info.session_id.as_str().into(),
            meter: meter.clone(),
            cancel,
        };
        let saved = match &outcome {
            Guarded::Finished(Ok(Ok(conversation))) => {
                chat.save(&mut store, &inst, *conversation, deadline).await
            }
            _ => Ok(None),
        };
        let conversation = finish(&mut store, limits, meter, outcome)?.map_err(guest_failure)?;
        // A save that broke the run's budget or trapped ends it: the
        // instance cannot be entered again.
        let state = saved?;
        chat.meter = meter.clone();
        chat.held = Held::after_run(store, inst, conversation, state);
        Ok(Box::new(chat))
    }
}

/// What an open chat holds between turns.
enum Held {
    /// Its instance, alive (a runner without `snapshot`, or whose save
    /// did not give a state the host keeps).
    Live {
        store: Store<SessionState>,
        inst: ChatInstance,
        conversation: ResourceAny,
    },
    /// The conversation as its runner saved it, and the host state that
    /// spans turns; no instance.
    Parked {
        parked: Box<store::Parked>,
        state: Box<[u8]>,
    },
    /// Nothing: restoring the conversation failed (the text says why).
    Lost(String),
}

impl Held {
    /// What a run that ended with `state` saved (or not) leaves held.
    fn after_run(
        store: Store<SessionState>,
        inst: ChatInstance,
        conversation: ResourceAny,
        state: Option<Box<[u8]>>,
    ) -> Held {
        match state {
            Some(state) => Held::Parked {
                parked: Box::new(store::park(store)),
                state,
            },
            None => Held::Live {
                store,
                inst,
                conversation,
            },
        }
    }
}

/// One open wasm conversation.
struct WasmChat {
    held: Held,
    sandbox: Arc<Sandbox>,
    pre: ChatPre,
    snapshot: Option<SnapshotExports>,
    limits: Budgets,
    session_id: Box<str>,
    meter: Meter,
    cancel: CancellationToken,
}

/// Time left before `deadline`.
fn left(deadline: Instant) -> std::time::Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl WasmChat {
    /// The conversation's store, instance and handle for the turn that
    /// begins: the live ones, or fresh ones with the conversation restored
    /// (within the turn's budgets, before `deadline`). Err ends the turn;
    /// a restore that failed leaves nothing held and ends the session, a
    /// sandbox with no free slot keeps the state for the next turn.
    async fn revive(
        &mut self,
        deadline: Instant,
    ) -> Result<(Store<SessionState>, ChatInstance, ResourceAny), RunError> {
        let (parked, state) = match std::mem::replace(&mut self.held, Held::Lost(String::new())) {
            Held::Live {
                store,
                inst,
                conversation,
            } => return Ok((store, inst, conversation)),
            Held::Lost(why) => {
                self.held = Held::Lost(why.clone());
                return Err(RunError::Lost(why));
            }
            Held::Parked { parked, state } => (parked, state),
        };
        let Some(snapshot) = self.snapshot.clone() else {
            return Err(self.lose("the runner has no snapshot export".into()));
        };
        let sandbox = &self.sandbox;
        let mut store = store::unpark(&sandbox.engine, &self.limits, &sandbox.instances, *parked)
            .map_err(|e| self.lose(format!("creating the session store: {e:#}")))?;
        let outcome = limits::guard(
            self.pre.instantiate(&mut store),
            left(deadline),
            &self.cancel,
        )
        .await;
        let inst = match instantiated(&mut store, &self.limits, &mut self.meter, outcome) {
            Ok(inst) => inst,
            Err(e @ RunError::Host(_)) => {
                // No slot free now: the conversation waits for the next turn.
                self.held = Held::Parked {
                    parked: Box::new(store::park(store)),
                    state,
                };
                return Err(e);
            }
            Err(e) => {
                self.held = Held::Lost(e.to_string());
                return Err(e);
            }
        };
        let Some(instance) = inst.component_instance().copied() else {
            return Err(self.lose("the runner has no snapshot export".into()));
        };
        let outcome = limits::guard(
            snapshot.restore(&mut store, &instance, &state),
            left(deadline),
            &self.cancel,
        )
        .await;
        if let Guarded::Finished(Ok(Ok(conversation))) = outcome {
            return Ok((store, inst, conversation));
        }
        let e = match finish(&mut store, &self.limits, &mut self.meter, outcome) {
            Ok(Err(why)) => RunError::Lost(why),
            Ok(Ok(_)) => RunError::Lost("restored twice".into()),
            Err(e) => e,
        };
        self.held = Held::Lost(e.to_string());
        Err(e)
    }

    /// Records that the conversation is gone for `why`.
    fn lose(&mut self, why: String) -> RunError {
        self.held = Held::Lost(why.clone());
        RunError::Lost(why)
    }

    /// Saves the conversation, when the runner can, within the run's
    /// budgets: the state to keep in place of the instance, or None (the
    /// instance stays; the log says why). Err: the save broke the run's
    /// budget (fuel, memory, time) or trapped; the instance is unusable and
    /// the run ends with that error.
    async fn save(
        &mut self,
        store: &mut Store<SessionState>,
        inst: &ChatInstance,
        conversation: ResourceAny,
        deadline: Instant,
    ) -> Result<Option<Box<[u8]>>, RunError> {
        let Some(snapshot) = self.snapshot.as_ref() else {
            return Ok(None);
        };
        let Some(instance) = inst.component_instance() else {
            return Ok(None);
        };
        let cap = budgets::as_len(self.limits.max_chat_state);
        if cap == 0 {
            return Ok(None);
        }
        let outcome = limits::guard(
            snapshot.save(store, instance, conversation, cap),
            left(deadline),
            &self.cancel,
        )
        .await;
        let why = match outcome {
            Guarded::Finished(Ok(Saved::State(state))) => return Ok(Some(state)),
            Guarded::Cancelled => return Ok(None),
            Guarded::Finished(Ok(Saved::Refused(why))) => format!("the runner refused: {why}"),
            Guarded::Finished(Ok(Saved::TooLarge(bytes))) => format!(
                "its state is {bytes} bytes, over the cap of {cap} (`[sandbox] max_chat_state`)"
            ),
            Guarded::Finished(Err(e)) => {
                // A trap (fuel, memory, a guest fault) leaves the instance
                // unusable; the host refusing to copy an oversized state
                // does not, and the chat keeps its instance.
                let err = limits::classify(&e, self.limits.fuel, None);
                if e.downcast_ref::<wasmtime::Trap>().is_some()
                    || matches!(err, RunError::ResourceExhausted { .. })
                {
                    return Err(err);
                }
                err.to_string()
            }
            Guarded::TimedOut => return Err(limits::timed_out(self.limits.timeout)),
        };
        tracing::warn!(session_id = %self.session_id, %why,
            "saving the conversation failed; the chat keeps its instance until the next turn");
        Ok(None)
    }
}

#[async_trait]
impl ChatHandle for WasmChat {
    async fn handle_message(&mut self, input: &str) -> Result<String, RunError> {
        // Fuel, tool calls, guest log lines and captured stdio are per-turn
        // budgets, made whole when the last turn (or `create`) finished: a
        // long chat is not starved by the turns before it.
        self.meter.begin();
        let deadline = Instant::now() + self.limits.timeout;
        let (mut store, inst, conversation) = self.revive(deadline).await?;
        let outcome = limits::guard(
            inst.handle_message(&mut store, conversation, input),
            left(deadline),
            &self.cancel,
        )
        .await;
        let saved = match &outcome {
            Guarded::Finished(Ok(_)) => self.save(&mut store, &inst, conversation, deadline).await,
            _ => Ok(None),
        };
        let answer = finish(&mut store, &self.limits, &mut self.meter, outcome)
            .and_then(|r| r.map_err(|m| failed(&store, m)))
            .and_then(|answer| {
                charge_reply(&mut store, &mut self.meter, &answer, "the answer")?;
                Ok(answer)
            });
        match saved {
            Ok(state) => {
                self.held = Held::after_run(store, inst, conversation, state);
                answer
            }
            // A save that broke the turn's budget or trapped ends the
            // turn with that error: the instance cannot be entered again.
            Err(e) => {
                self.held = Held::Lost(e.to_string());
                Err(e)
            }
        }
    }

    fn receipts(&self) -> Option<(Receipt, Receipt)> {
        Some((self.meter.last.clone(), self.meter.session.clone()))
    }
}
