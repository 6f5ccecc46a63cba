//! A hostile server against the real agent: a seeded property test.
//!
//! The agent runs in-process (the real connection, reconnect loop, session
//! table and limiter, with the built-in wasm runners serving sessions)
//! against the loopback [`TestServer`], which plays a server gone bad: for a
//! few seconds per seed it sends a random mix of valid `session_start`s
//! (inspect, diagnose, chat, unknown types; ids drawn from a small pool so
//! duplicates and live ids come up often), floods of start / input / cancel
//! for live and unknown ids, truncated JSON, wrong types, unknown message
//! types, pings, binary frames, strings of 100–900 KB, frames over the
//! 1 MiB limit, `disconnect` with odd `retry_after_sec` values, and abrupt
//! drops of the socket. Every time the agent comes back, the sequence goes
//! on over the new connection.
//!
//! What must hold (PROTOCOL §1, §4, §5, §10), for every seed:
//!
//! - the agent task never ends on its own (no panic, no exit), and it comes
//!   back after every drop, oversized frame and `disconnect`;
//! - it never closes a connection on its own: only an oversized frame, a
//!   `disconnect` or the server's own drop ends one;
//! - every `session_start` that parses as a message with an id gets exactly
//!   one `ack`, in the order the starts were sent (the ack's *text* is not
//!   checked: the bounds of §10 may refuse what an older agent accepted);
//! - per connection, a session sends output only between its `ack ok:true`
//!   and its one `done` (never a second `done`, nothing after it);
//! - on the connection that stays up through the quiet period at the end,
//!   every accepted session gets exactly one `done` (chats are cancelled).
//!   Sessions of a connection that dropped were cancelled with it and their
//!   `done` may be lost with the socket (§5: "while the connection is up"),
//!   so for them only the "at most one" half is checked;
//! - after the quiet period the session table is empty and the limiter is
//!   back to zero: `max_concurrent_sessions` fresh chats are all accepted
//!   and one more is refused with "max concurrent sessions reached";
//! - the test process's RSS grows by less than [`RSS_GROWTH_MIB`] (seen:
//!   about +10 MiB for the default run, +30 MiB for 20 s of one seed).
//!
//! A second test, `no_retry_after_value_ends_the_agent`, sends the
//! `retry_after_sec` values the random mix leaves out: huge ones (the agent
//! stays alive through the wait, and shutdown cuts it short) next to
//! negative and garbage ones (it comes back).
//!
//! Every failure message names the seed. Replay one (the frame sequence is
//! the seed's; the agent's timing is the machine's) or run longer:
//!
//! ```text
//! CATPAW_HOSTILE_SEED=1234 cargo test --test hostile_server -- --nocapture
//! CATPAW_HOSTILE_SECS=60   cargo test --test hostile_server -- --nocapture
//! ```
//!
//! `CATPAW_HOSTILE_SECS` is the chaos time per seed (default 4 s, three
//! seeds). Positive `retry_after_sec` values would make the agent sleep for
//! real, so the random mix only sends values whose wait is at most about a
//! second.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use catpaw_agent::link::agent::AgentOptions;
use catpaw_agent::link::conn::Timings;
use catpaw_agent::link::reconnect::BackoffPolicy;
use catpaw_agent::proto::{self, AckError, AckPayload, Envelope};
use catpaw_agent::session::Runners;
use catpaw_agent::telemetry::LinkState;
use common::TestSandbox;
use common::agent::{Harness, builtin_runners, harness_with};
use common::server::{TestServer, Ws};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Sessions the agent may run at once: small, so the limiter is often full.
const MAX_SESSIONS: usize = 4;
/// Session ids are mostly drawn from this many, so they collide.
const ID_POOL: u32 = 12;
/// Allowed growth of the test process's resident memory over all seeds.
const RSS_GROWTH_MIB: u64 = 300;
/// The agent's inbound limit (PROTOCOL §1).
const MAX_INBOUND: usize = catpaw_agent::link::conn::MAX_INBOUND;

