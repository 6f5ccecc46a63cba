//! interrupts: /proc/interrupts ranked by count, with the share of the
//! busiest CPU (one CPU taking all of a network card's interrupts is a
//! classic bottleneck).

use serde_json::{Value, json};

use crate::tools::args::Args;
use crate::tools::procfs::{read, round1};

/// One interrupt line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Irq {
    pub(crate) irq: String,
    pub(crate) total: u64,
    /// Share of the busiest CPU in percent.
    pub(crate) top_cpu_pct: f64,
    pub(crate) top_cpu: usize,
    pub(crate) description: String,
}

/// /proc/interrupts: a header of CPU names, then `IRQ: n n … desc`.
pub(crate) fn parse(text: &str) -> (usize, Vec<Irq>) {
    let mut lines = text.lines();
    let cpus = lines
        .next()
        .map(|h| h.split_whitespace().count())
        .unwrap_or(0);
    let rows = lines
        .filter_map(|l| {
            let (irq, rest) = l.split_once(':')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let counts: Vec<u64> = fields
                .iter()
                .take(cpus)
                .map_while(|x| x.parse().ok())
                .collect();
            if counts.is_empty() {
                return None;
            }
            let total: u64 = counts.iter().sum();
            let (top_cpu, top) = counts
                .iter()
                .enumerate()
                .max_by_key(|(_, c)| **c)
                .map(|(i, c)| (i, *c))
                .unwrap_or((0, 0));
            Some(Irq {
                irq: irq.trim().to_string(),
                total,
                top_cpu_pct: if total == 0 {
                    0.0
                } else {
                    round1(top as f64 * 100.0 / total as f64)
                },
                top_cpu,
                description: fields[counts.len()..].join(" "),
            })
        })
        .collect();
    (cpus, rows)
}

pub(crate) fn run(args: &Args) -> Result<Value, String> {
    let top = args.int("top", 1, 100, 20)? as usize;
    let (cpus, mut rows) = parse(&read("/proc/interrupts")?);
    rows.sort_by_key(|r| std::cmp::Reverse(r.total));
    let total = rows.len();
    let rows: Vec<Value> = rows
        .into_iter()
        .take(top)
        .map(|r| {
            json!({"irq": r.irq, "total": r.total, "busiest_cpu": r.top_cpu,
                   "busiest_cpu_pct": r.top_cpu_pct, "description": r.description})
        })
        .collect();
    Ok(json!({ "cpus": cpus, "sources": total, "interrupts": rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_are_ranked_with_cpu_share() {
        let (cpus, rows) = parse(include_str!("../fixtures/interrupts"));
        assert_eq!(cpus, 2);
        let ged = rows.iter().find(|r| r.irq == "24").expect("irq 24");
        assert_eq!(ged.total, 1);
        assert_eq!(ged.description, "IO-APIC 5-edge ACPI:Ged");
        let text = "           CPU0       CPU1\n 30:   900   100   PCI-MSI 1-edge  eth0-rx\nNMI:     0     0   Non-maskable interrupts\nERR:          0\n";
        let (_, rows) = parse(text);
        assert_eq!(rows[0].total, 1000);
        assert_eq!(rows[0].top_cpu_pct, 90.0);
        assert_eq!(rows[0].description, "PCI-MSI 1-edge eth0-rx");
        assert_eq!(rows[2].irq, "ERR");
        assert_eq!(rows[2].total, 0);
    }

    #[test]
    fn live_interrupts() {
        let v = run(&Args::empty()).expect("interrupts");
        assert!(v["cpus"].as_u64().unwrap_or(0) >= 1, "{v}");
    }
}
