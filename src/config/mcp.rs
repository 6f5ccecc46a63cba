//! `[ai.mcp]`: the MCP servers the agent starts and offers to runners
//! (catpaw's keys and meaning; see `crate::mcp_client`).
//!
//! ```toml
//! [ai.mcp]
//! enabled = true
//! default_identity = "instance=${IP}:9100"   # how servers know this host
//!
//! [[ai.mcp.servers]]
//! name = "prom"                              # tools: mcp__prom__<tool>
//! command = "/usr/local/bin/prometheus-mcp"
//! args = ["--read-only"]
//! env = { PROMETHEUS_URL = "http://127.0.0.1:9090", TOKEN = "${PROM_TOKEN}" }
//! identity = "host=${SHORT_HOSTNAME}"        # this server's own, else the default
//! tools_allow = ["query", "query_range"]    # empty or absent: every tool
//! ```
//!
//! A server's problems are reported at their place like every other, the
//! field named `[ai.mcp.servers.N] key` with N counted from 1. `${ENV}`
//! in an `env` value is expanded when the section is enabled (an unset
//! variable is then an error); `identity` is expanded when the server
//! starts.

use std::collections::BTreeSet;

use super::ConfigError;
use super::check::{Ctx, expand_env};
use super::raw::RawMcp;
use crate::mcp_client::{McpConfig, ServerSpec, check_server_name};

/// Parses `[ai.mcp]`.
pub(super) fn parse(cx: &Ctx<'_>, raw: RawMcp) -> Result<McpConfig, ConfigError> {
    let enabled = raw.enabled.unwrap_or(false);
    let mut names = BTreeSet::new();
    let mut servers = Vec::new();
    for (i, s) in raw.servers.into_iter().enumerate() {
        let field = |key: &str| format!("[ai.mcp.servers.{}] {key}", i + 1);
        let name = s.name.unwrap_or_default();
        check_server_name(&name).map_err(|m| cx.err(&field("name"), m))?;
        if !names.insert(name.clone()) {
            return Err(cx.err(
                &field("name"),
                format!("{name:?} names two servers (each needs its own name)"),
            ));
        }
        let command = s.command.unwrap_or_default();
        if command.trim().is_empty() {
            return Err(cx.err(
                &field("command"),
                format!("server {name:?} needs the executable to start"),
            ));
        }
        let mut env = std::collections::BTreeMap::new();
        for (k, v) in s.env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Err(cx.err(
                    &field("env"),
                    format!("{k:?} is not an environment variable name"),
                ));
            }
            let v = if enabled {
                expand_env(&v).map_err(|m| cx.err(&field("env"), format!("{k}: {m}")))?
            } else {
                v
            };
            env.insert(k, v);
        }
        if let Some(t) = s.tools_allow.iter().find(|t| t.trim().is_empty()) {
            return Err(cx.err(
                &field("tools_allow"),
                format!("{t:?} is not a tool name (leave the list out to offer every tool)"),
            ));
        }
        servers.push(ServerSpec {
            name,
            command,
            args: s.args,
            env,
            identity: s.identity.unwrap_or_default(),
            tools_allow: s.tools_allow,
        });
    }
    Ok(McpConfig {
        enabled,
        default_identity: raw.default_identity.unwrap_or_default(),
        servers,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn catpaws_mcp_section_loads_without_a_warning() {
        let c = parse(
            "[ai.mcp]\nenabled = true\ndefault_identity = \"instance=${IP}:9100\"\n\
             [[ai.mcp.servers]]\nname = \"prom\"\ncommand = \"/usr/bin/prom-mcp\"\n\
             args = [\"--ro\"]\nenv = { URL = \"http://127.0.0.1:9090\" }\n\
             identity = \"host=${SHORT_HOSTNAME}\"\ntools_allow = [\"query\"]\n\
             [[ai.mcp.servers]]\nname = \"cmdb\"\ncommand = \"cmdb-mcp\"\n",
        )
        .expect("loads");
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        assert!(c.mcp.enabled);
        assert_eq!(c.mcp.default_identity, "instance=${IP}:9100");
        let names: Vec<&str> = c.mcp.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prom", "cmdb"]);
        let prom = &c.mcp.servers[0];
        assert_eq!(prom.args, ["--ro"]);
        assert_eq!(prom.env["URL"], "http://127.0.0.1:9090");
        assert_eq!(prom.tools_allow, ["query"]);
        assert!(prom.allows("query") && !prom.allows("delete"));
        assert!(c.mcp.servers[1].allows("anything"));
    }

    #[test]
    fn a_bad_server_is_reported_at_its_place() {
        let e = parse(
            "[ai.mcp]\nenabled = true\n[[ai.mcp.servers]]\nname = \"ok\"\ncommand = \"/x\"\n\
             [[ai.mcp.servers]]\nname = \"a__b\"\ncommand = \"/y\"\n",
        )
        .expect_err("bad name");
        assert!(
            e.contains("config.toml:7:1 `[ai.mcp.servers.2] name`: \"a__b\""),
            "{e}"
        );
        let e = parse(
            "[ai.mcp]\n[[ai.mcp.servers]]\nname = \"p\"\ncommand = \"/x\"\n\
             [[ai.mcp.servers]]\nname = \"p\"\ncommand = \"/y\"\n",
        )
        .expect_err("twice");
        assert!(
            e.contains("config.toml:6:1 `[ai.mcp.servers.2] name`: \"p\" names two servers"),
            "{e}"
        );
        // A missing key is placed at its server's table.
        let e = parse("[ai.mcp]\n[[ai.mcp.servers]]\nname = \"p\"\n").expect_err("command");
        assert!(
            e.contains("config.toml:2:1 `[ai.mcp.servers.1] command`: server \"p\" needs"),
            "{e}"
        );
        let e = parse(
            "[ai.mcp]\nenabled = true\n[[ai.mcp.servers]]\nname = \"p\"\ncommand = \"/y\"\n\
             env = { T = \"${CATPAW_TEST_UNSET_VAR}\" }\n",
        )
        .expect_err("unset");
        assert!(
            e.contains("`[ai.mcp.servers.1] env`: T: environment variable"),
            "{e}"
        );
        let e = parse("[ai.mcp]\n[[ai.mcp.servers]]\nname = \"p\"\nwhat = 1\n").expect_err("key");
        assert!(e.contains("config.toml:4:1"), "{e}");
    }
}
