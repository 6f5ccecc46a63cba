//! The operator's per-runner policy, `[sandbox.policy.<name>]`: what a
//! runner's sessions may reach and use, narrower than the runner declared
//! and than `[sandbox]` allows, never wider.
//!
//! Which policies apply to a runner: each whose `<name>` is the runner's
//! `describe` name, the role it serves (`diagnose`, `chat`, or `ai` for
//! the built-in AI runner in front of both), or `sha256:` and the hex
//! SHA-256 of its bytes. The tools `catpaw-agent mcp` offers an MCP client
//! directly have no runner: the policy named `mcp` applies to them. When several apply, each narrows in turn: the
//! runner gets what all of them allow (capabilities intersected, each
//! budget the lowest). The config funnel (`crate::config`) builds these
//! and refuses a budget above `[sandbox]`'s; setup applies them to every
//! runner it loads, at start and on each reload.

use std::collections::BTreeMap;

use super::LoadedRunner;
use super::budgets::{BudgetKey, Budgets, Slot};
use super::capabilities::Capabilities;

/// One `[sandbox.policy.<name>]`.
#[derive(Debug, Clone)]
pub struct RunnerPolicy {
    /// What it leaves of a runner's capabilities (`tools = [...]`,
    /// `shell = false`, `llm = false`; unset keys leave everything).
    pub capabilities: Capabilities,
    /// The budgets it lowers, by config key, with their values.
    pub budgets: Vec<(&'static BudgetKey, Budgets)>,
}

/// Every `[sandbox.policy.<name>]`, by name.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// By the `<name>` of their table.
    pub by_name: BTreeMap<String, RunnerPolicy>,
}

/// A runner as policies see it, in one of its roles.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// What its `describe` says its name is (none for 0.1.0).
    pub name: Option<&'a str>,
    /// `diagnose`, `chat` or `ai` (`mcp`: the MCP server's own tools).
    pub role: &'a str,
    /// Hex SHA-256 of its bytes.
    pub sha256: &'a str,
}

impl Policies {
    /// The names of the policies that apply to `who`, in name order.
    pub fn matching(&self, who: Subject<'_>) -> Vec<&str> {
        let hash = format!("sha256:{}", who.sha256);
        self.by_name
            .keys()
            .filter(|k| Some(k.as_str()) == who.name || *k == who.role || **k == hash)
            .map(String::as_str)
            .collect()
    }

    /// `runner` serving `role` with `budgets`, narrowed by every policy
    /// that applies to it.
    pub fn apply(
        &self,
        runner: &LoadedRunner,
        role: &str,
        budgets: &Budgets,
    ) -> (LoadedRunner, Budgets) {
        let who = Subject {
            name: runner.description().map(|d| d.name.as_str()),
            role,
            sha256: runner.sha256(),
        };
        let (caps, out) = self.narrow(who, budgets);
        (runner.narrowed(&caps), out)
    }

    /// What every policy that applies to `who` leaves of all capabilities
    /// and of `budgets`: for a runner ([`Policies::apply`]), or for the
    /// tools `catpaw-agent mcp` offers directly (role `mcp`, no runner).
    pub fn narrow(&self, who: Subject<'_>, budgets: &Budgets) -> (Capabilities, Budgets) {
        let mut caps = Capabilities::all();
        let mut out = budgets.clone();
        for name in self.matching(who) {
            let p = &self.by_name[name];
            caps = caps.intersect(&p.capabilities);
            for (key, from) in &p.budgets {
                lower(&mut out, key, from);
            }
        }
        (caps, out)
    }
}

/// A budget's value as one number, to compare two of the same key.
pub(crate) fn value(b: &Budgets, key: &BudgetKey) -> u128 {
    let mut b = b.clone();
    match key.slot(&mut b) {
        Slot::Count(n) | Slot::Bytes(n, _) => u128::from(*n),
        Slot::Time(d) => d.as_nanos(),
    }
}

/// Sets budget `key` of `b` to `from`'s when that is lower.
fn lower(b: &mut Budgets, key: &BudgetKey, from: &Budgets) {
    let mut from = from.clone();
    match (key.slot(b), key.slot(&mut from)) {
        (Slot::Count(n), Slot::Count(m)) | (Slot::Bytes(n, _), Slot::Bytes(m, _)) => {
            *n = (*n).min(*m);
        }
        (Slot::Time(d), Slot::Time(e)) => *d = (*d).min(*e),
        // One key, one slot kind: the arms above are the only pairs.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sandbox::capabilities::{McpSet, ToolSet};

    /// A budget key and how a test policy sets it.
    type Lowered = (&'static str, fn(&mut Budgets));

    fn policy(caps: Capabilities, budgets: Vec<Lowered>) -> RunnerPolicy {
        RunnerPolicy {
            capabilities: caps,
            budgets: budgets
                .into_iter()
                .map(|(k, f)| {
                    let mut b = Budgets::default();
                    f(&mut b);
                    (Budgets::key(k).expect("a budget"), b)
                })
                .collect(),
        }
    }

    #[test]
    fn a_policy_applies_by_describe_name_role_or_hash() {
        let mut p = Policies::default();
        for name in ["catpaw-diagnose", "diagnose", "chat", "sha256:abc", "other"] {
            p.by_name
                .insert(name.into(), policy(Capabilities::all(), Vec::new()));
        }
        let who = Subject {
            name: Some("catpaw-diagnose"),
            role: "diagnose",
            sha256: "abc",
        };
        assert_eq!(
            p.matching(who),
            ["catpaw-diagnose", "diagnose", "sha256:abc"]
        );
        let legacy = Subject {
            name: None,
            role: "chat",
            sha256: "def",
        };
        assert_eq!(p.matching(legacy), ["chat"]);
    }

    #[test]
    fn several_policies_narrow_to_what_all_allow_and_the_lowest_budget() {
        let tools = |names: &[&str]| Capabilities {
            tools: ToolSet::Only(names.iter().map(|s| s.to_string()).collect()),
            shell: true,
            llm: true,
            mcp: McpSet::All,
        };
        let a = policy(
            tools(&["cpu", "memory"]),
            vec![
                ("fuel", |b| b.fuel = 5_000),
                ("timeout", |b| b.timeout = Duration::from_secs(9)),
            ],
        );
        let b = policy(
            Capabilities {
                shell: false,
                ..tools(&["memory", "uptime"])
            },
            vec![("fuel", |b| b.fuel = 7_000)],
        );
        let mut caps = Capabilities::all();
        let mut budgets = Budgets::default();
        for p in [&a, &b] {
            caps = caps.intersect(&p.capabilities);
            for (key, from) in &p.budgets {
                lower(&mut budgets, key, from);
            }
        }
        assert_eq!(caps.to_string(), "tools:memory llm mcp");
        assert_eq!(budgets.fuel, 5_000);
        assert_eq!(budgets.timeout, Duration::from_secs(9));
        assert_eq!(budgets.max_memory, Budgets::default().max_memory);
        // Lowering never raises.
        let mut small = Budgets {
            fuel: 10,
            ..Budgets::default()
        };
        lower(
            &mut small,
            Budgets::key("fuel").expect("key"),
            &Budgets::default(),
        );
        assert_eq!(small.fuel, 10);
    }
}
