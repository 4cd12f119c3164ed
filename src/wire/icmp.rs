//! ICMP Agent Advertisement and Agent Solicitation, RFC 5944 §2.1-§2.2.
//!
//! An Agent Advertisement is an ICMP Router Advertisement (RFC 1256 §3)
//! followed by extensions: the Mobility Agent Advertisement Extension
//! (type 16, §2.1.1), optionally the Prefix-Lengths Extension (type 19,
//! §2.1.2) and a One-byte Padding Extension (type 0, §2.1.3).
//!
//! ```text
//!  0      Type = 9          1      Code (0, or 16: mobility agent only)
//!  2..4   Checksum          4      Num Addrs        5  Addr Entry Size (2)
//!  6..8   Lifetime
//!  8..    Num Addrs x (Router Address, Preference Level)
//!  ..     extensions: 16 | Length | Sequence Number | Registration Lifetime
//!                     | R B H F M G r T | U X I reserved | Care-of Addresses
//! ```
//!
//! An Agent Solicitation is an ICMP Router Solicitation (type 10, code 0,
//! checksum, 4 reserved octets), sent with TTL 1 (§2.2).

use std::net::Ipv4Addr;

use super::{be, Error, Result};

/// ICMP type of a Router (Agent) Advertisement.
pub const TYPE_ADVERTISEMENT: u8 = 9;
/// ICMP type of a Router (Agent) Solicitation.
pub const TYPE_SOLICITATION: u8 = 10;
/// Mobility Agent Advertisement Extension type (RFC 5944 §2.1.1).
pub const EXT_MOBILITY_AGENT: u8 = 16;
/// Prefix-Lengths Extension type (RFC 5944 §2.1.2).
pub const EXT_PREFIX_LENGTHS: u8 = 19;
/// One-byte Padding Extension type (RFC 5944 §2.1.3).
pub const EXT_PADDING: u8 = 0;
/// Router Advertisement code of an agent that does not route common
/// traffic (RFC 5944 §2.1).
pub const CODE_MOBILITY_ONLY: u8 = 16;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const NUM_ADDRS: usize = 4;
    pub const ADDR_ENTRY_SIZE: usize = 5;
    pub const LIFETIME: Range<usize> = 6..8;
    pub const ADDRS: usize = 8;
    pub const SOL_RESERVED: Range<usize> = 4..8;
}

/// Length of the fixed ICMP header of both messages.
pub const HEADER_LEN: usize = 8;

/// The Internet checksum (RFC 1071) of `data`. Written here because it
/// is twelve lines; the network stack crates that have one (smoltcp,
/// pnet) would each pull a whole stack in for it.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Flags of the Mobility Agent Advertisement Extension (RFC 5944 §2.1.1),
/// as the 16-bit field that holds them, most significant bit first:
/// R B H F M G r T U X I and five reserved bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
pub struct AdvFlags(pub u16);

impl AdvFlags {
    /// R: registration with this foreign agent is required.
    pub const R: AdvFlags = AdvFlags(0x8000);
    /// B: busy, no more registrations accepted.
    pub const B: AdvFlags = AdvFlags(0x4000);
    /// H: this agent offers home agent service.
    pub const H: AdvFlags = AdvFlags(0x2000);
    /// F: this agent offers foreign agent service.
    pub const F: AdvFlags = AdvFlags(0x1000);
    /// M: minimal encapsulation supported.
    pub const M: AdvFlags = AdvFlags(0x0800);
    /// G: GRE encapsulation supported.
    pub const G: AdvFlags = AdvFlags(0x0400);
    /// r: reserved, sent as zero.
    pub const LOWER_R: AdvFlags = AdvFlags(0x0200);
    /// T: reverse tunnelling supported (RFC 3024).
    pub const T: AdvFlags = AdvFlags(0x0100);
    /// U: UDP tunnelling supported (RFC 3519, the agent advertisement "U" bit).
    pub const U: AdvFlags = AdvFlags(0x0080);
    /// X: registration revocation supported (RFC 3543).
    pub const X: AdvFlags = AdvFlags(0x0040);
    /// I: foreign agent supports regional registration (RFC 4857).
    pub const I: AdvFlags = AdvFlags(0x0020);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: AdvFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: AdvFlags) {
        self.0 |= other.0;
    }
    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: AdvFlags) {
        self.0 &= !other.0;
    }
}

