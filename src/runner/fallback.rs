//! A model-backed runner with the rule-based one behind it.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    ChatHandle, ChatRunner, ChatSessionOpts, DiagnoseRequest, DiagnoseRunner, Output, Receipt,
    RunError, SessionInfo, Stage, StreamSink,
};

/// A runner backed by a language model, with a rule-based runner behind
/// it: when the model cannot be reached ([`RunError::ModelUnavailable`]),
/// the session says so in its stream and the fallback serves it (a chat
/// tries the model again on its next turn).
pub struct WithFallback<R: ?Sized> {
    /// The model-backed runner.
    pub primary: Arc<R>,
    /// The rule-based runner.
    pub fallback: Arc<R>,
}

/// What the stream says when the fallback takes over.
fn fallback_notice(why: &str) -> Output {
    Output::delta(
        format!(
            "The language model could not be reached ({why}). Falling back to the built-in \
             rule-based runner for this answer."
        ),
        Stage::Thinking,
        None,
    )
}

/// One receipt for what both runners used (either may keep none).
fn sum(a: Option<Receipt>, b: Option<Receipt>) -> Option<Receipt> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            a.add(&b);
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

#[async_trait]
impl DiagnoseRunner for WithFallback<dyn DiagnoseRunner> {
    async fn run(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<String, RunError> {
        self.run_metered(info, req, sink, cancel).await.0
    }

    /// The receipt covers both runners when the fallback served: the
    /// model-backed run used its budgets before the model failed.
    async fn run_metered(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> (Result<String, RunError>, Option<Receipt>) {
        let (first, receipt) = self
            .primary
            .run_metered(info, req.clone(), sink.clone(), cancel.clone())
            .await;
        match first {
            Err(RunError::ModelUnavailable(why)) => {
                sink.send(fallback_notice(&why)).await;
                let (second, fallback) = self.fallback.run_metered(info, req, sink, cancel).await;
                (second, sum(receipt, fallback))
            }
            other => (other, receipt),
        }
    }
}

#[async_trait]
impl ChatRunner for WithFallback<dyn ChatRunner> {
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
        let (primary, receipt) = self
            .primary
            .start_metered(info, opts, sink.clone(), cancel.clone())
            .await;
        let primary = match primary {
            Ok(p) => p,
            Err(e) => return (Err(e), receipt),
        };
        let chat: Box<dyn ChatHandle> = Box::new(FallbackChat {
            primary,
            fallback: None,
            fallback_answered: false,
            runner: self.fallback.clone(),
            info: info.clone(),
            opts,
            sink,
            cancel,
        });
        (Ok(chat), None)
    }
}

/// A conversation with the model, and the rule-based one started the
/// first time the model is out of reach.
struct FallbackChat {
    primary: Box<dyn ChatHandle>,
    fallback: Option<Box<dyn ChatHandle>>,
    /// Whether the fallback answered the last turn (its receipt is then
    /// part of that turn's).
    fallback_answered: bool,
    runner: Arc<dyn ChatRunner>,
    info: SessionInfo,
    opts: ChatSessionOpts,
    sink: Arc<dyn StreamSink>,
    cancel: CancellationToken,
}

#[async_trait]
impl ChatHandle for FallbackChat {
    async fn handle_message(&mut self, input: &str) -> Result<String, RunError> {
        self.fallback_answered = false;
        let why = match self.primary.handle_message(input).await {
            Err(RunError::ModelUnavailable(why)) => why,
            other => return other,
        };
        self.sink.send(fallback_notice(&why)).await;
        if self.fallback.is_none() {
            let handle = self
                .runner
                .start(
                    &self.info,
                    self.opts,
                    self.sink.clone(),
                    self.cancel.clone(),
                )
                .await?;
            self.fallback = Some(handle);
        }
        self.fallback_answered = true;
        match &mut self.fallback {
            Some(f) => f.handle_message(input).await,
            None => Err(RunError::Host("the fallback chat did not start".into())),
        }
    }

    /// Both conversations' receipts: the session's is their sum, and a
    /// turn the fallback answered adds its run to the model-backed one.
    fn receipts(&self) -> Option<(Receipt, Receipt)> {
        let primary = self.primary.receipts();
        let fallback = self.fallback.as_ref().and_then(|f| f.receipts());
        let (p_last, p_session) = match primary {
            Some((l, s)) => (Some(l), Some(s)),
            None => (None, None),
        };
        let (f_last, f_session) = match fallback {
            Some((l, s)) => (Some(l), Some(s)),
            None => (None, None),
        };
        let last = if self.fallback_answered {
            sum(p_last, f_last)
        } else {
            p_last
        };
        Some((last?, sum(p_session, f_session)?))
    }
}
