//! pressure: /proc/pressure/{cpu,memory,io}.

use serde_json::{Map, Value, json};

use crate::tools::args::Args;
use crate::tools::logs::unavailable;

/// One PSI file: `some avg10=… avg60=… avg300=… total=…` and `full …`.
pub(crate) fn parse_psi(text: &str) -> Value {
    let mut out = Map::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(kind) = f.next().filter(|k| *k == "some" || *k == "full") else {
            continue;
        };
        let mut row = Map::new();
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = if k == "total" {
                json!(v.parse::<u64>().unwrap_or(0))
            } else {
                json!(v.parse::<f64>().unwrap_or(0.0))
            };
            let k = if k == "total" { "total_us" } else { k };
            row.insert(k.to_string(), v);
        }
        out.insert(kind.to_string(), Value::Object(row));
    }
    Value::Object(out)
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let which = args.choice("resource", &["all", "cpu", "memory", "io"], "all")?;
    if !std::path::Path::new("/proc/pressure").is_dir() {
        return Ok(unavailable(
            "/proc/pressure is missing: PSI needs Linux 4.20+ built with CONFIG_PSI and not booted with psi=0",
        ));
    }
    let mut out = Map::new();
    for r in ["cpu", "memory", "io"] {
        if which != "all" && which != r {
            continue;
        }
        let v = match std::fs::read_to_string(format!("/proc/pressure/{r}")) {
            Ok(t) => parse_psi(&t),
            Err(e) => json!({ "error": format!("cannot read /proc/pressure/{r}: {e}") }),
        };
        out.insert(r.to_string(), v);
    }
    Ok(json!({ "available": true, "resources": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_files_are_parsed() {
        let v = parse_psi(include_str!("../fixtures/pressure_cpu"));
        assert_eq!(v["some"]["avg10"], 62.35);
        assert_eq!(v["some"]["avg300"], 10.31);
        assert_eq!(v["some"]["total_us"], 3000165996u64);
        let m = parse_psi(include_str!("../fixtures/pressure_memory"));
        assert_eq!(m["full"]["avg60"], 0.4);
        assert_eq!(m["full"]["total_us"], 7696917);
        assert_eq!(parse_psi("garbage\n"), json!({}));
    }

    #[test]
    fn live_pressure_has_data_or_says_why() {
        let v = run(&Args::empty()).expect("pressure");
        if v["available"] == true {
            assert!(v["resources"]["cpu"]["some"]["avg10"].is_f64(), "{v}");
        } else {
            assert!(v["reason"].as_str().unwrap_or("").contains("PSI"), "{v}");
        }
    }
}
