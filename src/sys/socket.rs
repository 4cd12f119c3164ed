//! Socket options that neither socket2 nor nix names (IP_XFRM_POLICY,
//! PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING): one checked setsockopt(2).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets option `name` at `level` to the bytes of `value`, as the kernel
/// reads a struct or an int (`Copy`: plain data, nothing to drop).
pub fn setsockopt<T: Copy>(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` for the whole call and the length is
    // exactly its size; the kernel only reads it. The fd is borrowed open.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
