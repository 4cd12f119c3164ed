//! Addresses on interfaces (`ip addr`): IPv4 for Mobile IPv4, both
//! families for the watch.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::AddressFamily;

use super::{Error, Netlink, Result};

/// One IPv4 address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    pub ifindex: u32,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// The address label (for IPv4 the interface name, or `name:alias`).
    pub label: Option<String>,
}

impl AddressInfo {
    /// The IPv4 address of an RTM_NEWADDR/RTM_DELADDR message, if it is one.
    pub(crate) fn from_message(m: &AddressMessage) -> Option<Self> {
        let a = IfAddress::from_message(m)?;
        let IpAddr::V4(addr) = a.addr else {
            return None;
        };
        Some(AddressInfo {
            ifindex: a.ifindex,
            addr,
            prefix_len: a.prefix_len,
            label: a.label,
        })
    }
}

/// One address of either family as the kernel reports it: the watch
/// (`super::watch`) needs IPv6 too, because an IPv6-only access network
/// still carries the IKE_SA (RFC 5266 mode 'mc' over IPv6, RFC 4555).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IfAddress {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// IPv4 only: the interface name, or `name:alias`.
    pub label: Option<String>,
}

impl IfAddress {
    /// IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on
    /// point-to-point links), so it wins when both are present; IPv6
    /// addresses come as IFA_ADDRESS alone.
    pub(crate) fn from_message(m: &AddressMessage) -> Option<Self> {
        let family = m.header.family;
        if family != AddressFamily::Inet && family != AddressFamily::Inet6 {
            return None;
        }
        let same = |a: &IpAddr| a.is_ipv4() == (family == AddressFamily::Inet);
        let mut local = None;
        let mut address = None;
        let mut label = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(v) if same(v) => local = Some(*v),
                AddressAttribute::Address(v) if same(v) => address = Some(*v),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                _ => {}
            }
        }
        Some(IfAddress {
            ifindex: m.header.index,
            addr: local.or(address)?,
            prefix_len: m.header.prefix_len,
            label,
        })
    }
}

impl Netlink {
    /// `ip addr add ADDR/PREFIX dev INDEX`.
    pub async fn add_address(&self, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        self.handle
            .address()
            .add(ifindex, IpAddr::V4(addr), prefix_len)
            .execute()
            .await
            .map_err(Error::request(format!(
                "add address {addr}/{prefix_len} on {ifindex}"
            )))
    }

    /// `ip addr del ADDR/PREFIX dev INDEX`.
    pub async fn del_address(&self, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let op = format!("delete address {addr}/{prefix_len} on {ifindex}");
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(IpAddr::V4(addr))
            .set_prefix_length_filter(prefix_len)
            .execute();
        let msg = s
            .try_next()
            .await
            .map_err(Error::request(op.clone()))?
            .ok_or_else(|| Error::NoSuchLink(format!("{ifindex} with {addr}/{prefix_len}")))?;
        self.handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(Error::request(op))
    }

    /// The IPv4 addresses of one interface, or of all when `ifindex` is None.
    pub async fn list_addresses(&self, ifindex: Option<u32>) -> Result<Vec<AddressInfo>> {
        Ok(self
            .dump_addresses(ifindex)
            .await?
            .iter()
            .filter_map(AddressInfo::from_message)
            .collect())
    }

    /// The addresses of both families, of one interface or of all.
    pub(crate) async fn list_if_addresses(&self, ifindex: Option<u32>) -> Result<Vec<IfAddress>> {
        Ok(self
            .dump_addresses(ifindex)
            .await?
            .iter()
            .filter_map(IfAddress::from_message)
            .collect())
    }

    async fn dump_addresses(&self, ifindex: Option<u32>) -> Result<Vec<AddressMessage>> {
        let mut req = self.handle.address().get();
        if let Some(i) = ifindex {
            req = req.set_link_index_filter(i);
        }
        req.execute()
            .try_collect()
            .await
            .map_err(Error::request("list addresses"))
    }
}
