//! The agent in-process against the loopback [`TestServer`]: production
//! logic with short timers, so protocol tests take milliseconds.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use catpaw_agent::config::Config;
use catpaw_agent::link::agent::{Agent, AgentOptions};
use catpaw_agent::link::conn::Timings;
use catpaw_agent::link::reconnect::BackoffPolicy;
use catpaw_agent::proto::Envelope;
use catpaw_agent::session::Runners;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::server::TestServer;
use super::{TestSandbox, limits};

/// Short timers and waits so reconnect tests take milliseconds; the logic
/// is the production one.
pub fn fast() -> AgentOptions {
    AgentOptions {
        timings: Timings {
            dial_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_millis(400),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(30),
            alert_flush: Duration::from_millis(50),
            shutdown_grace: Duration::from_secs(5),
        },
        backoff: BackoffPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_millis(400),
            auth_min: Duration::from_millis(800),
            auth_max: Duration::from_secs(5),
            disconnect_min: Duration::from_millis(50),
            disconnect_max: Duration::from_secs(5),
            jitter: 0.25,
        },
        audit: None,
        telemetry: None,
    }
}

/// A running in-process agent and the server it talks to.
pub struct Harness {
    pub server: TestServer,
    pub agent: Agent,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    /// The agent's state dir.
    pub state: tempfile::TempDir,
    _sb: TestSandbox,
}

/// An enabled `[server]` config for `addr` with a token, labels and
/// plugins, then `f`'s changes.
pub fn config(
    addr: std::net::SocketAddr,
    state: &std::path::Path,
    f: impl FnOnce(&mut Config),
) -> Config {
    let mut cfg = Config {
        state_dir: state.to_path_buf(),
        ..Config::default()
    };
    cfg.server.enabled = true;
    cfg.server.address = addr.to_string();
    cfg.server.agent_token = "sekrit".into();
    cfg.labels.insert("env".into(), "test".into());
    cfg.plugins = vec!["cpu".into(), "mem".into()];
    f(&mut cfg);
    cfg
}

/// The built-in diagnose and chat runners with default limits.
pub fn builtin_runners(sb: &TestSandbox) -> Runners {
    Runners {
        diagnose: Some(Arc::new(
            sb.builtin_diagnose()
                .diagnose_runner(limits(|_| {}))
                .expect("d"),
        )),
        chat: Some(Arc::new(
            sb.builtin_chat().chat_runner(limits(|_| {})).expect("c"),
        )),
        plugins: sb.builtin_diagnose().plugin_names(),
        files: Vec::new(),
    }
}

/// An agent with `f`'s config changes, `runners` and `opts`, on a fresh
/// [`TestServer`].
pub async fn harness_with(
    f: impl FnOnce(&mut Config),
    runners: impl FnOnce(&TestSandbox) -> Runners,
    opts: AgentOptions,
) -> Harness {
    harness_on(TestServer::start().await, f, runners, opts)
}

/// Like [`harness_with`], on a server the test set up.
pub fn harness_on(
    server: TestServer,
    f: impl FnOnce(&mut Config),
    runners: impl FnOnce(&TestSandbox) -> Runners,
    opts: AgentOptions,
) -> Harness {
    let state = tempfile::tempdir().expect("tempdir");
    let sb = TestSandbox::new();
    let cfg = config(server.addr, state.path(), f);
    let agent = Agent::new(&cfg, runners(&sb), opts).expect("agent");
    let shutdown = CancellationToken::new();
    let task = {
        let a = agent.clone();
        let s = shutdown.clone();
        tokio::spawn(async move { a.run(s).await })
    };
    Harness {
        server,
        agent,
        shutdown,
        task,
        state,
        _sb: sb,
    }
}

/// The default agent: built-in runners, [`fast`] timers.
pub async fn harness() -> Harness {
    harness_with(|_| {}, builtin_runners, fast()).await
}

impl Harness {
    /// Shuts the agent down and waits (10 s at most) for it to stop.
    pub async fn stop(self) {
        if let Err(e) = self.try_stop().await {
            panic!("{e}");
        }
    }

    /// Like [`stop`](Self::stop), saying what went wrong instead of
    /// panicking (for a test that adds its own context).
    pub async fn try_stop(self) -> Result<(), String> {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the agent task failed: {e}")),
            Err(_) => Err("the agent did not stop within 10 s of shutdown".into()),
        }
    }
}

/// An envelope's payload (`null` when absent).
pub fn payload(e: &Envelope) -> Value {
    e.payload.clone().unwrap_or_default()
}
