//! The faults the campaign injects, drawn from its seed, and how each is
//! done and undone against the [`World`]. Each returns what the checks
//! must allow for afterwards ([`Aftermath`]).

use std::io::Write;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::common::fault_proxy::{Dir, Toxic};
use crate::common::process::until;
use crate::common::server::TestServer;
use crate::world::{World, runner_versions};

/// One fault, with its parameters.
#[derive(Debug, Clone)]
pub enum Fault {
    /// A toxic in one direction for a while, set mid-traffic.
    Toxic(Dir, Toxic, Duration),
    /// The server killed mid-session, back after `down`.
    ServerRestart(Duration),
    KillMidShell,
    KillMidReload(Duration),
    KillMidIngest(Duration),
    KillMidAudit(Duration),
    /// The state dir's filesystem full for a while.
    FullDisk,
    /// The diagnose runner file rewritten in place around a SIGHUP.
    RunnerReplacedMidRead(Duration),
}

impl Fault {
    /// The kind, as the table counts it.
    pub fn kind(&self) -> String {
        match self {
            Fault::Toxic(d, t, _) => format!("toxic {} {}", t.name(), dir(*d)),
            Fault::ServerRestart(_) => "server killed and restarted".into(),
            Fault::KillMidShell => "agent SIGKILL mid-shell".into(),
            Fault::KillMidReload(_) => "agent SIGKILL mid-reload".into(),
            Fault::KillMidIngest(_) => "agent SIGKILL mid-alert-ingest".into(),
            Fault::KillMidAudit(_) => "agent SIGKILL mid-audit-write".into(),
            Fault::FullDisk => "state dir filesystem full".into(),
            Fault::RunnerReplacedMidRead(_) => "runner file replaced mid-read".into(),
        }
    }
}

fn dir(d: Dir) -> &'static str {
    match d {
        Dir::Up => "agent->server",
        Dir::Down => "server->agent",
    }
}

