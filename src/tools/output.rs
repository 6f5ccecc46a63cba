//! What every tool result goes through before it leaves [`super::call`],
//! in this order:
//!
//! 1. every string in it is masked ([`super::mask`]);
//! 2. oversized lists lose rows, so the result stays valid JSON;
//! 3. as a last resort the text is cut, with a marker.
//!
//! Masking comes first because a cut after it can only shorten masked
//! text. Cut first, a secret could lose what makes it recognisable (an
//! AWS key id is 20 characters; cut to 12 it is no longer one) and go out
//! in part.

use serde_json::Value;

use super::mask::mask_json;

/// Largest tool output in bytes.
pub(crate) const MAX_OUTPUT_BYTES: usize = 32 * 1024;

/// The output text of a tool's result: masked, shortened, cut.
pub(super) fn finish(mut value: Value, drop_from_front: bool) -> String {
    mask_json(&mut value);
    shrink_lists(&mut value, drop_from_front);
    cap_output(value.to_string())
}

/// Room kept for the `omitted` note that [`shrink_lists`] adds.
const OMITTED_NOTE_ROOM: usize = 128;

/// Drops rows from the largest top-level lists until the JSON text fits
/// in [`MAX_OUTPUT_BYTES`], so the result stays valid JSON; records how
/// many rows each list lost in `"omitted": {"<list>": n}`. Rows go from
/// the end (lists are ordered most-important first) or, for logs, from
/// the front (the oldest lines).
fn shrink_lists(value: &mut Value, from_front: bool) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let mut omitted = serde_json::Map::new();
    loop {
        let len = serde_json::to_string(&*obj).map(|s| s.len()).unwrap_or(0);
        if len + OMITTED_NOTE_ROOM <= MAX_OUTPUT_BYTES {
            break;
        }
        let biggest = obj
            .iter()
            .filter(|(_, v)| v.as_array().is_some_and(|a| !a.is_empty()))
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::to_string(v).map(|s| s.len()).unwrap_or(0),
                )
            })
            .max_by_key(|(_, size)| *size);
        let Some((key, _)) = biggest else {
            break;
        };
        let Some(rows) = obj.get_mut(&key).and_then(Value::as_array_mut) else {
            break;
        };
        // Drop whole rows until their text covers the excess (+1 per comma).
        let mut excess = len + OMITTED_NOTE_ROOM - MAX_OUTPUT_BYTES;
        let mut dropped = 0u64;
        while excess > 0 && !rows.is_empty() {
            let row = if from_front {
                rows.remove(0)
            } else {
                rows.pop().unwrap_or(Value::Null)
            };
            let size = serde_json::to_string(&row).map(|s| s.len()).unwrap_or(0) + 1;
            excess = excess.saturating_sub(size);
            dropped += 1;
        }
        let before = omitted.get(&key).and_then(Value::as_u64).unwrap_or(0);
        omitted.insert(key, Value::from(before + dropped));
    }
    if !omitted.is_empty() {
        obj.insert("omitted".into(), Value::Object(omitted));
    }
}

/// The marker ending a cut output.
fn truncation_marker() -> String {
    format!("\n…[truncated: output exceeded {MAX_OUTPUT_BYTES} bytes]")
}

