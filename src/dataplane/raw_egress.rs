//! How the userspace plane's IP in IP (protocol 4, RFC 2003) and IPv6 in
//! IPv4 (protocol 41, RFC 5454) datagrams leave: on raw sockets without
//! IP_HDRINCL, the kernel writing the outer header.
//!
//! Why not IP_HDRINCL: for such a socket Linux routes with
//! FLOWI_FLAG_ANYSRC and never checks that the outer source is an address
//! of the node. Right after a move, a datagram from the care-of address
//! the kernel had just removed (mip4d's rtnetlink view, [`super::source`],
//! lags it under load) left over the new, untrusted link with the home
//! address inside: exactly what RFC 5266 §3.1.3 forbids. Without it the
//! kernel's route lookup refuses a source no local device has, atomically
//! with the address's removal; [`source_gone`] tells that refusal apart.
//!
//! The plane still writes the outer header ([`super::ipip::encapsulate`],
//! [`super::ipv6::encapsulate`]); it is read back here for what the
//! kernel's header must carry: the source (IP_PKTINFO's `ipi_spec_dst`),
//! TTL and TOS per datagram (IP_TTL, IP_TOS control messages; RFC 2003
//! §3.1 copies the inner TOS), DF per socket (IP_MTU_DISCOVER, changed
//! when the class changes; RFC 2003 §3.1 copies the inner DF, RFC 4213
//! §3.2 decides it for IPv6). The identification is the kernel's.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn};
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::ipv4::{Ipv4Packet, PROTO_IPIP};
use super::ipv6::PROTO_IPV6;

/// The raw sockets outer datagrams leave from, one per protocol (the
/// kernel writes the socket's protocol into the header). They are the
/// sockets the plane receives on as well: a third raw socket of either
/// protocol would be handed a copy of every datagram that arrives.
pub(super) struct RawEgress {
    ipip: Follow,
    ipv6: Follow,
}

/// A raw socket and the DF class its IP_MTU_DISCOVER is set for.
struct Follow {
    sock: Arc<AsyncFd<Socket>>,
    df: Option<bool>,
}

impl RawEgress {
    /// `ipip`: raw IPPROTO_IPIP; `ipv6`: raw IPPROTO_IPV6 (41); neither
    /// with IP_HDRINCL.
    pub fn new(ipip: Arc<AsyncFd<Socket>>, ipv6: Arc<AsyncFd<Socket>>) -> Self {
        RawEgress {
            ipip: Follow {
                sock: ipip,
                df: None,
            },
            ipv6: Follow {
                sock: ipv6,
                df: None,
            },
        }
    }

    /// Sends `out`, an outer IPv4 header the plane wrote and the datagram
    /// it carries, as the kernel's own datagram with that header's source,
    /// destination, protocol, TTL, TOS and DF. `leave` is asked inside the
    /// send itself (after any wait for the socket) and, when it says no,
    /// nothing is sent. EMSGSIZE means the datagram (with DF) does not fit
    /// the path MTU; [`source_gone`] tells a refused source.
    pub async fn send(&mut self, out: &[u8], mut leave: impl FnMut() -> bool) -> io::Result<()> {
        let hdr = Ipv4Packet::new_checked(out)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let f = match hdr.protocol() {
            PROTO_IPIP => &mut self.ipip,
            PROTO_IPV6 => &mut self.ipv6,
            p => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no raw socket for outer protocol {p}"),
                ))
            }
        };
        let df = hdr.dont_frag();
        if f.df != Some(df) {
            f.df = None;
            set_dont_fragment(f.sock.as_fd(), df)?;
            f.df = Some(df);
        }
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(hdr.src_addr()).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let ttl = libc::c_int::from(hdr.ttl());
        let tos = hdr.tos();
        let to = SockaddrIn::from(SocketAddrV4::new(hdr.dst_addr(), 0));
        let payload = [IoSlice::new(hdr.payload())];
        f.sock
            .async_io(Interest::WRITABLE, |s| {
                if !leave() {
                    return Ok(());
                }
                let cmsgs = [
                    ControlMessage::Ipv4PacketInfo(&info),
                    ControlMessage::Ipv4Ttl(&ttl),
                    ControlMessage::Ipv4Tos(&tos),
                ];
                sendmsg(
                    s.as_raw_fd(),
                    &payload,
                    &cmsgs,
                    MsgFlags::empty(),
                    Some(&to),
                )
                .map(drop)
                .map_err(io::Error::from)
            })
            .await
    }
}

/// DF on what a socket sends from now on: IP_MTU_DISCOVER DO (DF set; one
/// that does not fit the path MTU is refused with EMSGSIZE) or DONT (DF
/// clear; fragmented to fit). Linux's default, WANT, would decide by the
/// route instead of by the inner header.
pub(super) fn set_dont_fragment(sock: BorrowedFd<'_>, df: bool) -> io::Result<()> {
    let mode = if df {
        libc::IP_PMTUDISC_DO
    } else {
        libc::IP_PMTUDISC_DONT
    };
    crate::sys::socket::setsockopt(sock, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &mode)
}

/// Whether the kernel refused a send (`e`) because its source `from` is
/// no address of the node (any more): the route lookup of a socket that
/// names its source fails with ENETUNREACH (EINVAL on older kernels) for
/// one no local device has, as a bound UDP socket's does. ENETUNREACH is
/// also "no route", so the source is asked about once more the way bind(2)
/// does (EADDRNOTAVAIL for a non-local address); only on this error path.
pub(super) fn source_gone(e: &io::Error, from: Ipv4Addr) -> bool {
    let refused = matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH | libc::EINVAL | libc::EADDRNOTAVAIL)
    );
    refused
        && std::net::UdpSocket::bind(SocketAddrV4::new(from, 0))
            .is_err_and(|b| b.raw_os_error() == Some(libc::EADDRNOTAVAIL))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a refused route lookup for a source that is not local counts
    /// as a source that went; "no route" from a local one, and any other
    /// error, do not.
    #[test]
    fn a_refused_send_is_a_gone_source_only_when_the_source_is_not_local() {
        let unreach = io::Error::from_raw_os_error(libc::ENETUNREACH);
        // TEST-NET-3 (RFC 5737): for documentation, no machine's address.
        let documentation = Ipv4Addr::new(203, 0, 113, 254);
        assert!(source_gone(&unreach, documentation));
        assert!(source_gone(
            &io::Error::from_raw_os_error(libc::EINVAL),
            documentation
        ));
        assert!(!source_gone(&unreach, Ipv4Addr::LOCALHOST));
        assert!(!source_gone(
            &io::Error::from_raw_os_error(libc::EMSGSIZE),
            documentation
        ));
    }
}
