//! Mobility security associations and registration authentication
//! (RFC 5944 §3.5, §3.5.1, §5.1).
//!
//! A registration message is authenticated by an extension of the form
//!
//! ```text
//!  0                   1                   2                   3
//! |     Type      |    Length     |         SPI ....
//!        ... SPI (cont.)          |       Authenticator ...
//! ```
//!
//! (MN-HA 32, MN-FA 33, FA-HA 34). The authenticator covers the message
//! from its first byte up to and including the extension's Type, Length
//! and SPI: the fixed header, every prior extension, and the extension's
//! own header (§3.5.1). The UDP header and the authenticator itself are
//! not covered.
//!
//! This module works on byte slices: it needs only the offset of the
//! authentication extension inside the message, which the wire codec's
//! extension iterator reports.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use hmac::digest::core_api::CoreWrapper;
use hmac::digest::KeyInit;
use hmac::{HmacCore, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::replay::ReplayMethod;
use crate::wire::extension::ExtensionIter;
use crate::wire::registration::{REPLY_HEADER_LEN, REQUEST_HEADER_LEN};
use crate::wire::{self, Extension, ReplyRepr, RequestRepr};

/// Length of an HMAC-MD5 or keyed-MD5 authenticator.
pub const AUTHENTICATOR_LEN: usize = 16;

/// Type (1) + Length (1) + SPI (4): the header of an authentication
/// extension, covered by its own authenticator.
pub const AUTH_EXT_HEADER_LEN: usize = 6;

/// SPI values 0 through 255 are reserved and MUST NOT be used in any
/// mobility security association (RFC 5944 §1.6, "Security Parameter
/// Index").
pub const FIRST_USABLE_SPI: u32 = 256;

/// Authentication extension types (RFC 5944 §3.5.2 - §3.5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// Mobile-Home Authentication Extension (type 32), required in every
    /// Registration Request and Reply (§3.5.2).
    MnHa,
    /// Mobile-Foreign Authentication Extension (type 33, §3.5.3).
    MnFa,
    /// Foreign-Home Authentication Extension (type 34, §3.5.4).
    FaHa,
}

impl AuthKind {
    pub const fn ext_type(self) -> u8 {
        match self {
            AuthKind::MnHa => 32,
            AuthKind::MnFa => 33,
            AuthKind::FaHa => 34,
        }
    }

    pub const fn from_ext_type(t: u8) -> Option<Self> {
        match t {
            32 => Some(AuthKind::MnHa),
            33 => Some(AuthKind::MnFa),
            34 => Some(AuthKind::FaHa),
            _ => None,
        }
    }
}

/// Authentication algorithm of a mobility security association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Algorithm {
    /// HMAC-MD5 (RFC 2104), the default that home agents and mobile nodes
    /// MUST implement (RFC 5944 §3.5.1, §5.1).
    #[default]
    HmacMd5,
    /// Keyed MD5 in "prefix+suffix" mode, MD5(key | data | key), the
    /// RFC 2002 default. RFC 5944 §5.1 calls it vulnerable but says new
    /// implementations SHOULD include it where backward compatibility with
    /// implementations using it is needed; off unless configured.
    KeyedMd5PrefixSuffix,
}

impl Algorithm {
    pub const fn authenticator_len(self) -> usize {
        AUTHENTICATOR_LEN
    }
}

/// Errors of authentication and of security-association setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("SPI {0} is reserved (RFC 5944: SPIs 0-255 MUST NOT be used)")]
    ReservedSpi(u32),
    #[error("empty key for SPI {0}")]
    EmptyKey(u32),
    #[error("message has no {0:?} authentication extension")]
    Missing(AuthKind),
    #[error("no mobility security association for SPI {0}")]
    UnknownSpi(u32),
    #[error("SPI {0} does not belong to this peer")]
    WrongSpi(u32),
    #[error("authentication extension truncated or of the wrong length")]
    BadLength,
    #[error("authenticator does not verify")]
    BadAuthenticator,
    #[error("{0:?} authentication extension precedes the MN-HA one")]
    Misordered(AuthKind),
    #[error("malformed message: {0}")]
    Malformed(wire::Error),
}

