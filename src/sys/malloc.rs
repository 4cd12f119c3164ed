//! Giving the allocator's free memory back to the kernel.

/// Returns the heap's free pages to the kernel (glibc `malloc_trim(0)`):
/// after a large configuration is parsed, its peak stays in the process's
/// resident set otherwise. Returns whether anything was released.
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own
    // arenas under their locks; any argument is valid.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Serves every allocation of `bytes` or more with its own mmap(2)
/// (glibc `mallopt(M_MMAP_THRESHOLD)`; its default is 128 KiB and moves
/// up as such chunks are freed). A daemon's receive buffers (64 KiB
/// each: the largest datagram) come from `vec![0; n]`, i.e. calloc: on
/// heap memory that start-up had used and freed, calloc clears all 16
/// pages, and they stay resident though a datagram only ever fills the
/// first; a fresh mapping is zero already, so calloc leaves it alone
/// and only the pages the kernel writes into become resident. Returns
/// whether glibc took the setting.
pub fn mmap_from(bytes: usize) -> bool {
    let Ok(bytes) = libc::c_int::try_from(bytes) else {
        return false;
    };
    // SAFETY: mallopt takes no pointers; glibc checks the value (at most
    // HEAP_MAX_SIZE / 2) and returns 0 for one it refuses.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
}
