//! `catpaw-agent mcp` as an MCP client meets it: rmcp's own client spawns
//! the built binary over stdio, or talks streamable HTTP to it on
//! loopback; raw HTTP requests try the gates (token, `Host`, `Origin`).
//! What is checked: the tools offered are the catalog the `mcp` policy
//! allows, with their schemas; calls answer; a secret on a command line
//! reaches the client masked; the audit trail names the client before and
//! after each call.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use common::process::AgentHome;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientInfo, Implementation, JsonObject,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// The client as `initialize` names it; the audit must name it so.
const CLIENT: &str = "catpaw-mcp-test";
const CLIENT_VERSION: &str = "1.2.3";

/// The tools the test config's `[sandbox.policy.mcp]` leaves.
const POLICY: &str = "[sandbox.policy.mcp]\ntools = [\"cpu\", \"memory\", \"process_count\"]\n";

fn client_info() -> ClientInfo {
    ClientInfo::new(
        ClientCapabilities::default(),
        Implementation::new(CLIENT, CLIENT_VERSION),
    )
}

type Client = RunningService<RoleClient, ClientInfo>;

/// An rmcp client that started `catpaw-agent mcp` in `home`.
async fn stdio_client(home: &AgentHome) -> Client {
    let mut cmd = home.command();
    cmd.arg("mcp");
    let (transport, _) = TokioChildProcess::builder(tokio::process::Command::from(cmd))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn catpaw-agent mcp");
    client_info().serve(transport).await.expect("initialize")
}

