//! Local alert ingest: a Unix socket (`<state_dir>/agent.sock`, mode
//! 0600) that takes newline-delimited JSON alert events and pushes them into
//! the ring buffer, connected or not.
//!
//! Every line gets one JSON reply line: `{"ok":true}` or
//! `{"ok":false,"error":"..."}` naming the bad field. A bad line never
//! stops the good ones around it.
//!
//! Bounds, so that local clients (buggy or hostile) cost the agent little:
//! at most [`MAX_CONNECTIONS`] at once (one more is told so in a reply
//! line and closed at once, rather than left waiting unseen in the
//! kernel's queue); a client that sends no complete line for
//! [`IDLE_TIMEOUT`] is closed; and when `accept` itself fails (EMFILE:
//! out of file descriptors) the listener backs off 100 ms, doubling to 1 s,
//! instead of retrying at full speed, and logs the failures at most once
//! per [`ACCEPT_LOG_EVERY`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::ringbuf::AlertBuffer;
use crate::proto::{AlertEvent, EventStatus};
use crate::ratelimit::Tally;

/// Longest accepted line.
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Clients served at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// A client that sends no complete line for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most one log line per this long about failing accepts or refused
/// connections.
pub(crate) const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The limits of the socket; the defaults are the constants above, tests
/// shorten them.
#[derive(Debug, Clone)]
pub(crate) struct IngestOptions {
    /// Clients served at once.
    pub max_connections: usize,
    /// Closes a client that sends no complete line for this long.
    pub idle_timeout: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// The pause after the `n`th accept failure in a row (n ≥ 1): 100 ms,
/// doubling, at most 1 s.
pub(crate) fn accept_pause(n: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << n.clamp(1, 5).saturating_sub(1));
    Duration::from_millis(ms.min(1000))
}

fn string_map(
    v: &Value,
    field: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    match v {
        Value::Null => Ok(Default::default()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("`{field}.{k}` must be a string, not {other}")),
            })
            .collect(),
        other => Err(format!(
            "`{field}` must be an object of strings, not {other}"
        )),
    }
}

/// Validates one event line.
pub(crate) fn parse_event(line: &str) -> Result<AlertEvent, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err("an event must be a JSON object".into());
    };
    let get = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    let known = [
        "event_time",
        "event_status",
        "alert_key",
        "labels",
        "attrs",
        "description",
        "description_format",
    ];
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown field `{k}` (known: {})", known.join(", ")));
    }
    let event_time = match get("event_time") {
        Value::Null => return Err("missing field `event_time` (unix seconds)".into()),
        v => v
            .as_i64()
            .ok_or_else(|| format!("`event_time` must be an integer (unix seconds), not {v}"))?,
    };
    let event_status = match get("event_status") {
        Value::Null => return Err("missing field `event_status`".into()),
        Value::String(s) => match s.as_str() {
            "Critical" => EventStatus::Critical,
            "Warning" => EventStatus::Warning,
            "Info" => EventStatus::Info,
            "Ok" => EventStatus::Ok,
            _ => {
                return Err(format!(
                    "`event_status` {s:?} is not one of Critical, Warning, Info, Ok"
                ));
            }
        },
        v => return Err(format!("`event_status` must be a string, not {v}")),
    };
    let alert_key = match get("alert_key") {
        Value::String(s) if !s.is_empty() => s,
        Value::Null => return Err("missing field `alert_key`".into()),
        v => return Err(format!("`alert_key` must be a non-empty string, not {v}")),
    };
    let description = match get("description") {
        Value::Null => String::new(),
        Value::String(s) => s,
        v => return Err(format!("`description` must be a string, not {v}")),
    };
    let description_format = match get("description_format") {
        Value::Null => None,
        Value::String(s) if s == "markdown" => Some(s),
        Value::String(s) if s.is_empty() => None,
        v => {
            return Err(format!(
                "`description_format` must be \"markdown\" or absent, not {v}"
            ));
        }
    };
    Ok(AlertEvent {
        event_time,
        event_status,
        alert_key,
        labels: string_map(&get("labels"), "labels")?,
        attrs: string_map(&get("attrs"), "attrs")?,
        description,
        description_format,
    })
}

fn reply(result: Result<(), String>) -> String {
    let mut m = Map::new();
    match result {
        Ok(()) => {
            m.insert("ok".into(), Value::Bool(true));
        }
        Err(e) => {
            m.insert("ok".into(), Value::Bool(false));
            m.insert("error".into(), Value::String(e));
        }
    }
    let mut s = Value::Object(m).to_string();
    s.push('\n');
    s
}

