//! What the agent hands back once it has started: the pages of its own
//! executable that starting touched, and the free heap.
//!
//! Why: an agent runs on every host of a fleet, so what it holds while
//! idle is multiplied by thousands. Starting runs much code that the idle
//! loop never runs again (parsing the config and the command line, loading,
//! checking and describing the runners, compiling them on a first start),
//! and the kernel maps the file pages around each fault too (fault-around,
//! 64 KiB at a time). After start some 20 MiB of the executable were
//! resident, counted in the agent's RSS, of which the idle agent uses a
//! small part (BENCHMARKS.md, "Footprint").
//!
//! Those pages are clean copies of the file: dropping them from the process
//! (`MADV_DONTNEED`) costs at most a minor fault, served from the page
//! cache, when the code runs again. Only mappings of the executable that
//! are not writable and hold no anonymous page are dropped, so data that
//! was written or relocated (the RELRO segment) is never touched: dropping
//! such a page would bring back the file's unrelocated bytes.
//!
//! The same goes for the shared libraries' clean mappings and the
//! compiled runners mapped from the cache (`.cwasm`), and it goes on while
//! the agent idles: connecting, every heartbeat and every session fault
//! code back in, 64 KiB around each fault, scattered over the binary
//! (about 4 MiB for one heartbeat). [`idle_shedder`] hands those pages
//! back a few seconds after start and then once per heartbeat period,
//! whenever no session runs or has started since its last look, so an
//! idle agent holds what its idle loop touched since the last look, not
//! everything it ever ran.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::session::SessionTable;

/// What [`shed_file_pages`] handed back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    /// Resident KiB of clean file mappings dropped (the executable, shared
    /// libraries, compiled runners).
    pub file_kib: u64,
    /// Mappings dropped.
    pub mappings: u32,
}

/// One mapping of `/proc/self/smaps`.
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    path: String,
    rss_kib: u64,
    anon_kib: u64,
}

fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            let perms = fields.next().unwrap_or("");
            // offset, device, inode, then the path (which may hold spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            out.push(Mapping {
                start,
                end,
                writable: perms.contains('w'),
                path,
                rss_kib: 0,
                anon_kib: 0,
            });
            continue;
        }
        let value = || {
            fields
                .clone()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if let Some(m) = out.last_mut() {
            match first {
                "Rss:" => m.rss_kib = value(),
                "Anonymous:" => m.anon_kib = value(),
                _ => {}
            }
        }
    }
    out
}

/// Drops the resident pages of the clean, read-only mappings of the
/// executable, the shared libraries and the compiled runners, and trims
/// the heap. Best effort: on any failure to read the mappings it drops
/// nothing.
pub fn shed_file_pages() -> Shed {
    let shed = std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|exe| Some((exe, std::fs::read_to_string("/proc/self/smaps").ok()?)))
        .map(|(exe, smaps)| drop_clean_pages(&exe, &smaps))
        .unwrap_or_default();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!(
        file_kib = shed.file_kib,
        mappings = shed.mappings,
        "handed back resident file pages and the free heap"
    );
    shed
}

/// Hands back what [`shed_file_pages`] does whenever it looks and no
/// session of `table` runs or has started since its last look; until
/// `stop`. It looks `first` after it starts (once connecting is done) and
/// then every `every` (the heartbeat period).
pub async fn idle_shedder(
    table: SessionTable,
    first: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rule = IdleRule {
        seen: table.started(),
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if rule.look(table.started(), table.active()) {
            shed_file_pages();
        }
    }
}

/// [`idle_shedder`]'s rule, one look at a time.
struct IdleRule {
    /// Sessions started as of the last look.
    seen: u64,
}

impl IdleRule {
    /// Whether to shed, given the sessions `started` so far and `running`
    /// now: none running and none started since the last look.
    fn look(&mut self, started: u64, running: usize) -> bool {
        std::mem::replace(&mut self.seen, started) == started && running == 0
    }
}

/// Whether `path` names a shared library (`libc.so.6`, `ld-linux-x86-64.so.2`).
fn is_shared_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split('.').skip(1).any(|part| part == "so")
}