/// `args` as the JSON object a call carries.
fn object(args: Value) -> JsonObject {
    match args {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Calls `name` with `args`: (is_error, the text of its first content).
async fn call(client: &Client, name: &'static str, args: Value) -> (bool, String) {
    let result = client
        .call_tool(CallToolRequestParams::new(name).with_arguments(object(args)))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let v = serde_json::to_value(&result).expect("result is JSON");
    let text = v["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (result.is_error == Some(true), text)
}

/// The trail's `kind=mcp` records.
fn mcp_records(home: &AgentHome) -> Vec<Value> {
    home.audit()
        .into_iter()
        .filter(|r| r["kind"] == "mcp")
        .collect()
}

/// The `started` record of a call of `name` and its outcome record.
fn act<'a>(records: &'a [Value], name: &str) -> (&'a Value, &'a Value) {
    let started = records
        .iter()
        .find(|r| r["name"] == name && r["event"] == "started")
        .unwrap_or_else(|| panic!("no started record for {name}: {records:?}"));
    let outcome = records
        .iter()
        .find(|r| r["event"] == "outcome" && r["act"] == started["seq"])
        .unwrap_or_else(|| panic!("no outcome for {name}: {records:?}"));
    (started, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_stdio_lists_the_allowed_tools_with_schemas_and_calls_them() {
    let home = AgentHome::new(POLICY);
    let client = stdio_client(&home).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(info.server_info.name, "catpaw-agent");

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        ["cpu", "memory", "process_count", "inspect", "diagnose"],
        "the policy's catalog, then the sessions"
    );
    for t in &tools {
        assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        assert!(t.input_schema["properties"].is_object(), "{}", t.name);
    }
    let pc = tools
        .iter()
        .find(|t| t.name == "process_count")
        .expect("pc");
    assert!(
        pc.input_schema["properties"]["cmdline_contains"].is_object(),
        "the catalog's schema is the input schema: {:?}",
        pc.input_schema
    );
    let inspect = tools.iter().find(|t| t.name == "inspect").expect("inspect");
    assert_eq!(inspect.input_schema["required"], json!(["plugin"]));

    let (failed, text) = call(&client, "memory", json!({})).await;
    assert!(!failed, "{text}");
    let mem: Value = serde_json::from_str(&text).expect("memory answers JSON");
    assert!(mem["total_bytes"].as_u64().unwrap_or(0) > 0, "{mem}");

    let (failed, report) = call(&client, "inspect", json!({"plugin": "cpu"})).await;
    assert!(!failed, "{report}");
    assert!(!report.trim().is_empty(), "inspect returned no report");

    // Not on the list: refused, as if it did not exist.
    let refused = client
        .call_tool(CallToolRequestParams::new("disk_usage"))
        .await
        .expect_err("disk_usage is not allowed by the policy");
    assert!(
        refused.to_string().contains("not offered here"),
        "{refused}"
    );
    // A session that asks for a shell: there is no such argument.
    let refused = client
        .call_tool(
            CallToolRequestParams::new("inspect")
                .with_arguments(object(json!({"plugin": "cpu", "allow_shell": true}))),
        )
        .await
        .expect_err("allow_shell is not an argument");
    assert!(
        refused
            .to_string()
            .contains("unknown argument \"allow_shell\""),
        "{refused}"
    );

    client.cancel().await.expect("close");
    let records = mcp_records(&home);
    let who = format!("{CLIENT} {CLIENT_VERSION}");
    assert!(records.iter().all(|r| r["user"] == who), "{records:?}");
    let (started, outcome) = act(&records, "memory");
    assert!(started["seq"].as_u64() < outcome["seq"].as_u64());
    assert_eq!(outcome["outcome"], "ok", "{outcome}");
    let (started, outcome) = act(&records, "inspect");
    assert_eq!(outcome["outcome"], "ok", "{outcome}");
    // The session's own tool calls happen between the two: the record
    // was on disk before the session ran.
    let trail = home.audit();
    let inner: Vec<&Value> = trail
        .iter()
        .filter(|r| r["kind"] == "tool" && r["user"] == format!("mcp:{who}"))
        .collect();
    assert!(
        !inner.is_empty(),
        "the inspect session called no tool: {trail:?}"
    );
    for r in inner {
        assert!(
            r["seq"].as_u64() > started["seq"].as_u64()
                && r["seq"].as_u64() < outcome["seq"].as_u64(),
            "{r} is outside its mcp act"
        );
    }
    let refusal = records
        .iter()
        .find(|r| r["name"] == "disk_usage")
        .expect("a record of the refused call");
    assert_eq!(refusal["outcome"], "refused", "{refusal}");
}

/// Something no other process or file on the host holds.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{what}-{}-{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_a_tools_output_or_a_sessions_report_reaches_the_client_masked() {
    let secret = unique("hunter2");
    let mark = unique("catpaw-mcp-mask-probe");
    let _holder = common::process::SecretHolder::start(&mark, &secret);
    let home = AgentHome::new(POLICY);
    let client = stdio_client(&home).await;
    let (failed, text) = call(&client, "process_count", json!({"cmdline_contains": mark})).await;
    client.cancel().await.expect("close");
    assert!(!failed, "{text}");
    // The tool found the process, and its command line came masked.
    assert!(
        text.contains(&mark) && text.contains("--db-password=***") && text.contains("\"count\":1"),
        "{text}"
    );
    assert!(!text.contains(&secret), "the client got the secret: {text}");
    let trail = std::fs::read_to_string(home.state().join("audit.jsonl")).expect("trail");
    assert!(trail.contains(&mark), "the call is in the trail");
    assert!(!trail.contains(&secret), "the audit holds the secret");

    // A runner whose report repeats its target (`echo report: … target=…`).
    let echo = common::guest("hazard_echo");
    let home = AgentHome::new(&format!(
        "[sandbox]\ndiagnose_runner = {:?}\n",
        echo.display().to_string()
    ));
    let client = stdio_client(&home).await;
    let target = format!("db --db-password={secret}");
    let (failed, report) = call(&client, "diagnose", json!({"target": target})).await;
    client.cancel().await.expect("close");
    assert!(!failed, "{report}");
    assert!(
        report.contains("target=db --db-password=***"),
        "the report came masked: {report}"
    );
    assert!(
        !report.contains(&secret),
        "the client got the secret: {report}"
    );
}

/// `catpaw-agent mcp --http 127.0.0.1:0` in `home`; dropping it kills it.
struct HttpServer {
    child: Child,
    /// `http://127.0.0.1:PORT/mcp`, as the server said it serves.
    url: String,
}

impl HttpServer {
    /// Serves on `addr` with the token in a `--token-file`.
    async fn start(home: &AgentHome, token: &str) -> HttpServer {
        let token_file = home.write("mcp.token", format!("{token}\n"));
        let mut cmd = home.command();
        cmd.args(["mcp", "--http", "127.0.0.1:0", "--token-file"])
            .arg(&token_file);
        HttpServer::spawn(cmd).await
    }

    /// Runs `cmd` (a `catpaw-agent mcp --http …`) until it says where it
    /// serves; what it logged before that is in `said`.
    async fn spawn(cmd: Command) -> HttpServer {
        HttpServer::spawn_saying(cmd).await.0
    }

    async fn spawn_saying(mut cmd: Command) -> (HttpServer, Vec<String>) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn catpaw-agent mcp --http");
        let stderr = child.stderr.take().expect("stderr");
        // The line it prints once it listens, whatever the log level; the
        // rest of its log goes on to the test's stderr.
        let (url, said) = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stderr).lines();
            let mut said = Vec::new();
            let url = lines
                .by_ref()
                .map_while(Result::ok)
                .inspect(|l| {
                    eprintln!("{l}");
                    said.push(l.clone());
                })
                .find_map(|l| {
                    l.split_once("serving MCP on ")
                        .map(|(_, url)| url.trim().to_string())
                });
            std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("{l}")));
            (url, said)
        })
        .await
        .expect("reader");
        let url = url.unwrap_or_else(|| panic!("the server never said where it serves: {said:?}"));
        (HttpServer { child, url }, said)
    }

    /// `127.0.0.1:PORT`.
    fn authority(&self) -> &str {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN: &str = "mcp-test-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_client_with_the_token_lists_and_calls_under_the_tools_allow_lists() {
    let mut home = AgentHome::bare();
    let log = home.write("app.log", "started\nmcp-allowed-line\n");
    home.configure(&format!(
        "[tools]\nlog_files = [{:?}]\n",
        log.display().to_string()
    ));
    let server = HttpServer::start(&home, TOKEN).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(server.url.as_str()).auth_header(TOKEN),
    );
    let client = client_info().serve(transport).await.expect("initialize");
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    // No `mcp` policy: the whole catalog (README: 56 tools), then the
    // two sessions.
    assert_eq!(names.len(), 56 + 2, "{names:?}");
    assert!(
        names.contains(&"cpu") && names.contains(&"disk_usage"),
        "{names:?}"
    );
    assert_eq!(names[names.len() - 2..], ["inspect", "diagnose"]);
    let (failed, text) = call(&client, "cpu", json!({})).await;
    assert!(!failed, "{text}");
    let cpu: Value = serde_json::from_str(&text).expect("cpu answers JSON");
    assert!(cpu["cores"].as_u64().unwrap_or(0) >= 1, "{cpu}");
    // `[tools] log_files` lists app.log and nothing else.
    let log = log.display().to_string();
    let (failed, text) = call(&client, "log_tail", json!({"path": log})).await;
    assert!(!failed && text.contains("mcp-allowed-line"), "{text}");
    let (failed, text) = call(&client, "log_tail", json!({"path": "/etc/passwd"})).await;
    assert!(failed, "{text}");
    assert!(
        text.contains("is not allow-listed in [tools] log_files"),
        "{text}"
    );
    client.cancel().await.expect("close");

    let records = mcp_records(&home);
    let (started, outcome) = act(&records, "cpu");
    assert_eq!(started["user"], format!("{CLIENT} {CLIENT_VERSION}"));
    assert_eq!(outcome["outcome"], "ok", "{outcome}");
}

