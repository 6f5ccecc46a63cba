//! What one replay of a recording concluded, and the exit code and table
//! column each conclusion maps to (`catpaw-agent replay`, `replay --suite`).

/// The result of re-executing one recording against a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same frames byte for byte (and, with the recorded runner, the same
    /// fuel).
    Identical {
        /// Fuel the replay used, as recorded.
        fuel: u64,
    },
    /// The runner asked the same calls but its output or report differs;
    /// `diff` shows how.
    OutputDiffers {
        /// A readable diff of output and report.
        diff: String,
    },
    /// The runner made a call the recording cannot answer; `first` names
    /// the first such call and where the recording differed.
    CallsDiverged {
        /// The first call the recording could not answer.
        first: String,
        /// A readable diff of output and report.
        diff: String,
    },
    /// The replayed runner trapped.
    Trapped {
        /// The trap, as wasmtime said it.
        detail: String,
    },
    /// The replayed runner broke a budget (fuel, memory, calls, output…).
    Budget {
        /// Which budget, and by how much.
        detail: String,
    },
    /// The recording could not be replayed: tampered (hash mismatch),
    /// unknown format or version, runner missing, unreadable.
    CouldNotReplay {
        /// Why, naming the file and the fix.
        reason: String,
    },
}

impl Verdict {
    /// The process exit code of `catpaw-agent replay`: 0 identical, 1
    /// differs (output, calls, trap or budget), 2 could not replay.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Identical { .. } => 0,
            Verdict::CouldNotReplay { .. } => 2,
            _ => 1,
        }
    }

    /// The column of the `replay --suite` table (and the JUnit outcome).
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Identical { .. } => "identical",
            Verdict::OutputDiffers { .. } => "output differs",
            Verdict::CallsDiverged { .. } => "calls diverged",
            Verdict::Trapped { .. } => "trapped",
            Verdict::Budget { .. } => "budget",
            Verdict::CouldNotReplay { .. } => "could not replay",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn identical_exits_0_a_difference_1_and_an_unreplayable_recording_2() {
        assert_eq!(Verdict::Identical { fuel: 1 }.exit_code(), 0);
        let differs = Verdict::OutputDiffers {
            diff: String::new(),
        };
        assert_eq!(
            (differs.exit_code(), differs.label()),
            (1, "output differs")
        );
        let trapped = Verdict::Trapped {
            detail: String::new(),
        };
        assert_eq!(trapped.exit_code(), 1);
        let bad = Verdict::CouldNotReplay {
            reason: "hash mismatch".into(),
        };
        assert_eq!((bad.exit_code(), bad.label()), (2, "could not replay"));
    }
}