fn options() -> AgentOptions {
    AgentOptions {
        timings: Timings {
            dial_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(5),
            // Short, so heartbeats interleave with everything else.
            heartbeat: Duration::from_millis(250),
            alert_flush: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(2),
        },
        backoff: BackoffPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            auth_min: Duration::from_secs(1),
            auth_max: Duration::from_secs(2),
            disconnect_min: Duration::from_millis(20),
            disconnect_max: Duration::from_secs(5),
            jitter: 0.25,
        },
        audit: None,
        telemetry: None,
    }
}

/// The agent in-process on a fresh [`TestServer`], with [`options`] and
/// at most [`MAX_SESSIONS`] sessions.
async fn start_agent(runners: Runners) -> Harness {
    harness_with(
        |c| c.sandbox.max_concurrent_sessions = MAX_SESSIONS,
        |_| runners,
        options(),
    )
    .await
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS line");
    kb / 1024
}

/// An id for messages, cut short: some ids are 900 KB.
fn short(id: &str) -> String {
    if id.len() <= 40 {
        format!("{id:?}")
    } else {
        let cut = (0..=40)
            .rev()
            .find(|&i| id.is_char_boundary(i))
            .unwrap_or(0);
        format!("{:?}…({} bytes)", &id[..cut], id.len())
    }
}

// ---------------------------------------------------------------------------
// The frame generator.

/// One thing the hostile server does.
enum Step {
    /// A text frame. `ack` is `(envelope id, session id)` when the frame is
    /// a `session_start` the agent can parse, so it owes an ack.
    Text {
        what: String,
        text: String,
        ack: Option<(String, String)>,
    },
    Binary(Vec<u8>),
    WsPing,
    Pause(Duration),
    /// A frame over 1 MiB: the agent must drop this connection.
    Oversized(String),
    /// A `disconnect` (payload as sent): the agent closes and comes back.
    Disconnect(Value),
    /// Close the socket abruptly, without a close frame.
    Drop,
}

