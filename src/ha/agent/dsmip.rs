//! Stage 5's IPv6 part (RFC 5454): the IPv6 Prefix Request and the
//! Tunneling Mode extension of an accepted registration, answered by an
//! IPv6 Prefix Reply.
//!
//! - §2.1: a Home Network Prefix of all zeros asks the HA to assign one:
//!   the node's configured `ipv6_prefix`. A prefix named by the node must
//!   be that one. A node without one is refused (code 9).
//! - §2.2: the reply's own code says where IPv6 goes (0: to the IPv4 home
//!   address, 1: to the care-of address) or why it was refused (8, 9);
//!   the IPv4 binding stands either way.
//! - §2.3: the Tunneling Mode extension asks for the care-of address.
//! - The prefix must not overlap the prefix of any other binding (checked
//!   here, and between nodes when the configuration is read).
//! - §3.8: a registration that carries no IPv6 Prefix Request leaves the
//!   binding without IPv6 (the prefix is deregistered); lifetime 0 ends
//!   the binding and its prefix together.
//!
//! Only extensions the MN-HA authenticator covers are read.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::super::binding::{Ipv6Binding, Ipv6TunnelTo};
use super::super::reason::PrefixDenial;
use super::*;
use crate::wire::extension::Dsmipv4Ext;

/// What the node asked for in its (authenticated) DSMIPv4 extensions.
struct Dsmipv4Request {
    prefix_length: u8,
    prefix: Ipv6Addr,
    tunnel_to: Ipv6TunnelTo,
}

fn dsmipv4_request(req: &ParsedRequest<'_>) -> Option<Dsmipv4Request> {
    let mut asked = None;
    let mut tunnel_to = Ipv6TunnelTo::HomeAddress;
    for e in req.protected().filter(|e| e.type_ == ext_type::DSMIPV4) {
        match Extension::parse(e.type_, e.data) {
            Ok(Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
                prefix_length,
                prefix,
            })) => {
                asked.get_or_insert((prefix_length, prefix));
            }
            Ok(Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode)) => {
                tunnel_to = Ipv6TunnelTo::CareOf;
            }
            _ => {}
        }
    }
    asked.map(|(prefix_length, prefix)| Dsmipv4Request {
        prefix_length,
        prefix,
        tunnel_to,
    })
}

impl HomeAgent {
    /// The IPv6 part of the binding of `home` (none: no IPv6) and the IPv6
    /// Prefix Reply for the node's reply, if it asked.
    pub(super) fn dsmipv4(
        &mut self,
        idx: usize,
        home: Ipv4Addr,
        req: &ParsedRequest<'_>,
    ) -> (Option<Ipv6Binding>, Option<Extension>) {
        let Some(asked) = dsmipv4_request(req) else {
            if self.bindings.get(home).is_some_and(|b| b.ipv6.is_some()) {
                info!(home_address = %home, "IPv6 prefix deregistered: no IPv6 Prefix Request (RFC 5454 §3.8)");
            }
            return (None, None);
        };
        match self.grant_prefix(idx, home, &asked) {
            Ok(prefix) => {
                self.counters.ipv6_prefixes_accepted += 1;
                let code = match asked.tunnel_to {
                    Ipv6TunnelTo::HomeAddress => Dsmipv4Ext::CODE_ACCEPTED_TO_HOME_ADDRESS,
                    Ipv6TunnelTo::CareOf => Dsmipv4Ext::CODE_ACCEPTED_TO_CARE_OF,
                };
                debug!(home_address = %home, %prefix, tunnel_to = ?asked.tunnel_to, "IPv6 prefix granted (RFC 5454 §3.2)");
                let reply = Dsmipv4Ext::Ipv6PrefixReply {
                    code,
                    prefix_length: prefix.prefix_len(),
                    prefix: prefix.network(),
                };
                (
                    Some(Ipv6Binding {
                        prefix,
                        tunnel_to: asked.tunnel_to,
                    }),
                    Some(Extension::Dsmipv4(reply)),
                )
            }
            Err(why) => {
                self.counters.ipv6_prefixes_refused += 1;
                warn!(home_address = %home, asked = %asked.prefix, "IPv6 prefix refused, IPv4 binding kept: {why}");
                let reply = Dsmipv4Ext::Ipv6PrefixReply {
                    code: why.code(),
                    prefix_length: asked.prefix_length,
                    prefix: asked.prefix,
                };
                (None, Some(Extension::Dsmipv4(reply)))
            }
        }
    }

    fn grant_prefix(
        &self,
        idx: usize,
        home: Ipv4Addr,
        asked: &Dsmipv4Request,
    ) -> Result<Ipv6Net, PrefixDenial> {
        if !self.cfg.ipv6_carried {
            return Err(PrefixDenial::NoIpv6DataPlane);
        }
        let own = self.nodes[idx]
            .conf
            .ipv6_prefix
            .ok_or(PrefixDenial::NoPrefixConfigured)?;
        if !asked.prefix.is_unspecified() {
            if asked.prefix_length == 0 {
                return Err(PrefixDenial::BadPrefixLength);
            }
            let named = Ipv6Net::new(asked.prefix, asked.prefix_length)
                .map_err(|_| PrefixDenial::BadPrefixLength)?;
            if named.trunc() != own {
                return Err(PrefixDenial::NotThisNodesPrefix);
            }
        }
        let overlaps = |o: &Ipv6Net| o.contains(&own.network()) || own.contains(&o.network());
        if self
            .bindings
            .iter()
            .filter(|b| b.home_address != home)
            .filter_map(|b| b.ipv6)
            .any(|v6| overlaps(&v6.prefix))
        {
            return Err(PrefixDenial::OverlapsAnotherBinding);
        }
        Ok(own)
    }
}
