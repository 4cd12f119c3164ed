//! Kernel glue over rtnetlink (the `rtnetlink` / `netlink-packet-route`
//! crates): addresses, routes, policy rules, link state, proxy neighbours,
//! an address/link event watcher, sysctls, and the per-socket IPsec bypass
//! of the boundary-detection probe (RFC 5266 §3.4).
//!
//! One netlink socket per purpose: a [`Netlink`] handle for requests (each
//! sent with NLM_F_ACK; `rtnetlink` turns the kernel's error ACK into an
//! `Err`, which we return with the operation named), and a separate
//! multicast socket per [`watch::Watcher`].

pub mod addr;
pub mod bypass;
pub mod count;
pub mod gateway;
pub mod ipv6;
pub mod link;
pub mod neigh;
pub mod route;
pub mod sysctl;
pub mod watch;
mod watch_filter;

use std::io;

use tokio::task::JoinHandle;

pub use addr::AddressInfo;
pub use route::{RouteSpec, RuleSpec};
pub use watch::{NetEvent, Watcher};

/// A failed kernel request, naming what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("{op}: {source}")]
    Request {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("no interface {0}")]
    NoSuchLink(String),
}

impl Error {
    pub(crate) fn request(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Self {
        let op = op.into();
        move |source| Error::Request { op, source }
    }

    /// The errno the kernel answered with, if this is a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Request {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => msg.code.map(|c| -c.get()),
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The request socket: one per process part that changes kernel state.
/// Must be created inside a tokio runtime (its connection runs as a task,
/// stopped when the handle is dropped).
#[derive(Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    conn: JoinHandle<()>,
}

impl Netlink {
    pub fn new() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection_with_socket::<count::CountingSocket>()?;
        let conn = tokio::spawn(conn);
        Ok(Netlink { handle, conn })
    }

    /// The underlying `rtnetlink` handle, for requests this module lacks.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.conn.abort();
    }
}
