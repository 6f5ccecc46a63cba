use std::future::ready;
use std::path::Path;

use serde_json::json;

use super::{detail, run};
use crate::recorder::Verdict;
use crate::recorder::testing::{diagnose_lines, sealed};

/// A dir with a diagnose, a chat, and a file that is not a recording.
fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let put = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).expect("w");
    put("1-a.jsonl", &sealed(&diagnose_lines()));
    let mut chat = diagnose_lines();
    chat[1]["session"]["type"] = json!("chat");
    put("2-b.jsonl", &sealed(&chat));
    put("3-c.jsonl", b"garbage\n");
    put("notes.txt", b"not a recording");
    std::fs::create_dir(dir.path().join("4-d.jsonl")).expect("a dir named like one");
    dir
}

fn by_name(path: &Path) -> Verdict {
    match path.file_name().and_then(|n| n.to_str()) {
        Some("1-a.jsonl") => Verdict::Identical { fuel: 77 },
        Some("2-b.jsonl") => Verdict::CallsDiverged {
            first: "call #3 host.call-tool(\"df\"): the recording has host.log there".into(),
            diff: "- memory is fine\n+ memory is <low> & \"odd\"\u{1b}[0m".into(),
        },
        _ => Verdict::CouldNotReplay {
            reason: "3-c.jsonl is not a catpaw recording".into(),
        },
    }
}

#[tokio::test]
async fn every_recording_in_the_dir_is_replayed_in_name_order_with_its_type() {
    let d = dir();
    let mut seen = Vec::new();
    let suite = run(d.path(), |p| {
        seen.push(p.clone());
        std::future::ready(by_name(&p))
    })
    .await
    .expect("runs");
    let rows: Vec<(&str, &str, &str)> = suite
        .rows
        .iter()
        .map(|r| {
            (
                r.recording.as_str(),
                r.session_type.as_str(),
                r.verdict.label(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("1-a.jsonl", "diagnose", "identical"),
            ("2-b.jsonl", "chat", "calls diverged"),
            ("3-c.jsonl", "?", "could not replay"),
        ]
    );
    assert_eq!(seen.len(), 3);
    assert_eq!(suite.exit_code(), 2);
    let table = suite.render();
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("RECORDING  TYPE      VERDICT")),
        "{table}"
    );
    assert_eq!(
        lines.next(),
        Some("1-a.jsonl  diagnose  identical         fuel 77")
    );
    assert!(table.contains(
        "2-b.jsonl  chat      calls diverged    call #3 host.call-tool(\"df\"): the recording"
    ));
    assert!(table.ends_with(&format!(
        "3 recordings in {}: 1 identical, 1 different, 1 could not replay\n",
        d.path().display()
    )));
}

#[tokio::test]
async fn the_exit_code_is_0_all_identical_1_some_differ_2_some_could_not_replay() {
    let d = dir();
    std::fs::remove_file(d.path().join("3-c.jsonl")).expect("rm");
    let all_same = run(d.path(), |_| ready(Verdict::Identical { fuel: 1 }))
        .await
        .expect("runs");
    assert_eq!(all_same.exit_code(), 0);
    let one_differs = run(d.path(), |p| ready(by_name(&p))).await.expect("runs");
    assert_eq!(one_differs.exit_code(), 1);
}

#[tokio::test]
async fn an_empty_or_missing_dir_is_an_error_not_a_pass() {
    let d = tempfile::tempdir().expect("tempdir");
    let err = run(d.path(), |_| ready(Verdict::Identical { fuel: 0 }))
        .await
        .expect_err("empty");
    assert!(
        format!("{err:#}").contains("no recordings (*.jsonl) there"),
        "{err:#}"
    );
    let err = run(&d.path().join("nope"), |_| {
        ready(Verdict::Identical { fuel: 0 })
    })
    .await
    .expect_err("gone");
    assert!(format!("{err:#}").contains("cannot list it"), "{err:#}");
}

#[test]
fn the_table_detail_is_one_line_of_at_most_100_bytes() {
    let v = Verdict::OutputDiffers {
        diff: format!("\n{}\nsecond line", "x".repeat(300)),
    };
    assert_eq!(detail(&v), "x".repeat(100));
}

#[tokio::test]
async fn junit_has_one_testcase_per_recording_failures_errors_and_escaped_text() {
    let d = dir();
    let suite = run(d.path(), |p| ready(by_name(&p))).await.expect("runs");
    let xml = crate::recorder::junit::render(&suite);
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite "),
        "{xml}"
    );
    assert!(
        xml.contains(" tests=\"3\" failures=\"1\" errors=\"1\" skipped=\"0\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 3);
    assert!(xml.contains("<testcase classname=\"replay.diagnose\" name=\"1-a.jsonl\" time=\""));
    assert!(xml.contains(
        "<failure type=\"calls diverged\" message=\"call #3 host.call-tool(&quot;df&quot;): the \
         recording has host.log there\">call #3 host.call-tool(&quot;df&quot;): the recording \
         has host.log there\n- memory is fine\n+ memory is &lt;low&gt; &amp; &quot;odd&quot;\\u{1b}[0m</failure>"
    ), "{xml}");
    assert!(
        xml.contains(
            "<error type=\"could not replay\" message=\"3-c.jsonl is not a catpaw recording\">"
        ),
        "{xml}"
    );
    assert!(xml.ends_with("</testsuite>\n"));
    // Nothing XML 1.0 cannot hold.
    assert!(
        !xml.chars()
            .any(|c| (c as u32) < 0x20 && !"\t\n\r".contains(c))
    );
}
