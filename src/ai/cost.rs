//! What one call may cost, known before it is sent, so no budget can be
//! overshot by the call that breaks it and no provider can charge more
//! than it could have used.
//!
//! The prompt is bounded by the bytes the host sends: the JSON of the
//! request's `messages` and `tools`, one token per byte, plus
//! [`FRAMING`]. That is an upper bound for every tokenizer providers use:
//! a byte-level BPE (GPT, Llama 3, Qwen…) or a SentencePiece model with
//! byte fallback never makes a token out of less than one byte of text,
//! so text of `n` bytes is at most `n` tokens. What a provider adds around
//! it (role markers, the rendering of tool schemas, begin-of-text) is
//! paid for by the JSON punctuation, quotes and key names we count but
//! the model never reads (`{"role":"user","content":""}` alone is 28
//! bytes against 3–5 template tokens), and by [`FRAMING`] for the priming
//! of the answer. A tighter guess (bytes / 4, which typical English
//! text comes to) would under-count digits, hex, base64 or CJK text, where
//! a token is one to three bytes: a guest choosing its prompt could slip
//! past every budget again. The price of the sure bound: a call is
//! refused when the budget left is below the prompt's bytes, about four
//! times its real cost for English, so a budget should be set with that
//! room in mind (the defaults are).
//!
//! The answer is bounded by the `max_tokens` sent, which is never more than
//! what the budgets leave after the prompt's bound.

use super::{Message, ToolSpec, Usage, wire};

/// Tokens a provider may spend around a request beyond its JSON (the
/// assistant's turn marker, a begin-of-text, a tool-calling preamble).
pub(crate) const FRAMING: u64 = 64;

/// Fewest answer tokens worth a call: when the budgets leave less than
/// this after the prompt (or less than the configured `max_tokens`, if that
/// is smaller), the call is refused instead of sent to be cut short.
pub(crate) const MIN_ANSWER: u64 = 256;

/// The most prompt tokens a request of `messages` and `tools` can cost:
/// one per byte of their JSON, plus [`FRAMING`].
pub(super) fn prompt_bound(messages: &[Message], tools: &[ToolSpec]) -> u64 {
    let bytes = |v: &serde_json::Value| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    let tools = if tools.is_empty() {
        0
    } else {
        bytes(&wire::tools(tools))
    };
    let total = bytes(&wire::messages(messages)).saturating_add(tools);
    u64::try_from(total)
        .unwrap_or(u64::MAX)
        .saturating_add(FRAMING)
}

/// One token budget and what is left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLimit {
    /// The budget, as an operator finds it in the config (e.g. "the
    /// session's llm_tokens budget").
    pub name: String,
    /// Tokens left of it.
    pub left: u64,
}

/// A call's bounds, fixed before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    /// Most prompt tokens (see [`prompt_bound`]).
    pub(super) prompt: u64,
    /// Most answer tokens: no backend sends a larger `max_tokens`.
    pub(super) answer: u64,
}

impl Bounds {
    /// The most the call can cost.
    pub(super) fn total(&self) -> u64 {
        self.prompt.saturating_add(self.answer)
    }
}

/// The bounds of a call whose prompt costs at most `prompt` and whose
/// backends want answers of up to `want` tokens, within `limits`; or,
/// when the tightest limit cannot hold the prompt and a minimal answer,
/// why it is refused (the budget, what is left, the estimate).
pub(super) fn plan(prompt: u64, want: u64, limits: &[TokenLimit]) -> Result<Bounds, String> {
    let floor = want.clamp(1, MIN_ANSWER);
    let Some(tight) = limits.iter().min_by_key(|l| l.left) else {
        return Ok(Bounds {
            prompt,
            answer: want,
        });
    };
    let room = tight.left.saturating_sub(prompt);
    if room < floor {
        return Err(format!(
            "the host refused a language-model call that may cost {} tokens (at most {prompt} \
             for the prompt, one per byte of its messages and tools, and {floor} for the \
             answer): {} has {} left; shorten the conversation or raise that budget",
            prompt.saturating_add(floor),
            tight.name,
            tight.left
        ));
    }
    Ok(Bounds {
        prompt,
        answer: want.min(room),
    })
}

/// `reported` held to what a call with prompt bound `prompt` and
/// `max_tokens` `answer` could have used, and whether it had to be (the
/// provider reported more than it can have counted).
pub(super) fn clamp(reported: Usage, prompt: u64, answer: u64) -> (Usage, bool) {
    let held = Usage {
        prompt_tokens: reported.prompt_tokens.min(prompt),
        completion_tokens: reported.completion_tokens.min(answer),
    };
    (held, held != reported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::Role;

    fn limit(name: &str, left: u64) -> TokenLimit {
        TokenLimit {
            name: name.into(),
            left,
        }
    }

    #[test]
    fn the_prompt_bound_is_at_least_one_token_per_byte_of_text() {
        let text = "7f3a".repeat(1000) + "日本語のテキスト";
        let m = Message {
            role: Role::User,
            content: text.clone(),
            tool_calls: vec![],
            tool_call_id: None,
        };
        let b = prompt_bound(&[m], &[]);
        assert!(b >= text.len() as u64 + FRAMING, "{b}");
        assert!(b < text.len() as u64 + FRAMING + 64, "{b}");
        assert_eq!(prompt_bound(&[], &[]), 2 + FRAMING);
    }

    #[test]
    fn a_call_is_planned_within_the_tightest_budget_or_refused() {
        let limits = [limit("turn", 10_000), limit("daily", 3_000)];
        // Room for the whole answer.
        assert_eq!(
            plan(1_000, 1_000, &limits),
            Ok(Bounds {
                prompt: 1_000,
                answer: 1_000
            })
        );
        // The answer is cut to what is left after the prompt.
        assert_eq!(plan(2_500, 1_000, &limits).unwrap().answer, 500);
        // Less than a minimal answer left: refused, naming the budget.
        let e = plan(2_800, 1_000, &limits).unwrap_err();
        assert!(e.contains("daily has 3000 left"), "{e}");
        assert!(e.contains("may cost 3056 tokens"), "{e}");
        // A configured answer smaller than the minimum still fits.
        assert_eq!(plan(2_900, 100, &limits).unwrap().answer, 100);
        // A prompt larger than the budget.
        assert!(plan(u64::MAX, 1, &limits).is_err());
        // No limits: the configured answer.
        assert_eq!(plan(5, 7, &[]).unwrap().total(), 12);
    }

    #[test]
    fn a_usage_past_the_bounds_is_clamped() {
        let lie = Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
        };
        let (u, clamped) = clamp(lie, 900, 100);
        assert!(clamped);
        assert_eq!(u.total(), 1_000);
        let honest = Usage {
            prompt_tokens: 50,
            completion_tokens: 20,
        };
        assert_eq!(clamp(honest, 900, 100), (honest, false));
        let (u, clamped) = clamp(
            Usage {
                prompt_tokens: 10,
                completion_tokens: 101,
            },
            900,
            100,
        );
        assert!(clamped);
        assert_eq!(u.completion_tokens, 100);
    }
}
