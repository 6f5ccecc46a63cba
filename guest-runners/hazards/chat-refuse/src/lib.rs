//! Test guest: a chat runner that refuses to start a conversation.
wit_bindgen::generate!({ path: "../../../wit", world: "chat-runner" });

use exports::catpaw::runner::chat::{Conversation, Guest, GuestConversation};

struct Runner;
export!(Runner);

impl exports::catpaw::runner::describe::Guest for Runner {
    fn describe() -> exports::catpaw::runner::describe::RunnerInfo {
        exports::catpaw::runner::describe::RunnerInfo {
            name: "hazard-chat-refuse".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: Vec::new(),
        }
    }
}

impl Guest for Runner {
    type Conversation = Refuser;
}

/// Never constructed: `create` always fails.
pub struct Refuser;

impl GuestConversation for Refuser {
    fn create(_allow_shell: bool) -> Result<Conversation, String> {
        Err("this runner refuses to chat".to_string())
    }

    fn handle_message(&self, _input: String) -> Result<String, String> {
        Err("unreachable: no conversation exists".to_string())
    }
}
