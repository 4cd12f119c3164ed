//! Extensions of Registration Requests and Replies.
//!
//! RFC 5944 §1.9: every extension starts with a Type octet; types 0..=127
//! are *non-skippable* (a receiver that does not recognise one must drop
//! the whole message), types 128..=255 are *skippable* (an unrecognised
//! one is skipped and the rest of the message processed). All the
//! extensions this codec knows use the plain Type-Length-Data layout
//! (§1.9) or the short extension format of §1.11 (Type, Length,
//! Sub-Type, Data), where Length counts the octets after itself; both are
//! walked the same way. The long extension format of §1.10 (16-bit
//! length) is only used by non-skippable types this codec does not know
//! (e.g. 36, 38, 47), so meeting one stops parsing with
//! [`Error::UnknownExtension`] before its length would be misread.
//!
//! The iterator yields each extension together with its byte offset in
//! the whole message: the MN-HA authenticator (RFC 5944 §3.5.1) covers the
//! message up to and including the SPI of the authentication extension.

use std::net::Ipv6Addr;

use super::{be, Error, Result};

/// Extension type numbers (IANA "Extensions to Mobile IP Registration
/// Messages").
pub mod ext_type {
    /// Mobile-Home Authentication Extension, RFC 5944 §3.5.2.
    pub const MN_HA_AUTH: u8 = 32;
    /// Mobile-Foreign Authentication Extension, RFC 5944 §3.5.3.
    pub const MN_FA_AUTH: u8 = 33;
    /// Foreign-Home Authentication Extension, RFC 5944 §3.5.4.
    pub const FA_HA_AUTH: u8 = 34;
    /// UDP Tunnel Reply Extension, RFC 3519 §3.2.
    pub const UDP_TUNNEL_REPLY: u8 = 44;
    /// Mobile Node NAI Extension, RFC 2794 §2.
    pub const NAI: u8 = 131;
    /// UDP Tunnel Request Extension, RFC 3519 §3.1.
    pub const UDP_TUNNEL_REQUEST: u8 = 144;
    /// Message String Extension, RFC 3846 §3.
    pub const MESSAGE_STRING: u8 = 145;
    /// Trusted Networks Configured Extension, RFC 5265 §3.4.
    pub const TRUSTED_NETWORKS_CONFIGURED: u8 = 149;
    /// Dual Stack (DSMIPv4) Extension, RFC 5454 §2.
    pub const DSMIPV4: u8 = 152;
}

/// Whether an extension type may be skipped when not recognised
/// (RFC 5944 §1.9).
pub const fn is_skippable(type_: u8) -> bool {
    type_ >= 128
}

/// Authentication extension body, RFC 5944 §3.5.1-§3.5.4:
/// Type, Length (= 4 + authenticator length), SPI (32 bits),
/// Authenticator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthExt {
    /// Security Parameter Index, selects the key and algorithm (§3.5.1).
    pub spi: u32,
    /// 16 octets for the default HMAC-MD5 (§3.5.1); variable in general.
    pub authenticator: Vec<u8>,
}

/// UDP Tunnel Request Extension, RFC 3519 §3.1 (type 144, length 6):
/// Sub-Type, Reserved 1, F R Reserved 2, Encapsulation, Reserved 3 (16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTunnelRequest {
    /// 0 for the extension defined by RFC 3519.
    pub sub_type: u8,
    /// F: force UDP tunnelling even if no NAT is detected.
    pub force: bool,
    /// R: the MN registers through a foreign agent (RFC 3519 §3.1).
    pub registration_through_fa: bool,
    /// Encapsulation of the tunnelled packets, an IP protocol number:
    /// 4 IP-in-IP, 47 GRE, 55 minimal encapsulation.
    pub encapsulation: u8,
}

/// UDP Tunnel Reply Extension, RFC 3519 §3.2 (type 44, length 6):
/// Sub-Type, Reply Code, F + 15 reserved bits, Keepalive Interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTunnelReply {
    /// 0 for the extension defined by RFC 3519.
    pub sub_type: u8,
    /// 0: UDP tunnelling will be done; 64: declined, reason unspecified.
    pub reply_code: u8,
    /// F: UDP tunnelling forced by the home agent.
    pub force: bool,
    /// Keepalive interval in seconds the MN should use (0: its default).
    pub keepalive_interval: u16,
}