fn ms(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

/// Draws the next fault; the full-disk one only when the state dir is on
/// a tmpfs of the campaign's own.
pub fn draw(rng: &mut StdRng, tmpfs: bool) -> Fault {
    let d = if rng.random_bool(0.5) {
        Dir::Up
    } else {
        Dir::Down
    };
    let hold = ms(rng, 1000, 4000);
    match rng.random_range(0..16) {
        0 | 1 => Fault::Toxic(
            d,
            Toxic::Latency {
                latency: ms(rng, 50, 1500),
                jitter: ms(rng, 0, 300),
            },
            hold,
        ),
        2 => Fault::Toxic(
            d,
            Toxic::Bandwidth {
                bytes_per_sec: rng.random_range(2_000..=50_000),
            },
            hold,
        ),
        3 => Fault::Toxic(
            d,
            Toxic::SlowClose {
                delay: ms(rng, 200, 2000),
            },
            hold,
        ),
        4 => Fault::Toxic(
            d,
            Toxic::Timeout {
                close_after: Some(ms(rng, 300, 3000)),
            },
            hold,
        ),
        5 => Fault::Toxic(
            d,
            Toxic::Reset {
                after: ms(rng, 0, 1500),
            },
            hold,
        ),
        6 => Fault::Toxic(
            d,
            Toxic::LimitData {
                bytes: rng.random_range(0..=20_000),
            },
            hold,
        ),
        7 | 8 => {
            let avg = rng.random_range(1..=64);
            Fault::Toxic(
                d,
                Toxic::Slicer {
                    avg,
                    variation: rng.random_range(0..=avg / 2),
                    delay: ms(rng, 0, 2),
                },
                hold,
            )
        }
        9 => Fault::ServerRestart(ms(rng, 200, 3000)),
        10 => Fault::KillMidShell,
        11 => Fault::KillMidReload(ms(rng, 0, 400)),
        12 => Fault::KillMidIngest(ms(rng, 50, 800)),
        13 => Fault::KillMidAudit(ms(rng, 50, 1500)),
        14 if tmpfs => Fault::FullDisk,
        _ => Fault::RunnerReplacedMidRead(ms(rng, 0, 300)),
    }
}

/// What a fault leaves for the checks to allow.
#[derive(Debug, Default, Clone)]
pub struct Aftermath {
    /// The link was cut: bytes in flight (alerts among them) may be lost.
    pub cut: bool,
    /// The agent was killed and restarted.
    pub killed: bool,
    /// When the fault was undone.
    pub healed: Option<Instant>,
    /// A violation the fault itself saw.
    pub violation: Option<String>,
}

/// Injects `fault`, keeps traffic going through it, and undoes it.
pub async fn inject(w: &mut World, rng: &mut StdRng, fault: &Fault) -> Aftermath {
    let mut after = Aftermath::default();
    match fault {
        Fault::Toxic(d, toxic, hold) => {
            let discarded = (w.proxy.discarded(Dir::Up), w.proxy.discarded(Dir::Down));
            let links = w.links;
            w.proxy.set(*d, Some(toxic.clone()));
            if matches!(toxic, Toxic::SlowClose { .. }) {
                // A slow close shows only when something closes.
                w.close_link().await;
            }
            during(w, rng, *hold).await;
            w.proxy.clear();
            after.cut = w.proxy.discarded(Dir::Up) != discarded.0
                || w.proxy.discarded(Dir::Down) != discarded.1
                || !w.link_up()
                || w.links != links
                || matches!(
                    toxic,
                    Toxic::Reset { .. } | Toxic::Timeout { .. } | Toxic::LimitData { .. }
                );
            // A stream that lost bytes is no stream any more: a server
            // would drop it, and so does this one.
            if after.cut {
                w.proxy.cut_all();
                w.close_link().await;
            }
        }
        Fault::ServerRestart(down) => {
            w.proxy.set_upstream(None);
            w.proxy.cut_all();
            w.close_link().await;
            during(w, rng, *down).await;
            let fresh = TestServer::start().await;
            w.proxy.set_upstream(Some(fresh.addr));
            let old = std::mem::replace(&mut w.server, fresh);
            w.dead_servers.push(old);
            after.cut = true;
        }
        Fault::KillMidShell => {
            let cmd = w.shell_command(60);
            let sid = w
                .start_session(
                    "chat",
                    json!({"allow_shell": true, "message": format!("run {cmd}")}),
                    true,
                )
                .await;
            let running = until(Duration::from_secs(30), || !w.shell_processes().is_empty()).await;
            kill(w, &mut after);
            if running && !until(Duration::from_secs(5), || w.shell_processes().is_empty()).await {
                after.violation = Some(format!(
                    "shell processes of session {sid:?} outlived the agent: {:?}",
                    w.shell_processes()
                ));
            }
        }
        Fault::KillMidReload(wait) => {
            sighup(w);
            tokio::time::sleep(*wait).await;
            kill(w, &mut after);
        }
        Fault::KillMidIngest(wait) => {
            // A local client on the ingest socket, line by line, each
            // answered; the agent dies under it.
            let sock = w.home.state().join("agent.sock");
            let inc = w.incarnation;
            let client = tokio::spawn(async move {
                let mut taken = Vec::new();
                let Ok(stream) = tokio::net::UnixStream::connect(&sock).await else {
                    return taken;
                };
                let (r, mut wr) = stream.into_split();
                let mut replies = tokio::io::BufReader::new(r).lines();
                for n in 0..2000 {
                    let key = format!("ingest-{inc}-{n}");
                    let line = json!({"event_time": 1_700_000_000, "event_status": "Info",
                        "alert_key": key});
                    if wr.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        break;
                    }
                    match replies.next_line().await {
                        Ok(Some(r)) if r.contains("\"ok\":true") => taken.push(key),
                        _ => break,
                    }
                }
                taken
            });
            tokio::time::sleep(*wait).await;
            kill(w, &mut after);
            // The client must hear of the agent's death, not hang.
            match tokio::time::timeout(Duration::from_secs(10), client).await {
                Ok(Ok(taken)) => w.pushed.entry(inc).or_default().extend(taken),
                _ => {
                    after.violation =
                        Some("a local alert client hung after the agent died under it".into());
                }
            }
        }
        Fault::KillMidAudit(wait) => {
            for plugin in ["system", "cpu", "mem"] {
                w.start_session("inspect", json!({"plugin": plugin}), false)
                    .await;
            }
            tokio::time::sleep(*wait).await;
            kill(w, &mut after);
        }
        Fault::FullDisk => full_disk(w, rng, &mut after).await,
        Fault::RunnerReplacedMidRead(wait) => replace_runner(w, *wait, &mut after).await,
    }
    after.healed = Some(Instant::now());
    after
}