fn drop_clean_pages(exe: &Path, smaps: &str) -> Shed {
    let exe = exe.display().to_string();
    let mut shed = Shed::default();
    for m in parse_smaps(smaps) {
        let ours = m.path == exe || m.path.ends_with(".cwasm") || is_shared_library(&m.path);
        if !ours || m.writable || m.anon_kib != 0 || m.rss_kib == 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping of a file (the executable, a
        // shared library or a compiled runner) that is not writable and
        // holds no anonymous page: every resident page is a clean copy of
        // the file, which the next access faults back in unchanged. Nothing
        // else is unmapped or changed.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            shed.file_kib += m.rss_kib;
            shed.mappings += 1;
        }
    }
    shed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe_rss_kib() -> (u64, u64) {
        let exe = std::fs::read_link("/proc/self/exe")
            .expect("exe")
            .display()
            .to_string();
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mine: Vec<Mapping> = parse_smaps(&smaps)
            .into_iter()
            .filter(|m| m.path == exe)
            .collect();
        let clean = mine
            .iter()
            .filter(|m| !m.writable && m.anon_kib == 0)
            .map(|m| m.rss_kib)
            .sum();
        let relocated = mine.iter().map(|m| m.anon_kib).sum();
        (clean, relocated)
    }

    #[test]
    fn the_executables_clean_pages_are_handed_back_and_the_code_still_runs() {
        let (clean, relocated) = exe_rss_kib();
        assert!(clean > 0, "the test binary has resident text");
        let shed = shed_file_pages();
        assert!(shed.mappings > 0 && shed.file_kib > 0, "{shed:?}");
        let (after, relocated_after) = exe_rss_kib();
        // Code runs again (this test, the harness): some pages come back,
        // far fewer than were dropped.
        assert!(after < clean, "{after} KiB resident after, {clean} before");
        assert_eq!(
            relocated_after, relocated,
            "written or relocated pages are never dropped"
        );
        // Formatting, allocation and a closure through a vtable still work.
        let f: Box<dyn Fn(u64) -> String> = Box::new(|n| format!("{n:>4}"));
        assert_eq!(f(42), "  42");
    }

    #[test]
    fn shared_libraries_are_told_by_their_file_name() {
        for lib in [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/libfoo.so",
        ] {
            assert!(is_shared_library(lib), "{lib}");
        }
        for other in [
            "/usr/bin/catpaw-agent",
            "/var/lib/catpaw/so/runner.cwasm",
            "/srv/so.d/data",
            "[heap]",
            "",
        ] {
            assert!(!is_shared_library(other), "{other}");
        }
    }

    #[test]
    fn pages_are_shed_only_at_a_look_with_nothing_running_or_new() {
        let mut rule = IdleRule { seen: 0 };
        assert!(rule.look(0, 0), "idle since start");
        assert!(!rule.look(1, 1), "a session started and runs");
        assert!(!rule.look(1, 1), "it still runs");
        assert!(rule.look(1, 0), "it ended, nothing new since the last look");
        assert!(!rule.look(2, 0), "one came and went between two looks");
        assert!(rule.look(2, 0), "then a whole period idle");
        assert!(!rule.look(2, 3), "running, even with none new");
    }

    #[test]
    fn smaps_lines_are_read_by_mapping() {
        let text = "\
55d0c0000000-55d0c0400000 r-xp 00001000 fd:01 123 /usr/bin/catpaw agent
Size:               4096 kB
Rss:                1024 kB
Anonymous:             0 kB
55d0c0400000-55d0c0500000 rw-p 00000000 00:00 0 
Rss:                  12 kB
Anonymous:            12 kB
";
        let m = parse_smaps(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].path, "/usr/bin/catpaw agent");
        assert_eq!((m[0].start, m[0].end), (0x55d0c0000000, 0x55d0c0400000));
        assert!(!m[0].writable && m[0].rss_kib == 1024 && m[0].anon_kib == 0);
        assert!(m[1].writable && m[1].path.is_empty() && m[1].anon_kib == 12);
    }
}
