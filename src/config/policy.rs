//! `[sandbox.policy.<name>]`: the operator's policy for one runner, which
//! narrows what the runner declared and what `[sandbox]` allows, never
//! widens it (which runners a name matches, and what several matches do:
//! `crate::sandbox::Policies`).
//!
//! ```toml
//! [sandbox.policy.catpaw-diagnose]        # describe name, role or sha256:<hex>
//! tools = ["cpu", "memory", "disk_usage"] # only these (names from the catalog)
//! shell = false                           # never a shell
//! llm = false                             # never the model
//! mcp = ["prom"]                          # only this [ai.mcp] server's tools (false: none)
//! fuel = 200000000                        # any budget, at most [sandbox]'s
//! ```
//!
//! `shell = true` / `llm = true` leave the runner's own declaration as it
//! is: a policy grants nothing. Every problem is a config error naming the
//! field, reported at its `file:line:col` like every other.

use std::collections::BTreeMap;

use super::ConfigError;
use super::budgets::{policy_budgets, sandbox_section};
use super::check::Ctx;
use super::raw::RawBudgets;
use super::units::format_size;
use crate::sandbox::{
    Budgets, Capabilities, McpSet, Policies, RunnerPolicy, Slot, ToolSet, budget_value,
    catalog_names, check_tool,
};

impl Ctx<'_> {
    /// Every `[sandbox.policy.<name>]` of the file; `sandbox` is the
    /// `[sandbox]` section's budgets, the ceiling of every policy's.
    pub(super) fn policies(
        &self,
        sandbox: &RawBudgets,
        raw: &BTreeMap<String, RawBudgets>,
    ) -> Result<Policies, ConfigError> {
        let base = sandbox_section(self.path, sandbox)?;
        let mut out = Policies::default();
        for (name, table) in raw {
            let policy = self.policy(name, table, &base)?;
            out.by_name.insert(name.clone(), policy);
        }
        Ok(out)
    }

    fn policy(
        &self,
        name: &str,
        table: &RawBudgets,
        base: &Budgets,
    ) -> Result<RunnerPolicy, ConfigError> {
        let section = format!("sandbox.policy.{name}");
        let field = |key: &str| format!("[{section}] {key}");
        check_name(name).map_err(|m| self.err(&format!("[sandbox.policy] {name}"), m))?;
        let mut caps = Capabilities::all();
        let mut rest = table.clone();
        if let Some(v) = rest.remove("tools") {
            caps.tools = tools(&v).map_err(|m| self.err(&field("tools"), m))?;
        }
        if let Some(v) = rest.remove("mcp") {
            caps.mcp = mcp(&v).map_err(|m| self.err(&field("mcp"), m))?;
        }
        for key in ["shell", "llm"] {
            let Some(v) = rest.remove(key) else { continue };
            let allow = v
                .as_bool()
                .ok_or_else(|| self.err(&field(key), format!("{v} is not true or false")))?;
            if key == "shell" {
                caps.shell = allow;
            } else {
                caps.llm = allow;
            }
        }
        let budgets = policy_budgets(self.path, &section, &rest, base)?;
        for (key, lowered) in &budgets {
            if budget_value(lowered, key) > budget_value(base, key) {
                return Err(self.err(
                    &field(key.name),
                    format!(
                        "{} is above the [sandbox] {} of {} (a policy can only lower a \
                         budget; raise [sandbox] {} first)",
                        shown(lowered, key),
                        key.name,
                        shown(base, key),
                        key.name
                    ),
                ));
            }
        }
        Ok(RunnerPolicy {
            capabilities: caps,
            budgets,
        })
    }
}

/// A policy's name: any describe name or role, or `sha256:` and 64
/// lowercase hex digits.
fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(
            "a policy needs a name: a runner's describe name, a role (diagnose, \
                    chat, ai), mcp (the tools `catpaw-agent mcp` offers) or sha256:<hex>"
                .into(),
        );
    }
    if let Some(hex) = name.strip_prefix("sha256:") {
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(format!(
                "{name:?}: after `sha256:` come the 64 lowercase hex digits of the runner's \
                 SHA-256 (`sha256sum runner.wasm`, or `status` / `check-runner`)"
            ));
        }
    }
    Ok(())
}

/// `tools = ["cpu", ...]`: the tools the policy leaves.
fn tools(v: &toml::Value) -> Result<ToolSet, String> {
    let Some(list) = v.as_array() else {
        return Err(format!(
            "{v} is not a list of tool names (e.g. [\"cpu\", \"memory\"])"
        ));
    };
    let known = catalog_names();
    let mut names = std::collections::BTreeSet::new();
    for item in list {
        let Some(name) = item.as_str() else {
            return Err(format!("{item} is not a tool name"));
        };
        check_tool(name, &known)?;
        names.insert(name.to_string());
    }
    Ok(ToolSet::Only(names))
}