/// A mobility security association (RFC 5944 §1.6, §3.5): SPI, algorithm,
/// shared secret and replay method.
///
/// The key is never printed: `Debug` redacts it, and it is overwritten
/// with zeros when the association is dropped.
#[derive(Clone)]
pub struct SecurityAssociation {
    spi: u32,
    algorithm: Algorithm,
    key: Vec<u8>,
    replay: ReplayMethod,
    /// HMAC-MD5's keyed state (the MD5 states after the key's inner and
    /// outer pad blocks, RFC 2104 §2), computed once: each message then
    /// costs the MD5 blocks of its own bytes only, half of a keyed-anew
    /// HMAC for a registration (issue 14 §4). As secret as the key, and
    /// overwritten when dropped like it.
    keyed: Option<HmacCore<Md5>>,
}

impl SecurityAssociation {
    /// Keys with arbitrary binary values MUST be supported (§5.1); an
    /// empty key would authenticate nothing and is refused.
    pub fn new(
        spi: u32,
        algorithm: Algorithm,
        key: &[u8],
        replay: ReplayMethod,
    ) -> Result<Self, AuthError> {
        if spi < FIRST_USABLE_SPI {
            return Err(AuthError::ReservedSpi(spi));
        }
        if key.is_empty() {
            return Err(AuthError::EmptyKey(spi));
        }
        let keyed = (algorithm == Algorithm::HmacMd5).then(|| hmac_keyed(key));
        Ok(SecurityAssociation {
            spi,
            algorithm,
            key: key.to_vec(),
            replay,
            keyed,
        })
    }

    /// HMAC-MD5 with timestamps: the RFC 5944 defaults.
    pub fn hmac_md5(spi: u32, key: &[u8]) -> Result<Self, AuthError> {
        Self::new(spi, Algorithm::HmacMd5, key, ReplayMethod::Timestamp)
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn replay_method(&self) -> ReplayMethod {
        self.replay
    }

    /// The authenticator over `covered` (§3.5.1: the message up to and
    /// including the extension's SPI).
    pub fn compute(&self, covered: &[u8]) -> [u8; AUTHENTICATOR_LEN] {
        match (self.algorithm, &self.keyed) {
            (Algorithm::HmacMd5, keyed) => {
                // (Always keyed when made; the key stays the truth.)
                let core = keyed.clone().unwrap_or_else(|| hmac_keyed(&self.key));
                let mut mac = CoreWrapper::from_core(core);
                mac.update(covered);
                mac.finalize().into_bytes().into()
            }
            (Algorithm::KeyedMd5PrefixSuffix, _) => {
                let mut h = Md5::new();
                h.update(&self.key);
                h.update(covered);
                h.update(&self.key);
                h.finalize().into()
            }
        }
    }

    /// Constant-time check of `authenticator` against `covered`.
    pub fn verify(&self, covered: &[u8], authenticator: &[u8]) -> bool {
        if authenticator.len() != self.algorithm.authenticator_len() {
            return false;
        }
        let expected = self.compute(covered);
        expected.ct_eq(authenticator).into()
    }
}

/// HMAC-MD5's state after the pad blocks of `key` (RFC 2104 §2).
fn hmac_keyed(key: &[u8]) -> HmacCore<Md5> {
    HmacCore::<Md5>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

impl fmt::Debug for SecurityAssociation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityAssociation")
            .field("spi", &self.spi)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("replay", &self.replay)
            .finish()
    }
}

impl Drop for SecurityAssociation {
    fn drop(&mut self) {
        self.key.zeroize();
        if let Some(keyed) = &mut self.keyed {
            // The crate offers no zeroize: the state of an empty key (no
            // secret) is written over the key's, and kept observable so
            // that the store is not elided as dead.
            *keyed = hmac_keyed(&[]);
            std::hint::black_box(keyed);
        }
    }
}

/// Appends an authentication extension of `kind` to `msg` (the message
/// built so far: header and all prior extensions) and fills its
/// authenticator (RFC 5944 §3.5.1). Extensions a later hop must process
/// go after it; everything before it is protected.
pub fn append_auth(msg: &mut Vec<u8>, kind: AuthKind, sa: &SecurityAssociation) {
    let len = sa.algorithm.authenticator_len();
    msg.push(kind.ext_type());
    msg.push((4 + len) as u8);
    msg.extend_from_slice(&sa.spi.to_be_bytes());
    let auth = sa.compute(msg);
    msg.extend_from_slice(&auth[..len]);
}

