use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use super::{PlayOptions, play};
use crate::recorder::testing::{diagnose_lines, sealed, unsealed};

const NO_WAIT: PlayOptions = PlayOptions {
    speed: None,
    json: false,
};

fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("1000-s1.jsonl");
    std::fs::write(&path, bytes).expect("write");
    path
}

async fn shown(path: &Path, opts: PlayOptions) -> anyhow::Result<(String, String)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    play(path, opts, &mut out, &mut err).await?;
    Ok((
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    ))
}

#[tokio::test]
async fn a_diagnose_shows_its_tool_call_delta_report_receipt_and_seal_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), &sealed(&diagnose_lines()));
    let (out, _) = shown(&path, NO_WAIT).await.expect("plays");
    let want = [
        "(catpaw-agent 0.1.0, started 2026-12-06T21:00:00Z)",
        "[    0.000s] diagnose session s1 by alice (unsigned, no shell), params {\"plugin\":\"mem\"}",
        "runner diagnose built-in sha256:ab12",
        "[    0.002s] #1 tool mem {} -> total 1000 free 900",
        "[    0.002s] [thinking] looking at memory",
        "[    0.250s] report:\n            | memory is fine",
        "[    0.250s] run ended: ok, fuel 77",
        "receipt: {\"fuel_used\":77,\"host_calls\":1}",
        "[    0.250s] end: ok, fuel 77",
        "sealed: sha256 ",
    ];
    let mut from = 0;
    for w in want {
        let at = out[from..]
            .find(w)
            .unwrap_or_else(|| panic!("{w:?} after {from} in\n{out}"));
        from += at + w.len();
    }
}

#[tokio::test]
async fn json_prints_every_line_as_recorded_and_notes_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = diagnose_lines();
    let path = write(dir.path(), &unsealed(&lines));
    let opts = PlayOptions {
        speed: None,
        json: true,
    };
    let (out, err) = shown(&path, opts).await.expect("plays");
    let got: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(got, lines);
    assert!(
        err.starts_with("unsealed: the session did not end"),
        "{err}"
    );
}

#[tokio::test]
async fn shell_model_trap_and_unknown_lines_are_shown_clock_reads_are_not() {
    let mut lines = diagnose_lines();
    lines.truncate(2);
    lines.extend([
        json!({"k":"call","t":10,"n":1,"fn":"wasi.wall-clock.now","args":{},"ret":{"seconds":1}}),
        json!({"k":"call","t":11,"n":2,"fn":"host.request-shell",
            "args":{"command":"uptime","timeout-ms":1000},
            "ret":{"ok":{"exit-code":0,"stdout":"up 3 days\n","stderr":"","truncated":false}}}),
        json!({"k":"call","t":12,"n":3,"fn":"llm.complete",
            "args":{"messages":[{"role":"user","content":"why slow?","tool-calls":[],"tool-call-id":null}],
                    "tools":[],"stream-as":null},
            "ret":{"ok":{"message":{"role":"assistant","content":"disk is full","tool-calls":[],
                    "tool-call-id":null},"finish-reason":"stop","usage":{"prompt-tokens":3,
                    "completion-tokens":3},"model":"local"}}}),
        json!({"k":"call","t":13,"n":4,"fn":"host.call-tool","args":{"name":"df","args-json":"{}"},
            "ret":{"err":"not allowed"}}),
        json!({"k":"input","t":14,"turn":2,"text":"and now?"}),
        json!({"k":"comet","t":15,"tail":"long"}),
        json!({"k":"call","t":16,"n":5,"fn":"host.call-tool","args":{"name":"spin","args-json":"{}"},
            "trap":"fuel exhausted"}),
        json!({"k":"truncated","t":17,"reason":"max_size (64 KiB) reached","after_call":5}),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), &sealed(&lines));
    let (out, _) = shown(&path, NO_WAIT).await.expect("plays");
    for w in [
        "#2 shell $ uptime -> exit 0\n            | up 3 days\n",
        "#3 model asked (1 message(s), last user: why slow?) -> local says: disk is full",
        "#4 tool df {} -> error not allowed",
        "chat turn 2: > and now?",
        "comet: {\"k\":\"comet\",\"tail\":\"long\"}",
        "#5 tool spin {} -> trapped: fuel exhausted",
        "recording stopped here: max_size (64 KiB) reached (after call #5)",
        "truncated: the recording stopped after call #5 (max_size (64 KiB) reached); the session \
         went on unrecorded",
    ] {
        assert!(out.contains(w), "{w:?} not in\n{out}");
    }
    assert!(!out.contains("wall-clock"), "{out}");
}

#[tokio::test]
async fn a_changed_byte_is_refused_naming_the_hash_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = sealed(&diagnose_lines());
    let at = bytes.windows(5).position(|w| w == b"alice").expect("user");
    bytes[at] = b'A';
    let path = write(dir.path(), &bytes);
    let err = shown(&path, NO_WAIT).await.expect_err("tampered");
    assert!(format!("{err:#}").starts_with("hash mismatch: "), "{err:#}");
}

#[tokio::test]
async fn a_cut_prefix_is_shown_up_to_its_last_whole_line_and_said_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = unsealed(&diagnose_lines());
    let path = write(dir.path(), &whole[..whole.len() - 3]);
    let (out, _) = shown(&path, NO_WAIT).await.expect("plays");
    assert!(out.contains("receipt: "), "{out}");
    assert!(!out.contains("end: ok"), "{out}");
    assert!(out.contains("unsealed: the session did not end"), "{out}");
    assert!(out.contains("line 8 was cut in the middle"), "{out}");
}

#[tokio::test]
async fn lines_come_at_their_offsets_divided_by_the_speed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = diagnose_lines();
    // The end, 100 s in.
    lines[7]["t"] = json!(100_000_000u64);
    let path = write(dir.path(), &sealed(&lines));
    let began = Instant::now();
    let opts = PlayOptions {
        speed: Some(1000.0),
        json: false,
    };
    shown(&path, opts).await.expect("plays");
    assert!(began.elapsed().as_millis() >= 100, "{:?}", began.elapsed());
    // Without waiting, 100 s of session is shown at once.
    let began = Instant::now();
    shown(&path, NO_WAIT).await.expect("plays");
    assert!(began.elapsed().as_secs() < 10, "{:?}", began.elapsed());
}