/// `mcp = true | false | ["server", …]`: every `[ai.mcp]` server (what
/// the runner declared), none, or just these.
fn mcp(v: &toml::Value) -> Result<McpSet, String> {
    if let Some(all) = v.as_bool() {
        return Ok(if all {
            McpSet::All
        } else {
            McpSet::Only(Default::default())
        });
    }
    let list = v
        .as_array()
        .ok_or_else(|| format!("{v} is not true, false or a list of [ai.mcp] server names"))?;
    let mut names = std::collections::BTreeSet::new();
    for item in list {
        let name = item
            .as_str()
            .ok_or_else(|| format!("{item} is not a server name"))?;
        crate::mcp_client::check_server_name(name)?;
        names.insert(name.to_string());
    }
    Ok(McpSet::Only(names))
}

/// A budget's value as the file would write it.
fn shown(b: &Budgets, key: &crate::sandbox::BudgetKey) -> String {
    let mut b = b.clone();
    match key.slot(&mut b) {
        Slot::Count(n) => n.to_string(),
        Slot::Bytes(n, _) => format_size(*n),
        Slot::Time(d) => format!("{d:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_policy_narrows_mcp_servers() {
        let cfg =
            parse("[sandbox.policy.ai]\nmcp = [\"prom\"]\n[sandbox.policy.chat]\nmcp = false\n")
                .expect("parses");
        let ai = &cfg.sandbox.policies.by_name["ai"].capabilities;
        assert!(ai.allows_mcp("prom") && !ai.allows_mcp("cmdb"));
        let chat = &cfg.sandbox.policies.by_name["chat"].capabilities;
        assert!(!chat.allows_mcp("prom"));
        let shown = cfg.effective();
        assert!(shown.contains("mcp = [\"prom\"]\n"), "{shown}");
        assert!(shown.contains("mcp = false\n"), "{shown}");
        assert_eq!(parse(&shown).expect("reads back").effective(), shown);
        let e = parse("[sandbox.policy.ai]\nmcp = \"prom\"\n").expect_err("not a list");
        assert!(
            e.contains("`[sandbox.policy.ai] mcp`: \"prom\" is not true, false or a list"),
            "{e}"
        );
    }

    #[test]
    fn policies_parse_show_and_read_back() {
        let cfg = parse(
            "[sandbox]\nfuel = 900000000\nrequire_declared_capabilities = true\n\
             [sandbox.policy.catpaw-diagnose]\ntools = [\"cpu\", \"memory\"]\nshell = false\n\
             fuel = 5000000\ntimeout = \"30s\"\n\
             [sandbox.policy.chat]\nllm = false\n",
        )
        .expect("parses");
        let sb = &cfg.sandbox;
        assert!(sb.require_declared_capabilities);
        let p = &sb.policies.by_name["catpaw-diagnose"];
        assert_eq!(p.capabilities.to_string(), "tools:cpu,memory llm mcp");
        let lowered: Vec<&str> = p.budgets.iter().map(|(k, _)| k.name).collect();
        assert_eq!(lowered, ["fuel", "timeout"]);
        assert_eq!(
            sb.policies.by_name["chat"].capabilities.to_string(),
            "tools shell mcp"
        );
        // `config show` prints them, and what it prints reads back the same.
        let shown = cfg.effective();
        assert!(
            shown.contains(
                "[sandbox.policy.catpaw-diagnose]\ntools = [\"cpu\", \"memory\"]\nshell = false\n\
                 llm = true\nfuel = 5000000\ntimeout = \"30s\"\n"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("require_declared_capabilities = true"),
            "{shown}"
        );
        let again = parse(&shown).expect("the shown config parses");
        assert_eq!(again.effective(), shown);
        // Off by default, and no policy.
        let d = parse("").expect("empty");
        assert!(!d.sandbox.require_declared_capabilities);
        assert!(d.sandbox.policies.by_name.is_empty());
    }

    #[test]
    fn policy_errors_name_the_field_at_its_place() {
        let at = "/etc/catpaw/conf.d/config.toml";
        for (text, says) in [
            (
                "[sandbox.policy.x]\ntools = [\"cpu\", \"rm_rf\"]\n",
                "config.toml:2:1 `[sandbox.policy.x] tools`: no tool is called \"rm_rf\"",
            ),
            (
                "[sandbox]\nfuel = 1000\n[sandbox.policy.x]\nfuel = 2000\n",
                "config.toml:4:1 `[sandbox.policy.x] fuel`: 2000 is above the [sandbox] fuel \
                 of 1000 (a policy can only lower a budget",
            ),
            (
                "[sandbox.policy.x]\nmax_memory = \"1GiB\"\n",
                "`[sandbox.policy.x] max_memory`: 1GiB is above the [sandbox] max_memory of \
                 64MiB",
            ),
            (
                "[sandbox.policy.x]\nshell = \"no\"\n",
                "`[sandbox.policy.x] shell`: \"no\" is not true or false",
            ),
            (
                "[sandbox.policy.x]\nnetwork = true\n",
                "`[sandbox.policy.x] network`: unknown key (a policy holds tools, shell, llm",
            ),
            (
                "[sandbox.policy.\"sha256:abc\"]\nllm = false\n",
                "after `sha256:` come the 64 lowercase hex digits",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(at) && e.contains(says), "{text}: {e}");
        }
        let hex = "a".repeat(64);
        let ok = parse(&format!("[sandbox.policy.\"sha256:{hex}\"]\nllm = false\n"));
        assert!(ok.is_ok(), "{ok:?}");
    }
}
