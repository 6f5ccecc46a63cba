//! A catpaw-server stand-in that drives one real agent process and measures
//! it from outside, as the issue's table measures an agent: it speaks the
//! wire protocol (/work/shared/PROTOCOL.md §1–§5) itself, starts the agent
//! as its child with `LOAD_ADDR` set to its own address, and reads the
//! agent's CPU clock and memory from the kernel.
//!
//! Usage: `catpaw-loadserver [--phases idle,noop,stream,ack,chat]
//! [--settle S] [--idle S] [--noop N] [--deltas N] [--rounds N] [--acks N]
//! [--chats N] [--log FILE] -- AGENT-COMMAND...`
//!
//! Every figure is one line on stdout, `figure NAME VALUE`, for
//! scripts/footprint.sh to take medians of.

mod json;
mod proc;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use json::{Value, quote};

struct Opts {
    phases: Vec<String>,
    settle: f64,
    idle: f64,
    noop: u32,
    deltas: u32,
    rounds: u32,
    acks: u32,
    chats: u32,
    log: String,
    agent: Vec<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        phases: ["idle", "noop", "stream", "ack", "chat"]
            .map(String::from)
            .to_vec(),
        settle: 2.0,
        idle: 10.0,
        noop: 1000,
        deltas: 200_000,
        rounds: 3,
        acks: 300,
        chats: 100,
        log: "/dev/null".into(),
        agent: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--" {
            o.agent = args.by_ref().collect();
            break;
        }
        let v = args
            .next()
            .unwrap_or_else(|| die(&format!("{a} needs a value")));
        let num = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| die(&format!("{a}: {v:?} is not a number")))
        };
        match a.as_str() {
            "--phases" => o.phases = v.split(',').map(String::from).collect(),
            "--settle" => o.settle = num(&v),
            "--idle" => o.idle = num(&v),
            "--noop" => o.noop = num(&v) as u32,
            "--deltas" => o.deltas = num(&v) as u32,
            "--rounds" => o.rounds = num(&v) as u32,
            "--acks" => o.acks = num(&v) as u32,
            "--chats" => o.chats = num(&v) as u32,
            "--log" => o.log = v,
            _ => die(&format!("unknown option {a}")),
        }
    }
    if o.agent.is_empty() {
        die("no agent command after --");
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("catpaw-loadserver: {msg}");
    std::process::exit(2)
}

fn figure(name: &str, value: f64) {
    println!("figure {name} {value:.3}");
}

/// What the reader saw, stamped when the frame was read.
enum Event {
    Ack {
        ref_id: String,
        ok: bool,
        at: Instant,
    },
    Output {
        sid: String,
        delta: usize,
        done: bool,
        turn_done: bool,
        at: Instant,
    },
    Error {
        sid: String,
        text: String,
    },
}

/// The driver's side of the connection.
struct Conn {
    out: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedReceiver<Event>,
    next_id: u64,
    pid: u32,
}

impl Conn {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_id)
    }

    /// Sends `session_start`; returns its message id and when it was sent.
    fn start(&mut self, sid: &str, kind: &str, params: &str) -> (String, Instant) {
        let id = self.id();
        let frame = format!(
            r#"{{"type":"session_start","id":"{id}","payload":{{"session_id":{},"session_type":"{kind}","user_name":"load","params":{params}}}}}"#,
            quote(sid)
        );
        let at = Instant::now();
        self.out
            .send(frame)
            .unwrap_or_else(|_| die("connection closed"));
        (id, at)
    }

    fn cancel(&mut self, sid: &str) {
        let id = self.id();
        let frame = format!(
            r#"{{"type":"session_cancel","id":"{id}","payload":{{"session_id":{},"reason":"load done"}}}}"#,
            quote(sid)
        );
        self.out
            .send(frame)
            .unwrap_or_else(|_| die("connection closed"));
    }

    async fn next(&mut self) -> Event {
        match tokio::time::timeout(Duration::from_secs(120), self.events.recv()).await {
            Ok(Some(e)) => e,
            Ok(None) => die("the agent closed the connection"),
            Err(_) => die("no frame from the agent in 120 s"),
        }
    }
}

