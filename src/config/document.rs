//! The file as written: TOML parsed with the position of every key, so
//! that each problem can be reported at its `file:line:col` and all of
//! them in one run, and catpaw's own keys that mean nothing here taken out
//! before the strict schema (`raw.rs`) sees the file.
//!
//! Why here and not in serde: the schema refuses unknown keys, which stops
//! at the first one. [`Config::parse`](super::Config::parse) instead
//! reports a problem, removes the key it names from this document and
//! tries again, so a file with three mistakes gets three lines.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::raw::RawConfig;
use super::upstream;

/// The parsed file and its text.
pub(super) struct Document<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
}

/// Keys that belong at the top of the file, before any `[table]`: found
/// inside a table, the error says so.
const TOP_LEVEL: [&str; 3] = ["state_dir", "plugins", "labels"];

impl<'i> Document<'i> {
    /// Parses `text`; Err holds one line per syntax error (`:line:col:
    /// message`, to follow the file name), all of them.
    pub(super) fn parse(text: &'i str) -> Result<Document<'i>, Vec<String>> {
        let (root, errors) = DeTable::parse_recoverable(text);
        let doc = Document { text, root };
        if errors.is_empty() {
            return Ok(doc);
        }
        Err(errors
            .iter()
            .map(|e| format!("{}: {}", doc.loc(e.span()), e.message()))
            .collect())
    }

    /// Removes the catpaw keys that have no effect here; returns their
    /// paths and names (`notify`, `[global] interval`), in file order.
    pub(super) fn strip_upstream(&mut self) -> Vec<(Vec<String>, String)> {
        let mut found = Vec::new();
        strip(self.root.get_mut(), &mut Vec::new(), &mut found);
        found.sort_by_key(|(at, _, _)| *at);
        found
            .into_iter()
            .map(|(_, path, name)| (path, name))
            .collect()
    }

    /// The strict schema's view of what is left.
    pub(super) fn raw(&self) -> Result<RawConfig, toml::de::Error> {
        RawConfig::deserialize(toml::de::Deserializer::from(self.root.clone()))
    }

    /// `:line:col` of the start of `span` (1-based, counting characters),
    /// to follow the file name; empty without a span.
    pub(super) fn loc(&self, span: Option<Range<usize>>) -> String {
        span.map_or_else(String::new, |s| {
            let (line, col) = line_col(self.text, s.start);
            format!(":{line}:{col}")
        })
    }

    /// The key path (tables, then the key) whose key or value holds the
    /// start of `span`, innermost first found.
    pub(super) fn path_at(&self, span: &Range<usize>) -> Option<Vec<String>> {
        let mut path = Vec::new();
        find_span(self.root.get_ref(), span.start, &mut path).then_some(path)
    }

    /// The span of the key at `path`. A number after an array of tables
    /// (`ai`, `mcp`, `servers`, `2`) is its table counted from 1; a key
    /// missing from such a table is placed at the table.
    pub(super) fn key_span(&self, path: &[String]) -> Option<Range<usize>> {
        let (last, tables) = path.split_last()?;
        let mut table = self.root.get_ref();
        let mut element = None;
        let mut names = tables.iter();
        while let Some(name) = names.next() {
            let value = table.get(name.as_str())?;
            match value.get_ref() {
                DeValue::Array(items) => {
                    let n: usize = names.next()?.parse().ok()?;
                    let item = items.get(n.checked_sub(1)?)?;
                    table = item.get_ref().as_table()?;
                    element = Some(item.span());
                }
                other => {
                    table = other.as_table()?;
                    element = None;
                }
            }
        }
        table
            .get_key_value(last.as_str())
            .map(|(k, _)| k.span())
            .or(element)
    }

    /// Removes the key at `path`; false when there is none.
    pub(super) fn remove(&mut self, path: &[String]) -> bool {
        let Some((last, tables)) = path.split_last() else {
            return false;
        };
        let mut table = self.root.get_mut();
        for name in tables {
            let Some(DeValue::Table(t)) = table.get_mut(name.as_str()).map(Spanned::get_mut) else {
                return false;
            };
            table = t;
        }
        table.remove(last.as_str()).is_some()
    }
}

/// What an unknown key's error adds: where a top-level key belongs.
pub(super) fn hint(path: &[String]) -> Option<String> {
    let (key, tables) = path.split_last()?;
    (!tables.is_empty() && TOP_LEVEL.contains(&key.as_str())).then(|| {
        format!(
            "`{key}` is a top-level key, not one of [{}]: move it above the first [table] line",
            tables.join(".")
        )
    })
}

/// `path` as a person reads it: `[server] state_dir`, or `state_dir` at
/// the top.
pub(super) fn show_path(path: &[String]) -> String {
    match path.split_last() {
        Some((key, [])) => key.clone(),
        Some((key, tables)) => format!("[{}] {key}", tables.join(".")),
        None => String::new(),
    }
}

/// The key path a field name in an error means: `[sandbox.chat] fuel` →
/// `sandbox`, `chat`, `fuel`; `state_dir` → `state_dir`.
pub(super) fn field_path(field: &str) -> Vec<String> {
    match field.strip_prefix('[').and_then(|f| f.split_once("] ")) {
        Some((tables, key)) => tables
            .split('.')
            .chain(std::iter::once(key))
            .map(str::to_string)
            .collect(),
        None => vec![field.to_string()],
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit_once('\n')
        .map_or(before, |(_, l)| l)
        .chars()
        .count()
        + 1;
    (line, col)
}

fn find_span(table: &DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        let (ks, vs) = (k.span(), v.span());
        let here = ks.contains(&at) || vs.contains(&at) || ks.start == at;
        path.push(k.get_ref().to_string());
        // A `[table]`'s own span may cover only its header: look inside
        // every table, and prefer the innermost key that holds `at`.
        if let DeValue::Table(inner) = v.get_ref()
            && find_span(inner, at, path)
        {
            return true;
        }
        if here {
            return true;
        }
        path.pop();
    }
    false
}

/// A key found by [`strip`]: where it starts, its path, its name.
type Found = (usize, Vec<String>, String);

fn strip(table: &mut DeTable<'_>, path: &mut Vec<String>, found: &mut Vec<Found>) {
    let names: Vec<String> = table.keys().map(|k| k.get_ref().to_string()).collect();
    for name in names {
        path.push(name.clone());
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        if upstream::ignored(&refs) {
            if let Some((k, v)) = table.get_key_value(name.as_str()) {
                let shown = match v.get_ref() {
                    DeValue::Table(_) => format!("[{}]", path.join(".")),
                    _ => show_path(path),
                };
                found.push((k.span().start, path.clone(), shown));
            }
            table.remove(name.as_str());
        } else if let Some(DeValue::Table(inner)) =
            table.get_mut(name.as_str()).map(Spanned::get_mut)
        {
            strip(inner, path, found);
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;

    fn problems(text: &str) -> String {
        Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml"))
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn three_mistakes_are_three_lines_each_with_its_place() {
        let e = problems(
            "[server]\nenabled = true\naddress = \"127.0.0.1:1\"\nstate_dir = \"/x\"\n\
             [sandbox]\nmax_memory = \"lots\"\n[log]\nlevel = \"loud\"\n",
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines[0], "3 problems in /etc/catpaw/conf.d/config.toml:",
            "{e}"
        );
        assert!(
            lines[1].contains("config.toml:4:1 `[server] state_dir`: unknown field"),
            "{e}"
        );
        assert!(
            lines[1].contains("`state_dir` is a top-level key, not one of [server]"),
            "{e}"
        );
        assert!(
            lines[2].contains("config.toml:6:1 `[sandbox] max_memory`: \"lots\""),
            "{e}"
        );
        assert!(
            lines[3].contains("config.toml:8:1 `[log] level`: \"loud\""),
            "{e}"
        );
        assert_eq!(lines.len(), 4, "{e}");
    }

    #[test]
    fn a_bad_value_is_one_problem_not_a_second_for_its_removed_key() {
        // Removing the bad address to look for more problems must not
        // report it again as empty.
        let e = problems("[server]\nenabled = true\naddress = \"ws://127.0.0.1:9/ws\"\n");
        assert!(
            e.contains("config.toml:3:1 `[server] address`: has a path `/ws`"),
            "{e}"
        );
        assert!(!e.contains("is empty"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn every_syntax_error_is_reported_with_its_place() {
        let e = problems("[server\nx = 1\n[a]\nb =\n");
        assert!(e.starts_with("2 problems in"), "{e}");
        assert!(e.contains("config.toml:1:8: "), "{e}");
        assert!(e.contains("config.toml:4:"), "{e}");
    }

    #[test]
    fn a_wrong_type_is_named_at_its_value() {
        let e = problems("[sandbox]\nmax_concurrent_sessions = \"x\"\n");
        assert!(
            e.contains("config.toml:2:27 `[sandbox] max_concurrent_sessions`: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn catpaws_keys_without_effect_are_one_warning_naming_each() {
        let c = Config::parse(
            "[global]\ninterval = \"30s\"\n[log]\noutput = \"stdout\"\n\
             [notify.console]\nenabled = true\n\
             [ai.models.m]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"q\"\napi_key = \"k\"\n\
             input_price = 2.5\noutput_price = 10.0\n",
            Path::new("c.toml"),
        )
        .expect("loads");
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        for name in [
            "`[global] interval` (no collection plugins run here)",
            "`[log] output` (the log goes to stderr)",
            "`[notify]` (alerts go to the server, which notifies)",
            "`[ai.models.m] input_price`, `[ai.models.m] output_price` (costs are not shown here)",
        ] {
            assert!(w[0].contains(name), "{name} in {}", w[0]);
        }
    }

    #[test]
    fn a_directory_for_config_reads_its_config_toml() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(conf.join("config.toml"), "[log]\nlevel = \"debug\"\n").unwrap();
        let c = Config::load(Some(&conf)).expect("loads");
        assert_eq!(c.log.level, "debug");
        assert_eq!(
            c.source.as_deref(),
            Some(conf.join("config.toml").as_path())
        );
    }

    #[test]
    fn a_missing_file_names_the_os_error_once() {
        let e = Config::load(Some(Path::new("/nonexistent/catpaw.toml"))).unwrap_err();
        let shown = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(shown.matches("No such file").count(), 1, "{shown}");
    }
}
