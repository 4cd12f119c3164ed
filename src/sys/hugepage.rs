//! Transparent huge pages for a process's large tables (issue 14 §4).
//!
//! A home agent with a million bindings looks each request up in tables
//! of hundreds of megabytes at random: with 4 KiB pages nearly every such
//! lookup misses the TLB as well as the cache, and in a virtual machine a
//! TLB miss walks two page tables. 2 MiB pages cut those walks. Debian's
//! default (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`)
//! gives them only to memory marked with `madvise(MADV_HUGEPAGE)`:
//! [`HugeLarge`] marks every allocation large enough to hold one.
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

/// The system allocator, with every allocation of [`HUGE`] bytes or more
/// marked for transparent huge pages (its whole 2 MiB pages: the marked
/// range is aligned inwards). Small allocations, i.e. everything of a
/// daemon without large tables, are untouched.
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

/// Faults in the whole pages inside `[p, p + len)` now, when inside
/// [`populated`].
fn populate(p: *mut u8, len: usize) {
    const PAGE: usize = 4096;
    let start = (p as usize).next_multiple_of(PAGE);
    let end = (p as usize).saturating_add(len) / PAGE * PAGE;
    let wanted = POPULATE.try_with(Cell::get).unwrap_or(false);
    if p.is_null() || len < HUGE || start >= end || !wanted {
        return;
    }
    // SAFETY: as in `advise`: the range lies within an allocation just
    // returned to us; MADV_POPULATE_WRITE only faults its pages in
    // (writable, contents unchanged).
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_POPULATE_WRITE,
        );
    }
}

/// Marks the 2 MiB pages wholly inside `[p, p + len)`. A kernel without
/// THP refuses (EINVAL): the memory then simply stays in small pages.
fn advise(p: *mut u8, len: usize) {
    let start = (p as usize).next_multiple_of(HUGE);
    let end = (p as usize).saturating_add(len) / HUGE * HUGE;
    // (A thread being torn down has no flag any more: large pages then.)
    let small = SMALL_ONLY.try_with(Cell::get).unwrap_or(false);
    if p.is_null() || len < HUGE || start >= end || small {
        return;
    }
    // SAFETY: the range lies within an allocation the system allocator
    // just returned to us; MADV_HUGEPAGE changes how its future page
    // faults are served, never its contents or its mapping's validity.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

// SAFETY: every call is forwarded to `System` with its arguments
// unchanged; `advise` only adds a hint on memory `System` returned.
unsafe impl GlobalAlloc for HugeLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is System's.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        populate(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        populate(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        populate(p, new_size);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the allocator hands out is ordinary memory, small or large,
    /// populated or not.
    #[test]
    fn large_and_small_allocations_hold_what_is_written() {
        let a = HugeLarge;
        for size in [16, HUGE - 1, 3 * HUGE + 123] {
            for populate in [false, true] {
                let layout = Layout::from_size_align(size, 8).unwrap();
                let alloc = || {
                    // SAFETY: a non-zero size.
                    unsafe { a.alloc_zeroed(layout) }
                };
                let p = if populate { populated(alloc) } else { alloc() };
                // SAFETY: `p` holds `size` bytes; freed with the layout
                // it was last given.
                unsafe {
                    assert!(!p.is_null());
                    assert_eq!(*p.add(size - 1), 0);
                    p.write_bytes(0xa5, size);
                    let q = a.realloc(p, layout, size * 2);
                    assert_eq!(*q.add(size - 1), 0xa5);
                    a.dealloc(q, Layout::from_size_align(size * 2, 8).unwrap());
                }
            }
        }
    }

    /// Resident pages of `[p, p + len)` (mincore(2)), whole pages only.
    fn resident(p: *mut u8, len: usize) -> (usize, usize) {
        const PAGE: usize = 4096;
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