impl UdpTunnelReply {
    /// RFC 3519 §3.2: a Keepalive Interval of 0 leaves the interval to
    /// the mobile node, whose default is 110 s.
    pub const DEFAULT_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(110);

    /// The keepalive interval a granted `keepalive_interval` means.
    pub fn interval(keepalive_interval: u16) -> std::time::Duration {
        match keepalive_interval {
            0 => Self::DEFAULT_KEEPALIVE,
            s => std::time::Duration::from_secs(s.into()),
        }
    }

    /// Reply Code: "will do tunnelling" (RFC 3519 §3.2).
    pub const CODE_ACCEPTED: u8 = 0;
    /// Reply Code: "tunnelling declined, reason unspecified".
    pub const CODE_DECLINED: u8 = 64;
}

/// Dual Stack MIPv4 extension (type 152), RFC 5454 §2, by sub-type.
///
/// No oracle on the machine decodes type 152 (tshark 4.0 shows its data
/// as bytes, scapy has no model of it), so these layouts rest on the RFC
/// text alone (checked against RFC 5454 §2.1-§2.3, Figures 1-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dsmipv4Ext {
    /// Sub-type 1, IPv6 Prefix Request (RFC 5454 §2.1): Sub-Type,
    /// Prefix Length, Home Network Prefix (128 bits; all zero asks the HA
    /// to assign one).
    Ipv6PrefixRequest { prefix_length: u8, prefix: Ipv6Addr },
    /// Sub-type 2, IPv6 Prefix Reply (RFC 5454 §2.2): Sub-Type, Code,
    /// Prefix Length, Reserved, Home Network Prefix.
    Ipv6PrefixReply {
        code: u8,
        prefix_length: u8,
        prefix: Ipv6Addr,
    },
    /// Sub-type 3, IPv6 Tunneling Mode (RFC 5454 §2.3): Sub-Type and a
    /// reserved octet; its presence asks that IPv6 be tunnelled in IPv4.
    TunnelingMode,
}

impl Dsmipv4Ext {
    pub const SUB_PREFIX_REQUEST: u8 = 1;
    pub const SUB_PREFIX_REPLY: u8 = 2;
    pub const SUB_TUNNELING_MODE: u8 = 3;

    /// Prefix Reply Code (RFC 5454 §2.2): accepted, IPv6 tunnelled to the
    /// IPv4 home address (inside the binding's IPv4 tunnel).
    pub const CODE_ACCEPTED_TO_HOME_ADDRESS: u8 = 0;
    /// Accepted, IPv6 tunnelled in IPv4 straight to the care-of address.
    pub const CODE_ACCEPTED_TO_CARE_OF: u8 = 1;
    /// Rejected, reason unspecified.
    pub const CODE_REJECTED_UNSPECIFIED: u8 = 8;
    /// Rejected, administratively prohibited.
    pub const CODE_REJECTED_PROHIBITED: u8 = 9;

    fn sub_type(&self) -> u8 {
        match self {
            Dsmipv4Ext::Ipv6PrefixRequest { .. } => Self::SUB_PREFIX_REQUEST,
            Dsmipv4Ext::Ipv6PrefixReply { .. } => Self::SUB_PREFIX_REPLY,
            Dsmipv4Ext::TunnelingMode => Self::SUB_TUNNELING_MODE,
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Dsmipv4Ext::Ipv6PrefixRequest { .. } => 2 + 16,
            Dsmipv4Ext::Ipv6PrefixReply { .. } => 4 + 16,
            Dsmipv4Ext::TunnelingMode => 2,
        }
    }