/// The parts of an authentication extension found at `ext_offset` of
/// `msg`: SPI, covered bytes and authenticator.
#[derive(Debug, Clone, Copy)]
pub struct AuthExtAt<'a> {
    pub kind: AuthKind,
    pub spi: u32,
    pub covered: &'a [u8],
    pub authenticator: &'a [u8],
    /// Offset just past the extension: bytes from here on are NOT
    /// protected by this authenticator.
    pub end: usize,
}

impl<'a> AuthExtAt<'a> {
    /// Reads the authentication extension whose Type byte is at
    /// `ext_offset` in `msg`.
    pub fn parse(msg: &'a [u8], ext_offset: usize) -> Result<Self, AuthError> {
        let hdr = msg
            .get(ext_offset..ext_offset + AUTH_EXT_HEADER_LEN)
            .ok_or(AuthError::BadLength)?;
        let kind = AuthKind::from_ext_type(hdr[0]).ok_or(AuthError::BadLength)?;
        let length = hdr[1] as usize;
        if length < 4 {
            return Err(AuthError::BadLength);
        }
        let end = ext_offset + 2 + length;
        let authenticator = msg
            .get(ext_offset + AUTH_EXT_HEADER_LEN..end)
            .ok_or(AuthError::BadLength)?;
        let spi = u32::from_be_bytes([hdr[2], hdr[3], hdr[4], hdr[5]]);
        Ok(AuthExtAt {
            kind,
            spi,
            covered: &msg[..ext_offset + AUTH_EXT_HEADER_LEN],
            authenticator,
            end,
        })
    }

    /// Verifies with `sa`, which must be the association this extension
    /// names (same SPI): the SPI is part of what is authenticated, but a
    /// caller that picked the SA by another key must not accept an SPI
    /// the peer did not use.
    pub fn verify(&self, sa: &SecurityAssociation) -> Result<(), AuthError> {
        if sa.spi() != self.spi {
            return Err(AuthError::WrongSpi(self.spi));
        }
        if self.authenticator.len() != sa.algorithm().authenticator_len() {
            return Err(AuthError::BadLength);
        }
        if sa.verify(self.covered, self.authenticator) {
            Ok(())
        } else {
            Err(AuthError::BadAuthenticator)
        }
    }
}

/// Emits a Registration Request and appends its Mobile-Home
/// Authentication Extension (RFC 5944 §3.6.1.3: the MN-HA extension
/// follows the fixed part and the extensions meant for the home agent).
/// `repr.extensions` must not already hold authentication extensions.
pub fn sign_request(repr: &RequestRepr, sa: &SecurityAssociation) -> Vec<u8> {
    let mut msg = Vec::with_capacity(repr.buffer_len() + AUTH_EXT_HEADER_LEN + AUTHENTICATOR_LEN);
    msg.resize(repr.buffer_len(), 0);
    repr.emit(&mut msg);
    append_auth(&mut msg, AuthKind::MnHa, sa);
    msg
}

/// Emits a Registration Reply and appends its Mobile-Home Authentication
/// Extension (RFC 5944 §3.8.3.1: the home agent authenticates every reply
/// it sends to a mobile node it shares an association with).
pub fn sign_reply(repr: &ReplyRepr, sa: &SecurityAssociation) -> Vec<u8> {
    let mut msg = Vec::with_capacity(repr.buffer_len() + AUTH_EXT_HEADER_LEN + AUTHENTICATOR_LEN);
    msg.resize(repr.buffer_len(), 0);
    repr.emit(&mut msg);
    append_auth(&mut msg, AuthKind::MnHa, sa);
    msg
}

/// Offset where the extensions of a request (message type 1) or reply
/// (type 3) begin.
pub fn extensions_start(msg: &[u8]) -> Result<usize, AuthError> {
    match msg.first() {
        Some(&wire::msg_type::REGISTRATION_REQUEST) if msg.len() >= REQUEST_HEADER_LEN => {
            Ok(REQUEST_HEADER_LEN)
        }
        Some(&wire::msg_type::REGISTRATION_REPLY) if msg.len() >= REPLY_HEADER_LEN => {
            Ok(REPLY_HEADER_LEN)
        }
        Some(&wire::msg_type::REGISTRATION_REQUEST | &wire::msg_type::REGISTRATION_REPLY)
        | None => Err(AuthError::Malformed(wire::Error::Truncated)),
        Some(&t) => Err(AuthError::Malformed(wire::Error::BadType(t))),
    }
}