fn sighup(w: &World) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(w.agent.pid() as i32, libc::SIGHUP) };
}

fn kill(w: &mut World, after: &mut Aftermath) {
    w.agent.sigkill();
    w.restart_agent();
    after.killed = true;
    after.cut = true;
}

/// Traffic while a fault holds: chat turns, alerts, a session or two.
pub async fn during(w: &mut World, rng: &mut StdRng, hold: Duration) {
    let end = Instant::now() + hold;
    while Instant::now() < end {
        match rng.random_range(0..4) {
            0 => {
                let n = w.pushed_next();
                let key = format!("a-{}-{n}", w.incarnation);
                if w.push_alert(&key) {
                    w.alert_pushed(key);
                }
            }
            1 => {
                if let Some((sid, _)) = w.open_sessions().into_iter().find(|(_, k)| *k == "chat") {
                    w.input(&sid, "memory").await;
                }
            }
            2 => {
                w.start_session("inspect", json!({"plugin": "uptime"}), false)
                    .await;
            }
            _ => {}
        }
        tokio::time::sleep(ms(rng, 100, 600).min(end.saturating_duration_since(Instant::now())))
            .await;
    }
}

/// Fills the state dir's filesystem, runs a shell that must be audited
/// before it acts, pushes alerts, then frees the space.
async fn full_disk(w: &mut World, rng: &mut StdRng, after: &mut Aftermath) {
    let filler = w.home.state().join("filler");
    if let Ok(mut f) = std::fs::File::create(&filler) {
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write(&small).is_ok_and(|n| n > 0) {}
    }
    let marker = w
        .scratch
        .path()
        .join(format!("ran-{}", w.sessions_started + 1));
    let sid = w
        .start_session(
            "chat",
            json!({"allow_shell": true, "message": format!("run touch {}", marker.display())}),
            true,
        )
        .await;
    during(w, rng, Duration::from_secs(2)).await;
    let _ = std::fs::remove_file(&filler);
    // Audited means on disk before the act: a command that ran has its
    // `started` record.
    if marker.exists() {
        let recorded = w.audit_all().iter().any(|r| {
            r["kind"] == "shell" && r["event"] == "started" && r["session_id"] == json!(sid)
        });
        if !recorded {
            after.violation = Some(format!(
                "session {sid:?} ran a shell command on a full disk with no started record"
            ));
        }
    }
}

/// Rewrites the diagnose runner in place, half before a SIGHUP and half
/// after `wait`; `status` must show the old file or the new one, never a
/// torn one, and a last SIGHUP must bring the new one in.
async fn replace_runner(w: &mut World, wait: Duration, after: &mut Aftermath) {
    let versions = runner_versions();
    let hashes: Vec<String> = versions
        .iter()
        .map(|v| crate::common::process::sha256_hex(v))
        .collect();
    let path = w.home.path().join("d.wasm");
    let now = std::fs::read(&path).unwrap_or_default();
    let next = usize::from(now == versions[0]);
    let bytes = &versions[next];
    let half = bytes.len() / 2;
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)?;
        f.write_all(&bytes[..half])?;
        f.flush()?;
        sighup(w);
        std::thread::sleep(wait);
        f.write_all(&bytes[half..])
    })();
    if let Err(e) = written {
        after.violation = Some(format!("could not rewrite the runner file: {e}"));
        return;
    }
    let serving = |w: &World| -> Option<String> {
        let s = w.status()?;
        crate::common::process::status_runners(&s)
            .into_iter()
            .find(|(role, _, _)| role == "diagnose")
            .map(|(_, _, h)| h)
    };
    if let Some(h) = serving(w)
        && !hashes.contains(&h)
    {
        after.violation = Some(format!(
            "the diagnose runner in service is a torn file: {h}"
        ));
        return;
    }
    sighup(w);
    let want = hashes[next].clone();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(90) {
        if serving(w).as_deref() == Some(want.as_str()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    after.violation = Some(format!(
        "after a SIGHUP on the whole file the diagnose runner is still {:?}, not {want}",
        serving(w)
    ));
}