    fn parse(data: &[u8]) -> Result<Option<Self>> {
        let Some(&sub) = data.first() else {
            return Err(Error::Malformed("DSMIPv4 extension without sub-type"));
        };
        let prefix = |at: usize| -> Ipv6Addr {
            let mut a = [0u8; 16];
            a.copy_from_slice(&data[at..at + 16]);
            Ipv6Addr::from(a)
        };
        Ok(Some(match sub {
            Self::SUB_PREFIX_REQUEST => {
                if data.len() != 18 {
                    return Err(Error::BadLength);
                }
                Dsmipv4Ext::Ipv6PrefixRequest {
                    prefix_length: data[1],
                    prefix: prefix(2),
                }
            }
            Self::SUB_PREFIX_REPLY => {
                if data.len() != 20 {
                    return Err(Error::BadLength);
                }
                Dsmipv4Ext::Ipv6PrefixReply {
                    code: data[1],
                    prefix_length: data[2],
                    prefix: prefix(4),
                }
            }
            Self::SUB_TUNNELING_MODE => {
                if data.len() != 2 {
                    return Err(Error::BadLength);
                }
                Dsmipv4Ext::TunnelingMode
            }
            // An unknown sub-type of a skippable extension: kept opaque.
            _ => return Ok(None),
        }))
    }

    fn emit(&self, d: &mut [u8]) {
        d[0] = self.sub_type();
        match *self {
            Dsmipv4Ext::Ipv6PrefixRequest {
                prefix_length,
                prefix,
            } => {
                d[1] = prefix_length;
                d[2..18].copy_from_slice(&prefix.octets());
            }
            Dsmipv4Ext::Ipv6PrefixReply {
                code,
                prefix_length,
                prefix,
            } => {
                d[1] = code;
                d[2] = prefix_length;
                d[3] = 0;
                d[4..20].copy_from_slice(&prefix.octets());
            }
            Dsmipv4Ext::TunnelingMode => d[1] = 0,
        }
    }
}

/// One extension of a registration message, in owned form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// Type 32, RFC 5944 §3.5.2.
    MnHaAuth(AuthExt),
    /// Type 33, RFC 5944 §3.5.3.
    MnFaAuth(AuthExt),
    /// Type 34, RFC 5944 §3.5.4.
    FaHaAuth(AuthExt),
    /// Type 131, the mobile node's NAI (RFC 2794 §2), octets as sent.
    Nai(Vec<u8>),
    /// Type 144, RFC 3519 §3.1.
    UdpTunnelRequest(UdpTunnelRequest),
    /// Type 44, RFC 3519 §3.2.
    UdpTunnelReply(UdpTunnelReply),
    /// Type 149, RFC 5265 §3.4: Sub-Type 0 and a reserved octet. The i-HA
    /// puts it in its (authenticated) reply to a request that came from one
    /// of its trusted networks (§4.3); to the MN it means "inside" (§4.1).
    TrustedNetworksConfigured,
    /// Type 152, RFC 5454 §2.
    Dsmipv4(Dsmipv4Ext),
    /// Type 145, RFC 3846 §3: Sub-Type (1 from HA, 2 from FA) and text.
    MessageString { sub_type: u8, text: Vec<u8> },
    /// A skippable (>= 128) extension this codec does not interpret, or a
    /// known skippable type with a sub-type it does not know; kept so the
    /// message re-emits byte for byte and the authenticator still covers
    /// it, ignored by protocol logic (RFC 5944 §1.9).
    Unknown { type_: u8, data: Vec<u8> },
}

impl Extension {
    /// The Type octet.
    pub fn type_(&self) -> u8 {
        match self {
            Extension::MnHaAuth(_) => ext_type::MN_HA_AUTH,
            Extension::MnFaAuth(_) => ext_type::MN_FA_AUTH,
            Extension::FaHaAuth(_) => ext_type::FA_HA_AUTH,
            Extension::Nai(_) => ext_type::NAI,
            Extension::UdpTunnelRequest(_) => ext_type::UDP_TUNNEL_REQUEST,
            Extension::UdpTunnelReply(_) => ext_type::UDP_TUNNEL_REPLY,
            Extension::TrustedNetworksConfigured => ext_type::TRUSTED_NETWORKS_CONFIGURED,
            Extension::Dsmipv4(_) => ext_type::DSMIPV4,
            Extension::MessageString { .. } => ext_type::MESSAGE_STRING,
            Extension::Unknown { type_, .. } => *type_,
        }
    }

