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

/// The reference agent's outbound payloads (`digcore/server/proto.go`):
/// each field's JSON name and whether it is tagged `omitempty`.
const REFERENCE: &[(&str, &[(&str, bool)])] = &[
    (
        MSG_REGISTER,
        &[
            ("hostname", false),
            ("ip", false),
            ("os", false),
            ("arch", false),
            ("labels", false),
            ("plugins", false),
            ("agent_version", false),
            ("uptime_sec", false),
        ],
    ),
    (
        MSG_HEARTBEAT,
        &[
            ("active_sessions", false),
            ("active_alerts", false),
            ("cpu_pct", true),
            ("mem_pct", true),
        ],
    ),
    (
        "alert_event",
        &[
            ("event_time", false),
            ("event_status", false),
            ("alert_key", false),
            ("labels", false),
            ("attrs", true),
            ("description", false),
            ("description_format", true),
        ],
    ),
    (
        MSG_SESSION_OUTPUT,
        &[
            ("session_id", false),
            ("delta", false),
            ("stage", false),
            ("done", false),
            ("report", true),
            ("metadata", true),
        ],
    ),
    (
        MSG_SESSION_ERROR,
        &[("session_id", false), ("error", false), ("code", false)],
    ),
    (
        MSG_ACK,
        &[("ok", false), ("error", true), ("warning", true)],
    ),
];

/// Each outbound payload with every field at its zero value ("", 0, empty
/// map, `Some("")`), and with every field set.
fn zero_and_full(kind: &str) -> (Value, Value) {
    let v = |x: &dyn erased::Ser| x.value();
    match kind {
        MSG_REGISTER => {
            let zero = RegisterPayload {
                hostname: String::new(),
                ip: String::new(),
                os: String::new(),
                arch: String::new(),
                labels: BTreeMap::new(),
                plugins: Vec::new(),
                agent_version: String::new(),
                uptime_sec: 0,
            };
            let full = RegisterPayload {
                hostname: "h".into(),
                ip: "10.0.0.1".into(),
                os: "linux".into(),
                arch: "amd64".into(),
                labels: [("a".to_string(), "b".to_string())].into(),
                plugins: vec!["cpu".into()],
                agent_version: "1".into(),
                uptime_sec: 3,
            };
            (v(&zero), v(&full))
        }
        MSG_HEARTBEAT => (
            v(&HeartbeatPayload {
                active_sessions: 0,
                active_alerts: 0,
                cpu_pct: Some(0.0),
                mem_pct: None,
            }),
            v(&HeartbeatPayload {
                active_sessions: 1,
                active_alerts: 2,
                cpu_pct: Some(1.5),
                mem_pct: Some(2.5),
            }),
        ),
        "alert_event" => (
            v(&AlertEvent {
                event_time: 0,
                event_status: EventStatus::Ok,
                alert_key: String::new(),
                labels: BTreeMap::new(),
                attrs: BTreeMap::new(),
                description: String::new(),
                description_format: Some(String::new()),
            }),
            v(&AlertEvent {
                event_time: 1,
                event_status: EventStatus::Critical,
                alert_key: "k".into(),
                labels: [("a".to_string(), "b".to_string())].into(),
                attrs: [("c".to_string(), "d".to_string())].into(),
                description: "d".into(),
                description_format: Some("markdown".into()),
            }),
        ),
        MSG_SESSION_OUTPUT => (
            v(&SessionOutputPayload {
                session_id: String::new(),
                delta: String::new(),
                stage: String::new(),
                done: false,
                report: Some(String::new()),
                metadata: Some(Map::new()),
            }),
            v(&SessionOutputPayload {
                session_id: "s".into(),
                delta: "x".into(),
                stage: STAGE_ANSWER.into(),
                done: true,
                report: Some("r".into()),
                metadata: Some(
                    [(META_TURN_DONE.to_string(), json!(true))]
                        .into_iter()
                        .collect(),
                ),
            }),
        ),
        MSG_SESSION_ERROR => (
            v(&SessionErrorPayload {
                session_id: String::new(),
                error: String::new(),
                code: String::new(),
            }),
            v(&SessionErrorPayload {
                session_id: "s".into(),
                error: "e".into(),
                code: "c".into(),
            }),
        ),
        MSG_ACK => (
            v(&AckPayload {
                ok: false,
                error: Some(String::new()),
                warning: Some(String::new()),
            }),
            v(&AckPayload {
                ok: false,
                error: Some("e".into()),
                warning: Some("w".into()),
            }),
        ),
        other => panic!("no payload for {other}"),
    }
}

mod erased {
    /// Any payload, as a JSON value.
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("payload serializes")
        }
    }
}

#[test]
fn outbound_payloads_match_the_reference_field_by_field() {
    for (kind, fields) in REFERENCE {
        let (zero, full) = zero_and_full(kind);
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        let mut all: Vec<String> = fields.iter().map(|(f, _)| f.to_string()).collect();
        all.sort();
        assert_eq!(keys(&full), all, "{kind}: the reference's fields, set");
        let mut kept: Vec<String> = fields
            .iter()
            .filter(|(_, omitempty)| !omitempty)
            .map(|(f, _)| f.to_string())
            .collect();
        kept.sort();
        assert_eq!(
            keys(&zero),
            kept,
            "{kind}: at zero values exactly the omitempty fields are left out: {zero}"
        );
    }
}

#[test]
fn encode_writes_the_bytes_an_envelope_would() {
    let p = SessionOutputPayload {
        session_id: "s-1".into(),
        delta: "tab\there \"quoted\" é".into(),
        stage: STAGE_THINKING.into(),
        done: false,
        report: None,
        metadata: None,
    };
    let fast = Envelope::encode(MSG_SESSION_OUTPUT, &p);
    let parsed = Envelope::parse(&fast).expect("parses");
    let mut slow = Envelope::new(MSG_SESSION_OUTPUT, &p);
    slow.id = parsed.id.clone();
    // The same JSON; the payload's keys in declaration order, as the
    // reference's encoder writes a struct.
    let as_value = |t: &str| serde_json::from_str::<Value>(t).expect("json");
    assert_eq!(as_value(&fast), as_value(&slow.to_json()));
    let keys = r#"{"session_id":"s-1","delta":"#;
    assert!(
        fast.starts_with(r#"{"type":"session_output","id":""#),
        "{fast}"
    );
    assert!(fast.contains(keys), "{fast}");
    let id = uuid::Uuid::parse_str(&parsed.id).expect("a uuid");
    assert_eq!(id.get_version(), Some(uuid::Version::Random));
    assert_ne!(
        parsed.id,
        Envelope::parse(&Envelope::encode(MSG_SESSION_OUTPUT, &p))
            .expect("parses")
            .id
    );
}

/// Found by the `frame` fuzz target: a float in a frame's params must
/// re-encode to the number the server sent, not one unit in the last place
/// off (serde_json's default float parser is not correctly rounded).
#[test]
fn a_float_in_a_frame_comes_back_as_the_number_sent() {
    for text in [
        "1.76411e+44",
        "1.1111111111111111e21",
        "0.1",
        "2.2250738585072014e-308",
    ] {
        let frame = format!(
            r#"{{"type":"session_start","id":"m1","payload":{{"session_id":"s","session_type":"inspect","params":{{"x":{text}}}}}}}"#
        );
        let env = Envelope::parse(&frame).expect("a frame");
        let back: f64 = env.payload.as_ref().expect("payload")["params"]["x"]
            .as_f64()
            .expect("a number");
        assert_eq!(back, text.parse::<f64>().expect("a float"), "{text}");
    }
}
