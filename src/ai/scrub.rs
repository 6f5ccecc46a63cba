//! Credentials out of everything that leaves [`crate::ai`]: error texts,
//! notices, replies, and streamed text (where a key may arrive split over
//! two deltas).

use tokio::sync::mpsc;

use super::Streamed;

/// `text` with every one of `secrets` replaced by `[redacted]`.
pub(super) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out
}

/// Streamed model text on its way out, with credentials scrubbed. A key
/// may arrive split over two deltas, so the tail that could be the start
/// of one is held back until the next delta (or the end) shows it is not.
pub(crate) struct TextOut<'a> {
    tx: &'a mpsc::Sender<Streamed>,
    secrets: Vec<String>,
    held: String,
}

impl<'a> TextOut<'a> {
    pub(super) fn new(tx: &'a mpsc::Sender<Streamed>, secrets: Vec<String>) -> Self {
        TextOut {
            tx,
            secrets,
            held: String::new(),
        }
    }

    /// Sends what of `text` is known to hold no credential.
    pub(crate) async fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.held.push_str(text);
        self.held = scrub(&self.held, &self.secrets);
        let keep = self.secrets.iter().map(String::len).max().unwrap_or(1) - 1;
        let mut cut = self.held.len().saturating_sub(keep);
        while !self.held.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > 0 {
            let rest = self.held.split_off(cut);
            let out = std::mem::replace(&mut self.held, rest);
            // A receiver that went away only stops the stream.
            let _ = self.tx.send(Streamed::Text(out)).await;
        }
    }

    /// Sends what was held back.
    pub(crate) async fn flush(&mut self) {
        let rest = scrub(&std::mem::take(&mut self.held), &self.secrets);
        if !rest.is_empty() {
            let _ = self.tx.send(Streamed::Text(rest)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_split_over_deltas_is_scrubbed() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut out = TextOut::new(&tx, vec!["sk-abcdef123".into()]);
        for piece in ["your key is sk-ab", "cdef", "123, ok", "ay"] {
            out.text(piece).await;
        }
        out.flush().await;
        drop(out);
        drop(tx);
        let mut all = String::new();
        while let Some(Streamed::Text(t)) = rx.recv().await {
            all.push_str(&t);
        }
        assert_eq!(all, "your key is [redacted], okay");
    }
}