    /// Octets after the Type and Length fields.
    pub fn data_len(&self) -> usize {
        match self {
            Extension::MnHaAuth(a) | Extension::MnFaAuth(a) | Extension::FaHaAuth(a) => {
                4 + a.authenticator.len()
            }
            Extension::Nai(n) => n.len(),
            Extension::UdpTunnelRequest(_) | Extension::UdpTunnelReply(_) => 6,
            Extension::TrustedNetworksConfigured => 2,
            Extension::Dsmipv4(d) => d.data_len(),
            Extension::MessageString { text, .. } => 1 + text.len(),
            Extension::Unknown { data, .. } => data.len(),
        }
    }

    /// Octets the extension occupies on the wire (Type, Length, data).
    pub fn buffer_len(&self) -> usize {
        2 + self.data_len()
    }

    /// Parses one extension from its type and data (the octets after the
    /// Length field). `Ok(None)` never happens for a recognised type.
    pub fn parse(type_: u8, data: &[u8]) -> Result<Extension> {
        let auth = || -> Result<AuthExt> {
            if data.len() < 4 {
                return Err(Error::BadLength);
            }
            Ok(AuthExt {
                spi: be::u32(&data[..4]),
                authenticator: data[4..].to_vec(),
            })
        };
        let unknown = || Extension::Unknown {
            type_,
            data: data.to_vec(),
        };
        Ok(match type_ {
            ext_type::MN_HA_AUTH => Extension::MnHaAuth(auth()?),
            ext_type::MN_FA_AUTH => Extension::MnFaAuth(auth()?),
            ext_type::FA_HA_AUTH => Extension::FaHaAuth(auth()?),
            ext_type::NAI => {
                // RFC 2794 §2: the NAI is at least one octet.
                if data.is_empty() {
                    return Err(Error::Malformed("empty NAI extension"));
                }
                Extension::Nai(data.to_vec())
            }
            ext_type::UDP_TUNNEL_REQUEST => {
                if data.len() != 6 {
                    return Err(Error::BadLength);
                }
                Extension::UdpTunnelRequest(UdpTunnelRequest {
                    sub_type: data[0],
                    force: data[2] & 0x80 != 0,
                    registration_through_fa: data[2] & 0x40 != 0,
                    encapsulation: data[3],
                })
            }
            ext_type::UDP_TUNNEL_REPLY => {
                if data.len() != 6 {
                    return Err(Error::BadLength);
                }
                Extension::UdpTunnelReply(UdpTunnelReply {
                    sub_type: data[0],
                    reply_code: data[1],
                    force: data[2] & 0x80 != 0,
                    keepalive_interval: be::u16(&data[4..6]),
                })
            }
            ext_type::TRUSTED_NETWORKS_CONFIGURED => match data {
                [0, _] => Extension::TrustedNetworksConfigured,
                [_, _] => unknown(),
                _ => return Err(Error::BadLength),
            },
            ext_type::DSMIPV4 => match Dsmipv4Ext::parse(data)? {
                Some(d) => Extension::Dsmipv4(d),
                None => unknown(),
            },
            ext_type::MESSAGE_STRING => {
                let Some((&sub_type, text)) = data.split_first() else {
                    return Err(Error::Malformed("message string without sub-type"));
                };
                Extension::MessageString {
                    sub_type,
                    text: text.to_vec(),
                }
            }
            t if is_skippable(t) => unknown(),
            t => return Err(Error::UnknownExtension(t)),
        })
    }