impl core::ops::BitOr for AdvFlags {
    type Output = AdvFlags;
    fn bitor(self, rhs: AdvFlags) -> AdvFlags {
        AdvFlags(self.0 | rhs.0)
    }
}

/// Zero-copy view of an ICMP Router/Agent Advertisement.
#[derive(Debug, Clone)]
pub struct AdvertisementPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AdvertisementPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        AdvertisementPacket { buffer }
    }
    /// Checks the type, that the router address entries fit and that the
    /// entry size is at least 2 words (RFC 1256 §3).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::TYPE] != TYPE_ADVERTISEMENT {
            return Err(Error::BadType(b[field::TYPE]));
        }
        if b[field::ADDR_ENTRY_SIZE] < 2 {
            return Err(Error::Malformed("router address entry size below 2"));
        }
        if b.len() < self.extensions_offset() {
            return Err(Error::Truncated);
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        be::u16(&self.buffer.as_ref()[field::CHECKSUM])
    }
    /// Whether the ICMP checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref()) == 0
    }
    pub fn num_addrs(&self) -> u8 {
        self.buffer.as_ref()[field::NUM_ADDRS]
    }
    pub fn addr_entry_size(&self) -> u8 {
        self.buffer.as_ref()[field::ADDR_ENTRY_SIZE]
    }
    /// Router advertisement lifetime, seconds.
    pub fn lifetime(&self) -> u16 {
        be::u16(&self.buffer.as_ref()[field::LIFETIME])
    }
    /// Router address `i` and its preference level.
    pub fn router(&self, i: usize) -> (Ipv4Addr, i32) {
        let at = field::ADDRS + i * 4 * usize::from(self.addr_entry_size());
        let b = &self.buffer.as_ref()[at..at + 8];
        (be::ipv4(&b[..4]), be::u32(&b[4..8]) as i32)
    }
    /// Offset of the first extension.
    pub fn extensions_offset(&self) -> usize {
        field::ADDRS + usize::from(self.num_addrs()) * 4 * usize::from(self.addr_entry_size())
    }
    /// The raw extensions: `(type, data)`; padding yields `(0, [])`.
    pub fn extensions(&self) -> AdvExtIter<'_> {
        AdvExtIter {
            buf: self.buffer.as_ref(),
            pos: self.extensions_offset(),
            failed: false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AdvertisementPacket<T> {
    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let c = checksum(self.buffer.as_ref());
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

/// Iterator over the raw extensions of an advertisement.
#[derive(Debug, Clone)]
pub struct AdvExtIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for AdvExtIter<'a> {
    type Item = Result<(u8, &'a [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        if rest[0] == EXT_PADDING {
            // §2.1.3: a single octet, no Length field.
            self.pos += 1;
            return Some(Ok((EXT_PADDING, &[])));
        }
        if rest.len() < 2 || rest.len() < 2 + usize::from(rest[1]) {
            self.failed = true;
            return Some(Err(Error::BadLength));
        }
        let len = usize::from(rest[1]);
        self.pos += 2 + len;
        Some(Ok((rest[0], &rest[2..2 + len])))
    }
}

/// Mobility Agent Advertisement Extension, RFC 5944 §2.1.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MobilityAgentAdv {
    /// Advertisements sent since the agent initialised (§2.1.1, §2.3.2);
    /// values below 256 after a wrap tell the MN the agent rebooted.
    pub sequence: u16,
    /// Longest registration lifetime this agent accepts, seconds
    /// (0xffff: infinity).
    pub registration_lifetime: u16,
    pub flags: AdvFlags,
    /// Foreign agent care-of addresses offered (required if F is set).
    pub care_of_addresses: Vec<Ipv4Addr>,
}

