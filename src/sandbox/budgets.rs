//! What one session may use: every budget with its default, the name the
//! config file and the command line give it, and the values it accepts.
//!
//! This is a budget's one home. Adding one is a field on [`Budgets`], its
//! default, and a line in [`Budgets::KEYS`]: from then on `[sandbox]`,
//! `[sandbox.diagnose]` and `[sandbox.chat]` accept it, through the one
//! funnel in `crate::config` that parses and bounds every value from the
//! file and the command line alike. How a guest that breaks a budget is
//! stopped and blamed is `limits.rs`. What a session used of them is its
//! [`Receipt`] (a runner-level record, so the session layer and the runner
//! traits can carry it; [`Budgets::receipt`] starts one).

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::runner::Receipt;

/// Budgets of one session, fixed when its store is created. Fuel, time,
/// host calls, LLM calls and `llm_turn_tokens` are per diagnose run or chat
/// turn; output and `llm_tokens` are per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    /// Fuel for one diagnose run or one chat turn.
    pub fuel: u64,
    /// Cap on the total size of each linear memory, in bytes. (Tables and
    /// instances have fixed caps: [`Budgets::MAX_TABLE_ELEMENTS`],
    /// [`Budgets::MAX_INSTANCES`].)
    pub max_memory: u64,
    /// Wall-clock limit of one run or chat turn.
    pub timeout: Duration,
    /// Total bytes of output (deltas, report, chat answers) the session may
    /// produce.
    pub max_output: u64,
    /// Host calls (tool calls plus shell requests) per run or chat turn.
    pub max_host_calls: u64,
    /// Bytes of guest stdout/stderr, and of `log` lines, that reach the
    /// host's log per run or chat turn; the rest is counted and dropped.
    pub guest_stdio: u64,
    /// Longest a granted shell command may run (a guest's own timeout is
    /// capped to it).
    pub shell_timeout: Duration,
    /// Bytes kept from each of a shell command's stdout and stderr.
    pub shell_output: u64,
    /// Language-model tokens (prompt plus completion) the whole session
    /// may use.
    pub llm_tokens: u64,
    /// Language-model tokens one run or chat turn may use.
    pub llm_turn_tokens: u64,
    /// Language-model calls per run or chat turn.
    pub max_llm_calls: u64,
    /// Most bytes of conversation state an idle chat keeps in place of its
    /// instance (a runner's `snapshot` export); a larger state keeps the
    /// instance alive instead. 0 keeps every chat's instance alive.
    pub max_chat_state: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            fuel: 1_000_000_000,
            max_memory: 64 << 20,
            timeout: Duration::from_secs(120),
            max_output: 8 << 20,
            max_host_calls: 256,
            guest_stdio: 16 << 10,
            shell_timeout: Duration::from_secs(30),
            shell_output: 64 << 10,
            // A diagnose of 15 rounds with a few KiB of tool output each
            // stays well inside these; a model looping on itself does not.
            llm_tokens: 400_000,
            llm_turn_tokens: 200_000,
            max_llm_calls: 32,
            // The built-in chat's state is a few hundred bytes, a long AI
            // conversation some hundreds of KiB. A saved state sits in the
            // host's heap; a larger one keeps its instance, whose memory
            // `max_memory` bounds.
            max_chat_state: 1 << 20,
        }
    }
}

/// Memory caps accepted: below 1 MiB no mainstream guest starts; above
/// 4 GiB is past what 32-bit wasm can address.
const MEMORY: RangeInclusive<u64> = (1 << 20)..=(4 << 30);

/// Any number of bytes.
const ANY_BYTES: RangeInclusive<u64> = 0..=u64::MAX;

impl Budgets {
    /// Cap on table elements per table: generous enough for any component
    /// a mainstream toolchain emits, small enough to bound host memory.
    pub(crate) const MAX_TABLE_ELEMENTS: usize = 20_000;
    /// Cap on core instances, tables and memories per store (see
    /// [`Budgets::MAX_TABLE_ELEMENTS`]).
    pub(crate) const MAX_INSTANCES: usize = 64;