    /// Writes the extension into `buf[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `buf` is too short, or the data does not fit the 8-bit Length
    /// field (more than 255 octets): a programming error of the caller.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.data_len();
        let len8 = u8::try_from(len).expect("extension data longer than 255 octets");
        buf[0] = self.type_();
        buf[1] = len8;
        let d = &mut buf[2..2 + len];
        match self {
            Extension::MnHaAuth(a) | Extension::MnFaAuth(a) | Extension::FaHaAuth(a) => {
                d[..4].copy_from_slice(&a.spi.to_be_bytes());
                d[4..].copy_from_slice(&a.authenticator);
            }
            Extension::Nai(n) => d.copy_from_slice(n),
            Extension::UdpTunnelRequest(r) => {
                d[0] = r.sub_type;
                d[1] = 0;
                d[2] = (if r.force { 0x80 } else { 0 })
                    | (if r.registration_through_fa { 0x40 } else { 0 });
                d[3] = r.encapsulation;
                d[4..6].copy_from_slice(&[0, 0]);
            }
            Extension::UdpTunnelReply(r) => {
                d[0] = r.sub_type;
                d[1] = r.reply_code;
                d[2..4].copy_from_slice(&(if r.force { 0x8000u16 } else { 0 }).to_be_bytes());
                d[4..6].copy_from_slice(&r.keepalive_interval.to_be_bytes());
            }
            Extension::TrustedNetworksConfigured => d.copy_from_slice(&[0, 0]),
            Extension::Dsmipv4(x) => x.emit(d),
            Extension::MessageString { sub_type, text } => {
                d[0] = *sub_type;
                d[1..].copy_from_slice(text);
            }
            Extension::Unknown { data, .. } => d.copy_from_slice(data),
        }
    }

    /// Emits into a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}

/// Iterator over the extensions of a message, yielding
/// `(offset of the extension's Type octet in the message, extension)`.
/// After the first error it yields nothing more.
#[derive(Debug, Clone)]
pub struct ExtensionIter<'a> {
    msg: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> ExtensionIter<'a> {
    /// Iterates the extensions of `msg` that start at `start`.
    pub fn new(msg: &'a [u8], start: usize) -> Self {
        ExtensionIter {
            msg,
            pos: start,
            failed: false,
        }
    }

    /// A raw walk step: `(offset, type, data)` without interpretation.
    fn next_raw(&mut self) -> Option<Result<(usize, u8, &'a [u8])>> {
        if self.failed || self.pos >= self.msg.len() {
            return None;
        }
        let at = self.pos;
        let rest = &self.msg[at..];
        let type_ = rest[0];
        if !is_skippable(type_) && !is_known(type_) {
            // Might be in the long format (§1.10): we cannot tell its
            // length, and must reject the message anyway (§1.9).
            self.failed = true;
            return Some(Err(Error::UnknownExtension(type_)));
        }
        if rest.len() < 2 {
            self.failed = true;
            return Some(Err(Error::Truncated));
        }
        let len = usize::from(rest[1]);
        if rest.len() < 2 + len {
            self.failed = true;
            return Some(Err(Error::BadLength));
        }
        self.pos = at + 2 + len;
        Some(Ok((at, type_, &rest[2..2 + len])))
    }
}

fn is_known(type_: u8) -> bool {
    matches!(
        type_,
        ext_type::MN_HA_AUTH
            | ext_type::MN_FA_AUTH
            | ext_type::FA_HA_AUTH
            | ext_type::UDP_TUNNEL_REPLY
    )
}

impl Iterator for ExtensionIter<'_> {
    type Item = Result<(usize, Extension)>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.next_raw()? {
            Ok((at, t, data)) => match Extension::parse(t, data) {
                Ok(e) => Ok((at, e)),
                Err(e) => {
                    self.failed = true;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        })
    }
}

/// Parses every extension of `msg` from `start` on, with its offset.
pub fn parse_all(msg: &[u8], start: usize) -> Result<Vec<(usize, Extension)>> {
    if start > msg.len() {
        return Err(Error::Truncated);
    }
    ExtensionIter::new(msg, start).collect()
}

/// Octets a list of extensions occupies on the wire.
pub fn total_len(exts: &[Extension]) -> usize {
    exts.iter().map(Extension::buffer_len).sum()
}

/// Emits `exts` back to back at the start of `buf`; returns the offset of
/// each one relative to `buf`.
pub fn emit_all(exts: &[Extension], buf: &mut [u8]) -> Vec<usize> {
    let mut at = 0;
    let mut offsets = Vec::with_capacity(exts.len());
    for e in exts {
        offsets.push(at);
        e.emit(&mut buf[at..]);
        at += e.buffer_len();
    }
    offsets
}
