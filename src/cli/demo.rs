//! `catpaw-agent demo`: the whole product end to end on this machine.
//!
//! Starts a loopback WebSocket server that speaks the server side of the
//! protocol, connects a real agent to it, and runs an inspect, a diagnose
//! and a two-turn chat in the sandbox, printing the conversation as an
//! operator would read it.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::cli::session::{Style, print_event};
use crate::config::Config;
use crate::link::agent::AgentOptions;
use crate::proto::{
    self, AckPayload, Envelope, RegisterPayload, SessionErrorPayload, SessionOutputPayload,
};
use crate::session::SessionEvent;

type ServerWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// How long one demo session may take before the demo gives up.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

/// Runs the demo; `state_dir` receives the agent id, audit log and cache.
pub async fn run(state_dir: &std::path::Path) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    let st = Style::new(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    println!(
        "{}catpaw demo{}: loopback server on ws://{addr}, agent sessions in the wasm sandbox\n",
        st.bold, st.reset
    );

    let mut cfg = Config {
        state_dir: state_dir.to_path_buf(),
        ..Config::default()
    };
    // The demo's state dir is thrown away at the end.
    cfg.audit.append_only = false;
    cfg.server.enabled = true;
    cfg.server.address = addr.to_string();
    let setup =
        crate::cli::setup::build(&cfg, None, &[], cfg.sandbox.max_concurrent_sessions as u32)?;
    let agent = setup.agent(&cfg, AgentOptions::default())?;
    let shutdown = CancellationToken::new();
    let agent_task = {
        let agent = agent.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { agent.run(shutdown).await })
    };

    let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .context("the agent did not connect")??;
    let mut ws = tokio_tungstenite::accept_async(tcp)
        .await
        .context("WebSocket upgrade")?;
    let register = next_envelope(&mut ws).await?;
    if register.msg_type != proto::MSG_REGISTER {
        bail!("expected register, got {}", register.msg_type);
    }
    let info: RegisterPayload = register.decode().context("register payload")?;
    println!(
        "agent registered: host {} ({}) {}/{} catpaw-agent {}\n",
        info.hostname,
        if info.ip.is_empty() {
            "no IPv4"
        } else {
            &info.ip
        },
        info.os,
        info.arch,
        info.agent_version
    );
    send(
        &mut ws,
        &Envelope::reply(
            proto::MSG_ACK,
            &register.id,
            AckPayload {
                ok: true,
                error: None,
                warning: None,
            },
        ),
    )
    .await?;

    let sessions = [
        ("inspect", json!({"plugin": "cpu"}), "inspect cpu"),
        (
            "diagnose",
            json!({(proto::PARAM_PLUGIN): "mem", (proto::PARAM_DESCRIPTIONS): "memory usage above 80% on this host"}),
            "diagnose mem (alert: memory usage above 80% on this host)",
        ),
    ];
    for (kind, params, title) in sessions {
        let id = uuid::Uuid::new_v4().to_string();
        println!("{}▶ operator starts {title}{}", st.bold, st.reset);
        start_session(&mut ws, &id, kind, params).await?;
        follow(&mut ws, &id, &st, None).await?;
        println!();
    }

    let chat = uuid::Uuid::new_v4().to_string();
    println!("{}▶ operator opens a chat{}", st.bold, st.reset);
    println!("{}operator>{} how is the load?", st.bold, st.reset);
    start_session(
        &mut ws,
        &chat,
        "chat",
        json!({"message": "how is the load?"}),
    )
    .await?;
    follow(&mut ws, &chat, &st, Some(())).await?;
    println!("{}operator>{} history", st.bold, st.reset);
    let input = json!({"session_id": chat, "message": "history"});
    send(&mut ws, &Envelope::new(proto::MSG_SESSION_INPUT, input)).await?;
    follow(&mut ws, &chat, &st, Some(())).await?;
    send(
        &mut ws,
        &Envelope::new(
            proto::MSG_SESSION_CANCEL,
            json!({"session_id": chat, "reason": "demo over"}),
        ),
    )
    .await?;
    follow(&mut ws, &chat, &st, None).await?;
    let audited = std::fs::read_to_string(setup.audit.path())
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<crate::audit::Record>(l).ok())
                .filter(|r| {
                    r.kind == crate::audit::kind::TOOL && r.event == crate::audit::event::OUTCOME
                })
                .count()
        })
        .unwrap_or(0);
    println!(
        "\nchat closed. {audited} tool calls were audited (a started and an outcome record each, \
         hash-chained in audit.jsonl: `catpaw-agent audit verify` checks it)."
    );

    shutdown.cancel();
    // Read until the agent closes the socket.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    agent_task.await.context("agent task")?;
    Ok(())
}

async fn send(ws: &mut ServerWs, env: &Envelope) -> anyhow::Result<()> {
    ws.send(Message::text(env.to_json()))
        .await
        .context("sending to the agent")
}

async fn next_envelope(ws: &mut ServerWs) -> anyhow::Result<Envelope> {
    loop {
        let msg = tokio::time::timeout(SESSION_LIMIT, ws.next())
            .await
            .context("the agent went quiet")?
            .context("the agent closed the connection")??;
        if let Message::Text(t) = msg {
            return Envelope::parse(t.as_str())
                .map_err(|e| anyhow::anyhow!("agent sent a bad frame: {e}"));
        }
    }
}

async fn start_session(
    ws: &mut ServerWs,
    id: &str,
    kind: &str,
    params: Value,
) -> anyhow::Result<()> {
    let start = Envelope::new(
        proto::MSG_SESSION_START,
        json!({"session_id": id, "session_type": kind, "user_name": "demo-operator", "params": params}),
    );
    send(ws, &start).await?;
    loop {
        let env = next_envelope(ws).await?;
        if env.msg_type == proto::MSG_ACK && env.ref_id.as_deref() == Some(start.id.as_str()) {
            let ack: AckPayload = env.decode().context("ack payload")?;
            if !ack.ok {
                bail!(
                    "agent refused the session: {}",
                    ack.error.unwrap_or_default()
                );
            }
            return Ok(());
        }
    }
}

/// Prints a session's messages until its `done` (or, for a chat turn, until
/// `turn_done` when `turn` is set).
async fn follow(ws: &mut ServerWs, id: &str, st: &Style, turn: Option<()>) -> anyhow::Result<()> {
    loop {
        let env = next_envelope(ws).await?;
        let ev = match env.msg_type.as_str() {
            proto::MSG_SESSION_OUTPUT => SessionEvent::Output(
                env.decode::<SessionOutputPayload>()
                    .context("session_output")?,
            ),
            proto::MSG_SESSION_ERROR => SessionEvent::Error(
                env.decode::<SessionErrorPayload>()
                    .context("session_error")?,
            ),
            _ => continue,
        };
        let (sid, done, turn_done) = match &ev {
            SessionEvent::Output(p) => (
                p.session_id.clone(),
                p.done,
                p.metadata.as_ref().and_then(|m| m.get("turn_done")) == Some(&Value::Bool(true)),
            ),
            SessionEvent::Error(p) => (p.session_id.clone(), false, false),
        };
        if sid != id {
            continue;
        }
        print_event(&ev, st);
        if done || (turn.is_some() && turn_done) {
            return Ok(());
        }
    }
}
