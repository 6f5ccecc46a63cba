//! Usage receipts: what a run, a chat turn or a session used, beside its
//! budgets.

/// What a run, a chat turn or a whole session used, beside the budgets it
/// had: the figures an author sizes limits by. The sandbox fills a run's
/// in from its store when the run ends (the limits come from
/// `Budgets::receipt`); a session's adds its runs up (totals, and the
/// largest single run where the budget is per run).
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
    /// Size of the largest linear memory the instance reached, in bytes
    /// (the cap applies to each memory).
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
    /// Language-model calls (`llm.complete`), all runs.
    #[serde(default)]
    pub llm_calls: u64,
    /// Language-model tokens charged (prompt and completion), all runs.
    #[serde(default)]
    pub llm_tokens: u64,
    /// Bytes of output charged (deltas, report, answers), all runs.
    pub output_bytes: u64,
    /// The session's output budget, in bytes.
    pub output_limit: u64,
}

impl Receipt {
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
        self.llm_calls += run.llm_calls;
        self.llm_tokens = self.llm_tokens.saturating_add(run.llm_tokens);
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
        let llm = if self.llm_calls > 0 {
            format!(
                ", {} model call(s) using {} tokens",
                self.llm_calls, self.llm_tokens
            )
        } else {
            String::new()
        };
        format!(
            "{} run(s): fuel {} (max run {:.1}% of {}), memory peak {} of {} ({:.0}%), \
             time {} ms (max run {} ms of {} ms), host calls {} tool + {} shell \
             (max run {} of {}){llm}, {} emits, {} log lines, output {} of {} bytes",
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
