use std::os::unix::fs::PermissionsExt;

use super::*;

fn source() -> StatusSource {
    StatusSource {
        telemetry: Telemetry::new(),
        table: SessionTable::new(
            crate::session::Runners {
                files: vec![RunnerFile {
                    role: "diagnose".into(),
                    source: "built-in".into(),
                    sha256: crate::util::sha256_hex(b"abc"),
                    capabilities: "tools:cpu,memory llm".into(),
                    signer: "built-in".into(),
                }],
                ..Default::default()
            },
            2,
            false,
        ),
        alerts: AlertBuffer::new(10),
        agent_id: "id-1".into(),
        server: "ws://127.0.0.1:1/api/v1/agent/ws".into(),
        max_sessions: 2,
        reloads: LastReload::default(),
    }
}

/// The hash status shows for a runner is the SHA-256 of its bytes as
/// `sha256sum` computes it, for a real runner component.
#[test]
fn a_runner_hash_is_what_sha256sum_says_of_the_runner_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("catpaw_chat.wasm");
    std::fs::write(&file, crate::embedded::CHAT).expect("write runner");
    let out = match std::process::Command::new("sha256sum").arg(&file).output() {
        Ok(out) if out.status.success() => out,
        other => {
            eprintln!("skipped: `sha256sum` is not usable here ({other:?})");
            return;
        }
    };
    let stdout = String::from_utf8(out.stdout).expect("sha256sum prints text");
    let independent = stdout.split_whitespace().next().expect("a digest");
    assert_eq!(crate::util::sha256_hex(crate::embedded::CHAT), independent);
}

#[tokio::test]
async fn answers_with_the_status_and_refuses_a_second_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("status.sock");
    // A socket file left by an agent that died is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale"));
    let stop = CancellationToken::new();
    let src = source();
    src.telemetry.alerts_pushed(4);
    let (path, stop2) = (socket.clone(), stop.clone());
    let task = tokio::spawn(async move { serve(&path, src, stop2).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        match query(dir.path(), &socket).await {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(status.agent_id, "id-1");
    assert_eq!(status.alerts.pushed, 4);
    assert_eq!(status.connection.state, "connecting");
    assert_eq!(status.runners.len(), 1);
    // The runner's hash, and under it what its sessions are granted.
    let text = render(&status);
    let sha = crate::util::sha256_hex(b"abc");
    assert!(
        text.contains(&format!(
            "runner:      diagnose built-in sha256:{sha}\n  signer:    built-in\n  granted:   tools:cpu,memory llm\n"
        )),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let second = serve(&socket, source(), CancellationToken::new()).await;
    assert!(
        second
            .expect_err("in use")
            .to_string()
            .contains("another catpaw-agent"),
    );
    stop.cancel();
    task.await.expect("join").expect("served");
    assert!(!socket.exists(), "removed at shutdown");
    let e = query(dir.path(), &socket)
        .await
        .expect_err("nobody answers");
    assert!(matches!(e, QueryError::NotRunning { .. }), "{e}");
}

#[test]
fn the_recorder_line_shows_count_bytes_and_oldest_or_off() {
    use crate::recorder::store::{Limits, Store};
    use crate::recorder::{RecorderOptions, Recording};
    let off = source().snapshot();
    assert_eq!(off.recorder, None);
    assert!(render(&off).contains("recorder:    off ([recorder] enabled = false)\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::new(
        dir.path(),
        Limits {
            max_total: 1 << 30,
            keep_days: 30,
        },
    );
    let mut src = source();
    src.table = src
        .table
        .with_recorder(RecorderOptions::default(), store.clone());
    let r = Recording::create_in(&store, "s1", &RecorderOptions::default(), None);
    r.close(|_| {});
    let on = src.snapshot();
    let usage = on.recorder.clone().expect("on");
    let bytes = std::fs::metadata(&store.list()[0].path)
        .expect("file")
        .len();
    assert_eq!((usage.count, usage.bytes), (1, bytes));
    let text = render(&on);
    let line = text
        .lines()
        .find(|l| l.starts_with("recorder:"))
        .expect("a recorder line");
    assert!(
        line.starts_with(&format!(
            "recorder:    1 recordings, {bytes} bytes, oldest started 20"
        )),
        "{line}"
    );
    // It travels through the socket's JSON.
    let back: Status =
        serde_json::from_str(&serde_json::to_string(&on).expect("json")).expect("back");
    assert_eq!(back.recorder, Some(usage));
}
