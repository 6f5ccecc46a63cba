//! Tool arguments: a JSON object checked against the tool's schema, so a
//! misspelt argument is an error rather than silently ignored.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::targets::ToolConfig;

/// Parsed arguments of one call, and the operator's allow-lists it runs
/// under.
pub(crate) struct Args {
    map: Map<String, Value>,
    config: Arc<ToolConfig>,
}

impl Args {
    /// No arguments.
    #[cfg(test)]
    pub(crate) fn empty() -> Args {
        Args {
            map: Map::new(),
            config: Arc::default(),
        }
    }

    /// Arguments parsed from `text` for a tool accepting `allowed` (tests).
    #[cfg(test)]
    pub(crate) fn of(text: &str, allowed: &[&str]) -> Args {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Args::parse("test", text, &allowed).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same arguments under `config`.
    pub(crate) fn with_config(mut self, config: Arc<ToolConfig>) -> Args {
        self.config = config;
        self
    }

    /// The operator's allow-lists.
    pub(crate) fn config(&self) -> &ToolConfig {
        &self.config
    }

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
        Ok(Args {
            map,
            config: Arc::default(),
        })
    }

    /// String `key` of at most `max` bytes without control characters,
    /// or None when absent.
    pub(crate) fn string(&self, key: &str, max: usize) -> Result<Option<String>, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= max && !s.chars().any(char::is_control) => {
                Ok(Some(s.clone()))
            }
            Some(Value::String(s)) if s.len() > max => Err(format!(
                "\"{key}\" must be at most {max} bytes, not {}",
                s.len()
            )),
            Some(Value::String(_)) => Err(format!("\"{key}\" must not contain control characters")),
            Some(v) => Err(format!("\"{key}\" must be a string, not {v}")),
        }
    }

    /// A list of strings `key` (a single string counts as one), each as
    /// [`Args::string`] checks it, at most `max_items`; empty when absent.
    pub(crate) fn strings(
        &self,
        key: &str,
        max_items: usize,
        max: usize,
    ) -> Result<Vec<String>, String> {
        let items = match self.map.get(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a.clone(),
            Some(v @ Value::String(_)) => vec![v.clone()],
            Some(v) => return Err(format!("\"{key}\" must be a list of strings, not {v}")),
        };
        if items.len() > max_items {
            return Err(format!(
                "\"{key}\" may hold at most {max_items} items, not {}",
                items.len()
            ));
        }
        items
            .into_iter()
            .map(|v| match v {
                Value::String(s) if s.len() <= max && !s.chars().any(char::is_control) => Ok(s),
                other => Err(format!(
                    "\"{key}\" items must be strings of at most {max} bytes without control \
                     characters, not {other}"
                )),
            })
            .collect()
    }

    /// Boolean `key`, or `default` when absent.
    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!("\"{key}\" must be true or false, not {v}")),
        }
    }

    /// Optional integer `key` in `min..=max`.
    pub(crate) fn opt_int(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.int(key, min, max, min).map(Some),
        }
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

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(text: &str) -> Result<Args, String> {
        Args::parse("t", text, &["limit".into(), "by".into()])
    }

    #[test]
    fn empty_text_and_empty_object_mean_no_arguments() {
        for text in ["", "  ", "{}", "null"] {
            let a = parse(text);
            if text == "null" {
                assert!(a.is_err(), "null is not an object");
                continue;
            }
            let a = a.unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(a.int("limit", 1, 50, 10), Ok(10));
            assert_eq!(a.choice("by", &["cpu", "memory"], "cpu"), Ok("cpu"));
        }
    }

    #[test]
    fn values_are_checked_and_errors_name_the_argument_and_type() {
        let a = parse(r#"{"limit":7,"by":"memory"}"#).expect("args");
        assert_eq!(a.int("limit", 1, 50, 10), Ok(7));
        assert_eq!(a.choice("by", &["cpu", "memory"], "cpu"), Ok("memory"));
        for bad in ["0", "51", "-1", "2.5", "\"5\"", "true", "[]"] {
            let a = parse(&format!(r#"{{"limit":{bad}}}"#)).expect("args");
            assert_eq!(
                a.int("limit", 1, 50, 10),
                Err(format!(
                    "\"limit\" must be an integer between 1 and 50, not {bad}"
                ))
            );
        }
        let a = parse(r#"{"by":"disk"}"#).expect("args");
        assert_eq!(
            a.choice("by", &["cpu", "memory"], "cpu"),
            Err("\"by\" must be one of cpu, memory, not \"disk\"".into())
        );
        let a = parse(r#"{"by":3}"#).expect("args");
        let e = a.choice("by", &["cpu", "memory"], "cpu").unwrap_err();
        assert!(e.starts_with("\"by\" must be a string"), "{e}");
    }

    #[test]
    fn unknown_keys_and_non_objects_are_refused() {
        let e = parse(r#"{"limit":1,"bogus":2}"#).err().unwrap_or_default();
        assert_eq!(
            e,
            "tool t: unknown argument \"bogus\" (accepted: limit, by)"
        );
        let e = Args::parse("cpu", r#"{"a":1,"b":2}"#, &[])
            .err()
            .unwrap_or_default();
        assert_eq!(
            e,
            "tool cpu: unknown arguments \"a\", \"b\" (accepted: none)"
        );
        for text in ["[1]", "{not json", "3", "\"x\""] {
            let e = parse(text).err().unwrap_or_default();
            assert!(e.contains("must be a JSON object"), "{text}: {e}");
        }
    }
}