/// Finds the first authentication extension of `kind` in a registration
/// message, walking the extensions with the codec's iterator. The MN-FA
/// and FA-HA extensions must come after the MN-HA one when it is looked
/// for (§3.6.1.3, §3.7.2.2): the MN-HA authenticator then covers what the
/// home agent acts on.
pub fn find_auth(msg: &[u8], kind: AuthKind) -> Result<AuthExtAt<'_>, AuthError> {
    let start = extensions_start(msg)?;
    for item in ExtensionIter::new(msg, start) {
        let (offset, ext) = item.map_err(AuthError::Malformed)?;
        let found = match ext {
            Extension::MnHaAuth(_) => AuthKind::MnHa,
            Extension::MnFaAuth(_) => AuthKind::MnFa,
            Extension::FaHaAuth(_) => AuthKind::FaHa,
            _ => continue,
        };
        if found == kind {
            return AuthExtAt::parse(msg, offset);
        }
        if kind == AuthKind::MnHa {
            return Err(AuthError::Misordered(found));
        }
    }
    Err(AuthError::Missing(kind))
}

/// Verifies the MN-HA authenticator of a registration message with `sa`
/// (the association the verifier holds for this peer). On success returns
/// the offset just past the extension: later bytes are not authenticated
/// by the home agent or mobile node and must not be believed.
pub fn verify_mn_ha(msg: &[u8], sa: &SecurityAssociation) -> Result<usize, AuthError> {
    let at = find_auth(msg, AuthKind::MnHa)?;
    at.verify(sa)?;
    Ok(at.end)
}

/// Who a security association is with, for the home agent's lookups: a
/// mobile node is named by its home address or, when it has none yet, by
/// its NAI (RFC 2794).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    HomeAddress(Ipv4Addr),
    Nai(Vec<u8>),
    /// A mobility agent (FA or HA) by address, for MN-FA and FA-HA SAs.
    Agent(Ipv4Addr),
}

/// Mobility security associations indexed by SPI, with the peers each
/// SPI may be used by.
#[derive(Debug, Default, Clone)]
pub struct SaStore {
    by_spi: HashMap<u32, SecurityAssociation>,
    peers: HashMap<Peer, u32>,
}