struct Gen {
    rng: StdRng,
    fresh: u64,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            fresh: 0,
        }
    }

    /// Envelope ids come from the seed too, so a replay sends the same bytes.
    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    fn pct(&mut self) -> u32 {
        self.rng.random_range(0..100)
    }

    fn pool_id(&mut self) -> String {
        format!("s{}", self.rng.random_range(0..ID_POOL))
    }

    /// Mostly pool ids (live or recently ended), some never seen.
    fn some_id(&mut self) -> String {
        self.fresh += 1;
        match self.pct() {
            0..85 => self.pool_id(),
            85..95 => format!("fresh-{}", self.fresh),
            _ => format!("ghost-{}", self.fresh),
        }
    }

    fn big(&mut self) -> String {
        let n = self.rng.random_range(100_000..=900_000);
        let c = (b'a' + self.rng.random_range(0..26u8)) as char;
        c.to_string().repeat(n)
    }

    /// The next step or burst of steps.
    fn next(&mut self) -> Vec<Step> {
        match self.rng.random_range(0..1000) {
            0..250 => vec![self.start()],
            250..370 => vec![self.input()],
            370..490 => vec![self.cancel()],
            490..530 => self.flood(),
            530..630 => vec![self.malformed()],
            630..660 => vec![self.envelope("ping", None, "ping")],
            660..680 => vec![Step::WsPing],
            680..710 => {
                let n = self.rng.random_range(0..4096);
                vec![Step::Binary((0..n).map(|_| self.rng.random()).collect())]
            }
            710..750 => vec![self.huge()],
            750..760 => vec![self.oversized()],
            760..775 => vec![Step::Drop],
            775..780 => vec![self.disconnect()],
            _ => vec![Step::Pause(Duration::from_millis(
                self.rng.random_range(1..40),
            ))],
        }
    }

    fn envelope(&mut self, t: &str, payload: Option<Value>, what: &str) -> Step {
        let mut e = json!({"type": t, "id": self.uuid()});
        if let Some(p) = payload {
            e["payload"] = p;
        }
        Step::Text {
            what: what.to_string(),
            text: e.to_string(),
            ack: None,
        }
    }

    /// A `session_start` with `payload`, which the agent must ack whatever
    /// the payload is.
    fn start_with(&mut self, payload: Value, session_id: &str, what: String) -> Step {
        let id = self.uuid();
        let text = json!({"type": "session_start", "id": id, "payload": payload}).to_string();
        Step::Text {
            what,
            text,
            ack: Some((id, session_id.to_string())),
        }
    }

    fn start(&mut self) -> Step {
        let sid = match self.pct() {
            0..80 => self.pool_id(),
            80..90 => self.some_id(),
            90..94 => String::new(),
            94..97 => format!("s\u{1}{}\n", self.rng.random_range(0..ID_POOL)),
            _ => "x".repeat(129),
        };
        let (kind, params) = match self.pct() {
            0..35 => {
                let plugin = ["mem", "disk", "net", "cpu", "nope"][self.rng.random_range(0..5)];
                if self.pct() < 10 {
                    ("inspect", json!({}))
                } else {
                    ("inspect", json!({ "plugin": plugin }))
                }
            }
            35..55 => {
                let plugin = ["mem", "disk", "net"][self.rng.random_range(0..3)];
                let d =
                    ["memory high", "disk / full", "tcp resets", ""][self.rng.random_range(0..4)];
                ("diagnose", json!({"plugin": plugin, "descriptions": d}))
            }
            55..85 => {
                let m = ["", "how is memory", "uptime?", "run df -h"][self.rng.random_range(0..4)];
                (
                    "chat",
                    json!({"message": m, "allow_shell": self.pct() < 20}),
                )
            }
            85..90 => ("teleport", json!({})),
            90..95 => ("", json!({})),
            _ => ("inspect", json!({"plugin": 5, "allow_shell": "yes"})),
        };
        let user = match self.pct() {
            0..90 => "op".to_string(),
            90..95 => "u".repeat(257),
            _ => "op\u{7}\r\n".to_string(),
        };
        let payload =
            json!({"session_id": sid, "session_type": kind, "user_name": user, "params": params});
        self.start_with(payload, &sid, format!("start {} {kind}", short(&sid)))
    }

    fn input(&mut self) -> Step {
        let sid = self.some_id();
        let m =
            ["", "cpu?", "what about disk", "top processes by mem"][self.rng.random_range(0..4)];
        let what = format!("input {}", short(&sid));
        self.envelope(
            "session_input",
            Some(json!({"session_id": sid, "message": m})),
            &what,
        )
    }

    fn cancel(&mut self) -> Step {
        let sid = self.some_id();
        let what = format!("cancel {}", short(&sid));
        self.envelope(
            "session_cancel",
            Some(json!({"session_id": sid, "reason": "hostile"})),
            &what,
        )
    }

    /// 20–150 starts, inputs and cancels back to back.
    fn flood(&mut self) -> Vec<Step> {
        let n = self.rng.random_range(20..150);
        (0..n)
            .map(|_| match self.pct() {
                0..40 => self.start(),
                40..70 => self.input(),
                _ => self.cancel(),
            })
            .collect()
    }

    /// Frames the agent must ignore (or, for a broken `session_start` that
    /// still parses as a message, refuse with an ack).
    fn malformed(&mut self) -> Step {
        let sid = self.pool_id();
        match self.rng.random_range(0..12) {
            0 => self.start_with(json!(5), "", "start with payload 5".into()),
            1 => self.start_with(
                json!({"session_id": 7, "session_type": "chat"}),
                "",
                "start with session_id 7".into(),
            ),
            2 => self.start_with(json!([sid]), "", "start with an array payload".into()),
            3 => self.start_with(
                json!({"session_id": sid, "session_type": "chat", "params": "nope"}),
                &sid,
                "start with params a string".into(),
            ),
            4 => {
                let id = self.uuid();
                Step::Text {
                    what: "start without payload".into(),
                    text: json!({"type": "session_start", "id": id}).to_string(),
                    ack: Some((id, String::new())),
                }
            }
            5 => {
                // A valid frame cut short: never valid JSON.
                let Step::Text { text, .. } = self.start() else {
                    unreachable!("start() is a text frame")
                };
                let mut cut = self.rng.random_range(0..text.len());
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                Step::Text {
                    what: format!("truncated at {cut}/{}", text.len()),
                    text: text[..cut].to_string(),
                    ack: None,
                }
            }
            6 => Self::raw(
                json!({"type": "session_start", "id": 7, "payload": {"session_id": sid}}),
                "start with a numeric envelope id",
            ),
            7 => Self::raw(json!({"type": 42, "id": "x"}), "numeric type"),
            8 => {
                let t = format!("x-{}", self.rng.random_range(0..1000));
                self.envelope(&t, Some(json!({"session_id": sid})), "unknown type")
            }
            9 => self.envelope(
                "session_input",
                Some(json!({"session_id": 5, "message": []})),
                "input of wrong types",
            ),
            10 => self.envelope(
                "session_cancel",
                Some(json!("everything")),
                "cancel with a string payload",
            ),
            _ => {
                let junk = [
                    "",
                    "null",
                    "[]",
                    "{}",
                    "\"str\"",
                    "{\"type\":\"\"}",
                    "not json",
                ];
                let j = junk[self.rng.random_range(0..junk.len())];
                Step::Text {
                    what: format!("junk {j:?}"),
                    text: j.to_string(),
                    ack: None,
                }
            }
        }
    }

    fn raw(v: Value, what: &str) -> Step {
        Step::Text {
            what: what.into(),
            text: v.to_string(),
            ack: None,
        }
    }

    /// Strings of 100–900 KB, under the 1 MiB limit.
    fn huge(&mut self) -> Step {
        let big = self.big();
        match self.rng.random_range(0..4) {
            0 => {
                let p = json!({"session_id": big, "session_type": "inspect", "user_name": "op", "params": {"plugin": "mem"}});
                self.start_with(p, &big, format!("huge id of {} bytes", big.len()))
            }
            1 => {
                let sid = self.pool_id();
                let p = json!({"session_id": sid, "session_type": "chat", "user_name": big, "params": {}});
                self.start_with(p, &sid, format!("huge user_name for {sid}"))
            }
            2 => {
                let sid = self.pool_id();
                let p = json!({"session_id": sid, "session_type": "chat", "user_name": "op", "params": {"message": big}});
                self.start_with(p, &sid, format!("huge first message for {sid}"))
            }
            _ => {
                let sid = self.pool_id();
                let what = format!("huge input of {} bytes for {sid}", big.len());
                self.envelope(
                    "session_input",
                    Some(json!({"session_id": sid, "message": big})),
                    &what,
                )
            }
        }
    }

    fn oversized(&mut self) -> Step {
        let pad = "o".repeat(MAX_INBOUND + self.rng.random_range(1..100_000));
        if self.pct() < 50 {
            Step::Oversized(
                json!({"type": "ping", "id": "big", "payload": {"pad": pad}}).to_string(),
            )
        } else {
            let p = json!({"session_id": pad, "session_type": "chat"});
            Step::Oversized(json!({"type": "session_start", "id": "big", "payload": p}).to_string())
        }
    }

    /// `retry_after_sec` values whose wait is short before and after the
    /// 1..3600 s clamp of §10 (at most about a second).
    fn disconnect(&mut self) -> Step {
        let retry = match self.rng.random_range(0..6) {
            0 => json!(-1),
            1 => json!(0),
            2 => json!(i64::MIN),
            3 => json!(-self.rng.random_range(1..1_000_000_000i64)),
            4 => json!("soon"),
            _ => Value::Null,
        };
        Step::Disconnect(json!({"reason": "hostile", "retry_after_sec": retry}))
    }
}

