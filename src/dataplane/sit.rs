//! IPv6 in IPv4 in the kernel for DSMIPv4 (RFC 5454): `sit` links (mode
//! ip6ip: IPv4 protocol 41, RFC 4213 §3) beside the `ipip` links
//! ([`super::kernel`]): a mobile node's one, and on a home agent one per
//! remote address, shared by the bindings with an IPv6 prefix tunnelling
//! there ([`super::shared`]: the kernel refuses two links with the same
//! endpoints, and all nodes behind a foreign agent have its care-of
//! address).
//!
//! Why a second link: Linux's `ipip` links carry IPv4 (and MPLS) only, in
//! every mode (`ipip`, `mplsip`, `any`; Debian 12's 6.1 in the kernel
//! tier: `ip link add type ipip mode ip6ip` is refused, `mode any` is
//! ipip + mplsip); IPv6 in IPv4 is the `sit` module's. A `sit` link in mode `any` would carry both, but the binding's
//! IPv4 link stays what it is (mip4-fa and mip4d share it, the RFC 3024
//! rule matches it), and with the tunnel to the home address the two links
//! do not even share endpoints. The kernel sorts the two by protocol
//! number (4 or 41), so links with the same endpoints do not collide.
//!
//! Where the link points is RFC 5454 §2.2's choice ([`endpoints`]): to the
//! care-of address (Prefix Reply code 1, the Tunneling Mode extension of
//! §2.3) the `sit` link runs between the home agent and the care-of
//! address; to the home address (code 0) it runs between the home agent
//! and the IPv4 home address, whose own route leads into the binding's
//! `ipip` link: IPv6 in IPv4 in IPv4, the kernel stacking the two.
//!
//! The link's fixed remote address is its outer-source check; the inner
//! IPv6 source (RFC 5454 §3.3.2, §4) is mip4-ha's nftables rule
//! (`daemons::ha::ingress`). Link-local addresses stay on their link
//! (between the home agent and one care-of or home address): the kernel
//! never forwards a link-local source or destination off it (RFC 4291
//! §2.5.6).

use std::net::Ipv4Addr;

use netlink_packet_route::IpProtocol;
use rtnetlink::LinkSit;

use super::binding::{Ipv6TunnelTo, Role};
use super::{TunnelDevice, TunnelError};
use crate::netlink::Netlink;

/// What every `sit` link of [`link_name`] starts with (mip4-ha's RFC 5454
/// ingress rule matches it; the sweeps after SIGKILL look for it).
pub const LINK_PREFIX: &str = "mip6-";

/// [`LINK_PREFIX`] and an IPv4 address in hex, as the `ipip` links have
/// it: 13 characters (interface names are at most 15). A mobile node's
/// link is named by its home address, a home agent's by its remote
/// address (care-of or IPv4 home address), shared by the bindings that
/// tunnel there.
pub fn link_name(addr: Ipv4Addr) -> String {
    super::kernel::named(LINK_PREFIX, addr)
}

/// The address a link of this naming (`mip4-` or `mip6-` and eight hex
/// digits) is named by; any other name is none.
pub fn remote_of_link(name: &str) -> Option<Ipv4Addr> {
    let hex = name
        .strip_prefix(super::kernel::LINK_PREFIX)
        .or_else(|| name.strip_prefix(LINK_PREFIX))?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().map(Ipv4Addr::from)
}

/// The (local, remote) IPv4 addresses of the `sit` link of a binding
/// (RFC 5454 §2.2): to the care-of address, the home agent <-> care-of
/// address; to the home address, the home agent <-> IPv4 home address
/// (carried on inside the binding's IPv4 tunnel).
pub fn endpoints(
    role: Role,
    to: Ipv6TunnelTo,
    home: Ipv4Addr,
    care_of: Ipv4Addr,
    home_agent: Ipv4Addr,
) -> (Ipv4Addr, Ipv4Addr) {
    let node_end = match to {
        Ipv6TunnelTo::CareOf => care_of,
        Ipv6TunnelTo::HomeAddress => home,
    };
    match role {
        Role::HomeAgent => (home_agent, node_end),
        Role::MobileNode => (node_end, home_agent),
    }
}

/// The MTU of a `sit` link beside (or inside) a binding's IPv4 tunnel of
/// `tunnel_mtu`: to the care-of address it has the same outer path and
/// header; to the home address it runs inside that tunnel, one more IPv4
/// header (20 bytes). Never below IPv6's minimum link MTU of 1280 (RFC
/// 8200 §5), under which the kernel takes IPv6 off the link.
pub fn mtu_beside(tunnel_mtu: u32, to: Ipv6TunnelTo) -> u32 {
    let mtu = match to {
        Ipv6TunnelTo::CareOf => tunnel_mtu,
        Ipv6TunnelTo::HomeAddress => tunnel_mtu.saturating_sub(20),
    };
    mtu.max(1280)
}

/// Whether the kernel can create `sit` links (a throw-away one, as for
/// `ipip`: [`Netlink::kernel_can_create`]).
pub async fn kernel_has_sit(nl: &Netlink) -> bool {
    nl.kernel_can_create("mip6p", |name, remote| {
        LinkSit::new(name)
            .remote(remote)
            .protocol(IpProtocol::Ipv6)
            .build()
    })
    .await
}