/// An `initialize` request as a client's first POST.
fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_missing_or_wrong_token_gets_401_and_a_foreign_origin_or_host_403() {
    let home = AgentHome::new("");
    // The token from the environment this time.
    let mut cmd = home.command();
    cmd.args(["mcp", "--http", "127.0.0.1:0"])
        .env("CATPAW_MCP_TOKEN", TOKEN);
    let server = HttpServer::spawn(cmd).await;
    let http = reqwest::Client::new();
    let post = |headers: &[(&str, String)]| {
        let mut req = http
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize_body());
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        req.send()
    };
    let bearer = |t: &str| ("authorization", format!("Bearer {t}"));
    let status = |r: reqwest::Result<reqwest::Response>| r.expect("response").status().as_u16();

    assert_eq!(status(post(&[]).await), 401, "no token");
    assert_eq!(
        status(post(&[bearer("not-the-token-0123456789")]).await),
        401
    );
    assert_eq!(
        status(post(&[("authorization", TOKEN.to_string())]).await),
        401,
        "the token without the Bearer scheme"
    );
    let own = format!("http://{}", server.authority());
    assert_eq!(
        status(post(&[bearer(TOKEN), ("origin", own)]).await),
        200,
        "the server's own origin with the token is served"
    );
    assert_eq!(
        status(post(&[bearer(TOKEN), ("origin", "http://evil.example".into())]).await),
        403,
        "a foreign Origin"
    );
    let port = server
        .authority()
        .rsplit_once(':')
        .expect("port")
        .1
        .to_string();
    assert_eq!(
        status(post(&[bearer(TOKEN), ("host", format!("evil.example:{port}"))]).await),
        403,
        "a foreign Host (DNS rebinding)"
    );
    assert_eq!(
        status(post(&[bearer(TOKEN), ("host", format!("localhost:{port}"))]).await),
        200,
        "localhost on the bound port is the server itself"
    );
    let elsewhere = http
        .post(server.url.replace("/mcp", "/other"))
        .bearer_auth(TOKEN)
        .json(&initialize_body())
        .send()
        .await;
    assert_eq!(status(elsewhere), 404, "only /mcp is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_on_a_non_loopback_address_needs_the_flag_and_warns() {
    let home = AgentHome::new("");
    let token = home.write("t", TOKEN);
    let mut cmd = home.command();
    cmd.args([
        "mcp",
        "--http",
        "0.0.0.0:0",
        "--allow-non-loopback",
        "--token-file",
    ])
    .arg(&token);
    let (_server, said) = HttpServer::spawn_saying(cmd).await;
    assert!(
        said.iter()
            .any(|l| l.contains("serving MCP on a non-loopback address")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_run_for_a_client_gets_no_shell_even_when_the_operator_allows_shells() {
    let probe = common::guest("hazard_shell_probe");
    let home = AgentHome::new(&format!(
        "[sandbox]\nallow_remote_shell = true\nshell_user = \"nobody\"\ndiagnose_runner = {:?}\n",
        probe.display().to_string()
    ));
    let client = stdio_client(&home).await;
    let (failed, report) = call(&client, "diagnose", json!({"plugin": "mem"})).await;
    client.cancel().await.expect("close");
    assert!(!failed, "{report}");
    assert!(report.starts_with("shell denied"), "{report}");
    let trail = home.audit();
    let shell: Vec<&Value> = trail.iter().filter(|r| r["kind"] == "shell").collect();
    assert_eq!(shell.len(), 1, "{trail:?}");
    assert_eq!(shell[0]["outcome"], "denied", "{}", shell[0]);
}

#[test]
fn http_without_a_token_or_on_a_public_address_does_not_start() {
    let home = AgentHome::new("");
    let out = home
        .command()
        .args(["mcp", "--http", "127.0.0.1:0"])
        .env_remove("CATPAW_MCP_TOKEN")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--http needs a bearer token: give --token-file FILE or set CATPAW_MCP_TOKEN"
        ),
        "{stderr}"
    );
    let token = home.write("t", TOKEN);
    let out = home
        .command()
        .args(["mcp", "--http", "0.0.0.0:0", "--token-file"])
        .arg(&token)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--http 0.0.0.0:0: not a loopback address; give --allow-non-loopback"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_tool_slower_than_the_mcp_policy_timeout_is_given_up_and_still_audited() {
    // `cpu` samples for 200 ms; the policy gives it 1 ms.
    let home = AgentHome::new("[sandbox.policy.mcp]\ntimeout = \"1ms\"\n");
    let client = stdio_client(&home).await;
    let (failed, text) = call(&client, "cpu", json!({})).await;
    assert!(failed, "{text}");
    assert_eq!(
        text,
        "tool cpu did not finish within 1 ms (the `timeout` budget; [sandbox.policy.mcp] may lower it)"
    );
    // The read goes on to its end and its outcome is written then: the
    // server, its client gone, waits for it before it exits (and closing
    // the client waits for that exit).
    client.cancel().await.expect("close");
    let records = mcp_records(&home);
    let (_, outcome) = act(&records, "cpu");
    assert_eq!(outcome["outcome"], "ok", "{outcome}");
}