// ---------------------------------------------------------------------------
// The invariant checker: one ledger per connection, fed by a reader task.

/// What one connection owes and has delivered.
#[derive(Default)]
struct Ledger {
    /// `(envelope id, session id)` of starts sent and not yet acked, in order.
    pending: VecDeque<(String, String)>,
    /// Accepted sessions that have not sent their `done` yet, by id (an id
    /// may be open twice: a new session can be accepted while the old one's
    /// `done` is still on its way).
    open: HashMap<String, usize>,
    /// Ack answers by envelope id: `(ok, error)`.
    answers: HashMap<String, (bool, String)>,
    acks: usize,
    accepted: usize,
    dones: usize,
    violations: Vec<String>,
}

impl Ledger {
    fn observe(&mut self, text: &str) {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .violations
                    .push(format!("agent sent invalid JSON: {e}"));
            }
        };
        let p = &v["payload"];
        let t = v["type"].as_str().unwrap_or("");
        match t {
            "ack" => {
                let got = v["ref_id"].as_str().unwrap_or("");
                self.acks += 1;
                let Some(k) = self.pending.iter().position(|(want, _)| want == got) else {
                    return self
                        .violations
                        .push(format!("ack {got:?} answers no session_start sent"));
                };
                if k > 0 {
                    // Skip the unanswered ones so one miss is one report.
                    let (want, sid) = &self.pending[0];
                    self.violations.push(format!(
                        "no ack for the session_start {want:?} of {} \
                         ({k} start(s) skipped, answered {got:?})",
                        short(sid)
                    ));
                    self.pending.drain(..k);
                }
                let (want, sid) = self.pending.pop_front().expect("position() found it");
                let ok = p["ok"] == true;
                if ok {
                    *self.open.entry(sid).or_default() += 1;
                    self.accepted += 1;
                }
                let error = p["error"].as_str().unwrap_or("").to_string();
                self.answers.insert(want, (ok, error));
            }
            "session_output" | "session_error" => {
                let sid = p["session_id"].as_str().unwrap_or("");
                let Some(n) = self.open.get_mut(sid) else {
                    return self.violations.push(format!(
                        "{t} for {} with no open session on this connection \
                         (never accepted, or after its done)",
                        short(sid)
                    ));
                };
                if t == "session_output" && p["done"] == true {
                    *n -= 1;
                    if *n == 0 {
                        self.open.remove(sid);
                    }
                    self.dones += 1;
                }
            }
            "heartbeat" | "alert_events" => {}
            other => self
                .violations
                .push(format!("unexpected message type {other:?}")),
        }
    }
}

