//! A DSMIPv4 mobile node's kernel side, for the kernel tier's
//! `dual-stack-kernel` scenario (RFC 5454 on mip4-ha's kernel backend):
//! one signed registration request with an IPv6 Prefix Request
//! (`lab::dsmip-register`), and the node's `sit` link made by
//! [`crate::dataplane::sit::up`], the function mip4d's kernel backend
//! uses (`lab::sit-up`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, SystemTime};

use ipnet::Ipv6Net;

use super::netns::{self, Netns};
use super::{Error, Result};
use crate::auth::{self, SecurityAssociation};
use crate::dataplane::binding::{Ipv6TunnelTo, Role};
use crate::dataplane::{sit, TunnelDevice, TunnelError};
use crate::netlink::Netlink;
use crate::replay::NtpTimestamp;
use crate::wire::extension::Dsmipv4Ext;
use crate::wire::{Extension, Flags, ReplyRepr, RequestRepr, MIP_PORT};

/// What one registration is to ask.
#[derive(Debug, Clone)]
pub struct Ask {
    pub home_agent: Ipv4Addr,
    pub home: Ipv4Addr,
    pub care_of: Ipv4Addr,
    pub spi: u32,
    pub key: Vec<u8>,
    pub lifetime: u16,
    pub tunnel_to: Ipv6TunnelTo,
}

/// What the home agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u8,
    /// The IPv6 Prefix Reply's code and prefix, if it had one.
    pub prefix_reply: Option<(u8, Ipv6Net)>,
}

/// The request: co-located care-of address (D), reverse tunnelling (T),
/// an IPv6 Prefix Request asking the HA to assign the prefix (all zeros,
/// RFC 5454 §2.1) and, to the care-of address, the Tunneling Mode
/// extension (§2.3), all inside the authenticated part.
pub fn request(ask: &Ask, identification: u64) -> Result<Vec<u8>> {
    let sa = SecurityAssociation::hmac_md5(ask.spi, &ask.key)
        .map_err(|e| Error::Other(format!("MN-HA key: {e}")))?;
    let mut extensions = vec![Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
        prefix_length: 0,
        prefix: Ipv6Addr::UNSPECIFIED,
    })];
    if ask.tunnel_to == Ipv6TunnelTo::CareOf {
        extensions.push(Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode));
    }
    let repr = RequestRepr {
        flags: Flags(Flags::D.0 | Flags::T.0),
        lifetime: ask.lifetime,
        home_address: ask.home,
        home_agent: ask.home_agent,
        care_of_address: ask.care_of,
        identification,
        extensions,
    };
    Ok(auth::sign_request(&repr, &sa))
}

/// The reply's code and IPv6 Prefix Reply.
pub fn answer(reply: &[u8]) -> Result<Answer> {
    let r = ReplyRepr::parse_bytes(reply)
        .map_err(|e| Error::Other(format!("registration reply: {e}")))?;
    let prefix_reply = r.extensions.iter().find_map(|e| match e {
        Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixReply {
            code,
            prefix_length,
            prefix,
        }) => Ipv6Net::new(*prefix, *prefix_length)
            .ok()
            .map(|p| (*code, p)),
        _ => None,
    });
    Ok(Answer {
        code: r.code.0,
        prefix_reply,
    })
}

