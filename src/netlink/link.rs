//! Link lookup and state (`ip link`).

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{LinkIpIp, LinkUnspec};

use super::{Error, Netlink, Result};

/// Administrative and carrier state of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    /// IFF_UP: administratively up.
    pub up: bool,
    /// IFF_LOWER_UP: carrier present.
    pub lower_up: bool,
}

impl LinkState {
    pub(crate) fn from_message(m: &LinkMessage) -> Self {
        LinkState {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        }
    }
    /// Usable for traffic: up and with carrier.
    pub fn is_running(&self) -> bool {
        self.up && self.lower_up
    }
}

pub(crate) fn link_name(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

impl Netlink {
    /// The index of interface `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32> {
        Ok(self.link_by_name(name).await?.header.index)
    }

    /// The index and MTU of interface `name`, from one request.
    pub async fn link_index_mtu(&self, name: &str) -> Result<(u32, Option<u32>)> {
        let m = self.link_by_name(name).await?;
        let mtu = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        });
        Ok((m.header.index, mtu))
    }

    async fn link_by_name(&self, name: &str) -> Result<LinkMessage> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Error::NoSuchLink(name.to_string())),
            Err(e) if is_no_device(&e) => Err(Error::NoSuchLink(name.to_string())),
            Err(e) => Err(Error::request(format!("get link {name}"))(e)),
        }
    }

    /// Every interface: (index, name) (`ip link show`).
    pub async fn links(&self) -> Result<Vec<(u32, String)>> {
        let mut s = self.handle.link().get().execute();
        let mut v = Vec::new();
        while let Some(m) = s.try_next().await.map_err(Error::request("list links"))? {
            if let Some(n) = link_name(&m) {
                v.push((m.header.index, n));
            }
        }
        Ok(v)
    }

    /// The local address of IP tunnel link `index` (`ipip`, `sit`): none
    /// for another kind of link or a tunnel without a fixed local end.
    pub async fn tunnel_local(&self, index: u32) -> Result<Option<std::net::Ipv4Addr>> {
        use netlink_packet_route::link::{InfoData, InfoIpTunnel, LinkInfo};
        let mut s = self.handle.link().get().match_index(index).execute();
        let m = match s.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(Error::NoSuchLink(index.to_string())),
            Err(e) => return Err(Error::request(format!("get link {index}"))(e)),
        };
        let local = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Data(InfoData::IpTunnel(d)) => d.iter().find_map(|t| match t {
                    InfoIpTunnel::Local(std::net::IpAddr::V4(a)) => Some(*a),
                    _ => None,
                }),
                _ => None,
            }),
            _ => None,
        });
        Ok(local)
    }

    /// The name of interface `index`.
    pub async fn link_name(&self, index: u32) -> Result<String> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => link_name(&m).ok_or_else(|| Error::NoSuchLink(index.to_string())),
            Ok(None) => Err(Error::NoSuchLink(index.to_string())),
            Err(e) if is_no_device(&e) => Err(Error::NoSuchLink(index.to_string())),
            Err(e) => Err(Error::request(format!("get link {index}"))(e)),
        }
    }

    pub async fn link_state(&self, index: u32) -> Result<LinkState> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(LinkState::from_message(&m)),
            Ok(None) => Err(Error::NoSuchLink(index.to_string())),
            Err(e) => Err(Error::request(format!("get link {index}"))(e)),
        }
    }

    /// Packets received and sent by interface `index` (its 64-bit
    /// statistics, `ip -s link`): on a tunnel link, datagrams
    /// decapsulated and encapsulated.
    pub async fn link_packets(&self, index: u32) -> Result<(u64, u64)> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(m
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Stats64(st) => Some((st.rx_packets, st.tx_packets)),
                    _ => None,
                })
                .unwrap_or_default()),
            Ok(None) => Err(Error::NoSuchLink(index.to_string())),
            Err(e) => Err(Error::request(format!("get link {index}"))(e)),
        }
    }

    /// `ip link set dev INDEX up|down`.
    pub async fn set_link_up(&self, index: u32, up: bool) -> Result<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(Error::request(format!("set link {index} up={up}")))
    }

    /// `ip link set dev INDEX mtu MTU`.
    pub async fn set_link_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(Error::request(format!("set link {index} mtu {mtu}")))
    }

    /// `ip link del dev INDEX`.
    pub async fn delete_link(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(Error::request(format!("delete link {index}")))
    }

    /// Whether the kernel can create `ipip` links (RFC 2003 in the kernel):
    /// [`Self::kernel_can_create`].
    pub async fn kernel_has_ipip(&self) -> bool {
        self.kernel_can_create("mip4p", |name, remote| {
            LinkIpIp::new(name).remote(remote).build()
        })
        .await
    }

    /// Whether the kernel can create the tunnel links `build(name,
    /// remote)` makes. Tries to create a throw-away one (named `prefix`
    /// and our pid) and removes it again; a kernel without the module
    /// answers EOPNOTSUPP ("Unknown device type"). The probe has a remote
    /// address (RFC 5737 documentation space, never up): one without
    /// endpoints is the kernel's own fallback device (`tunl0`, `sit0`), and
    /// a kernel with the module answers EEXIST to it, as it does to a
    /// probe of another daemon in the same namespace; both mean the module
    /// is there.
    pub async fn kernel_can_create(
        &self,
        prefix: &str,
        build: impl FnOnce(&str, std::net::Ipv4Addr) -> netlink_packet_route::link::LinkMessage,
    ) -> bool {
        let id = std::process::id();
        let name = format!("{prefix}{}", id % 100_000);
        let remote = std::net::Ipv4Addr::new(192, 0, 2, (id % 254 + 1) as u8);
        match self.handle.link().add(build(&name, remote)).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(m))
                if m.code.map(|c| -c.get()) == Some(libc::EEXIST) =>
            {
                return true
            }
            Err(_) => return false,
        }
        if let Ok(i) = self.link_index(&name).await {
            let _ = self.delete_link(i).await;
        }
        true
    }
}

fn is_no_device(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| -c.get()) == Some(libc::ENODEV))
}
