//! Per-binding tunnels between a local endpoint (the HA's address, or the
//! MN's care-of address) and a remote one.
//!
//! Two backends behind one [`Tunnel`] trait, chosen by [`DataPlane::start`]:
//! - kernel: an `ipip` link per binding (RFC 2003), where the kernel has
//!   the module ([`kernel`]), and a `sit` link beside it for a binding's
//!   IPv6 (DSMIPv4, RFC 5454: [`sit`]);
//! - userspace: one TUN device and one raw `IPPROTO_IPIP` socket for all
//!   bindings, plus RFC 3519 UDP encapsulation on the Mobile IP port, with
//!   the RFC 3024 reverse-tunnel ingress check ([`userspace`]).
//!
//! The packet processing is pure ([`ipv4`], [`ipip`], [`udp`],
//! [`ingress`], [`process`]); the I/O loop around it is thin.

pub mod binding;
pub mod ingress;
pub mod ipip;
pub mod ipv4;
pub mod ipv6;
pub mod kernel;
pub mod process;
pub mod raw_egress;
pub mod recv;
pub mod shared;
pub mod sit;
pub mod source;
pub mod udp;
pub mod userspace;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use binding::{Encapsulation, Role, TunnelBinding};
pub use ingress::CounterSnapshot;
pub use kernel::KernelTunnels;
pub use userspace::{UserspaceConfig, UserspacePlane};

use crate::netlink::Netlink;

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    #[error(transparent)]
    Netlink(#[from] crate::netlink::Error),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("no tunnel for home address {0}")]
    NoBinding(Ipv4Addr),
}

/// The backend actually in use (reported in status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Kernel,
    Userspace,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Kernel => "kernel",
            Backend::Userspace => "userspace",
        })
    }
}

/// The configured choice: `auto` (kernel when it has ipip, else
/// userspace), `kernel` or `userspace`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    Kernel,
    Userspace,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "kernel" => Ok(BackendChoice::Kernel),
            "userspace" => Ok(BackendChoice::Userspace),
            _ => Err(format!(
                "unknown tunnel backend {s:?} (auto, kernel or userspace)"
            )),
        }
    }
}

/// The interface datagrams for a binding must be routed into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelDevice {
    pub ifindex: u32,
    pub ifname: String,
}

/// Create, move and remove the tunnel of a binding.
pub trait Tunnel {
    fn backend(&self) -> Backend;
    /// Sets up the tunnel of `b` (or moves it, if `b.home` has one) and
    /// returns the device to route its datagrams into.
    fn create(
        &mut self,
        b: TunnelBinding,
    ) -> impl Future<Output = Result<TunnelDevice, TunnelError>> + Send;
    /// New endpoints after a move (new care-of address, or NAT mapping).
    fn update_endpoint(
        &mut self,
        home: Ipv4Addr,
        local: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> impl Future<Output = Result<(), TunnelError>> + Send;
    fn remove(&mut self, home: Ipv4Addr) -> impl Future<Output = Result<(), TunnelError>> + Send;
}

/// What `mip4ctl status` shows of the data plane.
#[derive(Debug, Clone, Serialize)]
pub struct DataPlaneStatus {
    pub backend: Backend,
    pub bindings: Vec<TunnelBinding>,
    /// Userspace backend only (the kernel keeps its own link statistics).
    pub counters: Option<CounterSnapshot>,
}

/// The backend `choice` gives on this kernel: `auto` probes the kernel for
/// ipip once (creating and deleting a throw-away link) and takes it where
/// it is; `kernel` where it is not is an error.
pub async fn choose(nl: &Netlink, choice: BackendChoice) -> Result<Backend, TunnelError> {
    let backend = match choice {
        BackendChoice::Userspace => Backend::Userspace,
        BackendChoice::Kernel => {
            if !nl.kernel_has_ipip().await {
                return Err(TunnelError::Unsupported(
                    "tunnel backend 'kernel' configured but this kernel cannot create ipip links"
                        .into(),
                ));
            }
            Backend::Kernel
        }
        BackendChoice::Auto if nl.kernel_has_ipip().await => Backend::Kernel,
        BackendChoice::Auto => Backend::Userspace,
    };
    tracing::info!(%backend, ?choice, "tunnel backend chosen");
    Ok(backend)
}

/// The data plane of one daemon, with the backend chosen at start.
#[derive(Debug)]
pub enum DataPlane {
    Kernel(KernelTunnels),
    Userspace(UserspacePlane),
}

impl DataPlane {
    /// Starts the configured backend. `auto` probes the kernel for ipip
    /// once (creating and deleting a throw-away link) and takes it where
    /// it is: the production path. The kernel backend cannot carry RFC 3519
    /// UDP tunnelling, so a daemon given a UDP socket then declines UDP
    /// (mip4-ha says so at start); `userspace` serves it everywhere.
    pub async fn start(
        nl: Arc<Netlink>,
        choice: BackendChoice,
        cfg: UserspaceConfig,
    ) -> Result<Self, TunnelError> {
        let backend = choose(&nl, choice).await?;
        Ok(match backend {
            Backend::Kernel => DataPlane::Kernel(KernelTunnels::new(nl, cfg.ttl, cfg.role)),
            Backend::Userspace => DataPlane::Userspace(UserspacePlane::start(&nl, cfg).await?),
        })
    }

