//! One call from an MCP client, in the order the audit promises: refused
//! calls leave one `refused` record; every other call writes its `started`
//! record (`kind=mcp`, the client as `user`) before anything runs, and its
//! outcome when it has ended: `ok`, `error`, or — the client went away or
//! cancelled, the server stopped — `cancelled` through the act's drop guard.
//! A call whose `started` record cannot be written does not run.
//!
//! A catalog tool runs on a blocking thread through
//! [`crate::tools::call_with`] (masked, bounded, `[tools]` allow-lists);
//! a client that stops waiting does not stop a blocking read, so its
//! outcome is written by the thread that ran it. `inspect` and `diagnose`
//! run one session with the configured runners and `allow_shell = false`;
//! its report is masked again before it leaves.

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResult, Content};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::server::{DIAGNOSE, INSPECT, McpServer};
use crate::audit::{Record, Who, event, kind, outcome};
use crate::proto::{self, SessionStartPayload};
use crate::session::{SessionEvent, run_session};

/// Longest argument text accepted from a client (as from a guest).
const MAX_ARGS: usize = 16 * 1024;

impl McpServer {
    /// Dispatches one `tools/call`.
    pub(super) async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let who = self.who(&context);
        let name = request.name.to_string();
        let args = Value::Object(request.arguments.unwrap_or_default()).to_string();
        if !self.tools().iter().any(|t| t.name == name) {
            let e = format!(
                "tool {name:?} is not offered here (tools/list names the tools this server \
                 offers; the operator's [sandbox.policy.mcp] narrows them)"
            );
            self.refuse(&who, &name, &e);
            return Err(McpError::invalid_params(e, None));
        }
        if args.len() > MAX_ARGS {
            let e = format!(
                "tool {name}: arguments are {} bytes, more than the {MAX_ARGS} allowed",
                args.len()
            );
            self.refuse(&who, &name, &e);
            return Err(McpError::invalid_params(e, None));
        }
        let act = self
            .served
            .audit
            .begin(&who, kind::MCP, &name, &args, false)
            .map_err(|e| {
                tracing::error!(client = %who.user, tool = %name, error = %e,
                    "audit write failed; refusing the call");
                McpError::internal_error(format!("audit unavailable: {e}"), None)
            })?;
        tracing::info!(client = %who.user, tool = %name, "MCP tool call");
        match name.as_str() {
            INSPECT | DIAGNOSE => self.session(&who, &name, &args, act, &context).await,
            _ => self.catalog_tool(name, args, act).await,
        }
    }

    /// One `refused` record for a call that never started.
    fn refuse(&self, who: &Who, name: &str, why: &str) {
        tracing::warn!(client = %who.user, tool = %name, reason = %why, "MCP call refused");
        self.served.audit.note(
            Record::new(who, kind::MCP, event::OUTCOME, name, "")
                .with_outcome(outcome::REFUSED, why),
        );
    }

    /// A catalog tool, its outcome written by the thread that ran it.
    async fn catalog_tool(
        &self,
        name: String,
        args: String,
        act: crate::audit::Act,
    ) -> Result<CallToolResult, McpError> {
        let cfg = self.served.tools.clone();
        let n = name.clone();
        let task = tokio::task::spawn_blocking(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::tools::call_with(&cfg, &n, &args)
            }));
            let result = ran.unwrap_or_else(|panic| {
                let what = crate::util::panic_text(panic.as_ref());
                tracing::error!(tool = %n, panic = %what, "tool panicked");
                Err(format!("tool {n} failed inside the host"))
            });
            match &result {
                Ok(out) => act.finish(outcome::OK, &format!("{} bytes", out.len())),
                Err(e) => act.finish(outcome::ERROR, e),
            }
            result
        });
        let limit = self.served.tool_timeout;
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(Ok(out))) => Ok(CallToolResult::success(vec![Content::text(out)])),
            Ok(Ok(Err(e))) => Ok(CallToolResult::error(vec![Content::text(e)])),
            Ok(Err(e)) => {
                tracing::error!(tool = %name, error = %e, "tool task failed");
                Err(McpError::internal_error(
                    format!("tool {name} failed inside the host"),
                    None,
                ))
            }
            Err(_) => Ok(CallToolResult::error(vec![Content::text(format!(
                "tool {name} did not finish within {} (the `timeout` budget; \
                 [sandbox.policy.mcp] may lower it)",
                crate::util::human_duration(limit)
            ))])),
        }
    }

    /// `inspect` / `diagnose`: one sandboxed session run to its report.
    async fn session(
        &self,
        who: &Who,
        session_type: &str,
        args: &str,
        act: crate::audit::Act,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let params = match session_params(args) {
            Ok(p) => p,
            Err(e) => {
                act.finish(outcome::REFUSED, &e);
                return Err(McpError::invalid_params(e, None));
            }
        };
        let Ok(_slot) = self.served.sessions.clone().try_acquire_owned() else {
            let e = "every session slot is taken ([sandbox] max_concurrent_sessions); \
                     call again when one ends"
                .to_string();
            act.finish(outcome::REFUSED, &e);
            return Ok(CallToolResult::error(vec![Content::text(e)]));
        };
        let session_id = uuid::Uuid::new_v4().to_string();
        let start = SessionStartPayload {
            session_id: session_id.clone(),
            session_type: session_type.to_string(),
            user_name: format!("mcp:{}", who.user),
            params,
            key_id: None,
        };
        let (tx, mut rx) = mpsc::channel(64);
        // No chat turns: the sender goes at once.
        let (_, inputs) = mpsc::channel::<String>(1);
        // The client cancelling the request, or the connection going, ends
        // the session (dropping this future drops the guard).
        let cancel = context.ct.child_token();
        let _stop = cancel.clone().drop_guard();
        let task = tokio::spawn(run_session(
            start,
            false,
            self.served.runners.clone(),
            tx,
            inputs,
            cancel,
        ));
        let mut report = None;
        let mut failure = None;
        let mut deltas = String::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                SessionEvent::Error(e) => failure = Some(format!("{}: {}", e.code, e.error)),
                SessionEvent::Output(p) if p.done => {
                    report = p.report;
                    break;
                }
                SessionEvent::Output(p) => {
                    if p.stage != proto::STAGE_THINKING && deltas.len() < MAX_TRANSCRIPT {
                        deltas.push_str(&p.delta);
                        deltas.push('\n');
                    }
                }
            }
        }
        let end = task.await.map_err(|e| {
            McpError::internal_error(
                format!("session {session_id} failed inside the host: {e}"),
                None,
            )
        })?;
        let detail = format!("session {session_id}: {}", end.outcome);
        match failure {
            None if end.outcome == "cancelled" => {
                act.finish(outcome::CANCELLED, &detail);
                Err(McpError::internal_error(
                    format!("session {session_id} was cancelled"),
                    None,
                ))
            }
            Some(e) => {
                act.finish(outcome::ERROR, &format!("{detail}: {e}"));
                Ok(CallToolResult::error(vec![Content::text(
                    crate::tools::mask_secrets(&e),
                )]))
            }
            None => {
                act.finish(outcome::OK, &detail);
                let text = report.filter(|r| !r.is_empty()).unwrap_or(deltas);
                Ok(CallToolResult::success(vec![Content::text(
                    crate::tools::mask_secrets(&text),
                )]))
            }
        }
    }
}

