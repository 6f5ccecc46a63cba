//! How a guest that breaks a budget is stopped and blamed (the budgets
//! themselves are [`Budgets`](super::budgets::Budgets)).
//!
//! Mechanism, chosen by measurement (see BENCHMARKS.md): fuel is the only
//! instrumentation compiled into guest code. Fuel bounds the work of one run
//! or chat turn, and the store yields to the async executor every
//! [`FUEL_YIELD_INTERVAL`](super::engine::FUEL_YIELD_INTERVAL) units, so a
//! host-side timer and the session's cancellation token get a chance to run
//! even while a guest spins without calling the host. Either of them drops
//! the call future, which unwinds the guest's fiber at once. Epoch
//! interruption would add a second check on every loop back-edge for no
//! gain.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmtime::Trap;

use crate::runner::{Budget, RunError};

/// Raised (as a trap) by host code when a guest breaks a budget the host
/// enforces itself: memory growth, table growth, output bytes, host calls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{budget} budget exhausted: {detail}")]
pub(crate) struct BudgetExceeded {
    pub(crate) budget: Budget,
    pub(crate) detail: String,
}

impl From<BudgetExceeded> for RunError {
    fn from(b: BudgetExceeded) -> Self {
        RunError::ResourceExhausted {
            budget: b.budget,
            detail: b.detail,
        }
    }
}

/// How a guarded guest call ended.
pub(crate) enum Guarded<T> {
    /// The call returned (or trapped).
    Finished(wasmtime::Result<T>),
    /// The wall-clock limit passed first.
    TimedOut,
    /// The session was cancelled first.
    Cancelled,
}

/// Drives one guest call until it finishes, its time runs out, or the
/// session is cancelled. Dropping `call` on the latter two unwinds the guest.
pub(crate) async fn guard<T>(
    call: impl Future<Output = wasmtime::Result<T>>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Guarded<T> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Guarded::Cancelled,
        _ = tokio::time::sleep(timeout) => Guarded::TimedOut,
        r = call => Guarded::Finished(r),
    }
}

/// Blames a failed guest call. `fuel` and `timeout` are the budgets that
/// were in force, for the message; `stderr_tail` is the guest's last words
/// (a Rust panic message or a Python traceback lands there before the
/// trap), put on lines of its own after the trap.
pub(crate) fn classify(err: &wasmtime::Error, fuel: u64, stderr_tail: Option<&str>) -> RunError {
    if let Some(b) = err.downcast_ref::<BudgetExceeded>() {
        return b.clone().into();
    }
    let with_tail = |msg: String| match stderr_tail {
        Some(t) if !t.trim().is_empty() => format!("{msg}; guest stderr:\n{}", t.trim()),
        _ => msg,
    };
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => RunError::ResourceExhausted {
                budget: Budget::Fuel,
                detail: format!("used all {fuel} fuel units of this call"),
            },
            Trap::StackOverflow => RunError::Trapped(with_tail(
                "stack overflow (wasm call stack exhausted)".to_string(),
            )),
            other => RunError::Trapped(with_tail(format!("{other}"))),
        };
    }
    RunError::Trapped(with_tail(format!("{err:#}")))
}

/// The error for a call that ran past its wall-clock limit.
pub(crate) fn timed_out(timeout: Duration) -> RunError {
    RunError::ResourceExhausted {
        budget: Budget::Time,
        detail: format!("still running after {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_fuel_is_a_fuel_budget() {
        let e = wasmtime::Error::from(Trap::OutOfFuel);
        let r = classify(&e, 42, None);
        assert_eq!(
            r,
            RunError::ResourceExhausted {
                budget: Budget::Fuel,
                detail: "used all 42 fuel units of this call".into()
            }
        );
    }

    #[test]
    fn host_budget_errors_keep_their_budget() {
        let e = wasmtime::Error::from(BudgetExceeded {
            budget: Budget::Memory,
            detail: "x".into(),
        });
        assert!(matches!(
            classify(&e, 1, None),
            RunError::ResourceExhausted {
                budget: Budget::Memory,
                ..
            }
        ));
    }

    #[test]
    fn traps_carry_the_guest_panic_message() {
        let e = wasmtime::Error::from(Trap::UnreachableCodeReached);
        match classify(&e, 1, Some("panicked at src/lib.rs: boom\n")) {
            RunError::Trapped(msg) => assert!(msg.contains("boom"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn guard_ends_a_call_that_outlives_its_timeout() {
        let cancel = CancellationToken::new();
        let never = std::future::pending::<wasmtime::Result<()>>();
        assert!(matches!(
            guard(never, Duration::from_millis(10), &cancel).await,
            Guarded::TimedOut
        ));
    }

    /// Cancel and timeout due at the same poll, with the call finished
    /// too: the session was cancelled, so it is blamed on the cancel, every
    /// time (an unbiased choice would say "timed out" about one time in
    /// three, and miss 32 rounds in a row about once in a million).
    #[tokio::test]
    async fn guard_prefers_cancel_when_cancel_timeout_and_result_are_due_together() {
        use futures_util::FutureExt;
        const LIMIT: Duration = Duration::from_millis(1);
        for round in 0..32 {
            let cancel = CancellationToken::new();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let call = async move {
                let _ = done_rx.await;
                Ok(())
            };
            let mut guarded = Box::pin(guard(call, LIMIT, &cancel));
            // One poll arms the timer; nothing is due yet.
            assert!((&mut guarded).now_or_never().is_none(), "round {round}");
            // Timers fire in deadline order: once a later one has fired,
            // the guard's has too.
            tokio::time::sleep(LIMIT * 2).await;
            cancel.cancel();
            let _ = done_tx.send(());
            assert!(
                matches!(guarded.await, Guarded::Cancelled),
                "round {round}: cancel lost the race"
            );
        }
    }
}
