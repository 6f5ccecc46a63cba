//! One chat completion from an OpenAI-compatible endpoint
//! (`POST {base_url}/chat/completions`), streamed: the model's text goes
//! out as it arrives, tool-call fragments are put back together by index.
//! A server that answers with plain JSON instead of a stream is read as
//! such; one that answers with a redirect is not followed.

use super::ModelConfig;
use super::sse::Framer;
use super::wire::{self, WireFunction, WireMessage, WireToolCall, WireUsage};
use super::{Failure, Message, Reply, TextOut, ToolSpec};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest error body kept (it goes into messages, cut further there).
const MAX_ERROR_BODY: usize = 64 << 10;
/// Largest non-streamed answer read.
const MAX_BODY: usize = 10 << 20;

/// The request body: `extra_body` first, the standard fields over it, so
/// a vendor field can never replace the model, the messages, the tools or
/// the answer's cap. `answer` is that cap (what the budgets leave, at
/// most the configured one), sent as `max_completion_tokens` when the
/// model is configured with it, else as `max_tokens`.
pub(crate) fn body(
    m: &ModelConfig,
    messages: &[Message],
    tools: &[ToolSpec],
    answer: u64,
) -> Value {
    let mut body = m.extra_body.clone();
    body.insert("model".into(), json!(m.model));
    body.insert("messages".into(), wire::messages(messages));
    if !tools.is_empty() {
        body.insert("tools".into(), wire::tools(tools));
    }
    body.remove("max_tokens");
    body.remove("max_completion_tokens");
    if m.max_completion_tokens > 0 {
        body.insert("max_completion_tokens".into(), json!(answer));
    } else {
        body.insert("max_tokens".into(), json!(answer));
    }
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({ "include_usage": true }));
    Value::Object(body)
}

pub(super) async fn chat(
    http: &reqwest::Client,
    m: &ModelConfig,
    messages: &[Message],
    tools: &[ToolSpec],
    answer: u64,
    out: &mut TextOut<'_>,
) -> Result<Reply, Failure> {
    let url = format!("{}/chat/completions", m.base_url);
    let mut req = http
        .post(&url)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .json(&body(m, messages, tools, answer));
    if !m.api_key.is_empty() {
        req = req.bearer_auth(m.api_key.expose());
    }
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(redirect(&resp));
    }
    if !status.is_success() {
        let text = read_capped(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        return Err(Failure::Status(status.as_u16(), error_text(&text)));
    }
    let is_stream = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut reply = if is_stream {
        read_stream(resp, out).await?
    } else {
        let text = read_capped(resp, MAX_BODY).await.map_err(transport)?;
        let reply = completion(&text)?;
        out.text(&reply.message.content).await;
        reply
    };
    if reply.usage.total() == 0 {
        reply.usage = wire::estimate(messages, &reply);
    }
    Ok(reply)
}

/// The reply in a non-streamed answer: a chat completion's first choice.
pub(crate) fn completion(text: &str) -> Result<Reply, Failure> {
    let c: wire::Completion = serde_json::from_str(text)
        .map_err(|e| Failure::Malformed(format!("the answer is not a chat completion: {e}")))?;
    let usage = c.usage.unwrap_or_default().into();
    let Some(choice) = c.choices.into_iter().next() else {
        return Err(Failure::Malformed("the answer has no choices".into()));
    };
    Ok(wire::reply(choice.message, choice.finish_reason, usage))
}

/// One streamed chunk.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<DeltaCall>,
}

#[derive(Debug, Deserialize)]
struct DeltaCall {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<DeltaFunction>,
}

#[derive(Debug, Deserialize)]
struct DeltaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Most tool calls one answer may carry.
const MAX_CALLS: usize = 64;

/// Puts a streamed answer back together, one event at a time.
#[derive(Default)]
struct Assembler {
    content: String,
    calls: Vec<WireToolCall>,
    finish: Option<String>,
    usage: WireUsage,
    /// Bytes of text, names and arguments so far: held to [`MAX_BODY`],
    /// as an answer read whole is.
    size: usize,
}

impl Assembler {
    /// Takes one event's data: `Ok(None)` at `[DONE]`, else the text it
    /// added (possibly empty).
    fn event(&mut self, data: &str) -> Result<Option<String>, Failure> {
        if data.trim() == "[DONE]" {
            return Ok(None);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            Failure::Malformed(format!(
                "the event stream carried an event that is not a completion chunk ({e}): {}",
                crate::util::truncate_utf8(data, 120)
            ))
        })?;
        if let Some(u) = chunk.usage {
            self.usage = u;
        }
        self.size = self.size.saturating_add(chunk_size(&chunk));
        if self.size > MAX_BODY {
            return Err(Failure::Malformed(format!(
                "the streamed answer is more than {MAX_BODY} bytes"
            )));
        }
        let mut added = String::new();
        for c in chunk.choices {
            if let Some(text) = c.delta.content {
                self.content.push_str(&text);
                added.push_str(&text);
            }
            for d in c.delta.tool_calls {
                if d.index >= MAX_CALLS {
                    return Err(Failure::Malformed(format!(
                        "the model sent a tool call with index {}, more than {MAX_CALLS}",
                        d.index
                    )));
                }
                while self.calls.len() <= d.index {
                    self.calls.push(WireToolCall {
                        id: String::new(),
                        function: WireFunction::default(),
                    });
                }
                let call = &mut self.calls[d.index];
                if let Some(id) = d.id {
                    call.id = id;
                }
                if let Some(f) = d.function {
                    if let Some(n) = f.name {
                        call.function.name.push_str(&n);
                    }
                    if let Some(a) = f.arguments {
                        call.function.arguments.push_str(&a);
                    }
                }
            }
            if let Some(f) = c.finish_reason {
                self.finish = Some(f);
            }
        }
        Ok(Some(added))
    }
}

