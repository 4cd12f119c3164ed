//! The kernel data plane: `ipip` links (RFC 2003 done by the kernel's
//! ipip module), created and moved through rtnetlink: on a mobile node
//! one for its binding, on a home agent one per care-of address, shared
//! by the bindings that tunnel to it ([`super::shared`]). Used
//! where the module exists; it carries IP-in-IP only (RFC 3519 UDP
//! tunnelling needs the userspace plane). The link's fixed remote address
//! is its outer-source check; the inner-source half of RFC 3024's ingress
//! check is mip4-ha's nftables rule (`daemons::ha::ingress`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::LinkIpIp;

use super::binding::{Encapsulation, Ipv6Binding, Role, TunnelBinding};
use super::shared::SharedLinks;
use super::{TunnelDevice, TunnelError};
use crate::netlink::Netlink;

#[derive(Debug)]
struct KernelTunnel {
    binding: TunnelBinding,
    device: TunnelDevice,
}

/// The ipip links of all bindings.
#[derive(Debug)]
pub struct KernelTunnels {
    nl: Arc<Netlink>,
    ttl: u8,
    tunnels: HashMap<Ipv4Addr, KernelTunnel>,
    /// A home agent's links, one per care-of address (the kernel refuses
    /// two with the same endpoints: RFC 5944 §3's foreign agent gives all
    /// its visitors its own care-of address). None on a mobile node: one
    /// link, named by its home address, moved with it.
    shared: Option<SharedLinks<TunnelDevice>>,
    /// A home agent's links that a moved binding left as their last
    /// user, not yet removed: the caller's ([`Self::take_left`]), which
    /// keeps them for the moved binding's late datagrams a while.
    left: Vec<TunnelDevice>,
}

/// What every link of [`link_name`] starts with (mip4-ha's RFC 3024
/// ingress rule matches it).
pub const LINK_PREFIX: &str = "mip4-";

/// [`LINK_PREFIX`] and an address in hex, 13 characters (interface names
/// are at most 15): a mobile node's link is named by its home address, a
/// home agent's by the care-of address it tunnels to.
pub fn link_name(addr: Ipv4Addr) -> String {
    named(LINK_PREFIX, addr)
}

/// `prefix` and `addr` in hex (8 characters): with a prefix of at most 7
/// characters, a valid interface name.
pub fn named(prefix: &str, addr: Ipv4Addr) -> String {
    format!("{prefix}{:08x}", u32::from(addr))
}

impl KernelTunnels {
    /// `role`: a home agent's links are shared per care-of address.
    pub fn new(nl: Arc<Netlink>, ttl: u8, role: Role) -> Self {
        KernelTunnels {
            nl,
            ttl,
            tunnels: HashMap::new(),
            shared: (role == Role::HomeAgent).then(SharedLinks::default),
            left: Vec::new(),
        }
    }

    pub async fn create(&mut self, b: TunnelBinding) -> Result<TunnelDevice, TunnelError> {
        if b.encapsulation != Encapsulation::IpInIp {
            return Err(TunnelError::Unsupported(
                "the kernel backend carries IP-in-IP only; use the userspace backend for RFC 3519"
                    .into(),
            ));
        }
        if self.shared.is_some() {
            return self.join(b).await;
        }
        if self.tunnels.contains_key(&b.home) {
            self.update_endpoint(b.home, b.local, b.remote).await?;
            return Ok(self.tunnels[&b.home].device.clone());
        }
        let device = add_link(
            &self.nl,
            &link_name(b.home),
            b.local,
            *b.remote.ip(),
            self.ttl,
        )
        .await?;
        self.tunnels.insert(
            b.home,
            KernelTunnel {
                binding: b,
                device: device.clone(),
            },
        );
        Ok(device)
    }

