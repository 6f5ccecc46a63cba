//! Small recordings written by hand, per the format, for the unit tests of
//! the reader, `play` and the suite.

use serde_json::{Value, json};

/// The header line of a version-1 recording.
pub fn header() -> Value {
    json!({"k":"header","format":"catpaw-recording","version":1,"agent":"0.1.0",
           "started_at":"2026-12-06T21:00:00Z","record_model_content":true})
}

/// A diagnose session: a tool call, a delta, the report, the receipt.
pub fn diagnose_lines() -> Vec<Value> {
    let delta = json!({"type":"session_output","id":"m1","payload":{"session_id":"s1",
        "delta":"looking at memory","stage":"thinking","done":false}});
    let done = json!({"type":"session_output","id":"m2","payload":{"session_id":"s1",
        "delta":"","stage":"","done":true,"report":"memory is fine"}});
    vec![
        header(),
        json!({"k":"start","t":0,"session":{"id":"s1","type":"diagnose","user":"alice",
            "key_id":null,"allow_shell":false},"params":{"plugin":"mem"},
            "runner":{"role":"diagnose","source":"built-in","sha256":"ab12","signer":"",
            "capabilities":""},"budgets":{"fuel":1000}}),
        json!({"k":"call","t":1500,"n":1,"fn":"host.call-tool",
            "args":{"name":"mem","args-json":"{}"},"ret":{"ok":"total 1000 free 900"}}),
        json!({"k":"frame","t":2000,"raw":delta.to_string()}),
        json!({"k":"frame","t":250_000,"raw":done.to_string()}),
        json!({"k":"run_end","t":250_100,"turn":null,"fuel_used":77,"outcome":"ok"}),
        json!({"k":"receipt","t":250_200,"receipt":{"fuel_used":77,"host_calls":1}}),
        json!({"k":"end","t":250_300,"outcome":"ok","error":null,"fuel_used":77}),
    ]
}

/// `lines` as the writer writes them: one object per line, no seal.
pub fn unsealed(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// `lines` with the seal line after them.
pub fn sealed(lines: &[Value]) -> Vec<u8> {
    let mut out = unsealed(lines);
    let seal = json!({"k":"seal","sha256":crate::util::sha256_hex(&out),"lines":lines.len()});
    out.extend_from_slice(seal.to_string().as_bytes());
    out.push(b'\n');
    out
}
