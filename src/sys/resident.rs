//! Letting go of the code pages that only start-up ran (issue 14 §5).
//!
//! A daemon's resident set is mostly clean file pages: its binary's and
//! the shared libraries' code and read-only data, mapped from the page
//! cache. On every fault of a file mapping the kernel maps up to 16
//! neighbouring cached pages as well (fault-around, `fault_around_bytes`;
//! madvise(MADV_RANDOM) does not turn it off), and start-up (argument
//! parsing, the configuration, logging, the first netlink dumps) runs code
//! spread over the whole binary, so nearly all of it stays mapped though
//! idle never runs it again. A list of functions for the linker to put
//! together only helps while it matches the code, and goes stale with
//! every change.
//!
//! So, once started, the daemon unmaps its clean file pages
//! (MADV_DONTNEED) and the ones it runs from then on fault back in from
//! the page cache, which keeps them: nothing is read from disk, and what
//! stays resident is what the daemon runs, whatever the code's layout.
//! This is what reclaim does to any process under memory pressure.
//!
//! Only mappings where that loses nothing are touched: private file
//! mappings that are not writable and hold no anonymous page. For such a
//! mapping every page is the page cache's own, and MADV_DONTNEED only
//! drops the page-table entries. A page the process ever wrote (a
//! relocated relro page, a debugger's breakpoint, a uprobe) is an
//! anonymous copy and makes its whole mapping ineligible: MADV_DONTNEED
//! would throw that copy away. Writable mappings (.data, .bss, the heap)
//! are never touched.

use std::io;
use std::ops::Range;

/// One mapping of /proc/self/smaps that [`clean_file_mappings`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub addresses: Range<usize>,
    /// Its resident pages now, KiB.
    pub rss_kib: u64,
}

/// One mapping of a /proc/PID/smaps text: its header line
/// (`ADDR-ADDR PERMS OFFSET DEV INODE [PATH]`) and its `Key: N kB` lines.
pub struct SmapsEntry<'a> {
    pub addresses: Range<usize>,
    pub perms: &'a str,
    /// A file's path (`/`...); None for the heap, stack, vdso, anonymous.
    pub path: Option<&'a str>,
    pub vm_flags: &'a str,
    kib: Vec<(&'a str, u64)>,
}

impl SmapsEntry<'_> {
    /// The value of a `Key: N kB` line, None when missing or unparsable.
    pub fn kib(&self, key: &str) -> Option<u64> {
        self.kib.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    }
}

/// The mappings of `smaps`, in order. A header whose addresses do not
/// parse starts no entry: its lines are skipped.
pub fn smaps_entries(smaps: &str) -> Vec<SmapsEntry<'_>> {
    let mut out: Vec<SmapsEntry> = Vec::new();
    let mut in_entry = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((from, to)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let (Ok(from), Ok(to)) = (
                usize::from_str_radix(from, 16),
                usize::from_str_radix(to, 16),
            ) else {
                in_entry = false;
                continue;
            };
            let perms = words.next().unwrap_or("");
            out.push(SmapsEntry {
                addresses: from..to,
                perms,
                path: words.nth(3).filter(|p| p.starts_with('/')),
                vm_flags: "",
                kib: Vec::new(),
            });
            in_entry = true;
            continue;
        }
        let Some(e) = out.last_mut().filter(|_| in_entry) else {
            continue;
        };
        match first.strip_suffix(':') {
            Some("VmFlags") => e.vm_flags = line["VmFlags:".len()..].trim(),
            Some(key) => {
                if let Some(v) = words.next().and_then(|v| v.parse().ok()) {
                    e.kib.push((key, v));
                }
            }
            None => {}
        }
    }
    out
}