    pub fn status(&self) -> DataPlaneStatus {
        match self {
            DataPlane::Kernel(k) => DataPlaneStatus {
                backend: Backend::Kernel,
                bindings: k.bindings(),
                counters: None,
            },
            DataPlane::Userspace(u) => DataPlaneStatus {
                backend: Backend::Userspace,
                bindings: u.bindings(),
                counters: Some(u.counters()),
            },
        }
    }

    /// RFC 5454 at the mobile node: the IPv6 prefix of the binding of
    /// `home`, and where its IPv6 goes (§2.2), or none any more. Returns
    /// the device the node's IPv6 home address goes on and its IPv6 is
    /// routed into (`None` when `v6` is `None`). The userspace plane
    /// carries it in its TUN device and raw protocol 41 socket; kernel
    /// tunnels do not carry IPv6 here yet.
    pub async fn set_ipv6(
        &mut self,
        home: Ipv4Addr,
        v6: Option<binding::Ipv6Binding>,
    ) -> Result<Option<TunnelDevice>, TunnelError> {
        match self {
            DataPlane::Kernel(k) => k.set_ipv6(home, v6).await,
            DataPlane::Userspace(u) => Ok(u.carry_ipv6(home, v6)),
        }
    }

    /// The kernel links moved bindings left, for the caller to remove
    /// ([`KernelTunnels::take_left`]); none in the userspace plane.
    pub fn take_left(&mut self) -> Vec<TunnelDevice> {
        match self {
            DataPlane::Kernel(k) => k.take_left(),
            DataPlane::Userspace(_) => Vec::new(),
        }
    }

    /// Room for `n` tunnels in all, taken now rather than by the request
    /// that outgrows a table (a home agent sizes it for every node).
    pub fn reserve(&mut self, n: usize) {
        match self {
            DataPlane::Kernel(k) => k.reserve(n),
            DataPlane::Userspace(u) => u.reserve(n),
        }
    }

    /// Removes every tunnel (kernel links outlive the process otherwise).
    pub async fn shutdown(&mut self) -> Result<(), TunnelError> {
        let homes: Vec<Ipv4Addr> = self.status().bindings.iter().map(|b| b.home).collect();
        for h in homes {
            self.remove(h).await?;
        }
        Ok(())
    }
}

impl Tunnel for DataPlane {
    fn backend(&self) -> Backend {
        match self {
            DataPlane::Kernel(_) => Backend::Kernel,
            DataPlane::Userspace(_) => Backend::Userspace,
        }
    }

    async fn create(&mut self, b: TunnelBinding) -> Result<TunnelDevice, TunnelError> {
        match self {
            DataPlane::Kernel(k) => k.create(b).await,
            DataPlane::Userspace(u) => {
                u.insert(b)?;
                Ok(TunnelDevice {
                    ifindex: u.ifindex(),
                    ifname: u.ifname().to_string(),
                })
            }
        }
    }

    async fn update_endpoint(
        &mut self,
        home: Ipv4Addr,
        local: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Result<(), TunnelError> {
        match self {
            DataPlane::Kernel(k) => k.update_endpoint(home, local, remote).await,
            DataPlane::Userspace(u) => {
                let mut b = u.get(home).ok_or(TunnelError::NoBinding(home))?;
                b.local = local;
                b.remote = remote;
                u.insert(b)
            }
        }
    }

    async fn remove(&mut self, home: Ipv4Addr) -> Result<(), TunnelError> {
        match self {
            DataPlane::Kernel(k) => k.remove(home).await,
            DataPlane::Userspace(u) => u
                .remove(home)
                .map(|_| ())
                .ok_or(TunnelError::NoBinding(home)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_choice_parses_config_words() {
        assert_eq!("auto".parse(), Ok(BackendChoice::Auto));
        assert_eq!("kernel".parse(), Ok(BackendChoice::Kernel));
        assert_eq!("userspace".parse(), Ok(BackendChoice::Userspace));
        assert!("ipip"
            .parse::<BackendChoice>()
            .unwrap_err()
            .contains("auto, kernel or userspace"));
    }
}
