//! Software prefetch (x86-64 PREFETCHT0): the CPU starts loading the
//! cache lines an object spans and goes on, instead of stalling at the
//! first read. At a million bindings a registration reads some fifteen
//! lines at random across hundreds of megabytes (the screen's key, the
//! node, the binding, the installer's record); asked for a whole batch
//! of messages before any of them is handled, their misses overlap
//! instead of following one another (issue 14 §4). A hint only: on other
//! architectures it does nothing.

/// The most lines [`lines`] asks for: a node of the agent's spans five.
const MAX_LINES: usize = 8;

const LINE: usize = 64;

/// Starts loading the cache lines `r` spans (at most [`MAX_LINES`]).
#[inline]
pub fn lines<T: ?Sized>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let len = std::mem::size_of_val(r);
        if len == 0 {
            return;
        }
        let start = (r as *const T).cast::<i8>();
        // Every line holds one of these offsets: each line's first byte
        // within the object, and its last byte.
        let offsets = (0..len).step_by(LINE).take(MAX_LINES - 1).chain([len - 1]);
        for at in offsets {
            // SAFETY: a prefetch reads and writes no memory and never
            // faults (Intel SDM, PREFETCHh); `at` is within the object
            // `r` refers to, so the address is one it may name.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.add(at)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hint changes nothing: whatever the size, the object reads the
    /// same after it (and a zero-sized one is no address to ask for).
    #[test]
    fn a_prefetch_leaves_what_it_names_as_it_was() {
        let big = [7u8; 1000];
        lines(&big);
        lines(&big[999..]);
        lines(&());
        lines::<[u8]>(&[]);
        assert!(big.iter().all(|&b| b == 7));
    }
}
