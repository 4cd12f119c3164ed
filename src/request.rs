//! A Registration Request as an agent first sees it, before anything in
//! it is believed: the fixed header's fields (RFC 5944 §3.3) and the
//! extensions' types and lengths (§1.9). The home and the foreign agent
//! both start here.

use std::net::Ipv4Addr;

use crate::wire::{Flags, RequestPacket};

/// The fixed header fields a reply echoes or a check reads.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub flags: Flags,
    pub lifetime: u16,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    pub identification: u64,
}

impl Header {
    pub fn of<T: AsRef<[u8]>>(p: &RequestPacket<T>) -> Self {
        Header {
            flags: p.flags(),
            lifetime: p.lifetime(),
            home_address: p.home_address(),
            home_agent: p.home_agent(),
            care_of_address: p.care_of_address(),
            identification: p.identification(),
        }
    }

    /// RFC 5944 §3.8.2.2: lifetime 0, or the care-of address equal to the
    /// home address (the node is home), ends the binding.
    pub fn is_deregistration(&self) -> bool {
        self.lifetime == 0 || self.care_of_address == self.home_address
    }
}

/// One extension as found on the wire.
pub struct RawExt<'a> {
    pub offset: usize,
    pub type_: u8,
    pub data: &'a [u8],
}

/// Walks type-length-value extensions. Every MIPv4 extension format has
/// the 8-bit Length in its second octet (RFC 5944 §1.9, §1.10), so even an
/// unknown extension can be stepped over; the caller decides what an
/// unknown one means (134 or 70 once authenticated). The codec's iterator
/// stops at the first unknown non-skippable type, which would hide a
/// following authentication extension. `None`: the last one runs past the
/// datagram.
pub fn walk(msg: &[u8], start: usize) -> Option<Vec<RawExt<'_>>> {
    extensions(msg, start).collect()
}

/// [`walk`], one extension at a time and without a vector (a first look
/// that only wants one of them): `None` where an extension runs past the
/// datagram, and nothing after it.
pub fn extensions(msg: &[u8], start: usize) -> impl Iterator<Item = Option<RawExt<'_>>> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= msg.len() {
            return None;
        }
        let type_ = msg[at];
        let len = msg.get(at + 1).map(|&l| usize::from(l));
        match len.and_then(|len| msg.get(at + 2..at + 2 + len)) {
            Some(data) => {
                let e = RawExt {
                    offset: at,
                    type_,
                    data,
                };
                at += 2 + data.len();
                Some(Some(e))
            }
            None => {
                at = msg.len();
                Some(None)
            }
        }
    })
}
