//! A scripted language-model endpoint on loopback: real HTTP/1.1 over
//! TCP, real SSE framing, replies taken from a script in order (there is
//! no model on CI). One server answers both forms the agent speaks:
//!
//! - OpenAI-compatible `POST /v1/chat/completions` (streamed as SSE, or
//!   any status and body the script says);
//! - catpaw-server's gateway `POST /api/v1/agent/llm/chat` (its envelope).
//!
//! Every request is recorded (path, headers, JSON body) for assertions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One scripted answer.
#[derive(Clone)]
pub enum Reply {
    /// A streamed completion: the text in these pieces, then the tool
    /// calls `(name, arguments)`, then usage `(prompt, completion)`.
    Stream {
        text: Vec<String>,
        calls: Vec<(String, String)>,
        usage: (u64, u64),
    },
    /// Any status with a JSON or text body.
    Status(u16, String),
    /// A `307 Temporary Redirect` to this `Location`.
    Redirect(String),
    /// A `text/event-stream` whose body is exactly this.
    RawSse(String),
    /// Headers and one text event, then nothing (the connection stays
    /// open).
    Stall,
    /// A 200 whose body never ends (no length; bytes until the client
    /// hangs up).
    Endless,
    /// Built from the request (e.g. to echo a header).
    With(Arc<dyn Fn(&Request) -> Reply + Send + Sync>),
}

/// A streamed text answer in three pieces, 50 + 20 tokens.
pub fn text(s: &str) -> Reply {
    let n = s.len() / 3;
    let (a, rest) = s.split_at(s.floor_char_boundary(n));
    let (b, c) = rest.split_at(rest.floor_char_boundary(n));
    Reply::Stream {
        text: vec![a.into(), b.into(), c.into()],
        calls: vec![],
        usage: (50, 20),
    }
}

/// A streamed answer that calls these tools, 40 + 10 tokens.
pub fn calls(c: &[(&str, &str)]) -> Reply {
    Reply::Stream {
        text: vec![],
        calls: c
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect(),
        usage: (40, 10),
    }
}

/// What the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Request {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `messages` of the body.
    pub fn messages(&self) -> Vec<Value> {
        self.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

struct State {
    script: VecDeque<Reply>,
    /// Answer once the script is used up (None: HTTP 500).
    otherwise: Option<Reply>,
    received: Vec<Request>,
}

/// The server.
pub struct LlmServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LlmServer {
    /// Serves `script` in order, then `otherwise` for every later request.
    pub async fn start(script: Vec<Reply>, otherwise: Option<Reply>) -> LlmServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            otherwise,
            received: Vec::new(),
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        LlmServer { port, state, task }
    }

    /// `base_url` of an OpenAI-compatible model here.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Requests so far.
    pub fn received(&self) -> Vec<Request> {
        self.state.lock().unwrap().received.clone()
    }
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }))
}

async fn serve(mut sock: TcpStream, st: Arc<Mutex<State>>) -> std::io::Result<()> {
    let Some(req) = read_request(&mut sock).await? else {
        return Ok(());
    };
    let reply = {
        let mut s = st.lock().unwrap();
        s.received.push(req.clone());
        s.script.pop_front().or_else(|| s.otherwise.clone())
    };
    let mut reply = reply.unwrap_or(Reply::Status(
        500,
        "{\"error\":{\"message\":\"script used up\"}}".into(),
    ));
    while let Reply::With(f) = reply {
        reply = f(&req);
    }
    let gateway = req.path.ends_with("/agent/llm/chat");
    match reply {
        Reply::Status(code, body) => respond(&mut sock, code, "application/json", &body).await,
        Reply::Redirect(location) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            sock.write_all(head.as_bytes()).await?;
            sock.flush().await?;
            sock.shutdown().await
        }
        Reply::Stream { text, calls, usage } if gateway => {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (n, a))| json!({"id": format!("gw_{i}"), "type": "function", "function": {"name": n, "arguments": a}}))
                .collect();
            let mut message = json!({"role": "assistant", "content": text.concat()});
            if !tool_calls.is_empty() {
                message["tool_calls"] = Value::Array(tool_calls);
            }
            let env = json!({
                "request_id": "req-1",
                "data": {
                    "id": "cmpl-1",
                    "model": "gw-model",
                    "message": message,
                    "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" },
                    "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0.saturating_add(usage.1)},
                    "provider_latency_ms": 5,
                    "attempts": 1,
                }
            });
            respond(&mut sock, 200, "application/json", &env.to_string()).await
        }
        Reply::Stream { text, calls, usage } => {
            let mut body = String::new();
            for t in &text {
                let c = json!({"choices": [{"index": 0, "delta": {"content": t}}]});
                body.push_str(&format!("data: {c}\n\n"));
            }
            for (i, (n, a)) in calls.iter().enumerate() {
                // Name first, the arguments in two fragments, as providers do.
                let (a1, a2) = a.split_at(a.len() / 2);
                let first = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": n, "arguments": a1}}]}}]});
                let second = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": a2}}]}}]});
                body.push_str(&format!("data: {first}\r\n\r\ndata: {second}\n\n"));
            }
            let finish = if calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]});
            let u = json!({"choices": [], "usage": {"prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0.saturating_add(usage.1)}});
            body.push_str(&format!("data: {end}\n\ndata: {u}\n\ndata: [DONE]\n\n"));
            respond(&mut sock, 200, "text/event-stream", &body).await
        }
        Reply::RawSse(body) => respond(&mut sock, 200, "text/event-stream", &body).await,
        Reply::Stall => {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
            sock.write_all(head.as_bytes()).await?;
            let c = json!({"choices": [{"index": 0, "delta": {"content": "thinking about"}}]});
            sock.write_all(format!("data: {c}\n\n").as_bytes()).await?;
            sock.flush().await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Reply::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"data\":\"";
            sock.write_all(head.as_bytes()).await?;
            let chunk = vec![b'a'; 64 << 10];
            loop {
                sock.write_all(&chunk).await?;
            }
        }
        Reply::With(_) => unreachable!("resolved above"),
    }
}

async fn respond(sock: &mut TcpStream, code: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.flush().await?;
    sock.shutdown().await
}

/// A port nothing listens on (bound, then released).
pub async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}