/// Last resort for every tool: cuts `text` on a char boundary so that
/// text + marker fit in [`MAX_OUTPUT_BYTES`].
fn cap_output(text: String) -> String {
    if text.len() <= MAX_OUTPUT_BYTES {
        return text;
    }
    let marker = truncation_marker();
    let keep = crate::util::truncate_utf8(&text, MAX_OUTPUT_BYTES - marker.len());
    format!("{keep}{marker}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::storage;

    #[test]
    fn oversized_output_is_cut_with_a_marker() {
        for big in [
            "é".repeat(MAX_OUTPUT_BYTES),
            "x".repeat(3 * MAX_OUTPUT_BYTES),
        ] {
            let out = cap_output(big);
            assert!(out.len() <= MAX_OUTPUT_BYTES);
            assert!(out.len() > MAX_OUTPUT_BYTES - 8, "cut no more than needed");
            assert!(
                out.ends_with("\n…[truncated: output exceeded 32768 bytes]"),
                "{out}"
            );
        }
        let exact = "y".repeat(MAX_OUTPUT_BYTES);
        assert_eq!(cap_output(exact.clone()), exact);
        assert_eq!(cap_output("small".into()), "small");
    }

    #[test]
    fn oversized_lists_lose_rows_and_stay_valid_json() {
        let rows: Vec<Value> = (0..5000)
            .map(|i| serde_json::json!({"n": i, "pad": "x".repeat(20)}))
            .collect();
        let mut v = serde_json::json!({"total": 5000, "rows": rows, "small": [1, 2]});
        shrink_lists(&mut v, false);
        let text = v.to_string();
        assert!(text.len() <= MAX_OUTPUT_BYTES, "{}", text.len());
        let kept = v["rows"].as_array().expect("rows");
        assert!(kept.len() > 500, "keeps as much as fits: {}", kept.len());
        assert_eq!(kept[0]["n"], 0, "keeps the first rows");
        assert_eq!(
            v["omitted"]["rows"].as_u64(),
            Some(5000 - kept.len() as u64)
        );
        assert_eq!(v["small"], serde_json::json!([1, 2]));
        assert_eq!(cap_output(text.clone()), text, "no text cut needed");

        let lines: Vec<Value> = (0..2000)
            .map(|i| Value::from(format!("line {i} {}", "y".repeat(40))))
            .collect();
        let mut log = serde_json::json!({"source": "dmesg", "lines": lines});
        shrink_lists(&mut log, true);
        let kept = log["lines"].as_array().expect("lines");
        assert!(log.to_string().len() <= MAX_OUTPUT_BYTES);
        assert!(
            kept.last()
                .and_then(Value::as_str)
                .is_some_and(|l| l.starts_with("line 1999 ")),
            "keeps the newest"
        );

        let mut fits = serde_json::json!({"rows": [1, 2, 3]});
        shrink_lists(&mut fits, false);
        assert_eq!(
            fits,
            serde_json::json!({"rows": [1, 2, 3]}),
            "small output untouched"
        );
    }

    /// A mount table with credentials where review found them: in the
    /// source (seen by mounts and disk_usage) and in the options.
    const MOUNTS: &str = "/dev/sda1 / ext4 rw,relatime 0 0\n\
        //svc:password=S3cr3t@nas/share /mnt/share cifs rw,username=svc,password=Hunter2,domain=CORP 0 0\n\
        //nas/public /mnt/public cifs rw,username=guest,domain=CORP 0 0\n\
        https://u:Tok3n@dav.example.com/x /mnt/dav davfs rw 0 0\n";

    fn parse(out: &str) -> Value {
        serde_json::from_str(out).unwrap_or_else(|e| panic!("invalid JSON ({e}): {out}"))
    }

    #[test]
    fn mounts_and_disk_usage_output_is_masked() {
        let out = finish(storage::mounts_from(MOUNTS), false);
        for secret in ["S3cr3t", "Hunter2", "Tok3n"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        let v = parse(&out);
        let rows = v["mounts"].as_array().expect("mounts");
        assert_eq!(rows[0]["device"], "/dev/sda1");
        assert_eq!(rows[0]["options"], "rw,relatime");
        assert_eq!(rows[1]["device"], "//svc:***@nas/share");
        assert_eq!(
            rows[1]["options"],
            "rw,username=svc,password=***,domain=CORP"
        );
        assert_eq!(rows[2]["device"], "//nas/public", "no password: as is");
        assert_eq!(rows[3]["device"], "https://u:***@dav.example.com/x");

        let usage = storage::Usage {
            total: 100,
            used: 10,
            avail: 90,
            inodes: 10,
            inodes_used: 1,
        };
        let out = finish(
            storage::disk_usage_from(MOUNTS, |_| storage::Stat::Done(Some(usage))),
            false,
        );
        assert!(!out.contains("S3cr3t") && !out.contains("Tok3n"), "{out}");
        let v = parse(&out);
        let devices: Vec<&str> = v["filesystems"]
            .as_array()
            .expect("filesystems")
            .iter()
            .filter_map(|f| f["device"].as_str())
            .collect();
        assert_eq!(
            devices,
            [
                "/dev/sda1",
                "//svc:***@nas/share",
                "//nas/public",
                "https://u:***@dav.example.com/x"
            ]
        );
    }

    #[test]
    fn secrets_are_masked_before_the_output_is_cut() {
        // A cut at the output limit would fall inside the secret.
        let marker = truncation_marker();
        let room = MAX_OUTPUT_BYTES - marker.len() - r#"{"t":""#.len();
        // ` password=` and 9 bytes of the secret fit before the cut.
        let text = format!("{} password={}", "x".repeat(room - 19), "S3cr3t".repeat(20));
        let raw = serde_json::json!({ "t": text });
        assert!(
            cap_output(raw.to_string()).contains("password=S3cr3t"),
            "the test must put a cut inside the secret"
        );
        let out = finish(raw, false);
        assert!(!out.contains("S3cr3t"), "{}", &out[out.len() - 80..]);

        // Rows dropped to fit never leave an unmasked one behind either.
        let lines: Vec<Value> = (0..3000)
            .map(|i| Value::from(format!("line {i} mysql -pS3cr3t{i} db")))
            .collect();
        let out = finish(serde_json::json!({ "lines": lines }), true);
        assert!(out.len() <= MAX_OUTPUT_BYTES);
        assert!(!out.contains("S3cr3t"));
        assert!(parse(&out)["omitted"]["lines"].as_u64().unwrap_or(0) > 0);
    }
}
