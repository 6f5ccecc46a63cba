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

use std::path::Path;

/// What [`shed_startup_memory`] handed back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    /// Resident KiB of the executable's clean mappings dropped.
    pub exe_kib: u64,
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

/// Drops the resident pages of the executable's clean, read-only
/// mappings, and trims the heap. Best effort: on any failure to read the
/// mappings it drops nothing.
pub fn shed_startup_memory() -> Shed {
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
        exe_kib = shed.exe_kib,
        mappings = shed.mappings,
        "handed back the memory only starting needed"
    );
    shed
}

fn drop_clean_pages(exe: &Path, smaps: &str) -> Shed {
    let exe = exe.display().to_string();
    let mut shed = Shed::default();
    for m in parse_smaps(smaps) {
        if m.path != exe || m.writable || m.anon_kib != 0 || m.rss_kib == 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping of the executable file that
        // is not writable and holds no anonymous page: every resident page
        // is a clean copy of the file, which the next access faults back in
        // unchanged. Nothing else is unmapped or changed.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            shed.exe_kib += m.rss_kib;
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
        let shed = shed_startup_memory();
        assert!(shed.mappings > 0 && shed.exe_kib > 0, "{shed:?}");
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
