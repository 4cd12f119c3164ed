//! Socket options that neither socket2 nor nix names (IP_XFRM_POLICY,
//! PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING): one checked setsockopt(2);
//! and the kernel's count of a socket's drops (SO_MEMINFO).

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

/// The datagrams the kernel dropped at `sock` since it was made (its
/// `sk_drops`, SO_MEMINFO's `SK_MEMINFO_DROPS`): above all a receive
/// buffer that was full when they came. The same number `/proc/net/udp`
/// shows in its `drops` column, and SO_RXQ_OVFL on each datagram.
pub fn drops(sock: BorrowedFd<'_>) -> io::Result<u32> {
    const VARS: usize = libc::SK_MEMINFO_DROPS as usize + 1;
    let mut info = [0u32; VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is live and writable for `len` bytes for the whole
    // call; the kernel writes at most `len` bytes and says how many in
    // `len`. The fd is borrowed open.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < std::mem::size_of_val(&info) {
        return Err(io::Error::other(
            "SO_MEMINFO: no drop count from this kernel",
        ));
    }
    Ok(info[libc::SK_MEMINFO_DROPS as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A receive buffer that overflows: the kernel's count of what it
    /// dropped at the socket is what it did not deliver.
    #[test]
    fn the_kernel_counts_what_a_full_receive_buffer_dropped() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        assert_eq!(drops(rx.as_fd()).unwrap(), 0);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        // Far more than the smallest receive buffer holds, and fewer than
        // the loopback's backlog (netdev_max_backlog, 1000): every one is
        // either delivered or dropped at the socket.
        nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBuf, &0).unwrap();
        let sent = 500;
        for _ in 0..sent {
            tx.send_to(&[0u8; 512], to).unwrap();
        }
        let mut buf = [0u8; 1024];
        let mut got = 0;
        // Until each is accounted for (the softirq may still be at it).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            while rx.recv(&mut buf).is_ok() {
                got += 1;
            }
            let dropped = drops(rx.as_fd()).unwrap() as usize;
            if got + dropped == sent {
                assert!(dropped > 0, "{got} of {sent} delivered");
                break;
            }
            assert!(got + dropped < sent, "{got} delivered, {dropped} dropped");
            assert!(
                std::time::Instant::now() < deadline,
                "{got} delivered, {dropped} dropped of {sent}"
            );
            std::thread::yield_now();
        }
    }
}
