//! Giving the allocator's free memory back to the kernel.

/// Returns the heap's free pages to the kernel (glibc `malloc_trim(0)`):
/// after a large configuration is parsed, its peak stays in the process's
/// resident set otherwise. Returns whether anything was released.
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own
    // arenas under their locks; any argument is valid.
    unsafe { libc::malloc_trim(0) == 1 }
}