/// Owned form of an Agent Advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAdvertisementRepr {
    /// 0, or 16 when the agent does not route common traffic (§2.1).
    pub code: u8,
    /// Router advertisement lifetime, seconds (RFC 1256 §3).
    pub lifetime: u16,
    /// Router addresses with preference levels (may be empty, §2.1).
    pub routers: Vec<(Ipv4Addr, i32)>,
    pub mobility: MobilityAgentAdv,
    /// Prefix-Lengths Extension (§2.1.2), one per router address.
    pub prefix_lengths: Option<Vec<u8>>,
    /// Skippable (>= 128) extensions not interpreted, kept in order.
    pub unknown: Vec<(u8, Vec<u8>)>,
    /// Whether a One-byte Padding Extension ends the message (§2.1.3).
    pub padding: bool,
}

impl AgentAdvertisementRepr {
    /// Parses a view, verifying the ICMP checksum. Exactly one Mobility
    /// Agent Advertisement Extension must be present (§2.1.1); an unknown
    /// non-skippable extension rejects the message (§1.9).
    pub fn parse<T: AsRef<[u8]>>(p: &AdvertisementPacket<T>) -> Result<Self> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(Error::Malformed("bad ICMP checksum"));
        }
        let routers = (0..usize::from(p.num_addrs()))
            .map(|i| p.router(i))
            .collect();
        let mut mobility = None;
        let mut prefix_lengths = None;
        let mut unknown = Vec::new();
        let mut padding = false;
        for ext in p.extensions() {
            let (t, data) = ext?;
            match t {
                EXT_PADDING => padding = true,
                EXT_MOBILITY_AGENT => {
                    if mobility.is_some() {
                        return Err(Error::Malformed("two mobility agent extensions"));
                    }
                    if data.len() < 6 || (data.len() - 6) % 4 != 0 {
                        return Err(Error::BadLength);
                    }
                    mobility = Some(MobilityAgentAdv {
                        sequence: be::u16(&data[0..2]),
                        registration_lifetime: be::u16(&data[2..4]),
                        flags: AdvFlags(be::u16(&data[4..6])),
                        care_of_addresses: data[6..].chunks_exact(4).map(be::ipv4).collect(),
                    });
                }
                EXT_PREFIX_LENGTHS => {
                    if prefix_lengths.is_some() {
                        return Err(Error::Malformed("two prefix-lengths extensions"));
                    }
                    prefix_lengths = Some(data.to_vec());
                }
                t if t >= 128 => unknown.push((t, data.to_vec())),
                t => return Err(Error::UnknownExtension(t)),
            }
        }
        let mobility = mobility.ok_or(Error::Malformed(
            "no mobility agent advertisement extension",
        ))?;
        Ok(AgentAdvertisementRepr {
            code: p.code(),
            lifetime: p.lifetime(),
            routers,
            mobility,
            prefix_lengths,
            unknown,
            padding,
        })
    }

    /// Parses raw ICMP bytes.
    pub fn parse_bytes(buf: &[u8]) -> Result<Self> {
        Self::parse(&AdvertisementPacket::new_checked(buf)?)
    }

    /// Bytes needed by [`emit`](Self::emit).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + 8 * self.routers.len()
            + 2
            + 6
            + 4 * self.mobility.care_of_addresses.len()
            + self.prefix_lengths.as_ref().map_or(0, |p| 2 + p.len())
            + self.unknown.iter().map(|(_, d)| 2 + d.len()).sum::<usize>()
            + usize::from(self.padding)
    }

    /// Writes the message, checksum included, into
    /// `buf[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `buf` is too short, there are more than 255 router addresses,
    /// or an extension does not fit its 8-bit Length (caller's bug).
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        let buf = &mut buf[..len];
        buf[field::TYPE] = TYPE_ADVERTISEMENT;
        buf[field::CODE] = self.code;
        buf[field::CHECKSUM].copy_from_slice(&[0, 0]);
        buf[field::NUM_ADDRS] =
            u8::try_from(self.routers.len()).expect("too many router addresses");
        buf[field::ADDR_ENTRY_SIZE] = 2;
        buf[field::LIFETIME].copy_from_slice(&self.lifetime.to_be_bytes());
        let mut at = field::ADDRS;
        for (addr, pref) in &self.routers {
            buf[at..at + 4].copy_from_slice(&addr.octets());
            buf[at + 4..at + 8].copy_from_slice(&pref.to_be_bytes());
            at += 8;
        }
        let m = &self.mobility;
        let mlen = 6 + 4 * m.care_of_addresses.len();
        buf[at] = EXT_MOBILITY_AGENT;
        buf[at + 1] = u8::try_from(mlen).expect("too many care-of addresses");
        buf[at + 2..at + 4].copy_from_slice(&m.sequence.to_be_bytes());
        buf[at + 4..at + 6].copy_from_slice(&m.registration_lifetime.to_be_bytes());
        buf[at + 6..at + 8].copy_from_slice(&m.flags.0.to_be_bytes());
        at += 8;
        for coa in &m.care_of_addresses {
            buf[at..at + 4].copy_from_slice(&coa.octets());
            at += 4;
        }
        if let Some(p) = &self.prefix_lengths {
            buf[at] = EXT_PREFIX_LENGTHS;
            buf[at + 1] = u8::try_from(p.len()).expect("too many prefix lengths");
            buf[at + 2..at + 2 + p.len()].copy_from_slice(p);
            at += 2 + p.len();
        }
        for (t, d) in &self.unknown {
            buf[at] = *t;
            buf[at + 1] = u8::try_from(d.len()).expect("extension too long");
            buf[at + 2..at + 2 + d.len()].copy_from_slice(d);
            at += 2 + d.len();
        }
        if self.padding {
            buf[at] = EXT_PADDING;
        }
        AdvertisementPacket::new_unchecked(buf).fill_checksum();
    }

    /// Emits into a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}

