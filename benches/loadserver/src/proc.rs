//! The agent process as the kernel sees it from outside: its CPU clock and
//! its memory by kind.

use std::time::Duration;

/// The agent's CPU time (user + system, every thread, dead ones included).
pub fn cpu(pid: u32) -> Duration {
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls write only into the locals handed to them.
    let ok = unsafe {
        libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0
            && libc::clock_gettime(clock, &mut ts) == 0
    };
    if !ok {
        panic!("cannot read the CPU clock of the agent (pid {pid}): has it exited?");
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Resident memory, KiB: total, anonymous, file-backed; and the PSS.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mem {
    pub rss: u64,
    pub anon: u64,
    pub file: u64,
    pub pss: u64,
    pub threads: u64,
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

pub fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Mem {
        rss: field(&status, "VmRSS"),
        anon: field(&status, "RssAnon"),
        file: field(&status, "RssFile"),
        pss: field(&rollup, "Pss"),
        threads: field(&status, "Threads"),
    }
}

/// Resident KiB by kind of mapping, from `/proc/PID/smaps`: the agent's
/// binary (its text and its data), compiled runners (`.cwasm` files the
/// agent maps), shared libraries, the main heap, wasmtime's memory images
/// (`memfd:`), stacks, and anonymous mappings by reserved size (a glibc
/// thread arena reserves 64 MiB; wasmtime's instance pools reserve GiBs;
/// a thread's stack is a few MiB with a guard page).
pub fn smaps(pid: u32) -> Vec<(String, u64)> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut sums: Vec<(String, u64)> = Vec::new();
    let mut add = |k: &str, v: u64| match sums.iter_mut().find(|(n, _)| n == k) {
        Some((_, s)) => *s += v,
        None => sums.push((k.to_string(), v)),
    };
    let mut kind = String::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let (lo, hi) = first.split_once('-').unwrap_or(("0", "0"));
            let size =
                u64::from_str_radix(hi, 16).unwrap_or(0) - u64::from_str_radix(lo, 16).unwrap_or(0);
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            kind = match path {
                p if p == exe && perms.contains('x') => "exe_text".into(),
                p if p == exe => "exe_data".into(),
                p if p.ends_with(".cwasm") => "compiled_runners".into(),
                p if p.contains(".so") => "shared_libs".into(),
                "[heap]" => "main_heap".into(),
                "[stack]" => "main_stack".into(),
                p if p.starts_with("memfd:") => "wasm_memory_images".into(),
                p if p.starts_with('[') => "kernel_vdso".into(),
                "" if size >= 1 << 30 => "anon_reserved_GiB (wasmtime pools)".into(),
                "" if size >= 32 << 20 => "anon_32-1024MiB (malloc arenas, pools)".into(),
                "" => "anon_small (stacks, mmap'd allocations)".into(),
                _ => "other_files".into(),
            };
        } else if first == "Rss:" {
            add(&kind, f.next().and_then(|v| v.parse().ok()).unwrap_or(0));
        }
    }
    sums
}
