//! What the server saw, per connection ("link"): acks, session output,
//! `done`s and alerts, written by one reader task per link. The reader
//! records what breaks the protocol as it sees it (a second `done`,
//! output after `done`); the checks read the rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::common::server::Ws;

/// One session the campaign started.
#[derive(Debug, Clone)]
pub struct Sess {
    pub kind: &'static str,
    /// The link its `session_start` went out on.
    pub link: u64,
    /// The ack: Some(Ok) accepted, Some(Err(text)) refused.
    pub ack: Option<Result<(), String>>,
    pub outputs: u32,
    pub dones: u32,
    /// The `session_error` code, if one came.
    pub error: Option<String>,
    /// The campaign cancelled it.
    pub cancelled: bool,
    /// It asked for a shell.
    pub shell: bool,
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// `session_start` message id → session id.
    pub starts: HashMap<String, String>,
    pub sessions: BTreeMap<String, Sess>,
    /// Alert key → times the server got it.
    pub alerts: HashMap<String, u32>,
    /// Links whose stream ended.
    pub closed: Vec<u64>,
    /// Frames that were not an envelope (a stream the proxy damaged).
    pub garbled: u64,
    /// Protocol breaks the reader saw.
    pub problems: Vec<String>,
}

pub type Shared = Arc<Mutex<Ledger>>;

pub fn lock(l: &Shared) -> MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledger {
    pub fn is_closed(&self, link: u64) -> bool {
        self.closed.contains(&link)
    }

    fn on_frame(&mut self, link: u64, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            self.garbled += 1;
            return;
        };
        let p = &v["payload"];
        match v["type"].as_str().unwrap_or("") {
            "ack" => {
                let Some(sid) = v["ref_id"].as_str().and_then(|r| self.starts.get(r)) else {
                    return;
                };
                let Some(s) = self.sessions.get_mut(sid) else {
                    return;
                };
                if s.ack.is_some() {
                    self.problems.push(format!("session {sid}: a second ack"));
                }
                s.ack = Some(if p["ok"] == true {
                    Ok(())
                } else {
                    Err(p["error"].as_str().unwrap_or("").to_string())
                });
            }
            "session_output" | "session_error" => {
                let sid = p["session_id"].as_str().unwrap_or("").to_string();
                let Some(s) = self.sessions.get_mut(&sid) else {
                    self.problems
                        .push(format!("output for a session never started: {sid:?}"));
                    return;
                };
                if s.link != link {
                    self.problems.push(format!(
                        "session {sid} of link {} sent output on link {link}",
                        s.link
                    ));
                }
                if s.dones > 0 {
                    self.problems
                        .push(format!("session {sid}: output after done: {text:.200}"));
                }
                if v["type"] == "session_error" {
                    s.error = Some(p["code"].as_str().unwrap_or("").to_string());
                } else if p["done"] == true {
                    s.dones += 1;
                } else {
                    s.outputs += 1;
                }
            }
            "alert_events" => {
                for e in p["events"].as_array().into_iter().flatten() {
                    let key = e["alert_key"].as_str().unwrap_or("").to_string();
                    *self.alerts.entry(key).or_default() += 1;
                }
            }
            _ => {}
        }
    }
}

/// Reads link `link` into the ledger until it ends.
pub async fn read(link: u64, mut stream: SplitStream<Ws>, ledger: Shared) {
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(t)) => lock(&ledger).on_frame(link, t.as_str()),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    lock(&ledger).closed.push(link);
}
