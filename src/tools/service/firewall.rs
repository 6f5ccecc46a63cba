//! firewall: rule counts, not rules: how many per table and chain, how
//! many drop or reject, and each chain's policy. nftables first (`nft -j`),
//! else `iptables-save`; both need root (CAP_NET_ADMIN).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::cmd::{Keep, on_path, run as run_cmd};
use crate::tools::logs::unavailable;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Counts of one chain.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Chain {
    pub(crate) rules: u64,
    pub(crate) drop_or_reject: u64,
    pub(crate) policy: Option<String>,
}

/// `table → chain → counts`.
pub(crate) type Tables = BTreeMap<String, BTreeMap<String, Chain>>;

/// `iptables-save` text.
pub(crate) fn parse_iptables_save(text: &str) -> Tables {
    let mut t = Tables::new();
    let mut table = String::new();
    for l in text.lines() {
        if let Some(name) = l.strip_prefix('*') {
            table = name.trim().to_string();
        } else if let Some(rest) = l.strip_prefix(':') {
            let mut f = rest.split_whitespace();
            let (Some(chain), Some(policy)) = (f.next(), f.next()) else {
                continue;
            };
            let c = t
                .entry(table.clone())
                .or_default()
                .entry(chain.to_string())
                .or_default();
            c.policy = (policy != "-").then(|| policy.to_string());
        } else if let Some(rest) = l.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or("").to_string();
            let c = t
                .entry(table.clone())
                .or_default()
                .entry(chain)
                .or_default();
            c.rules += 1;
            if rest.contains("-j DROP") || rest.contains("-j REJECT") {
                c.drop_or_reject += 1;
            }
        }
    }
    t
}

/// `nft -j list ruleset` JSON; tables keyed `family name`.
pub(crate) fn parse_nft_json(text: &str) -> Result<Tables, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("nft gave invalid JSON: {e}"))?;
    let mut t = Tables::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let key = |o: &Value| {
            format!(
                "{} {}",
                o["family"].as_str().unwrap_or(""),
                o["table"].as_str().unwrap_or("")
            )
        };
        if let Some(c) = item.get("chain") {
            let e = t
                .entry(key(c))
                .or_default()
                .entry(c["name"].as_str().unwrap_or("").to_string())
                .or_default();
            e.policy = c["policy"].as_str().map(str::to_string);
        } else if let Some(r) = item.get("rule") {
            let e = t
                .entry(key(r))
                .or_default()
                .entry(r["chain"].as_str().unwrap_or("").to_string())
                .or_default();
            e.rules += 1;
            let expr = r["expr"].to_string();
            if expr.contains("{\"drop\":") || expr.contains("{\"reject\":") {
                e.drop_or_reject += 1;
            }
        }
    }
    Ok(t)
}

fn answer(backend: &str, tables: Tables) -> Value {
    let rules: u64 = tables
        .values()
        .flat_map(|c| c.values())
        .map(|c| c.rules)
        .sum();
    let drops: u64 = tables
        .values()
        .flat_map(|c| c.values())
        .map(|c| c.drop_or_reject)
        .sum();
    json!({ "available": true, "backend": backend, "rules": rules, "drop_or_reject": drops, "tables": tables })
}

pub(crate) fn run(_args: &Args) -> Result<Value, String> {
    let mut errors = Vec::new();
    if on_path("nft") {
        match run_cmd("nft", &["-j", "list", "ruleset"], TIMEOUT, Keep::Head)
            .and_then(|t| parse_nft_json(&t))
        {
            Ok(t) if !t.is_empty() => return Ok(answer("nftables", t)),
            Ok(_) => errors.push("nft: empty ruleset".to_string()),
            Err(e) => errors.push(e),
        }
    }
    for bin in ["iptables-save", "iptables-legacy-save"] {
        if on_path(bin) {
            match run_cmd(bin, &[], TIMEOUT, Keep::Head) {
                Ok(t) => return Ok(answer(bin, parse_iptables_save(&t))),
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        return Ok(unavailable("neither nft nor iptables-save is on PATH"));
    }
    Ok(unavailable(format!(
        "{} (reading firewall rules needs root)",
        errors.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_save_counts() {
        let t = parse_iptables_save(include_str!("../fixtures/iptables_save"));
        let f = &t["filter"];
        assert_eq!(f["INPUT"].policy.as_deref(), Some("DROP"));
        assert_eq!(f["INPUT"].rules, 3);
        assert_eq!(f["INPUT"].drop_or_reject, 1);
        assert_eq!(f["DOCKER"].policy, None);
        assert_eq!(t["nat"]["POSTROUTING"].rules, 1);
    }

    #[test]
    fn nft_json_counts() {
        let t = parse_nft_json(include_str!("../fixtures/nft.json")).expect("nft");
        let f = &t["inet filter"];
        assert_eq!(f["input"].policy.as_deref(), Some("drop"));
        assert_eq!(f["input"].rules, 2);
        assert_eq!(f["input"].drop_or_reject, 1);
        assert!(parse_nft_json("nope").is_err());
    }

    #[test]
    fn live_firewall() {
        let v = run(&Args::empty()).expect("firewall");
        assert!(v["available"].is_boolean(), "{v}");
    }
}