/// Zero-copy view of an ICMP Router/Agent Solicitation.
#[derive(Debug, Clone)]
pub struct SolicitationPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SolicitationPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        SolicitationPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::TYPE] != TYPE_SOLICITATION {
            return Err(Error::BadType(b[field::TYPE]));
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        be::u16(&self.buffer.as_ref()[field::CHECKSUM])
    }
    pub fn reserved(&self) -> u32 {
        be::u32(&self.buffer.as_ref()[field::SOL_RESERVED])
    }
    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref()) == 0
    }
}

/// Owned form of an Agent Solicitation; it carries no information beyond
/// its type (RFC 5944 §2.2), so the Repr is a unit struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentSolicitationRepr;

impl AgentSolicitationRepr {
    /// Parses a view: code must be 0 (RFC 1256 §3) and the checksum right.
    pub fn parse<T: AsRef<[u8]>>(p: &SolicitationPacket<T>) -> Result<Self> {
        p.check_len()?;
        if p.code() != 0 {
            return Err(Error::Malformed("router solicitation code not 0"));
        }
        if !p.verify_checksum() {
            return Err(Error::Malformed("bad ICMP checksum"));
        }
        Ok(AgentSolicitationRepr)
    }
    /// Parses raw ICMP bytes.
    pub fn parse_bytes(buf: &[u8]) -> Result<Self> {
        Self::parse(&SolicitationPacket::new_checked(buf)?)
    }
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the 8-octet solicitation, checksum included.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..HEADER_LEN];
        b.copy_from_slice(&[TYPE_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]);
        let c = checksum(b);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; HEADER_LEN];
        self.emit(&mut v);
        v
    }
}
