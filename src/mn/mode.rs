//! Access modes of RFC 5266 §3 and the trusted-network decision that
//! selects one.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::detect::DetectConfig;

/// How the mobile node reaches its home agent (RFC 5266 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Co-located care-of address on a trusted (internal) network,
    /// registered directly with the i-HA (§3.1.1).
    C,
    /// Foreign agent care-of address on a trusted network (§3.1.2).
    F,
    /// Outside: the VPN tunnel inner address (TIA) as co-located care-of
    /// address, MIP inside IPsec (§3.1.3).
    Mc,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::C => "c",
            Mode::F => "f",
            Mode::Mc => "mc",
        })
    }
}

/// Whether an attachment is inside the enterprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    Trusted,
    Untrusted,
    /// Not decided yet (a detection probe is running, RFC 5266 §3.4).
    Unknown,
}

/// How trust is decided.
///
/// Configured prefixes decide at once. RFC 5266 §3.4's secure test on
/// every change of attachment (an authenticated registration reply
/// carrying the TNC extension, RFC 5265) is [`TrustPolicy::Tnc`]: the
/// node asks its [`crate::mn::detect::Detector`], which answers
/// [`Trust::Unknown`] until the probe's verdict; the node holds and does
/// not register in either mode meanwhile (unless a mode 'mc' binding
/// through the VPN already carries the traffic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustPolicy {
    /// Addresses inside one of these prefixes are on trusted networks.
    /// An empty list trusts every address (a trusted-only deployment
    /// without a VPN).
    Prefixes(Vec<Ipv4Net>),
    /// The probe of RFC 5266 §3.4 decides, per attachment.
    Tnc(DetectConfig),
}

impl TrustPolicy {
    pub fn classify(&self, addr: Ipv4Addr) -> Trust {
        match self {
            TrustPolicy::Prefixes(p) if p.is_empty() => Trust::Trusted,
            TrustPolicy::Prefixes(p) if p.iter().any(|n| n.contains(&addr)) => Trust::Trusted,
            TrustPolicy::Prefixes(_) => Trust::Untrusted,
            // Only the node's detector knows (per attachment).
            TrustPolicy::Tnc(_) => Trust::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_decide_trust() {
        let p = TrustPolicy::Prefixes(vec!["10.1.0.0/16".parse().unwrap()]);
        assert_eq!(p.classify([10, 1, 2, 3].into()), Trust::Trusted);
        assert_eq!(p.classify([192, 0, 2, 1].into()), Trust::Untrusted);
        assert_eq!(
            TrustPolicy::Prefixes(vec![]).classify([192, 0, 2, 1].into()),
            Trust::Trusted
        );
    }

    #[test]
    fn modes_print_as_rfc_5266_names() {
        assert_eq!(Mode::Mc.to_string(), "mc");
        assert_eq!(serde_json::to_string(&Mode::C).unwrap(), "\"c\"");
    }
}
