//! Alert ring buffer benchmark, in one run:
//! - pushes per second, single-threaded, into a buffer with room (its
//!   normal state: the connection drains it every second) and into a full
//!   one (every push overwrites, and frees, the oldest event);
//! - the floor of each: the same events pushed into a bare
//!   `Mutex<VecDeque>` of the same capacity (no frame sizing, no overflow
//!   accounting);
//! - pushes per second and push latency while another thread drains
//!   `alert_events` frames as fast as it can, beside the same pushes
//!   without the drainer: a push must never wait behind a drain.
//!
//! Run: `cargo bench --bench alerts`. Without `--bench` (as
//! `cargo test --all-targets` runs it) it does a quick smoke run of the same
//! code with small counts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catpaw_agent::alerts::ringbuf::AlertBuffer;
use catpaw_agent::proto::{AlertEvent, EventStatus};

/// A typical event: a key, two labels, a one-line description.
fn events(n: usize) -> Vec<AlertEvent> {
    let labels: BTreeMap<String, String> = [("host", "web-1"), ("plugin", "disk")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (0..n)
        .map(|i| AlertEvent {
            event_time: 1_764_115_200 + i as i64,
            event_status: EventStatus::Warning,
            alert_key: format!("disk::/var::{}", i % 64),
            labels: labels.clone(),
            attrs: BTreeMap::new(),
            description: "disk /var above 90% (91.4% used, 1.2 GiB free)".to_string(),
            description_format: None,
        })
        .collect()
}

/// Pushes `chunks` batches of `chunk` prepared events with `push`, timing
/// only the pushes; returns pushes per second and each push's latency when
/// `latencies` is set.
fn run(
    chunks: usize,
    chunk: usize,
    mut latencies: Option<&mut Vec<Duration>>,
    mut push: impl FnMut(AlertEvent),
) -> f64 {
    let mut spent = Duration::ZERO;
    for _ in 0..chunks {
        let batch = events(chunk);
        let t0 = Instant::now();
        match latencies.as_deref_mut() {
            None => batch.into_iter().for_each(&mut push),
            Some(lat) => {
                for ev in batch {
                    let t = Instant::now();
                    push(ev);
                    lat.push(t.elapsed());
                }
            }
        }
        spent += t0.elapsed();
    }
    (chunks * chunk) as f64 / spent.as_secs_f64()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Push rate and latencies with, or without, a thread draining frames.
fn with_drainer(drain: bool, chunks: usize, chunk: usize) -> (f64, Vec<Duration>, u64) {
    let buf = AlertBuffer::new(10_000);
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = drain.then(|| {
        let (buf, stop) = (buf.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut drained = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch = buf.drain_frame();
                if batch.is_empty() {
                    std::hint::spin_loop();
                }
                drained += batch.len() as u64;
            }
            drained
        })
    });
    let mut lat = Vec::with_capacity(chunks * chunk);
    let rate = run(chunks, chunk, Some(&mut lat), |ev| buf.push(ev));
    stop.store(true, Ordering::Relaxed);
    let drained = drainer.map_or(0, |d| d.join().expect("drainer"));
    lat.sort();
    (rate, lat, drained)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (chunks, chunk, rounds) = if full {
        (20, 100_000, 5)
    } else {
        (2, 2_000, 1)
    };

    // Ours vs the bare floor, with room and full, interleaved; medians.
    let mut rates = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        let mut spent = [Duration::ZERO; 2];
        for _ in 0..chunks {
            let batch = events(chunk);
            let buf = AlertBuffer::new(chunk as i64);
            let t0 = Instant::now();
            batch.into_iter().for_each(|ev| buf.push(ev));
            spent[0] += t0.elapsed();
            let batch = events(chunk);
            let bare = Mutex::new(VecDeque::with_capacity(chunk));
            let t0 = Instant::now();
            batch.into_iter().for_each(|ev| {
                let mut q = bare.lock().expect("lock");
                q.push_back(ev);
            });
            spent[1] += t0.elapsed();
        }
        for (i, d) in spent.into_iter().enumerate() {
            rates[i].push((chunks * chunk) as f64 / d.as_secs_f64());
        }
        let buf = AlertBuffer::new(1000);
        run(1, 1000, None, |ev| buf.push(ev));
        rates[2].push(run(chunks, chunk, None, |ev| buf.push(ev)));
        let bare = Mutex::new(VecDeque::with_capacity(1000));
        rates[3].push(run(chunks, chunk, None, |ev| {
            let mut q = bare.lock().expect("lock");
            let old = if q.len() >= 1000 { q.pop_front() } else { None };
            q.push_back(ev);
            drop(q);
            drop(old);
        }));
    }
    let [room, room_floor, overwrite, overwrite_floor] = rates.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });

    let (alone, lat_alone, _) = with_drainer(false, chunks, chunk);
    let (beside, lat_beside, drained) = with_drainer(true, chunks, chunk);

    if !full {
        println!("(smoke run with small counts; `cargo bench --bench alerts` measures)\n");
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("## Alert ring buffer (one run)\n");
    println!("| what | figure |\n|---|---|");
    for (what, ours, floor) in [
        ("with room", room, room_floor),
        ("full (each push overwrites)", overwrite, overwrite_floor),
    ] {
        println!(
            "| pushes/s into a buffer {what}, single thread ({} pushes, median of {rounds}) | {:.1} M (floor {:.1} M, {:.2}×) |",
            chunks * chunk,
            ours / 1e6,
            floor / 1e6,
            ours / floor
        );
    }
    println!(
        "| pushes/s alone / beside a thread draining frames | {:.1} M / {:.1} M ({drained} drained) |",
        alone / 1e6,
        beside / 1e6
    );
    println!(
        "| push latency p99 / p99.9 / max, alone | {:.2} / {:.2} / {:.0} µs |",
        us(pct(&lat_alone, 0.99)),
        us(pct(&lat_alone, 0.999)),
        us(pct(&lat_alone, 1.0))
    );
    println!(
        "| push latency p99 / p99.9 / max, beside the drainer | {:.2} / {:.2} / {:.0} µs |",
        us(pct(&lat_beside, 0.99)),
        us(pct(&lat_beside, 0.999)),
        us(pct(&lat_beside, 1.0))
    );
}
