//! The conversation both memo runners share (`chat-memo`, which exports
//! `snapshot`, and `chat-memo-live`, which does not). Messages:
//!
//! - `note TEXT`: remembers TEXT
//! - `notes`: lists what was noted
//! - `save refuse`: the next `save` returns an error
//! - `save huge N`: the next `save` returns N bytes
//! - `restore fail`: the next saved state makes `restore` fail
//!
//! Every answer ends with `[instance turn K]`: how many turns this very
//! instance served, which is not saved, so it tells a restored
//! conversation (K = 1) from a live instance (K grows).

use std::cell::{Cell, RefCell};

use crate::exports::catpaw::runner::chat::{Conversation as Handle, GuestConversation};

/// What the next `save` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextSave {
    Normal,
    Refuse,
    Huge(usize),
    FailRestore,
}

pub struct Memo {
    pub notes: RefCell<Vec<String>>,
    pub next_save: Cell<NextSave>,
    turns_here: Cell<u32>,
}

impl Memo {
    pub fn with(notes: Vec<String>) -> Memo {
        Memo {
            notes: RefCell::new(notes),
            next_save: Cell::new(NextSave::Normal),
            turns_here: Cell::new(0),
        }
    }
}

impl GuestConversation for Memo {
    fn create(_allow_shell: bool) -> Result<Handle, String> {
        Ok(Handle::new(Memo::with(Vec::new())))
    }

    fn handle_message(&self, input: String) -> Result<String, String> {
        self.turns_here.set(self.turns_here.get() + 1);
        let text = input.trim();
        let answer = if let Some(note) = text.strip_prefix("note ") {
            self.notes.borrow_mut().push(note.to_string());
            format!("noted {note}")
        } else if text == "notes" {
            format!("notes: {}", self.notes.borrow().join(", "))
        } else if text == "save refuse" {
            self.next_save.set(NextSave::Refuse);
            "the next save refuses".to_string()
        } else if let Some(n) = text.strip_prefix("save huge ") {
            let n = n.parse().map_err(|e| format!("save huge N: {e}"))?;
            self.next_save.set(NextSave::Huge(n));
            format!("the next save returns {n} bytes")
        } else if text == "restore fail" {
            self.next_save.set(NextSave::FailRestore);
            "the next restore fails".to_string()
        } else {
            return Err(format!("unknown memo command: {text}"));
        };
        Ok(format!(
            "{answer} [instance turn {}]",
            self.turns_here.get()
        ))
    }
}
