//! What one session may use: every budget with its default, the name the
//! config file and the command line give it, and the values it accepts.
//!
//! This is a budget's one home. Adding one is a field on [`Budgets`], its
//! default, and a line in [`Budgets::KEYS`]: from then on `[sandbox]`,
//! `[sandbox.diagnose]` and `[sandbox.chat]` accept it, through the one
//! funnel in `crate::config` that parses and bounds every value from the
//! file and the command line alike. How a guest that breaks a budget is
//! stopped and blamed is `limits.rs`. What a session used of them is its
//! [`Receipt`].

use std::ops::RangeInclusive;
use std::time::Duration;

/// Budgets of one session, fixed when its store is created. Fuel, time
/// and host calls are per diagnose run or chat turn; output is per session.
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
    pub const MAX_TABLE_ELEMENTS: usize = 20_000;
    /// Cap on core instances, tables and memories per store (see
    /// [`Budgets::MAX_TABLE_ELEMENTS`]).
    pub const MAX_INSTANCES: usize = 64;

    /// Every budget by its config key, with the values it accepts.
    pub const KEYS: &[BudgetKey] = &[
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

/// What a run, a chat turn or a whole session used, beside the budgets it
/// had: the figures an author sizes limits by. A run's receipt comes from
/// the store when the run ends; a session's adds its runs up (totals,
/// and the largest single run where the budget is per run).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// Runs counted: 1 for a run or turn; a chat session counts its
    /// start and every turn.
    pub runs: u64,
    /// Fuel used, all runs together.
    pub fuel_used: u64,
    /// Fuel used by the hungriest single run (the budget is per run).
    pub fuel_max_run: u64,
    /// Fuel each run had.
    pub fuel_limit: u64,
    /// Largest total linear memory the instance reached, in bytes.
    pub peak_memory: u64,
    /// The memory cap, in bytes.
    pub memory_limit: u64,
    /// Wall time of all runs together, in milliseconds.
    pub wall_ms: u64,
    /// Wall time of the longest single run, in milliseconds.
    pub wall_max_run_ms: u64,
    /// Wall-clock limit of one run, in milliseconds.
    pub timeout_ms: u64,
    /// `call-tool` calls.
    pub tool_calls: u64,
    /// `request-shell` requests, granted or not.
    pub shell_requests: u64,
    /// Tool calls plus shell requests of the busiest single run.
    pub host_calls_max_run: u64,
    /// Tool calls plus shell requests one run may make.
    pub host_calls_limit: u64,
    /// `emit` calls.
    pub emits: u64,
    /// `log` calls (kept or dropped past the cap).
    pub log_lines: u64,
    /// Bytes of output charged (deltas, report, answers), all runs.
    pub output_bytes: u64,
    /// The session's output budget, in bytes.
    pub output_limit: u64,
}

impl Receipt {
    /// An empty receipt carrying the limits of `b`.
    pub fn against(b: &Budgets) -> Receipt {
        Receipt {
            fuel_limit: b.fuel,
            memory_limit: b.max_memory,
            timeout_ms: millis(b.timeout),
            host_calls_limit: b.max_host_calls,
            output_limit: b.max_output,
            ..Receipt::default()
        }
    }

    /// Adds one run's receipt to this (session) receipt.
    pub fn add(&mut self, run: &Receipt) {
        self.runs += run.runs;
        self.fuel_used = self.fuel_used.saturating_add(run.fuel_used);
        self.fuel_max_run = self.fuel_max_run.max(run.fuel_max_run);
        self.peak_memory = self.peak_memory.max(run.peak_memory);
        self.wall_ms = self.wall_ms.saturating_add(run.wall_ms);
        self.wall_max_run_ms = self.wall_max_run_ms.max(run.wall_max_run_ms);
        self.tool_calls += run.tool_calls;
        self.shell_requests += run.shell_requests;
        self.host_calls_max_run = self.host_calls_max_run.max(run.host_calls_max_run);
        self.emits += run.emits;
        self.log_lines += run.log_lines;
        self.output_bytes = self.output_bytes.saturating_add(run.output_bytes);
    }

    /// One line for a terminal or a log: each figure beside its budget,
    /// with the share of the per-run budgets the hungriest run used.
    pub fn line(&self) -> String {
        let pct = |used: u64, limit: u64| {
            if limit == 0 {
                0.0
            } else {
                used as f64 * 100.0 / limit as f64
            }
        };
        format!(
            "{} run(s): fuel {} (max run {:.1}% of {}), memory peak {} of {} ({:.0}%), \
             time {} ms (max run {} ms of {} ms), host calls {} tool + {} shell \
             (max run {} of {}), {} emits, {} log lines, output {} of {} bytes",
            self.runs,
            self.fuel_used,
            pct(self.fuel_max_run, self.fuel_limit),
            self.fuel_limit,
            self.peak_memory,
            self.memory_limit,
            pct(self.peak_memory, self.memory_limit),
            self.wall_ms,
            self.wall_max_run_ms,
            self.timeout_ms,
            self.tool_calls,
            self.shell_requests,
            self.host_calls_max_run,
            self.host_calls_limit,
            self.emits,
            self.log_lines,
            self.output_bytes,
            self.output_limit,
        )
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
