//! The built-in chat runner.
//!
//! One instance serves one conversation, so its state (turn count, earlier
//! messages, last topic) simply lives in the `Conversation` resource.
//! Questions are routed by keyword to the host's read-only tools; `run
//! <command>` goes through the host's shell import, which says no unless
//! the session was granted a shell.
//!
//! It exports `snapshot` too (`snapshot.rs`): between turns the host keeps
//! the conversation as bytes and lets the instance go.

wit_bindgen::generate!({ path: "../../wit", world: "snapshot-chat-runner" });

mod snapshot;

use std::cell::RefCell;

use catpaw::runner::host::{self, ShellError, Stage};
use catpaw_guest_common::{Finding, Plugin, judge, parse_tool_output, plugin, summarize};
use exports::catpaw::runner::chat::{Guest, GuestConversation};
use exports::catpaw::runner::describe::{Guest as Describe, RunnerInfo};

struct Runner;
export!(Runner);

impl Describe for Runner {
    fn describe() -> RunnerInfo {
        RunnerInfo {
            name: "catpaw-chat".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            plugins: Vec::new(),
            capabilities: vec!["tools".to_string(), "shell".to_string()],
        }
    }
}

impl Guest for Runner {
    type Conversation = Conversation;
}

/// A topic the chat can look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    Cpu,
    Memory,
    Disk,
    Processes,
    Network,
    Uptime,
    /// An inspect plugin named in the message (`conntrack`, `ntp`, …).
    Plugin(&'static Plugin),
}

