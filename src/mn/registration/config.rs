//! What the client registers, and the rules its configuration must keep.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::auth::SecurityAssociation;
use crate::wire::{Extension, Flags};

/// Lifetime value meaning "infinity" (RFC 5944 §3.3).
pub const INFINITE_LIFETIME: u16 = 0xffff;

/// RFC 5944 §3.6.3: "The minimum time between Registration Requests
/// MUST NOT be less than 1 second."
pub const MIN_RETRANSMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Retransmission settings (RFC 5944 §3.6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retransmit {
    /// First timeout; at least [`MIN_RETRANSMIT_INTERVAL`].
    pub initial_timeout: Duration,
    /// Cap of the doubling timeout. The effective cap is also at most the
    /// requested lifetime (§3.6.3: "no greater than the requested
    /// Lifetime").
    pub max_timeout: Duration,
    /// Transmissions of one request (first one included) before the
    /// attempt is given up with [`ClientEvent::Failed`](super::ClientEvent::Failed).
    pub max_attempts: u32,
}

impl Default for Retransmit {
    /// 1 s, doubling up to 32 s, 5 transmissions: the attempt fails after
    /// 1 + 2 + 4 + 8 + 16 = 31 s of silence.
    fn default() -> Self {
        Retransmit {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(32),
            max_attempts: 5,
        }
    }
}

impl Retransmit {
    /// Settings for a registration used as a reachability probe, as
    /// RFC 5266 does to tell whether the mobile node sits inside the
    /// enterprise: the answer matters quickly, so few and short tries
    /// (1 s, 2 s, 2 s), still within §3.6.3's one-second floor.
    pub fn probe() -> Self {
        Retransmit {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(2),
            max_attempts: 3,
        }
    }
}

/// What the mobile node registers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Home address; 0.0.0.0 asks the home agent to assign one, which
    /// needs an NAI (RFC 2794 §2).
    pub home_address: Ipv4Addr,
    /// Network Access Identifier (RFC 2794), sent before the MN-HA
    /// extension so the home agent can find the association.
    pub nai: Option<Vec<u8>>,
    pub home_agent: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    /// Register through this foreign agent (foreign-agent care-of
    /// address, §3.6.1.1); `None` means a co-located care-of address
    /// registered directly with the home agent (the D bit is set).
    pub foreign_agent: Option<Ipv4Addr>,
    /// Requested services: S, B, M, G, T (RFC 3024 reverse tunnelling).
    /// D is derived from `foreign_agent`; the reserved r and x bits are
    /// always sent as zero (§3.3).
    pub flags: Flags,
    /// Requested lifetime in seconds (non-zero; 0xffff is infinity).
    pub lifetime: u16,
    /// The MN-HA mobility security association.
    pub sa: SecurityAssociation,
    /// An MN-FA association, if the foreign agent has one with us
    /// (§3.5.3). Without it, foreign-agent denials cannot be
    /// authenticated and are reported as such (§3.6.2.1).
    pub mn_fa_sa: Option<SecurityAssociation>,
    /// Further extensions for the home agent (UDP tunnel request, DSMIPv4,
    /// ...); emitted after the NAI and before the MN-HA extension so that
    /// they are authenticated (§3.6.1.3).
    pub extensions: Vec<Extension>,
    pub retransmit: Retransmit,
    /// Renew when this share of the granted lifetime has passed (1..=99).
    /// RFC 5944 leaves the moment to the mobile node (it "should"
    /// re-register before the lifetime expires, §3.6); 75% leaves room
    /// for the default retransmission schedule on lifetimes above ~2 min.
    pub renew_percent: u8,
    /// How many 133 (identification mismatch) replies in a row are
    /// answered by resynchronising and retrying.
    pub max_resyncs: u32,
}

impl Config {
    /// A co-located registration with the RFC defaults: 30 min lifetime,
    /// default retransmission, renewal at 75%.
    pub fn new(
        home_address: Ipv4Addr,
        home_agent: Ipv4Addr,
        care_of_address: Ipv4Addr,
        sa: SecurityAssociation,
    ) -> Self {
        Config {
            home_address,
            nai: None,
            home_agent,
            care_of_address,
            foreign_agent: None,
            flags: Flags::empty(),
            lifetime: 1800,
            sa,
            mn_fa_sa: None,
            extensions: Vec::new(),
            retransmit: Retransmit::default(),
            renew_percent: 75,
            max_resyncs: 2,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.home_address.is_unspecified() && self.nai.is_none() {
            return Err(ConfigError::NoIdentity);
        }
        if let Some(nai) = &self.nai {
            if nai.is_empty() || nai.len() > 255 {
                return Err(ConfigError::BadNai(nai.len()));
            }
        }
        if self.home_agent.is_unspecified() {
            return Err(ConfigError::NoHomeAgent);
        }
        if self.lifetime == 0 {
            return Err(ConfigError::ZeroLifetime);
        }
        if self.retransmit.initial_timeout < MIN_RETRANSMIT_INTERVAL {
            return Err(ConfigError::RetransmitTooFast(
                self.retransmit.initial_timeout,
            ));
        }
        if self.retransmit.max_timeout < self.retransmit.initial_timeout {
            return Err(ConfigError::BadBackoffCap(self.retransmit.max_timeout));
        }
        if self.retransmit.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        if !(1..=99).contains(&self.renew_percent) {
            return Err(ConfigError::BadRenewPercent(self.renew_percent));
        }
        if self.extensions.iter().any(|e| {
            matches!(
                e,
                Extension::MnHaAuth(_) | Extension::MnFaAuth(_) | Extension::FaHaAuth(_)
            )
        }) {
            return Err(ConfigError::AuthInExtensions);
        }
        Ok(())
    }
}

/// A configuration the client refuses, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("home address 0.0.0.0 needs an NAI to be assigned one (RFC 2794)")]
    NoIdentity,
    #[error("NAI must be 1..=255 octets, got {0}")]
    BadNai(usize),
    #[error("home agent address must be set")]
    NoHomeAgent,
    #[error("requested lifetime must be non-zero (0 means deregistration)")]
    ZeroLifetime,
    #[error("initial retransmission timeout {0:?} is below 1 s (RFC 5944 §3.6.3)")]
    RetransmitTooFast(Duration),
    #[error("retransmission cap {0:?} is below the initial timeout")]
    BadBackoffCap(Duration),
    #[error("max_attempts must be at least 1")]
    ZeroAttempts,
    #[error("renew_percent must be in 1..=99, got {0}")]
    BadRenewPercent(u8),
    #[error("authentication extensions are added by the client, not configured")]
    AuthInExtensions,
}
