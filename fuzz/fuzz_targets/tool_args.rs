//! A guest's `call-tool` arguments (`args_json`) for any built-in tool,
//! through the dispatcher's check against the tool's schema and the typed
//! readers the tools use (`src/tools/args.rs`).
//!
//! Promises checked: arguments are accepted exactly when they are blank
//! or a JSON object whose every key the tool's schema declares; a string
//! read is within its byte limit and holds no control character; a list
//! is within its item limit; an integer is within its range; a choice is
//! one of the choices; a refusal is one line that names the argument.
#![no_main]

use arbitrary::Arbitrary;
use catpaw_agent::fuzz_entry;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    tool: u8,
    args: String,
    max: u16,
    items: u8,
    min: u64,
    span: u64,
}

fuzz_target!(|input: Input| {
    let tools = fuzz_entry::tools();
    let (name, keys) = &tools[usize::from(input.tool) % tools.len()];
    let parsed = fuzz_entry::tool_args(name, &input.args);
    let expected_ok = input.args.trim().is_empty()
        || matches!(serde_json::from_str::<Value>(&input.args),
            Ok(Value::Object(m)) if m.keys().all(|k| keys.contains(k)));
    let args = match parsed {
        Ok(a) => {
            assert!(expected_ok, "{name} accepted {:?}", input.args);
            a
        }
        Err(e) => {
            assert!(!expected_ok, "{name} refused {:?}: {e}", input.args);
            assert!(e.starts_with(&format!("tool {name}: ")), "{e}");
            return;
        }
    };
    let max = usize::from(input.max);
    let items = usize::from(input.items);
    let (min, hi) = (input.min, input.min.saturating_add(input.span));
    for key in keys.iter().map(String::as_str).chain(["absent"]) {
        let one_line = |e: &str| assert!(!e.contains('\n') && e.contains(key), "{e}");
        match args.string(key, max) {
            Ok(Some(s)) => assert!(s.len() <= max && !s.chars().any(char::is_control), "{s:?}"),
            Ok(None) => {}
            Err(e) => one_line(&e),
        }
        match args.strings(key, items, max) {
            Ok(list) => {
                assert!(list.len() <= items);
                for s in list {
                    assert!(s.len() <= max && !s.chars().any(char::is_control), "{s:?}");
                }
            }
            Err(e) => one_line(&e),
        }
        match args.int(key, min, hi, min) {
            Ok(n) => assert!((min..=hi).contains(&n)),
            Err(e) => one_line(&e),
        }
        match args.choice(key, &["a", "b"], "a") {
            Ok(c) => assert!(c == "a" || c == "b"),
            Err(e) => one_line(&e),
        }
        if let Err(e) = args.flag(key, false) {
            one_line(&e);
        }
    }
});