/// The mappings of `smaps` (the text of /proc/PID/smaps) whose pages can
/// all be unmapped without losing anything: private, not writable,
/// backed by a file (a path), with `Anonymous: 0`, neither locked nor
/// I/O memory (VmFlags `lo`, `io`, `pf`).
pub fn clean_file_mappings(smaps: &str) -> Vec<Mapping> {
    smaps_entries(smaps)
        .into_iter()
        .filter(|e| {
            let perms = e.perms.as_bytes();
            perms.len() == 4
                && perms[1] == b'-'
                && perms[3] == b'p'
                && e.path.is_some()
                && e.kib("Anonymous") == Some(0)
                && !e
                    .vm_flags
                    .split_whitespace()
                    .any(|f| matches!(f, "lo" | "io" | "pf"))
        })
        .map(|e| Mapping {
            rss_kib: e.kib("Rss").unwrap_or(0),
            addresses: e.addresses,
        })
        .filter(|m| m.rss_kib > 0)
        .collect()
}

/// Unmaps the calling process's clean file pages (see the module's
/// comment): they fault back in from the page cache as they run. Returns
/// how many KiB were resident in the mappings it released.
pub fn release_clean_file_pages() -> io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for m in clean_file_mappings(&smaps) {
        let len = m.addresses.end - m.addresses.start;
        // SAFETY: the range is one whole mapping of this process, read
        // from smaps just now: private, not writable, every resident page
        // the file's page-cache page (Anonymous: 0), not locked, not I/O
        // memory. MADV_DONTNEED on it only drops page-table entries; the
        // next access maps the same page-cache page again, with the same
        // contents (a write to the file would show through the mapping
        // whether its pages were mapped or not). No Rust object is backed
        // by it except the code and constants that the loader mapped
        // there, which stay valid. A mapping that went away since the
        // read makes madvise fail (ENOMEM), which is skipped.
        let rc = unsafe { libc::madvise(m.addresses.start as *mut _, len, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += m.rss_kib;
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55ca2509b000-55ca25135000 r--p 00000000 fe:00 8947083                    /usr/sbin/mip4d
Rss:                 384 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55ca25135000-55ca25364000 r-xp 00099000 fe:00 8947083                    /usr/sbin/mip4d
Rss:                1980 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
55ca25364000-55ca2537e000 r--p 002c7000 fe:00 8947083                    /usr/sbin/mip4d
Rss:                 104 kB
Anonymous:           104 kB
VmFlags: rd mr mw me ac sd
55ca2537e000-55ca25381000 rw-p 002e0000 fe:00 8947083                    /usr/sbin/mip4d
Rss:                  12 kB
Anonymous:            12 kB
VmFlags: rd wr mr mw me ac sd
55ca5d92d000-55ca5d9b3000 rw-p 00000000 00:00 0                          [heap]
Rss:                 412 kB
Anonymous:           412 kB
VmFlags: rd wr mr mw me ac sd
7fe579e45000-7fe579f9b000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1068 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
7fe579e9b000-7fe579e9c000 r-xp 00000000 fe:00 326280                     /usr/lib/locked.so
Rss:                   4 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me lo sd
7fe579f00000-7fe579f10000 r--s 00000000 fe:00 326281                     /run/shared
Rss:                  64 kB
Anonymous:             0 kB
VmFlags: rd mr me ms sd
7fe57a033000-7fe57a035000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me de sd
7fe57a036000-7fe57a05c000 r-xp 00001000 fe:00 325843                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
Rss:                   0 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
";

    #[test]
    fn only_unwritten_private_file_mappings_are_released() {
        let got = clean_file_mappings(SMAPS);
        let want = [
            (0x55ca2509b000..0x55ca25135000, 384),
            (0x55ca25135000..0x55ca25364000, 1980),
            (0x7fe579e45000..0x7fe579f9b000, 1068),
        ];
        let got: Vec<_> = got.into_iter().map(|m| (m.addresses, m.rss_kib)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_mapping_without_an_anonymous_line_is_kept() {
        let smaps = "7f00-8f00 r-xp 00000000 fe:00 1 /lib/x.so\nRss: 4 kB\n";
        assert!(clean_file_mappings(smaps).is_empty());
    }

    #[test]
    fn releasing_keeps_the_process_running() {
        // This test binary's own code and libc's, released (they were
        // resident: this code runs) and run again.
        let released = release_clean_file_pages().expect("/proc/self/smaps");
        assert!(released > 0);
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        assert!(!clean_file_mappings(&smaps).is_empty());
    }
}
