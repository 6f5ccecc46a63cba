//! Tool arguments: a JSON object checked against the tool's schema, so a
//! misspelt argument is an error rather than silently ignored.

use serde_json::{Map, Value};

/// Parsed arguments of one call.
pub(crate) struct Args {
    map: Map<String, Value>,
}

impl Args {
    /// Parses `{}`-style text (empty text means no arguments) and refuses
    /// keys that are not in `allowed`.
    pub(crate) fn parse(tool: &str, text: &str, allowed: &[String]) -> Result<Args, String> {
        let map = if text.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(format!(
                        "tool {tool}: arguments must be a JSON object, e.g. {{}}"
                    ));
                }
            }
        };
        let unknown: Vec<String> = map
            .keys()
            .filter(|k| !allowed.contains(k))
            .map(|k| format!("{k:?}"))
            .collect();
        if !unknown.is_empty() {
            let accepted = if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            };
            return Err(format!(
                "tool {tool}: unknown argument{} {} (accepted: {accepted})",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", "),
            ));
        }
        Ok(Args { map })
    }

    /// Integer `key` in `min..=max`, or `default` when absent.
    pub(crate) fn int(&self, key: &str, min: u64, max: u64, default: u64) -> Result<u64, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "\"{key}\" must be an integer between {min} and {max}, not {v}"
                )),
            },
        }
    }

    /// String `key` from `choices`, or `default` when absent.
    pub(crate) fn choice(
        &self,
        key: &str,
        choices: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::String(s)) => choices.iter().find(|c| **c == s).copied().ok_or_else(|| {
                format!("\"{key}\" must be one of {}, not {s:?}", choices.join(", "))
            }),
            Some(v) => Err(format!(
                "\"{key}\" must be a string (one of {}), not {v}",
                choices.join(", ")
            )),
        }
    }
}