    pub async fn update_endpoint(
        &mut self,
        home: Ipv4Addr,
        local: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Result<(), TunnelError> {
        if self.shared.is_some() {
            let mut b = self
                .tunnels
                .get(&home)
                .ok_or(TunnelError::NoBinding(home))?
                .binding;
            (b.local, b.remote) = (local, remote);
            return self.join(b).await.map(|_| ());
        }
        let t = self
            .tunnels
            .get_mut(&home)
            .ok_or(TunnelError::NoBinding(home))?;
        move_link(&self.nl, &t.device, local, *remote.ip(), self.ttl).await?;
        t.binding.local = local;
        t.binding.remote = remote;
        Ok(())
    }

    pub async fn remove(&mut self, home: Ipv4Addr) -> Result<(), TunnelError> {
        let t = self
            .tunnels
            .remove(&home)
            .ok_or(TunnelError::NoBinding(home))?;
        match &mut self.shared {
            Some(links) => {
                if let Some(gone) = links.leave(home) {
                    self.nl.delete_link(gone.ifindex).await?;
                }
                Ok(())
            }
            None => {
                self.nl.delete_link(t.device.ifindex).await?;
                // A mobile node's IPv6 link ([`Self::set_ipv6`]) goes with
                // its binding; none there is no error.
                super::sit::down(&self.nl, &super::sit::link_name(home)).await
            }
        }
    }

    /// The mobile node's IPv6 in IPv4 for `home` on this backend (RFC 5454
    /// §2.2): a `sit` link beside the binding's ipip link, from the end the
    /// tunnelling mode names to the home agent, moved with the binding by
    /// calling this again after each move; `None` takes it away. Returns
    /// the device the node's IPv6 home address and routes go on. mip4-ha
    /// keeps its own `sit` links (`daemons::ha::kernel`).
    pub async fn set_ipv6(
        &mut self,
        home: Ipv4Addr,
        v6: Option<Ipv6Binding>,
    ) -> Result<Option<TunnelDevice>, TunnelError> {
        let name = super::sit::link_name(home);
        let Some(v6) = v6 else {
            super::sit::down(&self.nl, &name).await?;
            return Ok(None);
        };
        let b = self
            .tunnels
            .get(&home)
            .ok_or(TunnelError::NoBinding(home))?
            .binding;
        let (local, remote) = super::sit::endpoints(
            Role::MobileNode,
            v6.tunnel_to,
            home,
            b.local,
            *b.remote.ip(),
        );
        super::sit::up(&self.nl, &name, local, remote, self.ttl)
            .await
            .map(Some)
    }

    /// A home agent's binding `b` routed through the link to its care-of
    /// address: the one in use, or a new one; the link it used before
    /// goes when `b` was its last user.
    async fn join(&mut self, b: TunnelBinding) -> Result<TunnelDevice, TunnelError> {
        let Some(links) = &mut self.shared else {
            return Err(TunnelError::NoBinding(b.home));
        };
        let remote = *b.remote.ip();
        let device = match links.link(remote) {
            Some(d) => d.clone(),
            None => add_link(&self.nl, &link_name(remote), b.local, remote, self.ttl).await?,
        };
        let gone = links.join(remote, b.home, device.clone());
        self.tunnels.insert(
            b.home,
            KernelTunnel {
                binding: b,
                device: device.clone(),
            },
        );
        // A move: the old link goes, but not at once (`take_left`).
        self.left.extend(gone);
        Ok(device)
    }

    /// The links moved bindings left since the last call (a home agent's;
    /// a link whose last binding was removed went with it already): the
    /// caller removes them, at once or after a grace
    /// (`daemons::ha::ingress::GRACE`).
    pub fn take_left(&mut self) -> Vec<TunnelDevice> {
        std::mem::take(&mut self.left)
    }

    /// Room for `n` tunnels in all, now.
    pub fn reserve(&mut self, n: usize) {
        self.tunnels.reserve(n.saturating_sub(self.tunnels.len()));
    }

    pub fn bindings(&self) -> Vec<TunnelBinding> {
        self.tunnels.values().map(|t| t.binding).collect()
    }
}

/// Creates the ipip link `name` (`local` -> `remote`, up, path MTU
/// discovery on) and returns it. EEXIST: the link an earlier instance of
/// the daemon made under that name (killed before it could remove it) is
/// taken over and pointed at these endpoints.
pub async fn add_link(
    nl: &Netlink,
    name: &str,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    ttl: u8,
) -> Result<TunnelDevice, TunnelError> {
    let msg = LinkIpIp::new(name)
        .local(local)
        .remote(remote)
        .ttl(ttl)
        .pmtudisc(true)
        .up()
        .build();
    let created =
        nl.handle()
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(crate::netlink::Error::request(format!(
                "create ipip link {name}"
            )));
    let adopt = match created {
        Ok(()) => false,
        Err(e) if e.errno() == Some(libc::EEXIST) => true,
        Err(e) => return Err(e.into()),
    };
    let device = TunnelDevice {
        ifindex: nl.link_index(name).await?,
        ifname: name.to_string(),
    };
    if adopt {
        move_link(nl, &device, local, remote, ttl).await?;
        nl.set_link_up(device.ifindex, true).await?;
    }
    Ok(device)
}

/// Points the ipip link `dev` at new endpoints.
pub async fn move_link(
    nl: &Netlink,
    dev: &TunnelDevice,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    ttl: u8,
) -> Result<(), TunnelError> {
    let msg = LinkIpIp::new(&dev.ifname)
        .local(local)
        .remote(remote)
        .ttl(ttl)
        .index(dev.ifindex)
        .build();
    change_by_index(
        nl,
        msg,
        format!("move ipip link {} to {local} -> {remote}", dev.ifname),
    )
    .await
}

/// Sends a tunnel link's new settings (`msg`, built with its index), the
/// link named by its index only: with IFLA_IFNAME in the message too,
/// kernels before 6.2 (Debian 12's 6.1 among them) refuse to change an up
/// link with EBUSY even when the name is the same (dev_change_name checks
/// IFF_UP first); found by the kernel tier. `what` names the change in
/// an error.
pub(super) async fn change_by_index(
    nl: &Netlink,
    mut msg: LinkMessage,
    what: String,
) -> Result<(), TunnelError> {
    msg.attributes
        .retain(|a| !matches!(a, LinkAttribute::IfName(_)));
    nl.handle()
        .link()
        .change(msg)
        .execute()
        .await
        .map_err(crate::netlink::Error::request(what))?;
    Ok(())
}
