//! Test guest: a chat that keeps notes (see `memo.rs`) and exports
//! `snapshot`, whose `save` can be told to refuse, to return a huge
//! state, or to write a state its `restore` refuses.
wit_bindgen::generate!({ path: "../../../wit", world: "snapshot-chat-runner" });

mod memo;

use exports::catpaw::runner::chat::{Conversation as Handle, ConversationBorrow, Guest};
use exports::catpaw::runner::snapshot::Guest as Snapshot;
use memo::{Memo, NextSave};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-chat-memo".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: Vec::new(),
        }
    }
}

impl Guest for Runner {
    type Conversation = Memo;
}

/// First line of a state whose restore must fail.
const POISON: &str = "fail-restore";

impl Snapshot for Runner {
    fn save(conversation: ConversationBorrow<'_>) -> Result<Vec<u8>, String> {
        let memo: &Memo = conversation.get();
        let next = memo.next_save.replace(NextSave::Normal);
        let notes = memo.notes.borrow().join("\n");
        match next {
            NextSave::Normal => Ok(format!("memo\n{notes}").into_bytes()),
            NextSave::Refuse => Err("asked to refuse this save".to_string()),
            NextSave::Huge(n) => Ok(vec![b'x'; n]),
            NextSave::FailRestore => Ok(format!("{POISON}\n{notes}").into_bytes()),
        }
    }

    fn restore(state: Vec<u8>) -> Result<Handle, String> {
        let text = String::from_utf8(state).map_err(|e| format!("state is not UTF-8: {e}"))?;
        let mut lines = text.split('\n');
        match lines.next() {
            Some("memo") => {}
            Some(POISON) => return Err("asked to fail this restore".to_string()),
            _ => return Err("this state was not written by hazard-chat-memo".to_string()),
        }
        let notes = lines
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Handle::new(Memo::with(notes)))
    }
}
