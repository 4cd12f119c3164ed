//! Transparent huge pages for a process's large tables (issue 14 §4).
//!
//! A home agent with a million bindings looks each request up in tables
//! of hundreds of megabytes at random: with 4 KiB pages nearly every such
//! lookup misses the TLB as well as the cache, and in a virtual machine a
//! TLB miss walks two page tables. 2 MiB pages cut those walks. Debian's
//! default (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`)
//! gives them only to memory marked with `madvise(MADV_HUGEPAGE)`:
//! [`HugeLarge`] gives every allocation large enough to hold one a
//! mapping of its own, aligned to 2 MiB and so marked.
//!
//! The price is at the fault: the kernel finds 2 MiB of contiguous memory
//! first (`defrag` = `madvise`: compacting memory, synchronously, when it
//! has none free). A table lives long and pays that once; a buffer made
//! once and dropped soon (a snapshot of a table) is made under
//! [`small_pages`], or a loaded machine's compaction stalls the thread
//! that fills it (seconds at a million bindings).
//!
//! A table that grows while the daemon serves pays its faults in the
//! request that grows it: at a million bindings a hash table's doubling
//! faulted in half a gigabyte at once, a second and a half in which
//! nothing was answered. Tables are therefore sized at start for what the
//! configuration allows, inside [`populated`], which takes their faults
//! there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// A huge page on x86_64 and aarch64 (4 KiB base pages).
const HUGE: usize = 2 << 20;

/// A base page.
const PAGE: usize = 4096;

/// The system allocator for everything under [`HUGE`] bytes; every
/// allocation of [`HUGE`] bytes or more gets a mapping of its own,
/// aligned to 2 MiB and marked for transparent huge pages. Small
/// allocations, i.e. everything of a daemon without large tables, are
/// untouched.
///
/// Why not glibc's for the large ones too: glibc serves a request of any
/// size from free chunks of its heap when it has them, and a daemon that
/// parsed a configuration of a million nodes has hundreds of megabytes
/// free there. A table placed on such memory keeps the small pages that
/// parsing faulted in, `MADV_HUGEPAGE` or not (the kernel does not merge
/// them; khugepaged may, minutes later). So tables sized at start (the
/// cache's index, the expiry heap: 18 and 31 MiB at a million nodes)
/// lay in small pages on the heap, and every lookup missed the TLB.
/// A fresh mapping aligned to 2 MiB is faulted in huge pages, whole.
pub struct HugeLarge;