    /// Every budget by its config key, with the values it accepts.
    pub(crate) const KEYS: &[BudgetKey] = &[
        BudgetKey {
            name: "fuel",
            slot: |b| Slot::Count(&mut b.fuel),
        },
        BudgetKey {
            name: "max_memory",
            slot: |b| Slot::Bytes(&mut b.max_memory, MEMORY),
        },
        BudgetKey {
            name: "timeout",
            slot: |b| Slot::Time(&mut b.timeout),
        },
        BudgetKey {
            name: "max_output",
            slot: |b| Slot::Bytes(&mut b.max_output, ANY_BYTES),
        },
        BudgetKey {
            name: "max_host_calls",
            slot: |b| Slot::Count(&mut b.max_host_calls),
        },
        BudgetKey {
            name: "guest_stdio",
            slot: |b| Slot::Bytes(&mut b.guest_stdio, ANY_BYTES),
        },
        BudgetKey {
            name: "shell_timeout",
            slot: |b| Slot::Time(&mut b.shell_timeout),
        },
        BudgetKey {
            name: "shell_output",
            slot: |b| Slot::Bytes(&mut b.shell_output, ANY_BYTES),
        },
        BudgetKey {
            name: "llm_tokens",
            slot: |b| Slot::Count(&mut b.llm_tokens),
        },
        BudgetKey {
            name: "llm_turn_tokens",
            slot: |b| Slot::Count(&mut b.llm_turn_tokens),
        },
        BudgetKey {
            name: "max_llm_calls",
            slot: |b| Slot::Count(&mut b.max_llm_calls),
        },
        BudgetKey {
            name: "max_chat_state",
            slot: |b| Slot::Bytes(&mut b.max_chat_state, ANY_BYTES),
        },
    ];

    /// The budget a config key names.
    pub fn key(name: &str) -> Option<&'static BudgetKey> {
        Self::KEYS.iter().find(|k| k.name == name)
    }
}

/// A byte budget as a host-side length (saturating where `usize` is
/// narrower than `u64`).
pub(crate) fn as_len(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// One budget as the config file and the command line name it.
#[derive(Debug)]
pub struct BudgetKey {
    /// The key in `[sandbox]` and `[sandbox.<role>]`; its flag, where it
    /// has one, is `--` and this with dashes.
    pub name: &'static str,
    slot: fn(&mut Budgets) -> Slot<'_>,
}

impl BudgetKey {
    /// Where this budget lives in `b`, with the values it accepts.
    pub fn slot<'a>(&self, b: &'a mut Budgets) -> Slot<'a> {
        (self.slot)(b)
    }
}

/// A budget's place in a [`Budgets`] and what it accepts. The config
/// funnel parses a value by the variant and refuses one outside it.
#[derive(Debug)]
pub enum Slot<'a> {
    /// A whole number, at least 1.
    Count(&'a mut u64),
    /// A size in bytes within the range.
    Bytes(&'a mut u64, RangeInclusive<u64>),
    /// A duration longer than zero.
    Time(&'a mut Duration),
}

impl Budgets {
    /// An empty receipt carrying these limits, for a run or session to
    /// fill in.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            fuel_limit: self.fuel,
            memory_limit: self.max_memory,
            timeout_ms: millis(self.timeout),
            host_calls_limit: self.max_host_calls,
            output_limit: self.max_output,
            ..Receipt::default()
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reaches_its_own_field() {
        // Set each budget through its key to a value no default has, and
        // check that exactly one field changed: a copy-paste slip in KEYS
        // would write a neighbour.
        for key in Budgets::KEYS {
            let mut b = Budgets::default();
            match key.slot(&mut b) {
                Slot::Count(n) | Slot::Bytes(n, _) => *n = 4_321_987,
                Slot::Time(d) => *d = Duration::from_millis(4_321_987),
            }
            let changed = Budgets::KEYS
                .iter()
                .filter(|other| {
                    let (mut x, mut y) = (b.clone(), Budgets::default());
                    !same(other.slot(&mut x), other.slot(&mut y))
                })
                .count();
            assert_eq!(changed, 1, "{}", key.name);
            assert!(Budgets::key(key.name).is_some());
        }
        assert!(Budgets::key("max_tool_calls").is_none());
    }

    fn same(a: Slot<'_>, b: Slot<'_>) -> bool {
        match (a, b) {
            (Slot::Count(x), Slot::Count(y)) | (Slot::Bytes(x, _), Slot::Bytes(y, _)) => x == y,
            (Slot::Time(x), Slot::Time(y)) => x == y,
            _ => false,
        }
    }
}