/// Most text kept of a session's stream when it ends without a report.
const MAX_TRANSCRIPT: usize = 64 * 1024;

/// A session tool's arguments as session params: `plugin`, `target` and
/// `descriptions`, strings only (the schema says so; this is where it
/// holds).
fn session_params(args: &str) -> Result<Map<String, Value>, String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(args) else {
        return Err("arguments must be a JSON object".into());
    };
    for (k, v) in &map {
        let known = [
            proto::PARAM_PLUGIN,
            proto::PARAM_TARGET,
            proto::PARAM_DESCRIPTIONS,
        ];
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "unknown argument {k:?} (the arguments are {})",
                known.join(", ")
            ));
        }
        if !v.is_string() {
            return Err(format!("{k:?} must be a string, not {v}"));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_arguments_are_the_three_strings_only() {
        let p = session_params(r#"{"plugin":"cpu","target":"localhost"}"#).expect("ok");
        assert_eq!(p["plugin"], "cpu");
        assert_eq!(
            session_params(r#"{"allow_shell":true}"#).unwrap_err(),
            "unknown argument \"allow_shell\" (the arguments are plugin, target, descriptions)"
        );
        assert_eq!(
            session_params(r#"{"plugin":5}"#).unwrap_err(),
            "\"plugin\" must be a string, not 5"
        );
        assert_eq!(
            session_params("[1]").unwrap_err(),
            "arguments must be a JSON object"
        );
    }
}
