//! The conversation as bytes, for the host's `snapshot` export: a JSON
//! object with the shell flag, the turn count, what was asked, and the
//! last topic looked up (by name, with the text it was asked in).

use super::{Conversation, Runner, State, Topic};
use crate::exports::catpaw::runner::chat::{Conversation as Handle, ConversationBorrow};
use crate::exports::catpaw::runner::snapshot::Guest;
use catpaw_guest_common::plugin;
use serde_json::{Value, json};

impl Guest for Runner {
    fn save(conversation: ConversationBorrow<'_>) -> Result<Vec<u8>, String> {
        let c: &Conversation = conversation.get();
        Ok(encode(&c.state.borrow()))
    }

    fn restore(state: Vec<u8>) -> Result<Handle, String> {
        let state = decode(&state)?;
        Ok(Handle::new(Conversation {
            state: std::cell::RefCell::new(state),
        }))
    }
}

impl Topic {
    /// The name a saved conversation gives this topic.
    fn name(self) -> &'static str {
        match self {
            Topic::Cpu => "cpu",
            Topic::Memory => "memory",
            Topic::Disk => "disk",
            Topic::Processes => "processes",
            Topic::Network => "network",
            Topic::Uptime => "uptime",
            Topic::Plugin(p) => p.name,
        }
    }

    /// The topic a saved name stands for.
    fn named(name: &str) -> Option<Topic> {
        Some(match name {
            "cpu" => Topic::Cpu,
            "memory" => Topic::Memory,
            "disk" => Topic::Disk,
            "processes" => Topic::Processes,
            "network" => Topic::Network,
            "uptime" => Topic::Uptime,
            other => Topic::Plugin(plugin(other)?),
        })
    }
}

fn encode(st: &State) -> Vec<u8> {
    let last = st
        .last
        .as_ref()
        .map(|(topic, text)| json!({ "topic": topic.name(), "text": text }));
    json!({
        "allow_shell": st.allow_shell,
        "turns": st.turns,
        "history": st.history,
        "last": last,
    })
    .to_string()
    .into_bytes()
}

fn decode(bytes: &[u8]) -> Result<State, String> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the saved conversation is not JSON: {e}"))?;
    let field = |name: &str| {
        v.get(name)
            .ok_or_else(|| format!("the saved conversation has no `{name}`"))
    };
    let allow_shell = field("allow_shell")?
        .as_bool()
        .ok_or("the saved `allow_shell` is not a boolean")?;
    let turns = field("turns")?
        .as_u64()
        .and_then(|t| u32::try_from(t).ok())
        .ok_or("the saved `turns` is not a turn count")?;
    let history = field("history")?
        .as_array()
        .ok_or("the saved `history` is not a list")?
        .iter()
        .map(|m| m.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or("the saved `history` holds something other than text")?;
    let last = match field("last")? {
        Value::Null => None,
        l => {
            let name = l.get("topic").and_then(Value::as_str).unwrap_or_default();
            let topic =
                Topic::named(name).ok_or_else(|| format!("the saved topic `{name}` is unknown"))?;
            let text = l
                .get("text")
                .and_then(Value::as_str)
                .ok_or("the saved last topic has no `text`")?;
            Some((topic, text.to_string()))
        }
    };
    Ok(State {
        allow_shell,
        turns,
        history,
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_comes_back_as_it_was_saved() {
        let st = State {
            allow_shell: true,
            turns: 3,
            history: vec!["how is memory?".into(), "and \"disk\"".into()],
            last: Some((
                Topic::Plugin(plugin("ntp").expect("ntp")),
                "check ntp".into(),
            )),
        };
        assert_eq!(decode(&encode(&st)), Ok(st));
        let fresh = State {
            allow_shell: false,
            turns: 0,
            history: Vec::new(),
            last: None,
        };
        assert_eq!(decode(&encode(&fresh)), Ok(fresh));
    }

    #[test]
    fn bytes_it_did_not_write_are_refused() {
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"allow_shell":true}"#).is_err());
        let unknown = br#"{"allow_shell":false,"turns":1,"history":[],"last":{"topic":"toaster","text":"x"}}"#;
        assert!(decode(unknown).unwrap_err().contains("toaster"));
    }
}