/// Creates the `sit` link `name` from `local` to `remote` (mode ip6ip), up,
/// or points the one that exists (ours from before, or an earlier
/// instance's left after SIGKILL) at these endpoints. Returns its device.
pub async fn up(
    nl: &Netlink,
    name: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    ttl: u8,
) -> Result<TunnelDevice, TunnelError> {
    if let Ok(ifindex) = nl.link_index(name).await {
        move_link(nl, name, ifindex, local, remote, ttl).await?;
        nl.set_link_up(ifindex, true).await?;
        return Ok(TunnelDevice {
            ifindex,
            ifname: name.to_string(),
        });
    }
    let msg = ip6ip(name, local, remote, ttl).pmtudisc(true).up().build();
    nl.handle()
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(crate::netlink::Error::request(format!(
            "create sit link {name} {local} -> {remote}"
        )))?;
    let ifindex = nl.link_index(name).await?;
    Ok(TunnelDevice {
        ifindex,
        ifname: name.to_string(),
    })
}

/// `ip link ... name NAME type sit mode ip6ip local L remote R ttl T`.
fn ip6ip(
    name: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    ttl: u8,
) -> rtnetlink::LinkMessageBuilder<LinkSit> {
    LinkSit::new(name)
        .local(local)
        .remote(remote)
        .ttl(ttl)
        .protocol(IpProtocol::Ipv6)
}

/// New endpoints for the link (the care-of address moved), named by its
/// index as the `ipip` links are ([`super::kernel::change_by_index`]).
async fn move_link(
    nl: &Netlink,
    name: &str,
    ifindex: u32,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    ttl: u8,
) -> Result<(), TunnelError> {
    let msg = ip6ip(name, local, remote, ttl).index(ifindex).build();
    super::kernel::change_by_index(
        nl,
        msg,
        format!("move sit link {name} to {local} -> {remote}"),
    )
    .await
}

/// Removes the link `name`; one that is not there is no error. Its routes
/// and addresses go with it.
pub async fn down(nl: &Netlink, name: &str) -> Result<(), TunnelError> {
    let Ok(ifindex) = nl.link_index(name).await else {
        return Ok(());
    };
    match nl.delete_link(ifindex).await {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Takes away the mobile node's `sit` link of `home` ([`link_name`]), and
/// with it its addresses and routes.
pub async fn ipv6_tunnel_down(nl: &Netlink, home: Ipv4Addr) -> Result<(), TunnelError> {
    down(nl, &link_name(home)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
    const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 5);
    const COA: Ipv4Addr = Ipv4Addr::new(10, 1, 10, 7);

    #[test]
    fn links_are_named_after_their_address_like_the_ipip_links() {
        assert_eq!(link_name(HOME), "mip6-0a016405");
        assert_eq!(
            super::super::kernel::link_name(HOME),
            "mip4-0a016405",
            "the same home address part as the binding's ipip link"
        );
        assert!(link_name(Ipv4Addr::BROADCAST).len() <= 15);
        assert_eq!(remote_of_link("mip6-0a016405"), Some(HOME));
        assert_eq!(remote_of_link("mip4-0a016405"), Some(HOME));
        // A home agent's link shared per care-of address.
        assert_eq!(link_name(COA), "mip6-0a010a07");
        assert_eq!(remote_of_link(&link_name(COA)), Some(COA));
        assert_eq!(remote_of_link("mip4fa-0a010102"), None, "mip4-fa's");
        for other in [
            "mip6-0a01640",
            "mip6-0a0164055",
            "mip6-0a01640g",
            "sit0",
            "mip4ha0",
        ] {
            assert_eq!(remote_of_link(other), None, "{other}");
        }
    }

    /// RFC 5454 §2.2: code 1 (care-of address) and code 0 (home address)
    /// decide the outer addresses, mirrored between the two ends.
    #[test]
    fn the_outer_addresses_follow_the_tunneling_mode() {
        let e = |role, to| endpoints(role, to, HOME, COA, HA);
        assert_eq!(e(Role::HomeAgent, Ipv6TunnelTo::CareOf), (HA, COA));
        assert_eq!(e(Role::HomeAgent, Ipv6TunnelTo::HomeAddress), (HA, HOME));
        assert_eq!(e(Role::MobileNode, Ipv6TunnelTo::CareOf), (COA, HA));
        assert_eq!(e(Role::MobileNode, Ipv6TunnelTo::HomeAddress), (HOME, HA));
    }

    /// Mode 'mc': the binding's ipip link sized for ESP (1395); the
    /// IPv6 beside it fits the same path, inside it 20 bytes less.
    #[test]
    fn the_link_is_sized_like_the_ipv4_tunnel_it_runs_with() {
        assert_eq!(mtu_beside(1395, Ipv6TunnelTo::CareOf), 1395);
        assert_eq!(mtu_beside(1395, Ipv6TunnelTo::HomeAddress), 1375);
        assert_eq!(mtu_beside(1290, Ipv6TunnelTo::HomeAddress), 1280);
    }
}
