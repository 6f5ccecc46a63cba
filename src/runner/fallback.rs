//! A model-backed runner with the rule-based one behind it.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    ChatHandle, ChatRunner, ChatSessionOpts, DiagnoseRequest, DiagnoseRunner, Output, RunError,
    SessionInfo, Stage, StreamSink,
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

#[async_trait]
impl DiagnoseRunner for WithFallback<dyn DiagnoseRunner> {
    async fn run(
        &self,
        info: &SessionInfo,
        req: DiagnoseRequest,
        sink: Arc<dyn StreamSink>,
        cancel: CancellationToken,
    ) -> Result<String, RunError> {
        let first = self
            .primary
            .run(info, req.clone(), sink.clone(), cancel.clone())
            .await;
        match first {
            Err(RunError::ModelUnavailable(why)) => {
                sink.send(fallback_notice(&why)).await;
                self.fallback.run(info, req, sink, cancel).await
            }
            other => other,
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
        let primary = self
            .primary
            .start(info, opts, sink.clone(), cancel.clone())
            .await?;
        Ok(Box::new(FallbackChat {
            primary,
            fallback: None,
            runner: self.fallback.clone(),
            info: info.clone(),
            opts,
            sink,
            cancel,
        }))
    }
}

/// A conversation with the model, and the rule-based one started the
/// first time the model is out of reach.
struct FallbackChat {
    primary: Box<dyn ChatHandle>,
    fallback: Option<Box<dyn ChatHandle>>,
    runner: Arc<dyn ChatRunner>,
    info: SessionInfo,
    opts: ChatSessionOpts,
    sink: Arc<dyn StreamSink>,
    cancel: CancellationToken,
}

#[async_trait]
impl ChatHandle for FallbackChat {
    async fn handle_message(&mut self, input: &str) -> Result<String, RunError> {
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
        match &mut self.fallback {
            Some(f) => f.handle_message(input).await,
            None => Err(RunError::Host("the fallback chat did not start".into())),
        }
    }
}
