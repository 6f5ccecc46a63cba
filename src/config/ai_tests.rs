use std::path::Path;
use std::time::Duration;

use super::super::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/catpaw/conf.d/config.toml"))
}

fn err(text: &str) -> String {
    parse(text).expect_err("an error").to_string()
}

/// catpaw's own example `[ai]` section (its `conf.d/config.toml`,
/// uncommented), keys this agent ignores included.
const CATPAW_AI: &str = r#"
[ai]
enabled = true
model_priority = ["deepseek", "gpt4o"]
max_rounds = 15
request_timeout = "90s"
max_retries = 2
retry_backoff = "2s"
max_concurrent_diagnoses = 3
queue_full_policy = "drop"
daily_token_limit = 500000
tool_timeout = "10s"
aggregate_window = "2s"
diagnose_retention = "168h"
diagnose_max_count = 1000
language = "zh"

[ai.models.gpt4o]
provider = "openai"
base_url = "https://api.openai.com/v1"
api_key = "sk-gpt4o-key-value"
model = "gpt-4o"
max_tokens = 4000
max_completion_tokens = 4000
context_window = 128000
input_price = 2.50
output_price = 10.00

[ai.models.deepseek]
provider = "openai"
base_url = "https://api.deepseek.com/v1/"
api_key = "sk-deepseek-key-value"
model = "deepseek-chat"
max_tokens = 8000
context_window = 64000
[ai.models.deepseek.extra_body]
enable_thinking = true
thinking_budget = 10000
"#;

#[test]
fn catpaws_own_ai_section_loads_unchanged() {
    let c = parse(CATPAW_AI).expect("ok");
    let ai = &c.ai;
    assert!(ai.enabled);
    assert_eq!(ai.model_priority, ["deepseek", "gpt4o"]);
    assert_eq!(ai.request_timeout, Duration::from_secs(90));
    assert_eq!(ai.max_retries, 2);
    assert_eq!(ai.retry_backoff, Duration::from_secs(2));
    assert_eq!(ai.daily_token_limit, 500_000);
    assert_eq!(ai.max_rounds, 15);
    assert_eq!(ai.tool_timeout, Duration::from_secs(10));
    assert_eq!(ai.language, "zh");
    let d = &ai.models["deepseek"];
    assert_eq!(
        d.base_url, "https://api.deepseek.com/v1",
        "trailing / dropped"
    );
    assert_eq!(d.api_key.expose(), "sk-deepseek-key-value");
    assert_eq!(d.max_tokens, 8000);
    assert_eq!(d.context_window, 64_000);
    assert_eq!(d.extra_body["enable_thinking"], true);
    assert_eq!(d.extra_body["thinking_budget"], 10_000);
    assert_eq!(ai.models["gpt4o"].max_completion_tokens, 4000);
    // The keys without effect here are named once, in one line.
    let ignored: Vec<&String> = c
        .deprecated
        .iter()
        .filter(|l| l.contains("max_concurrent_diagnoses"))
        .collect();
    assert_eq!(ignored.len(), 1, "{:?}", c.deprecated);
    assert!(ignored[0].contains("diagnose_retention"));
    // No key in a Debug of the config.
    let shown = format!("{c:?}");
    assert!(!shown.contains("sk-deepseek-key-value") && shown.contains("[redacted]"));
}

#[test]
fn defaults_follow_catpaw() {
    let c = parse(
        "[ai]\nenabled = true\nmodel_priority = [\"m\"]\n[ai.models.m]\n\
         base_url = \"http://127.0.0.1:11434/v1\"\napi_key = \"x\"\nmodel = \"q\"\n",
    )
    .expect("ok");
    let ai = &c.ai;
    assert_eq!(ai.request_timeout, Duration::from_secs(60));
    assert_eq!(ai.max_retries, 2);
    assert_eq!(ai.max_rounds, 15);
    assert_eq!(ai.language, "zh");
    assert_eq!(ai.daily_token_limit, 0);
    assert_eq!(ai.models["m"].max_tokens, 4000);
    assert_eq!(ai.models["m"].context_window, 128_000);
    assert!(!parse("").expect("ok").ai.enabled);
}

