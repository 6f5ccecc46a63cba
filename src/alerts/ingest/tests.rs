use super::*;
use std::path::PathBuf;

#[test]
fn events_are_validated_field_by_field() {
    let ok = parse_event(r#"{"event_time":1,"event_status":"Warning","alert_key":"k","labels":{"a":"b"},"description":"d"}"#)
        .expect("valid");
    assert_eq!(ok.alert_key, "k");
    let cases = [
        (r#"{"event_status":"Ok","alert_key":"k"}"#, "event_time"),
        (r#"{"event_time":1,"alert_key":"k"}"#, "event_status"),
        (
            r#"{"event_time":1,"event_status":"Bad","alert_key":"k"}"#,
            "event_status",
        ),
        (r#"{"event_time":1,"event_status":"Ok"}"#, "alert_key"),
        (
            r#"{"event_time":"x","event_status":"Ok","alert_key":"k"}"#,
            "event_time",
        ),
        (
            r#"{"event_time":1,"event_status":"Ok","alert_key":"k","labels":{"a":1}}"#,
            "labels.a",
        ),
        (
            r#"{"event_time":1,"event_status":"Ok","alert_key":"k","description_format":"html"}"#,
            "description_format",
        ),
        (
            r#"{"event_time":1,"event_status":"Ok","alert_key":"k","colour":"red"}"#,
            "colour",
        ),
        ("[1]", "object"),
        ("nope", "not JSON"),
    ];
    for (line, field) in cases {
        let e = parse_event(line).unwrap_err();
        assert!(e.contains(field), "{line}: {e}");
    }
}

#[tokio::test]
async fn the_socket_takes_good_lines_and_refuses_bad_ones() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let alerts = AlertBuffer::new(10);
    let stop = CancellationToken::new();
    let path = socket(dir.path());
    let server = tokio::spawn(serve_until(path.clone(), alerts.clone(), stop.clone()));
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let lines = vec![
        r#"{"event_time":1,"event_status":"Critical","alert_key":"a"}"#.to_string(),
        r#"{"event_time":2,"event_status":"Nope","alert_key":"b"}"#.to_string(),
        r#"{"event_time":3,"event_status":"Ok","alert_key":"c"}"#.to_string(),
    ];
    let report = send_lines(&path, &lines).await.expect("send");
    assert_eq!(report.accepted, 2);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, 2);
    assert!(report.refused[0].1.contains("event_status"));
    let keys: Vec<String> = alerts
        .drain_batch(10, usize::MAX)
        .into_iter()
        .map(|e| e.alert_key)
        .collect();
    assert_eq!(keys, ["a", "c"]);
    stop.cancel();
    server.await.expect("join");
    assert!(!path.exists(), "socket removed on shutdown");
}

async fn serve_until(socket: PathBuf, alerts: AlertBuffer, stop: CancellationToken) {
    serve(&socket, alerts, stop).await.expect("serve");
}

/// The socket in a test's state dir.
fn socket(state_dir: &Path) -> PathBuf {
    crate::config::StatePaths::new(state_dir).ingest_socket()
}

/// A socket served with `opts` in a fresh dir, listening when this
/// returns.
struct Served {
    dir: tempfile::TempDir,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn served(opts: IngestOptions) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let task = {
        let (path, s) = (socket(dir.path()), stop.clone());
        tokio::spawn(async move {
            serve_with(&path, AlertBuffer::new(10), s, opts)
                .await
                .expect("serve");
        })
    };
    let path = socket(dir.path());
    for _ in 0..200 {
        if UnixStream::connect(&path).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Served { dir, stop, task }
}

impl Served {
    async fn client(&self) -> BufReader<UnixStream> {
        BufReader::new(
            UnixStream::connect(socket(self.dir.path()))
                .await
                .expect("connect"),
        )
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("ingest stops with its clients")
            .expect("join");
    }
}

/// Sends one event line and returns the reply line ("" when the
/// socket failed: a refused client may be closed before it writes).
async fn roundtrip(c: &mut BufReader<UnixStream>) -> String {
    let _ = c
        .get_mut()
        .write_all(b"{\"event_time\":1,\"event_status\":\"Ok\",\"alert_key\":\"k\"}\n")
        .await;
    let mut line = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_line(&mut line))
        .await
        .expect("a reply in time");
    line
}

#[test]
fn accept_failures_back_off_from_100ms_doubling_to_a_second() {
    let ms: Vec<u128> = (1..=7).map(|n| accept_pause(n).as_millis()).collect();
    assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
    assert_eq!(accept_pause(0), Duration::from_millis(100));
    assert_eq!(accept_pause(u32::MAX), Duration::from_secs(1));
}

#[tokio::test]
async fn a_client_over_the_limit_is_told_why_and_closed() {
    let s = served(IngestOptions {
        max_connections: 2,
        idle_timeout: IDLE_TIMEOUT,
    })
    .await;
    let mut a = s.client().await;
    let mut b = s.client().await;
    assert!(roundtrip(&mut a).await.contains("\"ok\":true"));
    assert!(roundtrip(&mut b).await.contains("\"ok\":true"));
    let mut c = s.client().await;
    let mut why = String::new();
    c.read_line(&mut why).await.expect("read");
    assert!(
        why.contains("too many ingest connections (limit 2)"),
        "{why}"
    );
    let mut rest = String::new();
    assert_eq!(c.read_line(&mut rest).await.expect("read"), 0, "closed");
    // A slot freed is a slot for the next client.
    drop(a);
    let mut ok = false;
    for _ in 0..100 {
        let mut d = s.client().await;
        if roundtrip(&mut d).await.contains("\"ok\":true") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok, "the freed slot was not reused");
    assert!(roundtrip(&mut b).await.contains("\"ok\":true"));
    s.stop().await;
}

#[tokio::test]
async fn a_client_without_a_complete_line_is_closed_after_the_idle_time() {
    const IDLE: Duration = Duration::from_millis(500);
    let s = served(IngestOptions {
        max_connections: 4,
        idle_timeout: IDLE,
    })
    .await;
    let mut silent = s.client().await;
    let mut trickler = s.client().await;
    let mut busy = s.client().await;
    let t0 = std::time::Instant::now();
    // Until the silent client is closed, the trickler sends bytes but
    // never a newline, and the busy client sends one full line after
    // another (a line's round trip is far below the idle time, however
    // loaded the machine) and is answered every time.
    let mut buf = Vec::new();
    let closed = silent.read_to_end(&mut buf);
    tokio::pin!(closed);
    let mut lines = 0;
    let n = loop {
        tokio::select! {
            n = &mut closed => break n.unwrap_or(0),
            line = roundtrip(&mut busy) => {
                assert!(line.contains("\"ok\":true"), "busy client after {lines} lines: {line:?}");
                lines += 1;
                let _ = trickler.get_mut().write_all(b"{").await;
                tokio::time::sleep(IDLE / 20).await;
            }
        }
    };
    assert_eq!(n, 0, "no reply to the silent client, just the close");
    assert!(t0.elapsed() >= IDLE, "closed before the idle time");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(30), trickler.read_to_end(&mut rest))
        .await
        .expect("the trickler is closed too")
        .unwrap_or(0);
    assert_eq!(n, 0, "no reply to the trickler, just the close");
    assert!(lines > 0);
    assert!(roundtrip(&mut busy).await.contains("\"ok\":true"));
    s.stop().await;
}
