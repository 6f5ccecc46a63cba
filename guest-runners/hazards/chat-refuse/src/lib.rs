//! Test guest: a chat runner that refuses to start a conversation.
wit_bindgen::generate!({ path: "../../../wit", world: "chat-runner" });

use exports::catpaw::runner::chat::{Conversation, Guest, GuestConversation};

struct Runner;
export!(Runner);

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
