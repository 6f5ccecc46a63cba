//! Reading a runner's `describe` export, once, when it is loaded.
//!
//! The call runs in a store of its own under the default budgets, with a
//! session info that names no session, output going nowhere, and no
//! audit. It belongs to no session, so nothing it does could be audited:
//! it may make no tool call, no shell request and no model call (its
//! budgets for them are zero and it sees no model), and a runner whose
//! `describe` tries does not load. Loading is synchronous and may happen on
//! a runtime thread, so the call gets a thread and a small runtime of its
//! own.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::Sandbox;
use super::budgets::Budgets;
use super::limits::{self, Guarded};
use super::versions::{ChatPre, DiagnosePre};
use crate::runner::{Description, Output, SessionInfo, StreamSink};

struct Nowhere;

#[async_trait]
impl StreamSink for Nowhere {
    async fn send(&self, _out: Output) {}
}

/// Calls `describe` on a fresh instance of the component behind `diagnose`
/// (or, for a chat-only component, `chat`). Ok(None): the component was
/// built against 0.1.0 and has no `describe`. Err: it trapped, broke a
/// budget, or could not be instantiated; the text says which.
pub(crate) fn read(
    sandbox: &Arc<Sandbox>,
    diagnose: Option<&DiagnosePre>,
    chat: Option<&ChatPre>,
) -> Result<Option<Description>, String> {
    let sandbox = sandbox.clone();
    let diagnose = diagnose.cloned();
    let chat = chat.cloned();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting a runtime to call describe: {e}"))?;
            rt.block_on(call(&sandbox, diagnose, chat))
        })
        .join()
        .unwrap_or_else(|_| Err("the describe call panicked in the host".to_string()))
    })
}

async fn call(
    sandbox: &Arc<Sandbox>,
    diagnose: Option<DiagnosePre>,
    chat: Option<ChatPre>,
) -> Result<Option<Description>, String> {
    // No act on the host: none of it could be audited.
    let limits = Budgets {
        max_host_calls: 0,
        max_llm_calls: 0,
        ..Budgets::default()
    };
    let info = SessionInfo {
        session_id: "describe".into(),
        session_type: "describe".into(),
        user_name: "catpaw-agent".into(),
        allow_shell: false,
        key_id: None,
    };
    let mut store =
        super::run::session_store_without_audit(sandbox, &limits, &info, Arc::new(Nowhere))
            .map_err(|e| e.to_string())?;
    let cancel = CancellationToken::new();
    let outcome = match (diagnose, chat) {
        (Some(pre), _) => {
            limits::guard(
                async {
                    let inst = pre.instantiate(&mut store).await?;
                    inst.describe(&mut store).await.transpose()
                },
                limits.timeout,
                &cancel,
            )
            .await
        }
        (None, Some(pre)) => {
            limits::guard(
                async {
                    let inst = pre.instantiate(&mut store).await?;
                    inst.describe(&mut store).await.transpose()
                },
                limits.timeout,
                &cancel,
            )
            .await
        }
        (None, None) => return Ok(None),
    };
    match outcome {
        Guarded::Finished(Ok(d)) => Ok(d),
        Guarded::Finished(Err(e)) => Err(limits::classify(&e, limits.fuel, None).to_string()),
        Guarded::TimedOut => Err(limits::timed_out(limits.timeout).to_string()),
        Guarded::Cancelled => Err("cancelled".to_string()),
    }
}