/// Bytes a chunk adds to the answer being put together.
fn chunk_size(chunk: &Chunk) -> usize {
    chunk
        .choices
        .iter()
        .map(|c| {
            let calls: usize = c
                .delta
                .tool_calls
                .iter()
                .map(|d| {
                    d.id.as_ref().map_or(0, String::len)
                        + d.function.as_ref().map_or(0, |f| {
                            f.name.as_ref().map_or(0, String::len)
                                + f.arguments.as_ref().map_or(0, String::len)
                        })
                })
                .sum();
            c.delta.content.as_ref().map_or(0, String::len) + calls
        })
        .sum()
}

async fn read_stream(resp: reqwest::Response, out: &mut TextOut<'_>) -> Result<Reply, Failure> {
    let mut reader = StreamReader::default();
    let mut body = resp.bytes_stream();
    while !reader.ended()
        && let Some(bytes) = body.next().await
    {
        let bytes = bytes.map_err(transport)?;
        for text in reader.push(&bytes)? {
            out.text(&text).await;
        }
    }
    let (last, reply) = reader.finish()?;
    if let Some(text) = last {
        out.text(&text).await;
    }
    Ok(reply)
}

/// A streamed answer read as its bytes arrive: the event stream's framing,
/// then each event's chunk put together into the reply.
#[derive(Default)]
pub(crate) struct StreamReader {
    framer: Framer,
    assembler: Assembler,
    ended: bool,
}

impl StreamReader {
    /// Whether `[DONE]` came: nothing after it is read.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Takes the next bytes of the body; returns the text each event they
    /// complete added, in order. Events are read up to `[DONE]` and not
    /// past it, so the reply never depends on how the body was cut into
    /// pieces on its way.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, Failure> {
        self.framer.feed(bytes);
        let mut texts = Vec::new();
        while !self.ended
            && let Some(data) = self.framer.next_event().map_err(Failure::Malformed)?
        {
            match self.assembler.event(&data)? {
                Some(text) => texts.push(text),
                None => self.ended = true,
            }
        }
        Ok(texts)
    }

    /// At the end of the body: the text of an event the body ended without
    /// closing, and the reply.
    pub(crate) fn finish(mut self) -> Result<(Option<String>, Reply), Failure> {
        let mut last = None;
        if !self.ended
            && let Some(data) = self.framer.finish()
        {
            match self.assembler.event(&data)? {
                Some(text) => last = Some(text),
                None => self.ended = true,
            }
        }
        let a = self.assembler;
        if !self.ended && a.finish.is_none() {
            return Err(Failure::Malformed(
                "the event stream ended before the model finished (no finish_reason, no [DONE])"
                    .into(),
            ));
        }
        let mut calls = a.calls;
        for (i, c) in calls.iter_mut().enumerate() {
            if c.id.is_empty() {
                c.id = format!("call_{i}");
            }
        }
        let message = WireMessage {
            content: Some(a.content),
            tool_calls: calls,
        };
        Ok((last, wire::reply(message, a.finish, a.usage.into())))
    }
}

/// Reads at most `cap` bytes of a body as text.
async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<String, reqwest::Error> {
    let (out, _) = read_limited(resp, cap).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads a body up to `cap` bytes, and whether it had more (the rest is
/// never read, so a peer sending without end costs `cap` at most).
pub(super) async fn read_limited(
    resp: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(b) = body.next().await {
        let b = b?;
        let room = cap.saturating_sub(out.len());
        if b.len() > room {
            out.extend_from_slice(&b[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&b);
    }
    Ok((out, false))
}

/// The message of an OpenAI-style error body, or the body itself, cut.
pub(super) fn error_text(body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string());
    crate::util::truncate_utf8(&msg, 300).to_string()
}

/// Longest `Location` shown.
const MAX_LOCATION: usize = 200;

/// The failure a 3xx answer is (the client follows none): its status and
/// where it pointed, without user info and query (either may hold a
/// credential), cut to [`MAX_LOCATION`] bytes.
pub(super) fn redirect(resp: &reqwest::Response) -> Failure {
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let shown = match location {
        None => "nowhere (no Location header)".to_string(),
        Some(loc) => match resp.url().join(&loc) {
            Ok(url) => masked_location(&url),
            Err(_) => format!("an unreadable Location {:?}", cut(&loc)),
        },
    };
    Failure::Redirect(resp.status().as_u16(), shown)
}

/// `url` as `scheme://host[:port]/path`, `?…` standing for a query.
fn masked_location(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let query = if url.query().is_some() { "?…" } else { "" };
    let full = format!("{}://{host}{port}{}{query}", url.scheme(), url.path());
    cut(&full)
}

fn cut(s: &str) -> String {
    let c = crate::util::truncate_utf8(s, MAX_LOCATION);
    if c.len() < s.len() {
        format!("{c}…")
    } else {
        c.to_string()
    }
}

pub(super) fn transport(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout(format!("timed out: {e}"));
    }
    // reqwest's Display names the URL, which never holds a key here.
    let mut text = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        text.push_str(&format!(": {s}"));
        src = s.source();
    }
    Failure::Transport(text)
}

#[cfg(test)]
mod tests;
