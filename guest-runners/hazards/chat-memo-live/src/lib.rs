//! Test guest: `chat-memo`'s conversation without the `snapshot` export,
//! so its chats keep their instance between turns.
wit_bindgen::generate!({ path: "../../../wit", world: "chat-runner" });

#[path = "../../chat-memo/src/memo.rs"]
mod memo;

use exports::catpaw::runner::chat::Guest;
use memo::Memo;

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-chat-memo-live".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: Vec::new(),
        }
    }
}

impl Guest for Runner {
    type Conversation = Memo;
}
