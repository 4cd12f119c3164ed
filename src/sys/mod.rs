//! The operating-system calls that no crate covers in the shape needed:
//! one file per facility, every `unsafe` block in it with a SAFETY
//! comment, and a safe API above it. Everything else uses `nix`,
//! `socket2` or the netlink crates directly.
//! - [`tun`]: the TUN device (TUNSETIFF on /dev/net/tun).
//! - [`packet`]: AF_PACKET sockets with their `sockaddr_ll`.
//! - [`socket`]: socket options no crate names (IP_XFRM_POLICY, ...).
//! - [`async_fd`]: registering an owned fd with tokio's reactor.
//! - [`malloc`]: handing free heap back to the kernel (malloc_trim), and
//!   large buffers their own mappings (mallopt).
//! - [`sched`]: real-time scheduling for a thread (SCHED_FIFO), and a
//!   background thread's lower share (nice 10).
//! - [`resident`]: unmapping the clean code pages start-up ran
//!   (MADV_DONTNEED on unwritten private file mappings), and the
//!   /proc/PID/smaps reader the lab's memory figures use as well.
//! - [`hugepage`]: an allocator that gives large tables transparent huge
//!   pages (madvise MADV_HUGEPAGE).
//! - [`prefetch`]: asking the CPU to start loading an object's cache
//!   lines before they are read (PREFETCHT0).

pub mod async_fd;
pub mod hugepage;
pub mod malloc;
pub mod packet;
pub mod prefetch;
pub mod resident;
pub mod sched;
pub mod socket;
pub mod tun;