#[test]
fn the_gateway_is_derived_from_the_server() {
    let c = parse(
        "[server]\naddress = \"wss://catpaw.example.com:8443\"\n\
         agent_token = \"server-token-0123456789\"\n\
         [ai]\nenabled = true\n[ai.gateway]\nenabled = true\n",
    )
    .expect("ok");
    let g = &c.ai.gateway;
    assert_eq!(
        g.base_url,
        "https://catpaw.example.com:8443/api/v1/agent/llm"
    );
    assert_eq!(g.agent_token.expose(), "server-token-0123456789");
    assert_eq!(g.request_timeout, Duration::from_secs(30));
    assert_eq!(g.max_retries, 1);
    assert!(!g.fallback_to_direct);
    let c = parse(
        "[server]\naddress = \"10.0.0.1:8080\"\n[ai]\nenabled = true\n[ai.gateway]\n\
         enabled = true\nbase_url = \"http://gw:9000/llm/\"\nagent_token = \"own-token-abc\"\n",
    )
    .expect("ok");
    assert_eq!(c.ai.gateway.base_url, "http://gw:9000/llm");
    assert_eq!(c.ai.gateway.agent_token.expose(), "own-token-abc");
}

#[test]
fn errors_name_the_field() {
    let model = "[ai.models.m]\nbase_url = \"http://h/v1\"\napi_key = \"k\"\nmodel = \"x\"\n";
    let e = err(&format!(
        "[ai]\nenabled = true\nmodel_priority = [\"nope\"]\n{model}"
    ));
    assert!(
        e.contains("`[ai] model_priority`")
            && e.contains("\"nope\"")
            && e.contains("configured: m"),
        "{e}"
    );
    let e = err("[ai]\nenabled = true\n");
    assert!(e.contains("`[ai] model_priority`: is required"), "{e}");
    let e = err("[ai]\n[ai.models.b]\nprovider = \"bedrock\"\nmodel = \"c\"\n");
    assert!(
        e.contains("`[ai.models.b] provider`") && e.contains("not supported"),
        "{e}"
    );
    let e = err("[ai]\n[ai.models.m]\nbase_url = \"http://h/v1\"\nmodel = \"x\"\n");
    assert!(e.contains("`[ai.models.m] api_key`: is required"), "{e}");
    let e = err("[ai]\n[ai.models.m]\nbase_url = \"h/v1\"\napi_key = \"k\"\nmodel = \"x\"\n");
    assert!(
        e.contains("`[ai.models.m] base_url`: must start with http"),
        "{e}"
    );
    let e = err("[ai]\n[ai.models.m]\nbase_url = \"http://h/v1\"\n\
         api_key = \"${CATPAW_TEST_UNSET_VARIABLE_7F3A}\"\nmodel = \"x\"\n");
    assert!(
        e.contains("`[ai.models.m] api_key`")
            && e.contains("CATPAW_TEST_UNSET_VARIABLE_7F3A is not set"),
        "{e}"
    );
    let e = err("[ai]\n[ai.gateway]\nenabled = true\nbase_url = \"http://g\"\nmax_retries = 3\n");
    assert!(
        e.contains("`[ai.gateway] max_retries`: 3 is outside 0..2"),
        "{e}"
    );
    let e = err("[ai]\n[ai.gateway]\nenabled = true\n");
    assert!(
        e.contains("`[ai.gateway] base_url`") && e.contains("[server] address"),
        "{e}"
    );
    let e = err("[ai]\nrequest_timeout = \"0s\"\n");
    assert!(
        e.contains("`[ai] request_timeout`: must be greater than 0"),
        "{e}"
    );
    let e = err("[ai]\nmax_rounds = 0\n");
    assert!(e.contains("`[ai] max_rounds`: 0 is outside 1..100"), "{e}");
    let e = err("[ai]\nmodels_priority = []\n");
    assert!(e.contains("models_priority"), "{e}");
}

#[test]
fn a_key_sent_in_clear_text_is_warned_about() {
    let model = |url: &str| {
        format!(
            "[ai]\nenabled = true\nmodel_priority = [\"m\"]\n[ai.models.m]\nbase_url = \"{url}\"\n\
             api_key = \"k-123456\"\nmodel = \"x\"\n"
        )
    };
    let w = parse(&model("http://llm.example.com:8000/v1"))
        .expect("ok")
        .warnings();
    assert!(
        w.iter().any(|l| l.contains(
            "[ai.models.m] api_key is sent in clear text to http://llm.example.com:8000/v1"
        )),
        "{w:?}"
    );
    for local in [
        "http://127.0.0.1:11434/v1",
        "http://localhost:11434/v1",
        "https://api.example.com/v1",
    ] {
        let w = parse(&model(local)).expect("ok").warnings();
        assert!(
            !w.iter().any(|l| l.contains("clear text")),
            "{local}: {w:?}"
        );
    }
}
