//! AF_PACKET sockets (packet(7)) bound to one interface: the foreign
//! agent's registration link (it needs the link-layer source address and
//! answers by it, RFC 5944 §3.7), the home agent's gratuitous ARP
//! (§4.6) and the lab's delay line. socket2 opens the socket; what no
//! crate types is the `sockaddr_ll` of bind, recvfrom and sendto.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::socket::setsockopt;

/// A link-layer (Ethernet) address.
pub type Mac = [u8; 6];

/// linux/if_ether.h protocol numbers, host order.
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_ALL: u16 = 0x0003;
/// `sll_pkttype` of frames this host sent (linux/if_packet.h).
pub const PACKET_OUTGOING: u8 = 4;
/// The link-layer broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

// linux/if_packet.h socket options (SOL_PACKET).
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// What the socket reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// SOCK_DGRAM: network-layer datagrams; the kernel strips and adds the
    /// link-layer header, the address carries the peer's MAC.
    Datagram,
    /// SOCK_RAW: whole link-layer frames.
    Frame,
}

/// A packet socket bound to one interface and one protocol.
#[derive(Debug)]
pub struct PacketSocket {
    sock: Socket,
    ifindex: u32,
    protocol: u16,
}

fn sockaddr_ll(ifindex: u32, protocol: u16, mac: Option<Mac>) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    let halen = match mac {
        Some(m) => {
            addr[..6].copy_from_slice(&m);
            6
        }
        None => 0,
    };
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: halen,
        sll_addr: addr,
    }
}

const SLL_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;

impl PacketSocket {
    /// Opens a blocking, close-on-exec packet socket for `protocol` (host
    /// order) and binds it to interface `ifindex`.
    pub fn bind(ifindex: u32, protocol: u16, framing: Framing) -> io::Result<Self> {
        let ty = match framing {
            Framing::Datagram => Type::DGRAM,
            Framing::Frame => Type::RAW,
        };
        let proto = Protocol::from(i32::from(protocol.to_be()));
        let sock = Socket::new(Domain::PACKET, ty, Some(proto))?;
        sock.set_cloexec(true)?;
        let sll = sockaddr_ll(ifindex, protocol, None);
        // SAFETY: `sll` is a valid sockaddr_ll that lives across the call
        // and the length is its size; the fd is open.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                SLL_LEN,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket {
            sock,
            ifindex,
            protocol,
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.sock.set_nonblocking(on)
    }

    /// A receive that waits at most `timeout` (then `WouldBlock`).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    /// PACKET_VNET_HDR: a `virtio_net_hdr` in front of every frame, so GSO
    /// frames and partial checksums pass through intact.
    pub fn set_vnet_hdr(&self) -> io::Result<()> {
        setsockopt(self.as_fd(), libc::SOL_PACKET, PACKET_VNET_HDR, &1i32)
    }

    /// PACKET_QDISC_BYPASS: frames sent go to the driver, past the
    /// device's qdisc (and past the `noop` qdisc a device has between
    /// its carrier coming on and the kernel's linkwatch work).
    pub fn set_qdisc_bypass(&self) -> io::Result<()> {
        setsockopt(self.as_fd(), libc::SOL_PACKET, PACKET_QDISC_BYPASS, &1i32)
    }

    /// PACKET_IGNORE_OUTGOING: no copies of the frames this host sends.
    pub fn set_ignore_outgoing(&self) -> io::Result<()> {
        setsockopt(
            self.as_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &1i32,
        )
    }

    /// Reads one frame or datagram.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.sock).read(buf)
    }

    /// Writes one frame or datagram out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        (&self.sock).write(frame)
    }

    /// Reads one datagram: its length, the sender's link-layer address and
    /// the packet type (`PACKET_OUTGOING` for our own).
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Mac, u8)> {
        let mut sll = sockaddr_ll(0, 0, None);
        let mut len = SLL_LEN;
        // SAFETY: `buf` is valid for `buf.len()` writable bytes and `sll`
        // for `len`; the kernel writes at most that much into each.
        let n = unsafe {
            libc::recvfrom(
                self.sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&sll.sll_addr[..6]);
        Ok((n as usize, mac, sll.sll_pkttype))
    }

    /// Sends one datagram to link-layer address `mac` on the bound
    /// interface (the kernel adds the link-layer header).
    pub fn send_to(&self, mac: Mac, datagram: &[u8]) -> io::Result<()> {
        let sll = sockaddr_ll(self.ifindex, self.protocol, Some(mac));
        // SAFETY: `datagram` is valid for its length and `sll` is a valid
        // sockaddr_ll of `SLL_LEN` bytes; both live across the call.
        let n = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                SLL_LEN,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_ll_is_in_network_order_with_the_mac() {
        let sll = sockaddr_ll(7, ETH_P_ARP, Some(BROADCAST));
        assert_eq!(sll.sll_family, libc::AF_PACKET as u16);
        assert_eq!(sll.sll_protocol, 0x0806u16.to_be());
        assert_eq!(sll.sll_ifindex, 7);
        assert_eq!(sll.sll_halen, 6);
        assert_eq!(&sll.sll_addr[..6], &BROADCAST);
        assert_eq!(sockaddr_ll(7, ETH_P_IP, None).sll_halen, 0);
    }
}
