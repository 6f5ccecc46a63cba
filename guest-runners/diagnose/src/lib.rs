//! The built-in inspect/diagnose runner.
//!
//! It gathers evidence only through the host's read-only tools, streams what
//! it is doing (`thinking`, `tool-call`, `tool-result`) as it goes, and
//! returns a Markdown report: findings with the numbers behind them, and the
//! thresholds it judged by. Runner authors: this file is a fair template for
//! a runner of your own against `wit/runner.wit`.

wit_bindgen::generate!({ path: "../../wit", world: "diagnose-runner" });

use catpaw::runner::host::{self, Stage};
use catpaw_guest_common::{
    ALIASES, Finding, PLUGINS, Severity, judge, overall, parse_tool_output, plugin_names,
    summarize, thresholds_for, tools_for_alert, tools_for_plugin,
};
use exports::catpaw::runner::describe::{Guest as Describe, PluginInfo, RunnerInfo};
use exports::catpaw::runner::diagnose::{Guest, Request};

struct Runner;
export!(Runner);

/// Calls one tool, streaming the call and a summary of its result, and
/// returns the findings it supports. A failed tool is a finding, not a
/// failure of the run.
fn gather(tool: &str, args: &str) -> Vec<Finding> {
    let meta = format!("{{\"tool\":\"{tool}\"}}");
    host::emit(
        &format!("calling {tool} {args}"),
        Stage::ToolCall,
        Some(&meta),
    );
    let raw = match host::call_tool(tool, args) {
        Ok(raw) => raw,
        Err(e) => {
            host::emit(
                &format!("{tool} failed: {e}"),
                Stage::ToolResult,
                Some(&meta),
            );
            // The kernel log often needs privileges the agent lacks: not
            // being able to read it says nothing about the host.
            if tool == "kernel_log" {
                return vec![Finding::not_checked(tool, &e, None)];
            }
            return vec![Finding::new(
                Severity::Warning,
                tool,
                format!("could not read {tool}: {e}"),
            )];
        }
    };
    match parse_tool_output(tool, &raw) {
        Ok(v) => {
            host::emit(&summarize(tool, &v), Stage::ToolResult, Some(&meta));
            match follow_ups(tool, &v) {
                // A listing is not a check: read what it lists instead.
                Some(calls) => calls.iter().flat_map(|args| gather(tool, args)).collect(),
                None => judge(tool, &v),
            }
        }
        Err(e) => {
            host::emit(&e, Stage::ToolResult, Some(&meta));
            vec![Finding::new(Severity::Warning, tool, e)]
        }
    }
}

/// Log files a `log_tail` listing leads to, at most this many per report.
const MAX_LOG_FILES: usize = 5;

/// The calls that check what a listing result lists: `log_tail` without a
/// path names the allow-listed files; each is then read. None for any
/// other result.
fn follow_ups(tool: &str, v: &serde_json::Value) -> Option<Vec<String>> {
    let files = v.get("allowed_files")?.as_array()?;
    if tool != "log_tail" {
        return None;
    }
    Some(
        files
            .iter()
            .filter_map(|f| f.get("path").and_then(|p| p.as_str()))
            .take(MAX_LOG_FILES)
            .map(|p| serde_json::json!({ "path": p }).to_string())
            .collect(),
    )
}

/// The alert text of a diagnose session, if any.
fn alert_text(params_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(params_json).ok()?;
    v.get("descriptions")
        .and_then(|d| d.as_str())
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

fn render(req: &Request, alert: Option<&str>, findings: &[Finding]) -> String {
    let info = host::session();
    let kind = if req.mode == "alert" {
        "Diagnosis"
    } else {
        "Inspection"
    };
    let mut out = format!("# {kind}: {} on {}\n\n", req.plugin, req.target);
    if let Some(a) = alert {
        out.push_str("## Alert\n\n");
        for line in a.lines() {
            out.push_str(&format!("> {line}\n"));
        }
        out.push('\n');
    }
    out.push_str(&overall(findings));
    out.push_str("\n\n## Findings\n\n");
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in &sorted {
        out.push_str(&format!(
            "- **{}** {}: {}\n",
            f.severity.label(),
            f.area,
            f.text
        ));
    }
    if req.mode == "alert" {
        out.push_str("\n## Likely cause\n\n");
        match sorted.first() {
            Some(f) if f.severity > Severity::Ok => out.push_str(&format!(
                "The worst finding is {} ({}): {}. Start there.\n",
                f.area,
                f.severity.label(),
                f.text
            )),
            _ => out.push_str(
                "Nothing on this host crosses a threshold right now; the alert may have \
                 cleared, or its cause lies outside what these tools see.\n",
            ),
        }
    }
    out.push_str("\n## Thresholds\n\n");
    let areas: Vec<&str> = findings.iter().map(|f| f.area.as_str()).collect();
    let rules = thresholds_for(&areas);
    if rules.is_empty() {
        out.push_str("- none apply: these findings are informational\n");
    }
    for (area, rule) in rules {
        out.push_str(&format!("- {area}: {rule}\n"));
    }
    out.push_str(&format!(
        "\n---\nsession {} for {}, read-only tools, run inside the catpaw sandbox\n",
        info.session_id, info.user_name
    ));
    out
}

impl Guest for Runner {
    fn run(req: Request) -> Result<String, String> {
        let Some(mut tools) = tools_for_plugin(&req.plugin) else {
            let aliases: Vec<String> = ALIASES.iter().map(|(a, p)| format!("{a} = {p}")).collect();
            return Err(format!(
                "unknown plugin \"{}\" (known: {}; aliases: {})",
                req.plugin,
                plugin_names().join(", "),
                aliases.join(", ")
            ));
        };
        let alert = if req.mode == "alert" {
            alert_text(&req.params_json)
        } else {
            None
        };
        if let Some(a) = &alert {
            for t in tools_for_alert(a) {
                if !tools.contains(&t) {
                    tools.push(t);
                }
            }
        }
        let names: Vec<&str> = tools.iter().map(|(n, _)| *n).collect();
        host::emit(
            &format!(
                "Looking at {} on {}: {}",
                req.plugin,
                req.target,
                names.join(", ")
            ),
            Stage::Thinking,
            None,
        );
        let mut findings = Vec::new();
        for (tool, args) in &tools {
            findings.extend(gather(tool, args));
        }
        Ok(render(&req, alert.as_deref(), &findings))
    }
}

impl Describe for Runner {
    fn describe() -> RunnerInfo {
        RunnerInfo {
            name: "catpaw-diagnose".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: PLUGINS
                .iter()
                .map(|p| PluginInfo {
                    name: p.name.to_string(),
                    description: p.description.to_string(),
                })
                .collect(),
            capabilities: vec!["tools".to_string()],
        }
    }
}
