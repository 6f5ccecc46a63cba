//! Every tool run for real on this host through [`super::call`]: the
//! documented fields with their JSON types, ranking and limits, and the
//! argument errors an operator sees.

use super::*;

fn run(name: &str, args: &str) -> Value {
    let out = call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(out.len() <= MAX_OUTPUT_BYTES, "{name}: {} bytes", out.len());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name} gave invalid JSON: {e}"))
}

/// Asserts `v` has every key, each of the given JSON kind.
fn has(v: &Value, what: &str, keys: &[&str], kind: fn(&Value) -> bool) {
    for k in keys {
        assert!(
            v.get(k).is_some_and(kind),
            "{what}.{k} missing or of the wrong type: {v}"
        );
    }
}

#[test]
fn system_tools_return_their_documented_fields_on_this_host() {
    let cpu = run("cpu", "{}");
    has(
        &cpu,
        "cpu",
        &["cores", "runnable", "total_tasks"],
        Value::is_u64,
    );
    let pcts = ["usage_pct", "iowait_pct", "steal_pct"];
    has(&cpu, "cpu", &pcts, Value::is_f64);
    has(&cpu, "cpu", &["load1", "load5", "load15"], Value::is_number);
    assert!(cpu["cores"].as_u64().unwrap_or(0) >= 1);
    for p in pcts {
        assert!(
            (0.0..=100.0).contains(&cpu[p].as_f64().unwrap_or(-1.0)),
            "{cpu}"
        );
    }

    let mem = run("memory", "");
    let bytes = [
        "total_bytes",
        "available_bytes",
        "used_bytes",
        "free_bytes",
        "buffers_bytes",
        "cached_bytes",
        "swap_total_bytes",
        "swap_used_bytes",
    ];
    has(&mem, "memory", &bytes, Value::is_u64);
    has(
        &mem,
        "memory",
        &["used_pct", "swap_used_pct"],
        Value::is_f64,
    );
    assert!(mem["total_bytes"].as_u64().unwrap_or(0) > 0);

    let up = run("uptime", "{}");
    has(&up, "uptime", &["uptime_sec"], Value::is_f64);
    has(&up, "uptime", &["boot_time_unix"], Value::is_i64);
    let texts = ["hostname", "kernel_release", "os_pretty_name"];
    has(&up, "uptime", &texts, Value::is_string);
    assert!(up["uptime_sec"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(!up["kernel_release"].as_str().unwrap_or("").is_empty());

    let fd = run("fd_usage", r#"{"limit":2}"#);
    has(&fd, "fd_usage", &["allocated", "max"], Value::is_u64);
    has(&fd, "fd_usage", &["used_pct"], Value::is_f64);
    let top = fd["top"].as_array().expect("top");
    assert!(!top.is_empty() && top.len() <= 2, "{fd}");
    has(&top[0], "fd_usage.top", &["pid", "open_fds"], Value::is_u64);
    has(&top[0], "fd_usage.top", &["name"], Value::is_string);
    assert!(top[0]["open_fds"].as_u64() >= top[top.len() - 1]["open_fds"].as_u64());
}

#[test]
fn storage_and_network_tools_return_their_documented_fields() {
    let disk = run("disk_usage", "{}");
    let fs = disk["filesystems"].as_array().expect("filesystems");
    assert!(fs.iter().any(|f| f["mount_point"] == "/"), "{disk}");
    for f in fs {
        has(
            f,
            "fs",
            &["mount_point", "fs_type", "device"],
            Value::is_string,
        );
        let ints = [
            "total_bytes",
            "used_bytes",
            "available_bytes",
            "inodes_total",
            "inodes_used",
        ];
        has(f, "fs", &ints, Value::is_u64);
        has(f, "fs", &["used_pct", "inodes_used_pct"], Value::is_f64);
        assert!(!f["fs_type"].as_str().unwrap_or("").starts_with("cgroup"));
    }

    let mounts = run("mounts", "{}");
    let m = mounts["mounts"].as_array().expect("mounts");
    assert!(!m.is_empty());
    has(
        &m[0],
        "mount",
        &["device", "mount_point", "fs_type", "options"],
        Value::is_string,
    );
    has(&m[0], "mount", &["read_only"], Value::is_boolean);

    let net = run("network_interfaces", "{}");
    let ifs = net["interfaces"].as_array().expect("interfaces");
    let lo = ifs.iter().find(|x| x["name"] == "lo").expect("lo");
    has(
        lo,
        "iface",
        &["name", "oper_state", "mac"],
        Value::is_string,
    );
    let counters = [
        "mtu",
        "rx_bytes",
        "rx_packets",
        "rx_errors",
        "rx_dropped",
        "tx_bytes",
        "tx_packets",
        "tx_errors",
        "tx_dropped",
    ];
    has(lo, "iface", &counters, Value::is_u64);
    assert!(lo["mtu"].as_u64().unwrap_or(0) > 0, "{lo}");

    let tcp = run("tcp_summary", "{}");
    has(&tcp, "tcp", &["total"], Value::is_u64);
    let states = tcp["states"].as_object().expect("states");
    assert!(
        states.values().all(|n| n.as_u64().unwrap_or(0) > 0),
        "{tcp}"
    );
    let ports: Vec<u64> = tcp["listening_ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        ports.windows(2).all(|w| w[0] < w[1]) && ports.len() <= 200,
        "{tcp}"
    );
    let sum: u64 = states.values().filter_map(Value::as_u64).sum();
    assert_eq!(Some(sum), tcp["total"].as_u64());
}

#[test]
fn top_processes_ranks_and_limits() {
    let top = run("top_processes", r#"{"by":"memory","limit":3}"#);
    assert_eq!(top["by"], "memory");
    assert!(top["total_processes"].as_u64().unwrap_or(0) >= 1);
    let procs = top["processes"].as_array().expect("processes");
    assert!(!procs.is_empty() && procs.len() <= 3, "{top}");
    let rss: Vec<u64> = procs
        .iter()
        .filter_map(|p| p["rss_bytes"].as_u64())
        .collect();
    assert!(rss.windows(2).all(|w| w[0] >= w[1]), "{top}");
    for p in procs {
        has(
            p,
            "proc",
            &["pid", "ppid", "uid", "threads", "rss_bytes"],
            Value::is_u64,
        );
        has(p, "proc", &["name", "state", "cmdline"], Value::is_string);
        has(p, "proc", &["cpu_pct", "mem_pct"], Value::is_f64);
        assert!(p["cmdline"].as_str().unwrap_or("").chars().count() <= 256);
    }
    let by_cpu = run("top_processes", "{}");
    assert_eq!(by_cpu["by"], "cpu");
    let procs = by_cpu["processes"].as_array().expect("processes");
    assert!(procs.len() <= 10);
    let cpu: Vec<f64> = procs.iter().filter_map(|p| p["cpu_pct"].as_f64()).collect();
    assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "{by_cpu}");
}

#[test]
fn bad_arguments_are_refused_with_the_arg_named() {
    let e = call("top_processes", r#"{"limit":0}"#).unwrap_err();
    assert_eq!(
        e,
        "tool top_processes: \"limit\" must be an integer between 1 and 50, not 0"
    );
    let e = call("top_processes", r#"{"by":"disk"}"#).unwrap_err();
    assert!(
        e.starts_with("tool top_processes: \"by\" must be one of cpu, memory"),
        "{e}"
    );
    let e = call("top_processes", r#"{"limit":"5"}"#).unwrap_err();
    assert!(e.contains("\"limit\" must be an integer"), "{e}");
    let e = call("fd_usage", r#"{"limit":51}"#).unwrap_err();
    assert!(e.contains("between 1 and 50"), "{e}");
    let e = call("kernel_log", r#"{"lines":501}"#).unwrap_err();
    assert!(
        e.starts_with("tool kernel_log: \"lines\" must be an integer between 1 and 500"),
        "{e}"
    );
    let e = call("cpu", r#"{"bogus":1}"#).unwrap_err();
    assert_eq!(e, "tool cpu: unknown argument \"bogus\" (accepted: none)");
    let e = call("top_processes", r#"{"limt":1}"#).unwrap_err();
    assert!(
        e.contains("\"limt\"") && e.contains("accepted: by, limit"),
        "{e}"
    );
    let e = call("cpu", "[1]").unwrap_err();
    assert!(e.contains("JSON object"), "{e}");
    let e = call("cpu", "{not json").unwrap_err();
    assert!(e.contains("JSON object"), "{e}");
}

#[test]
fn every_tool_output_fits() {
    for t in catalog() {
        if let Ok(out) = call(t.name, "{}") {
            assert!(out.len() <= MAX_OUTPUT_BYTES, "{}", t.name);
            assert!(
                serde_json::from_str::<Value>(&out).is_ok(),
                "{}: {out}",
                t.name
            );
        }
    }
}