/// A failed check panics on the test's thread, maybe while a reader holds
/// the lock: the ledger is still worth reading then.
fn lock(l: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server's side of one registered connection.
struct Live {
    sink: SplitSink<Ws, Message>,
    reader: tokio::task::JoinHandle<()>,
    ledger: Arc<Mutex<Ledger>>,
}

async fn read_agent(mut stream: SplitStream<Ws>, ledger: Arc<Mutex<Ledger>>) {
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(t)) => lock(&ledger).observe(t.as_str()),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

impl Live {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// False when the connection is gone.
    async fn send(&mut self, msg: Message) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.sink.send(msg)).await,
            Ok(Ok(()))
        )
    }

    async fn send_text(&mut self, text: String, ack: Option<(String, String)>) -> bool {
        if let Some(a) = ack {
            // Before sending: the ack may come back before send() returns.
            self.ledger().pending.push_back(a);
        }
        self.send(Message::text(text)).await
    }

    fn ended(&self) -> bool {
        self.reader.is_finished()
    }

    /// Waits for the agent to close the connection.
    async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, &mut self.reader).await.is_ok()
    }
}

// ---------------------------------------------------------------------------
// The driver.

/// One seed's run: its context for failure messages, and its connections.
struct Run {
    seed: u64,
    recent: VecDeque<String>,
    ledgers: Vec<Arc<Mutex<Ledger>>>,
    /// Steps by the first word of their description, to show the mix.
    tally: BTreeMap<String, usize>,
}

impl Run {
    fn note(&mut self, what: String) {
        let word = what.split_whitespace().next().unwrap_or("");
        *self.tally.entry(word.to_string()).or_default() += 1;
        if self.recent.len() == 30 {
            self.recent.pop_front();
        }
        self.recent.push_back(what);
    }

