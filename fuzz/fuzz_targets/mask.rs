//! The masking of secrets (`src/tools/mask/`), which every tool output,
//! shell command, tool message sent to a model and audited argument goes
//! through: fuzzer-made secrets put in the places the masking table
//! (`src/tools/mask/tests.rs`) says are hidden, amid fuzzer-made text.
//!
//! Promises checked: the secret a table form was given never survives;
//! masking is idempotent (masked text masks to itself); the masked-and-cut
//! form is a prefix of the masked text within its cap; masking a JSON
//! value leaves valid JSON with the same keys.
#![no_main]

use arbitrary::Arbitrary;
use catpaw_agent::fuzz_entry;
use libfuzzer_sys::fuzz_target;

/// Where the table puts a secret (`§` stands for it), each form on a line
/// of its own.
const FORMS: &[&str] = &[
    "mysql -uroot -p§ db",
    "sshpass -p § ssh host",
    "redis-cli -a § ping",
    "curl -u user:§ https://h/",
    "app --db-pass=§ -v",
    "keytool -list -storepass §",
    "{\"password\" : \"§\"}",
    "//svc:password=§@nas/share",
    "https://u:§@h/x",
    "postgresql://app:§@db:5432/x",
    "DB_PASSWORD=§",
    "export API_TOKEN=§",
    "Authorization: Bearer §",
    "--token §",
    "db_password : §",
    "\"secret\": \"§\"",
    "client_secret=§&grant_type=x",
    "PGPASSWORD=§ psql",
];

#[derive(Arbitrary, Debug)]
struct Input {
    before: String,
    form: u8,
    secret: String,
    after: String,
    cap: u16,
    json: Option<String>,
}

fuzz_target!(|input: Input| {
    // Any text: idempotent; cut within the cap.
    for text in [&input.before, &input.after] {
        let once = fuzz_entry::mask(text);
        assert_eq!(
            fuzz_entry::mask(&once),
            once,
            "masking {text:?} twice differs"
        );
        let (cut, was_cut) = fuzz_entry::masked_cut(text, usize::from(input.cap));
        assert!(cut.len() <= usize::from(input.cap));
        assert_eq!(was_cut, cut.len() < once.len());
        assert!(once.starts_with(&cut));
    }
    // A table form with a secret in it, amid other lines.
    let secret: String = input
        .secret
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.+!~*".contains(*c))
        .take(40)
        .collect();
    if secret.len() >= 8
        && secret
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        let form = FORMS[usize::from(input.form) % FORMS.len()].replace('§', &secret);
        let text = format!("{}\n{form}\n{}", input.before, input.after);
        let masked = fuzz_entry::mask(&text);
        let around = format!("{}\n{}", input.before, input.after);
        if !around.contains(&secret) {
            assert!(
                !masked.contains(&secret),
                "secret survived in {text:?}: {masked:?}"
            );
        }
    }
    if let Some(json) = input.json {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&json) {
            let before = v.clone();
            fuzz_entry::mask_json(&mut v);
            let text = serde_json::to_string(&v).expect("masked JSON serializes");
            let back: serde_json::Value = serde_json::from_str(&text).expect("and parses");
            assert_eq!(back, v);
            if let (Some(a), Some(b)) = (before.as_object(), v.as_object()) {
                assert!(a.keys().eq(b.keys()));
            }
        }
    }
});
