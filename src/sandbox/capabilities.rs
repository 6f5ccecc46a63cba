//! What a runner may reach on the host, and the one decision of what a
//! session of it is granted.
//!
//! Least privilege by construction: a runner's `describe` lists the host
//! capabilities it uses, and that list is a manifest the host enforces,
//! not a comment. It is parsed once, when the runner loads, into
//! [`Capabilities`]; the operator's `[sandbox.policy.<name>]` can only
//! narrow it ([`Capabilities::intersect`]); each import (tools, shell,
//! `llm`) asks the result before it acts. The words:
//!
//! - `tools`: every tool of the catalog;
//! - `tools:cpu,memory`: just these tools (repeated `tools:` entries add
//!   up; `tools` beside them means every tool);
//! - `shell`: `request-shell` (still only when the operator and the session
//!   allow a shell);
//! - `llm`: the `llm` import;
//! - `mcp`: the tools of every `[ai.mcp]` server (named
//!   `mcp__<server>__<tool>`); `mcp:prom,cmdb`: just these servers'.
//!   `tools` alone grants none of them: a server's tools reach what the
//!   operator gave that server, not only this host.
//!
//! An unknown word or tool name is a load error naming it: a runner that
//! asks for something the host does not know is not guessed at. A runner
//! that declares nothing (0.1.0 has no `describe`; a 0.2.0 one may list
//! none) keeps everything the operator allows, with one warning at load,
//! unless `[sandbox] require_declared_capabilities = true` refuses it.

use std::collections::BTreeSet;

/// The tools part of a set of capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolSet {
    /// Every tool in the catalog.
    All,
    /// Just these (possibly none).
    Only(BTreeSet<String>),
}

/// The MCP part of a set of capabilities: which `[ai.mcp]` servers' tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpSet {
    /// Every configured server.
    All,
    /// Just these servers (possibly none).
    Only(BTreeSet<String>),
}

impl McpSet {
    fn none() -> McpSet {
        McpSet::Only(BTreeSet::new())
    }
}

/// A set of host capabilities: what a runner declared, what a policy
/// leaves, or what a session is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Which tools `list-tools` shows and `call-tool` runs.
    pub tools: ToolSet,
    /// Whether `request-shell` may be answered (the operator and the
    /// session must still allow a shell).
    pub shell: bool,
    /// Whether the `llm` import may be used.
    pub llm: bool,
    /// Which `[ai.mcp]` servers' tools `list-tools` shows and `call-tool`
    /// runs.
    pub mcp: McpSet,
}

/// The capability words, for messages.
const WORDS: &str = "`tools`, `tools:NAME,NAME`, `shell`, `llm`, `mcp`, `mcp:SERVER,SERVER`";

impl Capabilities {
    /// Everything: what a runner that declares nothing keeps.
    pub fn all() -> Capabilities {
        Capabilities {
            tools: ToolSet::All,
            shell: true,
            llm: true,
            mcp: McpSet::All,
        }
    }

    /// Nothing at all.
    pub fn none() -> Capabilities {
        Capabilities {
            tools: ToolSet::Only(BTreeSet::new()),
            shell: false,
            llm: false,
            mcp: McpSet::none(),
        }
    }

    /// Parses a `describe` capability list. `Ok(None)`: the list is empty
    /// (nothing declared). Tool names are checked against `known` (the
    /// catalog). Err names the entry and what is accepted.
    pub fn parse(entries: &[String], known: &[&str]) -> Result<Option<Capabilities>, String> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut caps = Capabilities::none();
        let mut named = BTreeSet::new();
        let mut all_tools = false;
        let mut servers = BTreeSet::new();
        let mut all_servers = false;
        for entry in entries {
            let entry = entry.trim();
            match entry {
                "tools" => all_tools = true,
                "shell" => caps.shell = true,
                "llm" => caps.llm = true,
                "mcp" => all_servers = true,
                _ if entry.starts_with("mcp:") => {
                    for name in entry["mcp:".len()..].split(',').map(str::trim) {
                        crate::mcp_client::check_server_name(name)
                            .map_err(|e| format!("capability {entry:?}: {e}"))?;
                        servers.insert(name.to_string());
                    }
                }
                _ => {
                    let Some(list) = entry.strip_prefix("tools:") else {
                        return Err(format!(
                            "capability {entry:?} is not one the host knows (use {WORDS})"
                        ));
                    };
                    for name in list.split(',').map(str::trim) {
                        check_tool(name, known)
                            .map_err(|e| format!("capability {entry:?}: {e}"))?;
                        named.insert(name.to_string());
                    }
                }
            }
        }
        caps.tools = if all_tools {
            ToolSet::All
        } else {
            ToolSet::Only(named)
        };
        caps.mcp = if all_servers {
            McpSet::All
        } else {
            McpSet::Only(servers)
        };
        Ok(Some(caps))
    }

    /// What both allow: the grant of a runner under a policy, or of two
    /// policies that both match it.
    pub fn intersect(&self, other: &Capabilities) -> Capabilities {
        let tools = match (&self.tools, &other.tools) {
            (ToolSet::All, t) | (t, ToolSet::All) => t.clone(),
            (ToolSet::Only(a), ToolSet::Only(b)) => ToolSet::Only(a & b),
        };
        let mcp = match (&self.mcp, &other.mcp) {
            (McpSet::All, m) | (m, McpSet::All) => m.clone(),
            (McpSet::Only(a), McpSet::Only(b)) => McpSet::Only(a & b),
        };
        Capabilities {
            tools,
            shell: self.shell && other.shell,
            llm: self.llm && other.llm,
            mcp,
        }
    }

    /// Whether the tools of `[ai.mcp]` server `server` may be called.
    pub fn allows_mcp(&self, server: &str) -> bool {
        match &self.mcp {
            McpSet::All => true,
            McpSet::Only(names) => names.contains(server),
        }
    }

    /// Whether tool `name` may be called.
    pub fn allows_tool(&self, name: &str) -> bool {
        match &self.tools {
            ToolSet::All => true,
            ToolSet::Only(names) => names.contains(name),
        }
    }

    /// The set as `describe` words, e.g. `["tools:cpu,memory", "llm"]`;
    /// empty when nothing is in it.
    pub fn words(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.tools {
            ToolSet::All => out.push("tools".to_string()),
            ToolSet::Only(names) if names.is_empty() => {}
            ToolSet::Only(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                out.push(format!("tools:{}", names.join(",")));
            }
        }
        if self.shell {
            out.push("shell".into());
        }
        if self.llm {
            out.push("llm".into());
        }
        match &self.mcp {
            McpSet::All => out.push("mcp".to_string()),
            McpSet::Only(names) if names.is_empty() => {}
            McpSet::Only(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                out.push(format!("mcp:{}", names.join(",")));
            }
        }
        out
    }
}

