//! catpaw's own config keys that mean nothing in this agent. A catpaw
//! user's file (catpaw v0.24's shipped `conf.d/config.toml` included) must
//! load as it is: these keys are taken out before the strict schema sees
//! the file, and named in one warning line, never an error. README lists
//! them under "Coming from catpaw".

/// (key path, `*` matching any one name; why it has no effect here).
const IGNORED: [(&[&str], &str); 11] = [
    (&["global", "interval"], "no collection plugins run here"),
    (&["log", "output"], "the log goes to stderr"),
    (&["log", "fields"], "the log goes to stderr"),
    (&["notify"], "alerts go to the server, which notifies"),
    (
        &["ai", "max_concurrent_diagnoses"],
        "sessions are limited by [sandbox] max_concurrent_sessions",
    ),
    (
        &["ai", "queue_full_policy"],
        "sessions are limited by [sandbox] max_concurrent_sessions",
    ),
    (
        &["ai", "aggregate_window"],
        "alerts are aggregated by the server",
    ),
    (
        &["ai", "diagnose_retention"],
        "diagnosis records are kept by the server",
    ),
    (
        &["ai", "diagnose_max_count"],
        "diagnosis records are kept by the server",
    ),
    (
        &["ai", "models", "*", "input_price"],
        "costs are not shown here",
    ),
    (
        &["ai", "models", "*", "output_price"],
        "costs are not shown here",
    ),
];

fn rule(path: &[&str]) -> Option<&'static str> {
    IGNORED.iter().find_map(|(pattern, why)| {
        (pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, k)| *p == "*" || p == k))
            .then_some(*why)
    })
}

/// Whether the key at `path` is one of catpaw's without effect here.
pub(super) fn ignored(path: &[&str]) -> bool {
    rule(path).is_some()
}

/// The one warning line for the keys found (`names` as `show_path` writes
/// them, with their paths), grouped by reason; None when there are none.
pub(super) fn warning(file: &str, found: &[(Vec<String>, String)]) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (path, name) in found {
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let why = rule(&refs).unwrap_or("no effect here");
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => names.push(name),
            None => groups.push((why, vec![name])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(why, names)| format!("`{}` ({why})", names.join("`, `")))
        .collect();
    Some(format!(
        "config {file}: catpaw keys without effect in this agent, ignored: {}",
        parts.join("; ")
    ))
}