thread_local! {
    /// Inside [`small_pages`] on this thread.
    static SMALL_ONLY: Cell<bool> = const { Cell::new(false) };
    /// Inside [`populated`] on this thread.
    static POPULATE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's large allocations left in small pages:
/// for transient buffers, whose huge pages' faults would cost more than
/// their TLB saves.
pub fn small_pages<T>(f: impl FnOnce() -> T) -> T {
    let was = SMALL_ONLY.with(|s| s.replace(true));
    let r = f();
    SMALL_ONLY.with(|s| s.set(was));
    r
}

/// Runs `f` with this thread's large allocations faulted in as they are
/// made (`MADV_POPULATE_WRITE`): for tables sized at start for what the
/// daemon may come to hold, so that no request later stands still while
/// the kernel finds and zeroes their pages. Their memory is resident from
/// then on. A kernel older than 5.14 refuses (EINVAL): the pages are then
/// faulted in as they are first written, as without it.
pub fn populated<T>(f: impl FnOnce() -> T) -> T {
    let was = POPULATE.with(|s| s.replace(true));
    let r = f();
    POPULATE.with(|s| s.set(was));
    r
}

/// Whether `layout` is served by a mapping of its own.
fn large(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= HUGE
}

/// The length of the mapping that holds `size` bytes: whole huge pages
/// (a Layout's size is at most isize::MAX, so this cannot overflow).
fn span(size: usize) -> usize {
    size.next_multiple_of(HUGE)
}

/// A new mapping of `span(size)` bytes at a 2 MiB boundary (zeroed, as
/// every fresh anonymous mapping), marked and populated as this thread
/// asks; null when the kernel has no room.
fn map(size: usize) -> *mut u8 {
    let len = span(size);
    // One huge page more than needed, then the ends cut off: the kernel
    // aligns only some anonymous mappings (6.7 on, whole huge pages).
    let Some(wide) = len.checked_add(HUGE) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a new private anonymous mapping; no existing memory named.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            wide,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let base = base as usize;
    let start = base.next_multiple_of(HUGE);
    let (head, tail) = (start - base, base + wide - (start + len));
    // SAFETY: both ranges lie in the mapping just made, outside what is
    // handed out.
    unsafe {
        if head > 0 {
            libc::munmap(base as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
    }
    prepare(start as *mut u8, 0, size);
    start as *mut u8
}

/// Marks the mapping at `p` for huge pages (outside [`small_pages`]) and
/// faults in its bytes `[from, size)` (inside [`populated`]). A kernel
/// without THP refuses the mark (EINVAL): the memory then simply stays
/// in small pages.
fn prepare(p: *mut u8, from: usize, size: usize) {
    // (A thread being torn down has no flags any more: large pages, and
    // faulted in as written.)
    let small = SMALL_ONLY.try_with(Cell::get).unwrap_or(false);
    let populate = POPULATE.try_with(Cell::get).unwrap_or(false);
    // SAFETY: `p` starts a mapping of ours of `span(size)` bytes; the
    // advice changes how its pages are faulted in, never its contents.
    unsafe {
        if !small {
            libc::madvise(p.cast(), span(size), libc::MADV_HUGEPAGE);
        }
        let from = from / PAGE * PAGE;
        let to = size.next_multiple_of(PAGE);
        if populate && from < to {
            libc::madvise(p.add(from).cast(), to - from, libc::MADV_POPULATE_WRITE);
        }
    }
}

/// Gives the mapping of a large allocation of `size` bytes back.
///
/// # Safety
/// `p` is a live allocation of `size` bytes made by [`map`] (or grown
/// by [`remap`]), not used afterwards.
unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: the caller's contract: the whole mapping is ours.
    unsafe { libc::munmap(p.cast(), span(size)) };
}

/// Grows or shrinks a large allocation in its mapping, moving the
/// mapping (never copying the bytes) when it cannot grow in place;
/// null, the old one intact, when the kernel has no room.
///
/// # Safety
/// As [`unmap`], for `old` bytes at `p`; `p` is not used afterwards
/// unless null is returned.
unsafe fn remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    if span(old) == span(new) {
        return p;
    }
    // SAFETY: the caller's contract; MREMAP_MAYMOVE keeps the contents
    // (and the mark) wherever the mapping ends up.
    let q = unsafe { libc::mremap(p.cast(), span(old), span(new), libc::MREMAP_MAYMOVE) };
    if q == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let q = q as *mut u8;
    if new > old {
        prepare(q, old, new);
    }
    q
}

// SAFETY: small allocations are forwarded to `System` with their
// arguments unchanged; large ones are whole mappings of their own,
// aligned to 2 MiB (so to every alignment `large` admits), and each is
// released with the size it was made or last resized with.
unsafe impl GlobalAlloc for HugeLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if large(&layout) {
            return map(layout.size());
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if large(&layout) {
            // A fresh anonymous mapping reads as zeroes.
            return map(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if large(&layout) {
            // SAFETY: made by `map` (or `remap`) with this size.
            return unsafe { unmap(ptr, layout.size()) };
        }
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `new_size` with this alignment
        // is a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (large(&layout), large(&new)) {
            // SAFETY: as above.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // mremap(2) answers at page boundaries only.
            (true, true) if layout.align() <= PAGE => {
                // SAFETY: made by `map` with the old size.
                unsafe { remap(ptr, layout.size(), new_size) }
            }
            _ => {
                // Across the line (or over-aligned): made anew, copied.
                // SAFETY: `new` is valid (above); both blocks are live
                // and distinct; the old one is released as it was made.
                unsafe {
                    let q = self.alloc(new);
                    if !q.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    q
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the allocator hands out is ordinary memory, small or large,
    /// populated or not, grown and shrunk across the line between them
    /// and within either side (in place, moved, or copied when
    /// over-aligned for mremap).
    #[test]
    fn large_and_small_allocations_hold_what_is_written() {
        let a = HugeLarge;
        let sizes = [16, HUGE - 1, 3 * HUGE + 123];
        for (size, align, populate) in sizes
            .into_iter()
            .flat_map(|s| [(s, 8), (s, 2 * PAGE)])
            .flat_map(|(s, al)| [(s, al, false), (s, al, true)])
        {
            let layout = Layout::from_size_align(size, align).unwrap();
            let alloc = || {
                // SAFETY: a non-zero size.
                unsafe { a.alloc_zeroed(layout) }
            };
            let p = if populate { populated(alloc) } else { alloc() };
            // SAFETY: `p` holds `size` bytes; each block is used within
            // the size it was last given and freed with it.
            unsafe {
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                assert!((0..size).step_by(997).all(|i| *p.add(i) == 0));
                assert_eq!(*p.add(size - 1), 0);
                p.write_bytes(0xa5, size);
                let grown = size * 5 + 7;
                let q = a.realloc(p, layout, grown);
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0);
                assert_eq!(*q.add(size - 1), 0xa5);
                q.add(size).write_bytes(0x5a, grown - size);
                let shrunk = size / 2 + 1;
                let r = a.realloc(q, Layout::from_size_align(grown, align).unwrap(), shrunk);
                assert!(!r.is_null());
                assert_eq!(r as usize % align, 0);
                assert!((0..shrunk).all(|i| *r.add(i) == 0xa5));
                a.dealloc(r, Layout::from_size_align(shrunk, align).unwrap());
            }
        }
    }

    /// The mapping of /proc/self/smaps that holds `[p, p + len)`: its
    /// VmFlags, None when no one mapping holds it all.
    fn flags_of(p: *mut u8, len: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let (from, to) = (p as usize, p as usize + len);
        crate::sys::resident::smaps_entries(&smaps)
            .iter()
            .find(|e| e.addresses.start <= from && to <= e.addresses.end)
            .map(|e| e.vm_flags.to_string())
    }

    /// A large allocation starts a 2 MiB page and is marked for huge
    /// pages whole (VmFlags `hg`), whatever the heap held before: a table
    /// made on heap memory a configuration's parsing had used and freed
    /// kept that memory's small pages, mark or not. Inside `small_pages`
    /// it is left unmarked.
    #[test]
    fn a_large_allocation_is_a_mapping_of_its_own_in_huge_pages() {
        let a = HugeLarge;
        // Heap memory used and freed, as parsing leaves it.
        let garbage: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 2048]).collect();
        drop(garbage);
        for size in [HUGE, 9 * HUGE + 4321] {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: a non-zero size; freed below with the same layout.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE, 0, "at a 2 MiB boundary");
            let flags = flags_of(p, span(size)).expect("one mapping holds it all");
            assert!(flags.split(' ').any(|f| f == "hg"), "flags {flags}");
            // SAFETY: as above.
            unsafe { a.dealloc(p, layout) };
            // SAFETY: as above.
            let p = small_pages(|| unsafe { a.alloc(layout) });
            assert!(!p.is_null());
            let flags = flags_of(p, span(size)).expect("one mapping holds it all");
            assert!(!flags.split(' ').any(|f| f == "hg"), "flags {flags}");
            // SAFETY: as above.
            unsafe { a.dealloc(p, layout) };
        }
    }

    /// Resident pages of `[p, p + len)` (mincore(2)), whole pages only.
    fn resident(p: *mut u8, len: usize) -> (usize, usize) {
        let start = (p as usize).next_multiple_of(PAGE);
        let end = (p as usize + len) / PAGE * PAGE;
        let mut v = vec![0u8; (end - start) / PAGE];
        // SAFETY: the range lies within one live allocation; `v` has a
        // byte per page of it.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, end - start, v.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
        (v.iter().filter(|&&b| b & 1 == 1).count(), v.len())
    }

    /// A table made inside `populated` is resident before anything is
    /// written to it: the request that first writes a page finds it there.
    #[test]
    fn a_table_made_inside_populated_is_resident_at_once() {
        let a = HugeLarge;
        let size = 8 * HUGE;
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a non-zero size; freed below with the same layout.
        let p = populated(|| unsafe { a.alloc(layout) });
        assert!(!p.is_null());
        let (present, pages) = resident(p, size);
        // SAFETY: as above.
        unsafe { a.dealloc(p, layout) };
        assert_eq!(present, pages, "{present} of {pages} pages resident");
    }
}