impl SaStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an association; returns the one it replaced.
    pub fn insert(&mut self, sa: SecurityAssociation) -> Option<SecurityAssociation> {
        self.by_spi.insert(sa.spi(), sa)
    }

    /// Declares that `peer` uses the association `spi`.
    pub fn bind(&mut self, peer: Peer, spi: u32) -> Result<(), AuthError> {
        if !self.by_spi.contains_key(&spi) {
            return Err(AuthError::UnknownSpi(spi));
        }
        self.peers.insert(peer, spi);
        Ok(())
    }

    pub fn get(&self, spi: u32) -> Option<&SecurityAssociation> {
        self.by_spi.get(&spi)
    }

    /// The association `peer` is configured with.
    pub fn for_peer(&self, peer: &Peer) -> Option<&SecurityAssociation> {
        self.peers.get(peer).and_then(|spi| self.by_spi.get(spi))
    }

    /// The association named by `spi`, but only if it is the one bound to
    /// `peer`: a mobile node must not authenticate a request for another
    /// node's home address with its own key.
    pub fn lookup_for(&self, spi: u32, peer: &Peer) -> Result<&SecurityAssociation, AuthError> {
        let sa = self.by_spi.get(&spi).ok_or(AuthError::UnknownSpi(spi))?;
        match self.peers.get(peer) {
            Some(&bound) if bound == spi => Ok(sa),
            _ => Err(AuthError::WrongSpi(spi)),
        }
    }

    pub fn remove(&mut self, spi: u32) -> Option<SecurityAssociation> {
        self.peers.retain(|_, s| *s != spi);
        self.by_spi.remove(&spi)
    }

    pub fn len(&self) -> usize {
        self.by_spi.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_spi.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2202 §2, test case 2: HMAC-MD5 with key "Jefe".
    #[test]
    fn hmac_md5_matches_rfc2202_vector() {
        let sa = SecurityAssociation::hmac_md5(256, b"Jefe").unwrap();
        let mac = sa.compute(b"what do ya want for nothing?");
        assert_eq!(
            mac,
            [
                0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d,
                0xb7, 0x38
            ]
        );
    }

    #[test]
    fn keyed_md5_is_prefix_and_suffix() {
        let sa = SecurityAssociation::new(
            300,
            Algorithm::KeyedMd5PrefixSuffix,
            b"k",
            ReplayMethod::Timestamp,
        )
        .unwrap();
        // MD5("k" "abc" "k") = MD5("kabck")
        let direct: [u8; 16] = Md5::digest(b"kabck").into();
        assert_eq!(sa.compute(b"abc"), direct);
    }

    #[test]
    fn reserved_spi_and_empty_key_refused() {
        assert_eq!(
            SecurityAssociation::hmac_md5(255, b"x").unwrap_err(),
            AuthError::ReservedSpi(255)
        );
        assert_eq!(
            SecurityAssociation::hmac_md5(256, b"").unwrap_err(),
            AuthError::EmptyKey(256)
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let sa = SecurityAssociation::hmac_md5(1000, b"topsecretkey").unwrap();
        let s = format!("{sa:?}");
        assert!(!s.contains("topsecretkey"));
        assert!(!s.contains("116, 111, 112")); // "top" as bytes
        assert!(s.contains("redacted"));
        assert!(s.contains("1000"));
    }

    fn message() -> Vec<u8> {
        // 24-byte fixed part of a request and a 6-byte NAI-like extension.
        let mut m: Vec<u8> = (0u8..24).collect();
        m.extend_from_slice(&[131, 4, b'a', b'@', b'b', b'c']);
        m
    }

    #[test]
    fn append_then_verify_round_trip() {
        let sa = SecurityAssociation::hmac_md5(0x1234_5678, b"0123456789abcdef").unwrap();
        let mut m = message();
        let off = m.len();
        append_auth(&mut m, AuthKind::MnHa, &sa);
        assert_eq!(m.len(), off + 22);
        assert_eq!(&m[off..off + 6], &[32, 20, 0x12, 0x34, 0x56, 0x78]);
        // The authenticator covers exactly the bytes before it.
        assert_eq!(&m[off + 6..], &sa.compute(&m[..off + 6]));
        let at = AuthExtAt::parse(&m, off).unwrap();
        assert_eq!(at.kind, AuthKind::MnHa);
        assert_eq!(at.spi, 0x1234_5678);
        assert_eq!(at.end, m.len());
        at.verify(&sa).unwrap();
    }

    #[test]
    fn any_flipped_covered_bit_fails() {
        let sa = SecurityAssociation::hmac_md5(0x1000, b"key").unwrap();
        let mut m = message();
        let off = m.len();
        append_auth(&mut m, AuthKind::MnHa, &sa);
        for i in 0..m.len() {
            if i == off || i == off + 1 {
                continue; // type/length changes are structural, checked apart
            }
            let mut bad = m.clone();
            bad[i] ^= 0x01;
            let r = AuthExtAt::parse(&bad, off).and_then(|at| at.verify(&sa));
            assert!(r.is_err(), "flip at byte {i} was not detected");
        }
    }

    #[test]
    fn wrong_key_wrong_spi_and_truncation_fail() {
        let sa = SecurityAssociation::hmac_md5(0x1000, b"key").unwrap();
        let other = SecurityAssociation::hmac_md5(0x1000, b"other").unwrap();
        let other_spi = SecurityAssociation::hmac_md5(0x1001, b"key").unwrap();
        let mut m = message();
        let off = m.len();
        append_auth(&mut m, AuthKind::MnHa, &sa);
        let at = AuthExtAt::parse(&m, off).unwrap();
        assert_eq!(at.verify(&other), Err(AuthError::BadAuthenticator));
        assert_eq!(at.verify(&other_spi), Err(AuthError::WrongSpi(0x1000)));
        assert_eq!(
            AuthExtAt::parse(&m[..m.len() - 1], off).unwrap_err(),
            AuthError::BadLength
        );
        // A short authenticator (Length says 4 + 8) never verifies.
        let mut short = m[..off + 14].to_vec();
        short[off + 1] = 12;
        let at = AuthExtAt::parse(&short, off).unwrap();
        assert_eq!(at.verify(&sa), Err(AuthError::BadLength));
    }

    #[test]
    fn store_binds_spi_to_peer() {
        let mut store = SaStore::new();
        store.insert(SecurityAssociation::hmac_md5(0x1000, b"a").unwrap());
        store.insert(SecurityAssociation::hmac_md5(0x2000, b"b").unwrap());
        let alice = Peer::HomeAddress(Ipv4Addr::new(10, 0, 0, 1));
        let bob = Peer::Nai(b"bob@example.com".to_vec());
        store.bind(alice.clone(), 0x1000).unwrap();
        store.bind(bob.clone(), 0x2000).unwrap();
        assert_eq!(
            store.bind(alice.clone(), 0x3000),
            Err(AuthError::UnknownSpi(0x3000))
        );
        assert_eq!(store.lookup_for(0x1000, &alice).unwrap().spi(), 0x1000);
        // Bob's SPI cannot authenticate a request for Alice's address.
        assert_eq!(
            store.lookup_for(0x2000, &alice).unwrap_err(),
            AuthError::WrongSpi(0x2000)
        );
        assert_eq!(store.for_peer(&bob).unwrap().spi(), 0x2000);
        store.remove(0x2000);
        assert!(store.for_peer(&bob).is_none());
        assert_eq!(store.len(), 1);
    }

    fn request() -> RequestRepr {
        RequestRepr {
            flags: wire::Flags::D | wire::Flags::T,
            lifetime: 1800,
            home_address: Ipv4Addr::UNSPECIFIED,
            home_agent: Ipv4Addr::new(192, 0, 2, 1),
            care_of_address: Ipv4Addr::new(198, 51, 100, 7),
            identification: 0xdead_beef_0000_0001,
            extensions: vec![Extension::Nai(b"mn@example.com".to_vec())],
        }
    }

    #[test]
    fn signed_request_verifies_and_parses() {
        let sa = SecurityAssociation::hmac_md5(0x1000, b"0123456789abcdef").unwrap();
        let msg = sign_request(&request(), &sa);
        assert_eq!(verify_mn_ha(&msg, &sa), Ok(msg.len()));
        let parsed = RequestRepr::parse_bytes(&msg).unwrap();
        assert_eq!(parsed.extensions.len(), 2);
        match &parsed.extensions[1] {
            Extension::MnHaAuth(a) => {
                assert_eq!(a.spi, 0x1000);
                assert_eq!(a.authenticator.len(), AUTHENTICATOR_LEN);
            }
            other => panic!("expected MN-HA, got {other:?}"),
        }
    }

    #[test]
    fn signed_reply_verifies_and_tamper_fails() {
        let sa = SecurityAssociation::hmac_md5(0x1000, b"k").unwrap();
        let reply = ReplyRepr {
            code: wire::ReplyCode::ACCEPTED,
            lifetime: 600,
            home_address: Ipv4Addr::new(10, 1, 0, 5),
            home_agent: Ipv4Addr::new(192, 0, 2, 1),
            identification: 42,
            extensions: vec![],
        };
        let mut msg = sign_reply(&reply, &sa);
        assert!(verify_mn_ha(&msg, &sa).is_ok());
        msg[3] ^= 1; // lifetime
        assert_eq!(verify_mn_ha(&msg, &sa), Err(AuthError::BadAuthenticator));
    }

    #[test]
    fn extensions_after_mn_ha_are_not_covered() {
        let sa = SecurityAssociation::hmac_md5(0x1000, b"k").unwrap();
        let mut msg = sign_request(&request(), &sa);
        let end = msg.len();
        // An MN-FA extension appended by the MN for the FA (§3.6.1.3).
        let fa = SecurityAssociation::hmac_md5(0x2000, b"fa").unwrap();
        append_auth(&mut msg, AuthKind::MnFa, &fa);
        assert_eq!(verify_mn_ha(&msg, &sa), Ok(end));
        let at = find_auth(&msg, AuthKind::MnFa).unwrap();
        at.verify(&fa).unwrap();
    }

    #[test]
    fn missing_or_misordered_mn_ha_is_refused() {
        let sa = SecurityAssociation::hmac_md5(0x1000, b"k").unwrap();
        let unsigned = request().to_bytes();
        assert_eq!(
            verify_mn_ha(&unsigned, &sa),
            Err(AuthError::Missing(AuthKind::MnHa))
        );
        let mut msg = request().to_bytes();
        append_auth(&mut msg, AuthKind::MnFa, &sa);
        append_auth(&mut msg, AuthKind::MnHa, &sa);
        assert_eq!(
            verify_mn_ha(&msg, &sa),
            Err(AuthError::Misordered(AuthKind::MnFa))
        );
        assert!(matches!(
            verify_mn_ha(&[1, 0, 0], &sa),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            verify_mn_ha(&[], &sa),
            Err(AuthError::Malformed(_))
        ));
    }
}
