//! JUnit XML for `replay --suite --junit FILE`: the one report format
//! every CI system reads (GitLab, Jenkins, GitHub's test reporters).
//!
//! One `<testsuite>`, one `<testcase>` per recording: identical passes; a
//! difference (output, calls, trap, budget) is a `<failure>`, a recording
//! that could not be replayed an `<error>`, as JUnit tells "the code under
//! test is wrong" from "the test could not run". Everything a recording or
//! a runner wrote is escaped, and the characters XML 1.0 cannot hold at
//! all (most control characters) are written as `\u{..}` text.

use std::fmt::Write as _;

use super::Verdict;
use super::suite::{Suite, detail, full};

/// `s` escaped for XML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

/// The suite as a JUnit XML document.
pub fn render(suite: &Suite) -> String {
    let count = |code| {
        suite
            .rows
            .iter()
            .filter(|r| r.verdict.exit_code() == code)
            .count()
    };
    let total: f64 = suite.rows.iter().map(|r| r.took.as_secs_f64()).sum();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" \
         time=\"{total:.3}\">",
        escape(&format!("replay --suite {}", suite.dir.display())),
        suite.rows.len(),
        count(1),
        count(2)
    );
    for r in &suite.rows {
        let _ = write!(
            o,
            "  <testcase classname=\"replay.{}\" name=\"{}\" time=\"{:.3}\"",
            escape(&r.session_type),
            escape(&r.recording),
            r.took.as_secs_f64()
        );
        let tag = match &r.verdict {
            Verdict::Identical { .. } => {
                o.push_str("/>\n");
                continue;
            }
            Verdict::CouldNotReplay { .. } => "error",
            _ => "failure",
        };
        let _ = writeln!(
            o,
            ">\n    <{tag} type=\"{}\" message=\"{}\">{}</{tag}>\n  </testcase>",
            escape(r.verdict.label()),
            escape(&detail(&r.verdict)),
            escape(&full(&r.verdict))
        );
    }
    o.push_str("</testsuite>\n");
    o
}