impl Topic {
    fn tools(self, text: &str) -> Vec<(&'static str, &'static str)> {
        match self {
            Topic::Cpu => vec![("cpu", "{}")],
            Topic::Memory => vec![("memory", "{}")],
            Topic::Disk => vec![("disk_usage", "{}")],
            Topic::Processes => {
                if text.contains("mem") {
                    vec![("top_processes", r#"{"by":"memory","limit":5}"#)]
                } else {
                    vec![("top_processes", r#"{"by":"cpu","limit":5}"#)]
                }
            }
            Topic::Network => vec![("network_interfaces", "{}"), ("tcp_summary", "{}")],
            Topic::Uptime => vec![("uptime", "{}")],
            Topic::Plugin(p) => p.tools.to_vec(),
        }
    }

    /// Heading of a reply about this topic.
    fn title(self) -> &'static str {
        match self {
            Topic::Cpu => "CPU and load",
            Topic::Memory => "Memory",
            Topic::Disk => "Disk space",
            Topic::Processes => "Top processes",
            Topic::Network => "Network",
            Topic::Uptime => "Uptime",
            Topic::Plugin(p) => p.description,
        }
    }

    /// Routes a message by keyword. Processes first: "processes using
    /// memory" is about processes.
    fn of(text: &str) -> Option<Topic> {
        let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
        if has(&["process", "top"]) {
            Some(Topic::Processes)
        } else if has(&["load", "cpu"]) {
            Some(Topic::Cpu)
        } else if has(&["memory", "mem", "ram", "swap"]) {
            Some(Topic::Memory)
        } else if has(&["disk", "space", "storage", "inode"]) {
            Some(Topic::Disk)
        } else if has(&["network", "interface", "tcp", "connection", "port"]) {
            Some(Topic::Network)
        } else if has(&["uptime", "boot"]) {
            Some(Topic::Uptime)
        } else {
            text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .find_map(plugin)
                .map(Topic::Plugin)
        }
    }
}

/// What a conversation remembers (and `snapshot` saves).
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    allow_shell: bool,
    turns: u32,
    history: Vec<String>,
    last: Option<(Topic, String)>,
}

/// One conversation.
pub struct Conversation {
    state: RefCell<State>,
}

fn lookup(topic: Topic, text: &str) -> String {
    let mut out = format!("### {}\n\n", topic.title());
    for (tool, args) in topic.tools(text) {
        host::emit(&format!("looking up {tool}"), Stage::Thinking, None);
        match host::call_tool(tool, args).and_then(|raw| parse_tool_output(tool, &raw)) {
            Ok(v) => {
                out.push_str(&format!("**{}**\n\n", summarize(tool, &v)));
                let findings: Vec<Finding> = judge(tool, &v);
                for f in findings {
                    out.push_str(&format!("- {} {}\n", f.severity.label(), f.text));
                }
                out.push('\n');
            }
            Err(e) => out.push_str(&format!("Could not read {tool}: {e}\n\n")),
        }
    }
    out.trim_end().to_string()
}

fn help(allow_shell: bool) -> String {
    format!(
        "I can look at this host for you with read-only tools:\n\n\
         - **cpu** / **load**: CPU usage and load average\n\
         - **memory** / **swap**: memory and swap use\n\
         - **disk** / **space** / **inodes**: filesystem usage\n\
         - **processes** / **top**: top processes by CPU (say \"memory\" for by memory)\n\
         - **network** / **tcp** / **ports**: interfaces and TCP sockets\n\
         - **uptime**: uptime, kernel and OS\n\
         - any inspect plugin by name, e.g. **conntrack**, **zombie**, **ntp**, **diskio**, **sysctl**\n\
         - **history**: what you asked so far\n\
         - **again** / **more**: repeat the last lookup with fresh numbers\n\
         - **run <command>**: run a shell command ({})",
        if allow_shell {
            "allowed in this session"
        } else {
            "not allowed in this session"
        }
    )
}

fn run_command(command: &str) -> String {
    host::emit(
        &format!("asking the host to run `{command}`"),
        Stage::Thinking,
        None,
    );
    match host::request_shell(command, 10_000) {
        Ok(out) => {
            let mut r = format!(
                "`{command}` exited with {}\n\n```\n{}",
                out.exit_code, out.stdout
            );
            if !out.stderr.is_empty() {
                r.push_str(&format!("--- stderr ---\n{}", out.stderr));
            }
            r.push_str("```");
            if out.truncated {
                r.push_str("\n(output was truncated by the host)");
            }
            r
        }
        Err(ShellError::Denied(reason)) => {
            format!("Shell access is not allowed in this session: {reason}")
        }
        Err(ShellError::Timeout) => format!("`{command}` ran too long and was stopped."),
        Err(ShellError::Failed(reason)) => format!("`{command}` could not be run: {reason}"),
    }
}

impl GuestConversation for Conversation {
    fn create(allow_shell: bool) -> Result<exports::catpaw::runner::chat::Conversation, String> {
        Ok(exports::catpaw::runner::chat::Conversation::new(
            Conversation {
                state: RefCell::new(State {
                    allow_shell,
                    turns: 0,
                    history: Vec::new(),
                    last: None,
                }),
            },
        ))
    }

    fn handle_message(&self, input: String) -> Result<String, String> {
        let message = input.trim();
        if message.is_empty() {
            return Err(
                "empty message: ask about cpu, memory, disk, processes or network, or say help"
                    .into(),
            );
        }
        let mut st = self.state.borrow_mut();
        st.turns += 1;
        let lower = message.to_lowercase();
        let reply = if lower == "help" || lower == "?" {
            help(st.allow_shell)
        } else if lower == "history" {
            if st.history.is_empty() {
                format!(
                    "This is turn {}; you have not asked anything before.",
                    st.turns
                )
            } else {
                let lines: Vec<String> = st
                    .history
                    .iter()
                    .enumerate()
                    .map(|(i, m)| format!("{}. {m}", i + 1))
                    .collect();
                format!(
                    "This is turn {}. You asked:\n\n{}",
                    st.turns,
                    lines.join("\n")
                )
            }
        } else if lower == "again" || lower == "more" {
            match st.last.clone() {
                Some((topic, text)) => lookup(topic, &text),
                None => {
                    st.history.push(message.to_string());
                    return Err("nothing to repeat yet: ask about cpu, memory, disk, processes or network first".into());
                }
            }
        } else if let Some(cmd) = message
            .strip_prefix("run ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            run_command(cmd)
        } else if let Some(topic) = Topic::of(&lower) {
            st.last = Some((topic, lower.clone()));
            lookup(topic, &lower)
        } else {
            format!("I did not understand \"{message}\". Say **help** to see what I can look at.")
        };
        st.history.push(message.to_string());
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::Topic;

    #[test]
    fn routing_by_keyword() {
        assert_eq!(Topic::of("how is memory?"), Some(Topic::Memory));
        assert_eq!(Topic::of("what about disk space"), Some(Topic::Disk));
        assert_eq!(Topic::of("top processes by memory"), Some(Topic::Processes));
        assert_eq!(Topic::of("load average"), Some(Topic::Cpu));
        assert_eq!(Topic::of("open tcp ports"), Some(Topic::Network));
        assert_eq!(Topic::of("hello there"), None);
        assert_eq!(
            Topic::of("is conntrack full?"),
            catpaw_guest_common::plugin("conntrack").map(Topic::Plugin)
        );
        assert_eq!(
            Topic::of("check ntp please"),
            catpaw_guest_common::plugin("ntp").map(Topic::Plugin)
        );
        assert_eq!(
            Topic::Processes.tools("by memory")[0].1,
            r#"{"by":"memory","limit":5}"#
        );
    }
}
