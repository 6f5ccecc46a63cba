use super::*;
use serde_json::json;

#[test]
fn envelope_omits_empty_ref_id_and_payload() {
    let mut e = Envelope::new(MSG_PING, ());
    e.id = "i".into();
    assert_eq!(e.to_json(), r#"{"type":"ping","id":"i"}"#);
    e.ref_id = Some(String::new());
    assert_eq!(e.to_json(), r#"{"type":"ping","id":"i"}"#);
    let r = Envelope::reply(
        MSG_ACK,
        "x",
        AckPayload {
            ok: true,
            error: None,
            warning: None,
        },
    );
    let v: Value = serde_json::from_str(&r.to_json()).expect("json");
    assert_eq!(v["ref_id"], "x");
    assert_eq!(v["payload"], json!({"ok": true}));
    assert!(uuid::Uuid::parse_str(&r.id).is_ok());
}

#[test]
fn parse_rejects_garbage() {
    assert!(Envelope::parse("nope").is_err());
    assert!(Envelope::parse("[1,2]").is_err());
    assert!(Envelope::parse(r#"{"type":""}"#).is_err());
    assert!(Envelope::parse(r#"{"type":5}"#).is_err());
    let e = Envelope::parse(r#"{"type":"ping","id":"1"}"#).expect("ok");
    assert_eq!(e.msg_type, "ping");
}

#[test]
fn payload_field_names_are_the_wire_names() {
    let hb = HeartbeatPayload {
        active_sessions: 1,
        active_alerts: 2,
        cpu_pct: Some(0.0),
        mem_pct: Some(3.5),
    };
    assert_eq!(
        serde_json::to_value(&hb).expect("v"),
        json!({"active_sessions":1,"active_alerts":2,"mem_pct":3.5})
    );
    let out = SessionOutputPayload {
        session_id: "s".into(),
        delta: "".into(),
        stage: "".into(),
        done: true,
        report: None,
        metadata: None,
    };
    assert_eq!(
        serde_json::to_value(&out).expect("v"),
        json!({"session_id":"s","delta":"","stage":"","done":true})
    );
    let ev = AlertEvent {
        event_time: 1,
        event_status: EventStatus::Critical,
        alert_key: "k".into(),
        labels: BTreeMap::new(),
        attrs: BTreeMap::new(),
        description: "d".into(),
        description_format: None,
    };
    assert_eq!(
        serde_json::to_value(&ev).expect("v"),
        json!({"event_time":1,"event_status":"Critical","alert_key":"k","labels":{},"description":"d"})
    );
    let err = SessionErrorPayload {
        session_id: "s".into(),
        error: "e".into(),
        code: ErrorCode::RunnerTrapped.as_str().into(),
    };
    assert_eq!(
        serde_json::to_value(&err).expect("v"),
        json!({"session_id":"s","error":"e","code":"runner_trapped"})
    );
}

#[test]
fn go_spellings() {
    assert_eq!(go_arch_of("x86_64", true), "amd64");
    assert_eq!(go_arch_of("aarch64", true), "arm64");
    assert_eq!(go_arch_of("x86", true), "386");
    assert_eq!(go_arch_of("powerpc64", true), "ppc64le");
    assert_eq!(go_arch_of("riscv64", true), "riscv64");
    assert_eq!(go_os_of("linux"), "linux");
}