/// Sends the request from `ns` (from the care-of address) and waits for
/// the reply, resending up to three times (RFC 5944 §3.6.3).
pub fn register(ns: &Netns, ask: &Ask) -> Result<Answer> {
    let ask = ask.clone();
    netns::run_in(ns.name(), "registration", move || {
        let io = |source| Error::Io {
            path: format!("registration {} -> {}", ask.care_of, ask.home_agent),
            source,
        };
        let sock = UdpSocket::bind(SocketAddrV4::new(ask.care_of, 0)).map_err(io)?;
        let wait = Duration::from_secs_f64(2.0 * super::wait::scale());
        sock.set_read_timeout(Some(wait)).map_err(io)?;
        let mut buf = [0u8; 2048];
        for _ in 0..4 {
            let id = NtpTimestamp::from_system_time(SystemTime::now()).0;
            let req = request(&ask, id)?;
            sock.send_to(&req, SocketAddrV4::new(ask.home_agent, MIP_PORT))
                .map_err(io)?;
            match sock.recv(&mut buf) {
                Ok(n) => return answer(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(io(e)),
            }
        }
        Err(Error::Other(format!(
            "no registration reply from {} to {} in 4 tries",
            ask.home_agent, ask.care_of
        )))
    })
}

/// The node's `sit` link in `ns` ([`sit_link`])
/// with the outer addresses of `tunnel_to`, `address` on it and the IPv6
/// default route into it. Returns the link's name.
pub fn sit_up(
    ns: &Netns,
    home: Ipv4Addr,
    care_of: Ipv4Addr,
    home_agent: Ipv4Addr,
    tunnel_to: Ipv6TunnelTo,
    address: Ipv6Net,
) -> Result<String> {
    netns::block_on_in(ns.name(), "sit", move || async move {
        let nl =
            crate::netlink::Netlink::new().map_err(|e| Error::Other(format!("netlink: {e}")))?;
        let (local, remote) = crate::dataplane::sit::endpoints(
            Role::MobileNode,
            tunnel_to,
            home,
            care_of,
            home_agent,
        );
        let default: Ipv6Net = "::/0".parse().expect("a prefix");
        sit_link(&nl, home, local, remote, &[address], &[default])
            .await
            .map(|d| d.ifname)
            .map_err(|e| Error::Other(format!("IPv6 tunnel {local} -> {remote}: {e}")))
    })
}

/// The node's `sit` link from `local` to `remote` (the home agent), up,
/// with `addresses` on it and `routes` into it (main table); what exists
/// already is kept (EEXIST). mip4d does the same through its kernel
/// backend (`KernelTunnels::set_ipv6`) and `daemons::mn::home6`; the lab
/// drives it here without a mip4d.
async fn sit_link(
    nl: &Netlink,
    home: Ipv4Addr,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    addresses: &[Ipv6Net],
    routes: &[Ipv6Net],
) -> std::result::Result<TunnelDevice, TunnelError> {
    let dev = sit::up(
        nl,
        &sit::link_name(home),
        local,
        remote,
        crate::dataplane::ipip::DEFAULT_TTL,
    )
    .await?;
    for a in addresses {
        let added = nl
            .handle()
            .address()
            .add(dev.ifindex, IpAddr::V6(a.addr()), a.prefix_len())
            .execute()
            .await
            .map_err(crate::netlink::Error::request(format!(
                "add address {a} on {}",
                dev.ifname
            )));
        match added {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for r in routes {
        nl.replace_route6(*r, dev.ifindex).await?;
    }
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RequestPacket;

    fn ask(tunnel_to: Ipv6TunnelTo) -> Ask {
        Ask {
            home_agent: Ipv4Addr::new(10, 1, 1, 2),
            home: Ipv4Addr::new(10, 1, 100, 5),
            care_of: Ipv4Addr::new(10, 1, 10, 7),
            spi: 4096,
            key: vec![7; 16],
            lifetime: 120,
            tunnel_to,
        }
    }

    /// RFC 5454 §2.1, §2.3: the prefix request always, the Tunneling Mode
    /// extension only to the care-of address; both signed.
    #[test]
    fn the_request_asks_for_a_prefix_and_the_tunneling_mode() {
        for (to, modes) in [(Ipv6TunnelTo::HomeAddress, 0), (Ipv6TunnelTo::CareOf, 1)] {
            let a = ask(to);
            let msg = request(&a, 42).unwrap();
            let r = RequestRepr::parse(&RequestPacket::new_checked(&msg[..]).unwrap()).unwrap();
            assert_eq!(
                r.flags.0 & (Flags::D.0 | Flags::T.0),
                Flags::D.0 | Flags::T.0
            );
            let n = |f: &dyn Fn(&Extension) -> bool| r.extensions.iter().filter(|e| f(e)).count();
            assert_eq!(
                n(&|e| matches!(
                    e,
                    Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
                        prefix_length: 0,
                        ..
                    })
                )),
                1
            );
            assert_eq!(
                n(&|e| matches!(e, Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode))),
                modes
            );
            // Signed with the node's key: the extensions above lie inside
            // what the authenticator covers (it is the last one).
            let sa = SecurityAssociation::hmac_md5(a.spi, &a.key).unwrap();
            assert!(auth::verify_mn_ha(&msg, &sa).is_ok());
            let other = SecurityAssociation::hmac_md5(a.spi, &[8; 16]).unwrap();
            assert!(auth::verify_mn_ha(&msg, &other).is_err());
        }
    }
}