impl std::fmt::Display for Capabilities {
    /// The words separated by spaces, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words = self.words();
        if words.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&words.join(" "))
        }
    }
}

/// Checks that `name` is a tool of `known`.
pub(crate) fn check_tool(name: &str, known: &[&str]) -> Result<(), String> {
    if known.contains(&name) {
        return Ok(());
    }
    Err(format!(
        "no tool is called {name:?} (the tools are {})",
        known.join(", ")
    ))
}

/// The names of every tool in the catalog.
pub(crate) fn catalog_names() -> Vec<&'static str> {
    crate::tools::catalog().iter().map(|t| t.name).collect()
}

/// What one session is granted, and why not more: the runner's declaration
/// (`None`: it declared nothing) and the grant (declaration ∩ policy).
/// Every import asks it before acting; a refusal's text names what is
/// missing and who can add it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// What the runner declared; `None`: nothing (it keeps what the
    /// operator allows).
    pub declared: Option<Capabilities>,
    /// What its sessions may use: the declaration narrowed by every
    /// policy that matches the runner.
    pub granted: Capabilities,
}

impl Grant {
    /// A runner that declared `declared`, before any policy.
    pub fn new(declared: Option<Capabilities>) -> Grant {
        let granted = declared.clone().unwrap_or_else(Capabilities::all);
        Grant { declared, granted }
    }

    /// The grant under a policy that allows `policy`.
    pub fn narrowed(&self, policy: &Capabilities) -> Grant {
        Grant {
            declared: self.declared.clone(),
            granted: self.granted.intersect(policy),
        }
    }

    /// Err: why tool `name` is refused.
    pub(crate) fn tool(&self, name: &str) -> Result<(), String> {
        if self.granted.allows_tool(name) {
            return Ok(());
        }
        let fix = format!("add `tools` or `tools:{name}`");
        Err(self.refusal(&format!("tool {name}"), |d| d.allows_tool(name), &fix))
    }

    /// Err: why the tools of `[ai.mcp]` server `server` are refused
    /// (`name`: the tool asked for).
    pub(crate) fn mcp(&self, name: &str, server: &str) -> Result<(), String> {
        if self.granted.allows_mcp(server) {
            return Ok(());
        }
        let fix = format!("add `mcp` or `mcp:{server}` (`tools` does not cover MCP tools)");
        Err(self.refusal(&format!("tool {name}"), |d| d.allows_mcp(server), &fix))
    }

    /// Err: why `request-shell` is refused.
    pub(crate) fn shell(&self) -> Result<(), String> {
        if self.granted.shell {
            return Ok(());
        }
        Err(self.refusal("shell", |d| d.shell, "add `shell`"))
    }

    /// Err: why the `llm` import is refused.
    pub(crate) fn llm(&self) -> Result<(), String> {
        if self.granted.llm {
            return Ok(());
        }
        Err(self.refusal("llm", |d| d.llm, "add `llm`"))
    }

    /// The refusal of `what`: the runner's own declaration lacks it, or the
    /// operator's policy took it away.
    fn refusal(&self, what: &str, declared: impl Fn(&Capabilities) -> bool, fix: &str) -> String {
        match &self.declared {
            Some(d) if !declared(d) => format!(
                "{what}: this runner did not declare it (describe capabilities: {d}); {fix}"
            ),
            _ => format!(
                "{what}: the operator's policy for this runner does not grant it \
                 ([sandbox.policy.<name>] in the agent's config)"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