fn check_ok(ok: bool, what: &str) {
    if !ok {
        die(&format!("the agent refused {what} (ack ok:false)"));
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn settle(o: &Opts) {
    tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;
}

/// Resident KiB by kind of mapping, as figures named `prefix.KIND_kib`.
fn smaps_figures(prefix: &str, pid: u32) {
    for (kind, kib) in proc::smaps(pid) {
        println!(
            "figure {prefix}.{}_kib {kib}",
            kind.split(' ').next().unwrap_or("")
        );
    }
}

/// Idle RSS while connected, then the CPU of an idle window.
async fn idle(c: &mut Conn, o: &Opts) {
    settle(o).await;
    let m = proc::mem(c.pid);
    figure("idle_rss_kib", m.rss as f64);
    figure("idle_anon_kib", m.anon as f64);
    figure("idle_file_kib", m.file as f64);
    figure("idle_pss_kib", m.pss as f64);
    figure("idle_threads", m.threads as f64);
    smaps_figures("smaps", c.pid);
    let cpu = proc::cpu(c.pid);
    // RSS once a second through the window: what an idle agent holds over
    // time, not at one instant.
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(o.idle);
    let mut samples = Vec::new();
    while tokio::time::Instant::now() < until {
        let next = (tokio::time::Instant::now() + Duration::from_secs(1)).min(until);
        tokio::time::sleep_until(next).await;
        samples.push(proc::mem(c.pid).rss);
    }
    let spent = proc::cpu(c.pid) - cpu;
    samples.sort_unstable();
    if let Some(max) = samples.last() {
        figure("idle_rss_median_kib", samples[samples.len() / 2] as f64);
        figure("idle_rss_max_kib", *max as f64);
    }
    // Again at the window's end: what stays resident once the idle loop
    // (heartbeats every 30 s) has run for a while.
    let end = proc::mem(c.pid);
    figure("idle_end_rss_kib", end.rss as f64);
    figure("idle_end_pss_kib", end.pss as f64);
    smaps_figures("smaps_end", c.pid);
    figure("idle_window_s", o.idle);
    figure("idle_cpu_ms", spent.as_secs_f64() * 1e3);
    figure(
        "idle_cpu_ms_per_60s",
        spent.as_secs_f64() * 1e3 * 60.0 / o.idle,
    );
}

/// Noop sessions one after another: start → done, and CPU per session.
async fn noop(c: &mut Conn, o: &Opts) {
    let mut lat = Vec::with_capacity(o.noop as usize);
    let cpu = proc::cpu(c.pid);
    for i in 0..o.noop {
        let sid = format!("noop-{i}");
        let (id, at) = c.start(&sid, "inspect", r#"{"plugin":"noop","target":"0"}"#);
        loop {
            match c.next().await {
                Event::Ack { ref_id, ok, .. } if ref_id == id => check_ok(ok, "a noop session"),
                Event::Output {
                    sid: s,
                    done: true,
                    at: t,
                    ..
                } if s == sid => {
                    lat.push(t - at);
                    break;
                }
                Event::Error { sid: s, text } if s == sid => die(&format!("noop failed: {text}")),
                _ => {}
            }
        }
    }
    let spent = proc::cpu(c.pid) - cpu;
    lat.sort();
    figure("noop_p50_ms", pct(&lat, 0.5));
    figure("noop_p99_ms", pct(&lat, 0.99));
    figure("noop_cpu_ms", spent.as_secs_f64() * 1e3 / f64::from(o.noop));
}

/// One session emitting `o.deltas` 16-byte deltas, `o.rounds` times.
async fn stream(c: &mut Conn, o: &Opts) {
    let (mut rates, mut cpus, mut frames) = (Vec::new(), Vec::new(), 0u64);
    for r in 0..o.rounds {
        let sid = format!("flood-{r}");
        let cpu = proc::cpu(c.pid);
        let (id, at) = c.start(
            &sid,
            "inspect",
            &format!(r#"{{"plugin":"emit","target":"{}"}}"#, o.deltas),
        );
        let mut bytes = 0usize;
        let end = loop {
            match c.next().await {
                Event::Ack { ref_id, ok, .. } if ref_id == id => check_ok(ok, "a flood"),
                Event::Output {
                    sid: s,
                    delta,
                    done,
                    at: t,
                    ..
                } if s == sid => {
                    bytes += delta;
                    frames += 1;
                    if done {
                        break t;
                    }
                }
                Event::Error { sid: s, text } if s == sid => die(&format!("flood failed: {text}")),
                _ => {}
            }
        };
        let spent = proc::cpu(c.pid) - cpu;
        if bytes != o.deltas as usize * 16 {
            die(&format!(
                "flood: {bytes} bytes of delta text, expected {}",
                o.deltas as usize * 16
            ));
        }
        rates.push(f64::from(o.deltas) / (end - at).as_secs_f64());
        cpus.push(spent.as_secs_f64() * 1e6 / f64::from(o.deltas));
    }
    rates.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    figure("deltas_per_s", rates[rates.len() / 2]);
    figure("cpu_us_per_delta", cpus[cpus.len() / 2]);
    figure(
        "frames_per_100k_deltas",
        frames as f64 * 100_000.0 / f64::from(o.deltas * o.rounds),
    );
}

/// `session_start` → `ack` for noop sessions while 3 sessions stream.
async fn ack(c: &mut Conn, o: &Opts) {
    let streams: Vec<String> = (0..3).map(|i| format!("bg-{i}")).collect();
    let mut open: HashMap<String, bool> = HashMap::new();
    for s in &streams {
        c.start(s, "inspect", r#"{"plugin":"emit","target":"1000000000"}"#);
        open.insert(s.clone(), true);
    }
    // Let the streams fill the socket before the first sample.
    let warm = Instant::now() + Duration::from_millis(200);
    while Instant::now() < warm {
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(5), c.events.recv()).await {
        }
    }
    let mut lat = Vec::new();
    for i in 0..o.acks {
        let sid = format!("probe-{i}");
        let (id, at) = c.start(&sid, "inspect", r#"{"plugin":"noop","target":"0"}"#);
        let mut acked = false;
        let mut done = false;
        while !(acked && done) {
            match c.next().await {
                Event::Ack { ref_id, ok, at: t } if ref_id == id => {
                    check_ok(ok, "a probe while streaming");
                    lat.push(t - at);
                    acked = true;
                }
                Event::Output {
                    sid: s, done: true, ..
                } if s == sid => done = true,
                Event::Output {
                    sid: s, done: true, ..
                } if open.contains_key(&s) => die(&format!("stream {s} ended early")),
                Event::Error { sid: s, text } if s == sid => die(&format!("probe failed: {text}")),
                _ => {}
            }
        }
    }
    for s in &streams {
        c.cancel(s);
    }
    while !open.is_empty() {
        if let Event::Output {
            sid, done: true, ..
        } = c.next().await
        {
            open.remove(&sid);
        }
    }
    lat.sort();
    figure("ack_p50_ms", pct(&lat, 0.5));
    figure("ack_p99_ms", pct(&lat, 0.99));
}

/// `o.chats` chats open, each having answered a turn; then all closed.
async fn chat(c: &mut Conn, o: &Opts) {
    let idle = proc::mem(c.pid);
    let mut waiting: HashMap<String, bool> = HashMap::new();
    let mut turn = Vec::new();
    for i in 0..o.chats {
        let sid = format!("chat-{i}");
        let (id, at) = c.start(&sid, "chat", r#"{"message":"hello"}"#);
        loop {
            match c.next().await {
                Event::Ack { ref_id, ok, .. } if ref_id == id => check_ok(ok, "a chat"),
                Event::Output {
                    sid: s,
                    turn_done: true,
                    at: t,
                    ..
                } if s == sid => {
                    turn.push(t - at);
                    break;
                }
                Event::Error { sid: s, text } if s == sid => die(&format!("chat failed: {text}")),
                _ => {}
            }
        }
        waiting.insert(sid, true);
    }
    let open = proc::mem(c.pid);
    let n = f64::from(o.chats.max(1));
    figure("chats_open", f64::from(o.chats));
    figure("chat_rss_kib_each", (open.rss as f64 - idle.rss as f64) / n);
    figure("chat_pss_kib_each", (open.pss as f64 - idle.pss as f64) / n);
    figure(
        "chat_anon_kib_each",
        (open.anon as f64 - idle.anon as f64) / n,
    );
    turn.sort();
    figure("chat_first_turn_p50_ms", pct(&turn, 0.5));
    let sids: Vec<String> = waiting.keys().cloned().collect();
    for s in &sids {
        c.cancel(s);
    }
    while !waiting.is_empty() {
        if let Event::Output {
            sid, done: true, ..
        } = c.next().await
        {
            waiting.remove(&sid);
        }
    }
    settle(o).await;
    let after = proc::mem(c.pid);
    figure("rss_after_close_kib", after.rss as f64);
    figure(
        "rss_after_close_ratio",
        after.rss as f64 / idle.rss.max(1) as f64,
    );
}

/// Reads frames, answers `register`, and turns the rest into events.
async fn read_loop(
    mut rx: impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    out: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedSender<Event>,
    registered: tokio::sync::oneshot::Sender<()>,
) {
    let mut registered = Some(registered);
    while let Some(Ok(msg)) = rx.next().await {
        let at = Instant::now();
        let Message::Text(text) = msg else { continue };
        let v = match json::parse(text.as_str()) {
            Ok(v) => v,
            Err(e) => die(&format!(
                "the agent sent a frame that is not JSON ({e}): {text}"
            )),
        };
        let kind = v.get("type").and_then(Value::str).unwrap_or("");
        let p = v.get("payload");
        let pstr = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Value::str)
                .unwrap_or("")
                .to_string()
        };
        let ev = match kind {
            "register" => {
                let id = v.get("id").and_then(Value::str).unwrap_or("");
                let _ = out.send(format!(
                    r#"{{"type":"ack","id":"ffffffff-0000-4000-8000-000000000001","ref_id":{},"payload":{{"ok":true}}}}"#,
                    quote(id)
                ));
                if let Some(r) = registered.take() {
                    let _ = r.send(());
                }
                continue;
            }
            "ack" => Event::Ack {
                ref_id: v
                    .get("ref_id")
                    .and_then(Value::str)
                    .unwrap_or("")
                    .to_string(),
                ok: p.and_then(|p| p.get("ok")).is_some_and(Value::truthy),
                at,
            },
            "session_output" => Event::Output {
                sid: pstr("session_id"),
                delta: pstr("delta").len(),
                done: p.and_then(|p| p.get("done")).is_some_and(Value::truthy),
                turn_done: p
                    .and_then(|p| p.get("metadata"))
                    .and_then(|m| m.get("turn_done"))
                    .is_some_and(Value::truthy),
                at,
            },
            "session_error" => Event::Error {
                sid: pstr("session_id"),
                text: pstr("error"),
            },
            _ => continue,
        };
        if events.send(ev).is_err() {
            return;
        }
    }
}

fn main() {
    let o = opts();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("runtime: {e}")))
        .block_on(run(o));
}

async fn run(o: Opts) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| die(&format!("bind: {e}")));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| die(&e.to_string()));
    let log = std::fs::File::create(&o.log).unwrap_or_else(|e| die(&format!("{}: {e}", o.log)));
    let log2 = log.try_clone().unwrap_or_else(|e| die(&e.to_string()));
    let mut child = tokio::process::Command::new(&o.agent[0])
        .args(&o.agent[1..])
        .env("LOAD_ADDR", format!("ws://{addr}"))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .unwrap_or_else(|e| die(&format!("starting {}: {e}", o.agent[0])));
    let pid = child
        .id()
        .unwrap_or_else(|| die("the agent exited at once"));
    let started = Instant::now();
    let (tcp, _) = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(600), listener.accept()) => match r {
            Ok(Ok(c)) => c,
            _ => die("the agent did not connect in 600 s"),
        },
        s = child.wait() => die(&format!("the agent exited before connecting: {s:?} (see {})", o.log)),
    };
    tcp.set_nodelay(true)
        .unwrap_or_else(|e| die(&e.to_string()));
    let ws = tokio_tungstenite::accept_async(tcp)
        .await
        .unwrap_or_else(|e| die(&format!("upgrade: {e}")));
    let (mut tx, rx) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let (reg_tx, reg_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(read_loop(rx, out.clone(), ev_tx, reg_tx));
    tokio::spawn(async move {
        // Not at once: the register ack must be the first frame (§1).
        let every = Duration::from_secs(20);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let frame = tokio::select! {
                f = out_rx.recv() => match f { Some(f) => f, None => return },
                _ = ping.tick() => r#"{"type":"ping","id":"ffffffff-0000-4000-8000-000000000002"}"#.to_string(),
            };
            if tx.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
    });
    if tokio::time::timeout(Duration::from_secs(30), reg_rx)
        .await
        .is_err()
    {
        die("no register from the agent in 30 s");
    }
    figure("connect_s", started.elapsed().as_secs_f64());
    let mut c = Conn {
        out,
        events,
        next_id: 0,
        pid,
    };
    for phase in &o.phases {
        match phase.as_str() {
            "idle" => idle(&mut c, &o).await,
            "noop" => noop(&mut c, &o).await,
            "stream" => stream(&mut c, &o).await,
            "ack" => ack(&mut c, &o).await,
            "chat" => chat(&mut c, &o).await,
            p => die(&format!("unknown phase {p}")),
        }
    }
    // SAFETY: kill only sends SIGTERM to the child this process started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
        die("the agent did not stop within 20 s of SIGTERM");
    }
}