    fn fail(&self, what: &str) -> ! {
        let recent: Vec<&str> = self.recent.iter().map(String::as_str).collect();
        panic!(
            "seed {seed}: {what}\n  replay: CATPAW_HOSTILE_SEED={seed} cargo test --test hostile_server -- --nocapture\n  last frames (oldest first): {recent:#?}",
            seed = self.seed
        );
    }

    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.fail(&what());
        }
    }

    fn check_ledgers(&self) {
        for (i, l) in self.ledgers.iter().enumerate() {
            let v = lock(l).violations.clone();
            self.check(v.is_empty(), || format!("connection #{i}: {v:#?}"));
        }
    }

    /// Accepts the agent's next connection and registers it.
    async fn connect(&mut self, server: &mut TestServer, agent: &JoinHandle<()>) -> Live {
        self.check(!agent.is_finished(), || {
            "the agent task ended on its own".into()
        });
        let Some(mut c) = server.try_accept(Duration::from_secs(10)).await else {
            self.fail("the agent did not come back within 10 s");
        };
        let reg = c.recv_within(Duration::from_secs(5)).await;
        let Some(reg) = reg.filter(|r| r.msg_type == proto::MSG_REGISTER) else {
            self.fail("a new connection did not start with register");
        };
        let ok = AckPayload {
            ok: true,
            error: None,
            warning: None,
        };
        let ack = Envelope::reply(proto::MSG_ACK, &reg.id, ok).to_json();
        self.check(c.ws.send(Message::text(ack)).await.is_ok(), || {
            "sending the register ack failed".into()
        });
        let (sink, stream) = c.ws.split();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        self.ledgers.push(ledger.clone());
        self.note(format!("-- connection #{} --", self.ledgers.len() - 1));
        Live {
            sink,
            reader: tokio::spawn(read_agent(stream, ledger.clone())),
            ledger,
        }
    }

    /// Plays random steps until `deadline`; returns the live connection.
    async fn chaos(
        &mut self,
        server: &mut TestServer,
        agent: &JoinHandle<()>,
        deadline: Instant,
    ) -> Live {
        let mut frames = Gen::new(self.seed);
        let mut live = self.connect(server, agent).await;
        while Instant::now() < deadline {
            for step in frames.next() {
                // `Some(wait)`: this step ends the connection, and the agent
                // must notice within `wait`.
                let ends = match step {
                    Step::Text { what, text, ack } => {
                        self.note(what);
                        live.send_text(text, ack).await;
                        None
                    }
                    Step::Binary(b) => {
                        self.note(format!("binary frame of {} bytes", b.len()));
                        live.send(Message::binary(b)).await;
                        None
                    }
                    Step::WsPing => {
                        self.note("websocket ping".into());
                        live.send(Message::Ping(b"hostile".to_vec().into())).await;
                        None
                    }
                    Step::Pause(d) => {
                        tokio::time::sleep(d).await;
                        None
                    }
                    Step::Oversized(text) => {
                        self.note(format!("oversized frame of {} bytes", text.len()));
                        // The agent may reset the socket mid-frame.
                        live.send(Message::text(text)).await;
                        Some(Duration::from_secs(5))
                    }
                    Step::Disconnect(p) => {
                        self.note(format!("disconnect {p}"));
                        let env = json!({"type": "disconnect", "id": "bye", "payload": p});
                        live.send(Message::text(env.to_string())).await;
                        Some(Duration::from_secs(5))
                    }
                    Step::Drop => {
                        self.note("drop the socket".into());
                        live.reader.abort();
                        Some(Duration::ZERO)
                    }
                };
                if let Some(wait) = ends {
                    if !wait.is_zero() {
                        self.check(live.closed_within(wait).await, || {
                            format!("the agent kept the connection open {wait:?} after that")
                        });
                    }
                    drop(live);
                    self.check_ledgers();
                    live = self.connect(server, agent).await;
                    break; // the rest of a flood belonged to the old socket
                }
                self.check(!live.ended(), || {
                    if agent.is_finished() {
                        "the agent task ended (a panic?) and took the connection with it".into()
                    } else {
                        "the agent closed the connection on its own".into()
                    }
                });
                self.check_ledgers();
            }
        }
        live
    }

    /// The quiet period: nothing new starts; open sessions are cancelled
    /// until every accepted one on `live` has sent its `done`.
    async fn settle(&mut self, live: &mut Live) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last_cancel: Option<Instant> = None;
        loop {
            self.check_ledgers();
            self.check(!live.ended(), || {
                "the connection dropped during the quiet period".into()
            });
            let (pending, open): (usize, Vec<String>) = {
                let l = live.ledger();
                (l.pending.len(), l.open.keys().cloned().collect())
            };
            if pending == 0 && open.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let open: Vec<String> = open.iter().map(|s| short(s)).collect();
                self.fail(&format!(
                    "after 20 s of quiet: {pending} session_start(s) without an ack, \
                     sessions without their done: {open:?}"
                ));
            }
            if last_cancel.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                for sid in open {
                    self.note(format!("quiet: cancel {}", short(&sid)));
                    let env = json!({"type": "session_cancel", "id": "c",
                        "payload": {"session_id": sid, "reason": "quiet period"}});
                    live.send(Message::text(env.to_string())).await;
                }
                last_cancel = Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The limiter is back to zero: `MAX_SESSIONS` fresh chats are
    /// accepted, one more is refused.
    async fn probe_limiter(&mut self, live: &mut Live) {
        let mut ids = Vec::new();
        for i in 0..=MAX_SESSIONS {
            let env_id = format!("probe-{}-{i}", self.seed);
            let sid = format!("probe-{i}");
            let p =
                json!({"session_id": sid, "session_type": "chat", "user_name": "op", "params": {}});
            let text = json!({"type": "session_start", "id": env_id, "payload": p}).to_string();
            self.note(format!("probe: start {sid}"));
            live.send_text(text, Some((env_id.clone(), sid))).await;
            ids.push(env_id);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live.ledger().pending.is_empty() {
            self.check(Instant::now() < deadline, || {
                "probe starts were not acked within 5 s".into()
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let answers: Vec<(bool, String)> = {
            let l = live.ledger();
            ids.iter().map(|id| l.answers[id].clone()).collect()
        };
        let full = AckError::MaxConcurrentSessions.to_string();
        for (i, (ok, error)) in answers.iter().enumerate() {
            if i < MAX_SESSIONS {
                self.check(*ok, || {
                    format!(
                        "limiter not back to zero: probe {i} of {MAX_SESSIONS} refused: {error:?}"
                    )
                });
            } else {
                self.check(!ok && *error == full, || {
                    format!("limiter over its max: probe {i} got ok={ok} {error:?}")
                });
            }
        }
    }
}

/// Totals of one seed, for the log.
struct Summary {
    tally: BTreeMap<String, usize>,
    connections: usize,
    acks: usize,
    accepted: usize,
    dones: usize,
}

async fn run_seed(seed: u64, chaos: Duration, runners: Runners) -> Summary {
    let mut h = start_agent(runners).await;
    let mut run = Run {
        seed,
        recent: VecDeque::new(),
        ledgers: Vec::new(),
        tally: BTreeMap::new(),
    };

    let mut live = run
        .chaos(&mut h.server, &h.task, Instant::now() + chaos)
        .await;
    run.settle(&mut live).await;
    let table = h.agent.sessions();
    // Sessions of dropped connections were cancelled; they leave the table
    // once their runner has stopped.
    let idle = table.wait_idle(Duration::from_secs(10)).await;
    run.check(idle && table.active() == 0, || {
        format!(
            "{} session(s) still in the table after the quiet period",
            table.active()
        )
    });
    run.probe_limiter(&mut live).await;
    run.settle(&mut live).await;
    run.check(table.wait_idle(Duration::from_secs(10)).await, || {
        "probe chats did not leave the table".into()
    });
    run.check(!h.task.is_finished(), || {
        "the agent task ended on its own".into()
    });
    if let Err(e) = h.try_stop().await {
        run.fail(&e);
    }
    run.check_ledgers();

    let mut s = Summary {
        tally: run.tally,
        connections: run.ledgers.len(),
        acks: 0,
        accepted: 0,
        dones: 0,
    };
    for l in &run.ledgers {
        let l = lock(l);
        s.acks += l.acks;
        s.accepted += l.accepted;
        s.dones += l.dones;
    }
    s
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_never_breaks_the_agent() {
    let chaos = Duration::from_secs(env_u64("CATPAW_HOSTILE_SECS").unwrap_or(4));
    let seeds: Vec<u64> = match env_u64("CATPAW_HOSTILE_SEED") {
        Some(s) => vec![s],
        None => (0..3).map(|_| rand::random::<u32>().into()).collect(),
    };
    let sb = TestSandbox::new();
    let runners = builtin_runners(&sb);
    let rss_before = rss_mib();
    for &seed in &seeds {
        let t0 = Instant::now();
        let s = run_seed(seed, chaos, runners.clone()).await;
        println!(
            "seed {seed}: {} connections; {} acks, {} accepted, {} done; {:.1?}; \
             RSS {} MiB (from {rss_before})\n  steps: {:?}",
            s.connections,
            s.acks,
            s.accepted,
            s.dones,
            t0.elapsed(),
            rss_mib(),
            s.tally
        );
        let grown = rss_mib().saturating_sub(rss_before);
        assert!(
            grown < RSS_GROWTH_MIB,
            "seed {seed}: RSS grew by {grown} MiB (from {rss_before} MiB), over {RSS_GROWTH_MIB} MiB"
        );
    }
}

/// Registers the agent's next connection, sends it `disconnect` with
/// `retry`, and waits for it to close.
async fn disconnect_with(server: &mut TestServer, retry: &Value) {
    let (mut c, _) = server.accept_registered().await;
    c.send(&Envelope::new(
        proto::MSG_DISCONNECT,
        json!({"reason": "hostile", "retry_after_sec": retry}),
    ))
    .await;
    // Heartbeats may still come first; then the socket must close (the
    // deadline only keeps an agent that never closes from hanging the test).
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = c.ws.next().await {
            if m.is_close() {
                break;
            }
        }
    });
    assert!(
        closed.await.is_ok(),
        "retry_after_sec {retry}: the agent did not close after disconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_after_value_ends_the_agent() {
    // No runners: these frames never start a session.
    let mut h = start_agent(Runners::default()).await;
    // Negative, zero, absent or garbage: the agent is back within about a
    // second (±25 %), before and after the clamp of §10.
    for retry in [
        json!(-1),
        json!(0),
        json!(i64::MIN),
        json!(-86_400),
        json!("soon"),
        Value::Null,
    ] {
        disconnect_with(&mut h.server, &retry).await;
        assert!(
            !h.task.is_finished(),
            "retry_after_sec {retry}: agent ended"
        );
    }
    // The agent must still answer.
    let (mut c, _) = h.server.accept_registered().await;
    let ack = c.start_session("after", "chat", json!({})).await;
    assert_eq!(
        ack.error.as_deref(),
        Some(AckError::ChatEngineNotAvailable.to_string().as_str())
    );
    drop(c);
    assert_eq!(h.try_stop().await, Ok(()), "agent did not stop cleanly");

    // Huge values, with the agent's own clamp (an hour, PROTOCOL §10):
    // i64::MAX and 10^12 s make it wait at least 45 min (−25 %); u64::MAX
    // is no i64 and reads as absent (the floor). It stays alive through the
    // wait, and shutdown interrupts it (§6): for the clamped two, a stop
    // that came at all came long before the wait could end. `try_stop`
    // waits 10 s at most, only so a stop that never comes does not hang.
    for retry in [
        json!(i64::MAX),
        json!(1_000_000_000_000i64),
        json!(u64::MAX),
    ] {
        let mut opts = options();
        opts.backoff.disconnect_max = BackoffPolicy::default().disconnect_max;
        let mut h = harness_with(
            |c| c.sandbox.max_concurrent_sessions = MAX_SESSIONS,
            |_| Runners::default(),
            opts,
        )
        .await;
        disconnect_with(&mut h.server, &retry).await;
        // The agent is in its wait once its link state says so.
        let telemetry = h.agent.telemetry();
        let deadline = Instant::now() + Duration::from_secs(20);
        while telemetry.link().state != LinkState::Waiting {
            assert!(
                Instant::now() < deadline,
                "retry_after_sec {retry}: the agent never started its wait ({:?})",
                telemetry.link().state
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !h.task.is_finished(),
            "retry_after_sec {retry}: agent ended"
        );
        assert_eq!(h.try_stop().await, Ok(()), "retry_after_sec {retry}");
        assert_eq!(
            telemetry.link().state,
            LinkState::Stopped,
            "retry_after_sec {retry}"
        );
    }
}