/// Reads one line of at most [`MAX_LINE`] bytes; a longer line is drained
/// and reported as too long. `Ok(None)` at end of stream.
pub(crate) async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<Result<String, String>>> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
        // Skip the rest of the oversized line.
        let mut sink = Vec::new();
        loop {
            sink.clear();
            let m = (&mut *r)
                .take(64 * 1024)
                .read_until(b'\n', &mut sink)
                .await?;
            if m == 0 || sink.last() == Some(&b'\n') {
                break;
            }
        }
        return Ok(Some(Err(format!("line is longer than {MAX_LINE} bytes"))));
    }
    Ok(Some(Ok(String::from_utf8_lossy(&buf)
        .trim_end()
        .to_string())))
}

/// Serves one client until it goes or idles out. The permit is its slot
/// among [`IngestOptions::max_connections`].
async fn serve_conn(
    stream: UnixStream,
    alerts: AlertBuffer,
    idle: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    loop {
        // The whole line must arrive within the idle time: a client that
        // trickles bytes without a newline holds a slot no longer than one
        // that sends nothing.
        let line = match tokio::time::timeout(idle, read_line(&mut reader)).await {
            Err(_) => {
                tracing::debug!(idle = %crate::util::human_duration(idle),
                    "closing an idle ingest connection");
                break;
            }
            Ok(Ok(Some(l))) => l,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ingest read failed");
                break;
            }
        };
        let result = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => parse_event(&l).map(|ev| alerts.push(ev)),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "refused a local alert event");
        }
        // A client that does not read its replies must not hold the slot
        // either.
        match tokio::time::timeout(idle, w.write_all(reply(result).as_bytes())).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
}

/// Tells a client over the limit why it is closed. A fresh socket's send
/// buffer is empty, so the one short line goes out without waiting.
fn refuse(stream: UnixStream, max: usize) {
    let line = reply(Err(format!(
        "too many ingest connections (limit {max}); close idle ones or retry later"
    )));
    let _ = stream.try_write(line.as_bytes());
}

/// Serves the ingest socket until `shutdown`. A stale socket file left by a
/// previous run is replaced.
pub async fn serve(
    socket: &Path,
    alerts: AlertBuffer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with(socket, alerts, shutdown, IngestOptions::default()).await
}

/// [`serve`] with explicit limits.
pub(crate) async fn serve_with(
    socket: &Path,
    alerts: AlertBuffer,
    shutdown: CancellationToken,
    opts: IngestOptions,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket.to_path_buf();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            anyhow::bail!(
                "{} is in use: is another catpaw-agent running with this state_dir?",
                path.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    tracing::info!(path = %path.display(), "local alert ingest listening");
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let clients = TaskTracker::new();
    let mut failures = 0u32;
    let mut failed = Tally::new(ACCEPT_LOG_EVERY);
    let mut refused = Tally::new(ACCEPT_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                failures = 0;
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let conn = serve_conn(stream, alerts.clone(), opts.idle_timeout, slot);
                        let stop = shutdown.clone();
                        // Shutdown ends a client wherever it waits, reading
                        // or writing.
                        clients.spawn(async move {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = conn => {}
                            }
                        });
                    }
                    Err(_) => {
                        refuse(stream, opts.max_connections);
                        if let Some(n) = refused.add(1, Instant::now()) {
                            tracing::warn!(
                                refused = n,
                                limit = opts.max_connections,
                                "ingest connection limit reached; refusing new clients"
                            );
                        }
                    }
                }
            }
            Err(e) => {
                // The listener stays readable while the cause (EMFILE,
                // ENFILE, ENOMEM) lasts: retrying at once would spin.
                failures = failures.saturating_add(1);
                let pause = accept_pause(failures);
                if let Some(n) = failed.add(1, Instant::now()) {
                    tracing::warn!(error = %e, failures = n, pause = %crate::util::human_duration(pause),
                        "ingest accept failed; backing off");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    clients.close();
    clients.wait().await;
    Ok(())
}

/// Result of sending events to a running agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Lines accepted.
    pub accepted: usize,
    /// `(line number, error)` of refused lines (1-based).
    pub refused: Vec<(usize, String)>,
}

/// Sends event lines to the agent listening on `socket`.
pub async fn send_lines(socket: &Path, lines: &[String]) -> anyhow::Result<SendReport> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "connecting to {} (is catpaw-agent running with this state_dir?)",
            socket.display()
        )
    })?;
    let (r, mut w) = stream.into_split();
    let mut replies = BufReader::new(r).lines();
    let mut report = SendReport::default();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        w.write_all(line.trim_end().as_bytes()).await?;
        w.write_all(b"\n").await?;
        let answer = replies
            .next_line()
            .await?
            .context("the agent closed the socket")?;
        let v: Value = serde_json::from_str(&answer).context("bad reply from the agent")?;
        if v["ok"] == json!(true) {
            report.accepted += 1;
        } else {
            report
                .refused
                .push((i + 1, v["error"].as_str().unwrap_or("refused").to_string()));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
