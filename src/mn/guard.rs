//! Guardrails: deployment mistakes the node cannot fix but must name.
//!
//! - charon may take an IKE path over mip4d's own tunnel device. After a
//!   break-before-make move the home address on it is for a moment the
//!   MN's only address; a MOBIKE probe from it would run through the
//!   Mobile IP tunnel that itself runs inside the IKE_SA being moved, and
//!   never recovers. charon's `interfaces_use` / `interfaces_ignore` must
//!   keep it off (they match exact names, charon's kernel interface).
//! - An IKE_SA came up without MOBIKE (RFC 4555 §3.1: both ends send
//!   MOBIKE_SUPPORTED). RFC 5266 §4 relies on MOBIKE to keep the TIA, and
//!   with it the binding, across moves outside; without it every move
//!   means a new IKE_SA, a new TIA and a new registration.
//!
//! Sans-IO: the daemon feeds what the plugin reports and the device names
//! it uses; each new warning comes back once, to be logged and published,
//! and [`Guard::warnings`] is what `mip4ctl status` shows.

use std::collections::BTreeMap;

use serde::Serialize;

/// One warning, as status and the event stream show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// charon may use these tunnel devices for IKE.
    TunnelDevicesNotIgnored {
        devices: Vec<String>,
        /// What to set (charon's list with the devices added).
        fix: String,
    },
    /// The IKE_SA of `connection` is up without MOBIKE.
    NoMobike { connection: String, ike_sa: u32 },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::TunnelDevicesNotIgnored { devices, fix } => write!(
                f,
                "charon may take an IKE path over mip4d's tunnel device(s) {}: a MOBIKE \
                 probe from the home address would run inside the IKE_SA it moves; set {fix} \
                 in strongswan.conf and restart charon",
                devices.join(", ")
            ),
            Warning::NoMobike { connection, ike_sa } => write!(
                f,
                "IKE_SA {ike_sa} of '{connection}' is up without MOBIKE (RFC 4555 §3.1): \
                 every move outside will cost a new IKE_SA, TIA and registration; set \
                 mobike = yes on both ends"
            ),
        }
    }
}

/// Whether charon's kernel interface may use `device` given its settings
/// (strongSwan's rule: with `interfaces_use` set only those names, else
/// all but the `interfaces_ignore` names; comma-separated, exact).
pub fn charon_may_use(device: &str, interfaces_use: Option<&str>, ignore: Option<&str>) -> bool {
    let names = |list: &str| list.split(',').map(str::trim).any(|n| n == device);
    match (interfaces_use, ignore) {
        (Some(only), _) => names(only),
        (None, Some(ignored)) => !names(ignored),
        (None, None) => true,
    }
}

/// The warnings in force, keyed so that each is reported once.
#[derive(Debug, Default)]
pub struct Guard {
    devices: Option<Warning>,
    /// By IKE_SA id.
    no_mobike: BTreeMap<u32, Warning>,
}

impl Guard {
    pub fn new() -> Self {
        Self::default()
    }

    /// charon's interface filter as the plugin reported it, against the
    /// tunnel devices mip4d uses. A new warning, or None (also when it
    /// was already in force). A plugin that reports nothing clears it.
    pub fn charon_interfaces(
        &mut self,
        interfaces_use: Option<&str>,
        ignore: Option<&str>,
        devices: &[String],
        reported: bool,
    ) -> Option<Warning> {
        let exposed: Vec<String> = devices
            .iter()
            .filter(|d| reported && charon_may_use(d, interfaces_use, ignore))
            .cloned()
            .collect();
        let w = (!exposed.is_empty()).then(|| {
            let fix = match interfaces_use {
                Some(only) => format!("charon.interfaces_use = {only} (without them)"),
                None => {
                    let mut names: Vec<&str> = ignore
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .collect();
                    names.extend(exposed.iter().map(String::as_str));
                    format!("charon.interfaces_ignore = {}", names.join(", "))
                }
            };
            Warning::TunnelDevicesNotIgnored {
                devices: exposed,
                fix,
            }
        });
        let new = w.clone().filter(|w| self.devices.as_ref() != Some(w));
        self.devices = w;
        new
    }

    /// An IKE_SA's state: up or not, and whether it negotiated MOBIKE
    /// (None: the plugin did not say). A new warning, or None.
    pub fn ike_sa(
        &mut self,
        connection: &str,
        ike_sa: u32,
        up: bool,
        mobike: Option<bool>,
    ) -> Option<Warning> {
        if !up || mobike != Some(false) {
            self.no_mobike.remove(&ike_sa);
            return None;
        }
        let w = Warning::NoMobike {
            connection: connection.to_string(),
            ike_sa,
        };
        match self.no_mobike.insert(ike_sa, w.clone()) {
            Some(_) => None,
            None => Some(w),
        }
    }

    /// A snapshot replaces what was known of the IKE_SAs: those absent
    /// from `alive` are gone.
    pub fn retain_ike_sas(&mut self, alive: &[u32]) {
        self.no_mobike.retain(|id, _| alive.contains(id));
    }

    /// Every warning in force, for status.
    pub fn warnings(&self) -> Vec<&Warning> {
        self.devices.iter().chain(self.no_mobike.values()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devs() -> Vec<String> {
        vec!["mip4mn0".into(), "mip4-0a016405".into()]
    }

    #[test]
    fn charon_matches_exact_names_and_interfaces_use_wins() {
        assert!(charon_may_use("mip4mn0", None, None));
        assert!(!charon_may_use("mip4mn0", None, Some("eth9, mip4mn0")));
        // Exact names: no wildcard, no prefix.
        assert!(charon_may_use("mip4-0a016405", None, Some("mip4-*")));
        assert!(charon_may_use("mip4mn0", None, Some("mip4mn")));
        // interfaces_use set: only those, interfaces_ignore is not read.
        assert!(!charon_may_use("mip4mn0", Some("eth0,wlan0"), None));
        assert!(charon_may_use(
            "mip4mn0",
            Some("eth0, mip4mn0"),
            Some("mip4mn0")
        ));
    }

    #[test]
    fn exposed_devices_warn_once_with_the_list_to_set() {
        let mut g = Guard::new();
        let w = g
            .charon_interfaces(None, Some("eth9, mip4mn0"), &devs(), true)
            .expect("the kernel link is not ignored");
        assert_eq!(
            w,
            Warning::TunnelDevicesNotIgnored {
                devices: vec!["mip4-0a016405".into()],
                fix: "charon.interfaces_ignore = eth9, mip4mn0, mip4-0a016405".into(),
            }
        );
        assert!(w.to_string().contains("mip4-0a016405"), "{w}");
        // Reported again (charon reconnects): no second warning, still
        // in status.
        assert_eq!(
            g.charon_interfaces(None, Some("eth9, mip4mn0"), &devs(), true),
            None
        );
        assert_eq!(g.warnings().len(), 1);
        // Fixed: gone from status.
        let all = "mip4mn0,mip4-0a016405";
        assert_eq!(g.charon_interfaces(None, Some(all), &devs(), true), None);
        assert!(g.warnings().is_empty());
        // interfaces_use without the devices is fine too.
        assert_eq!(g.charon_interfaces(Some("eth0"), None, &devs(), true), None);
    }

    #[test]
    fn nothing_reported_warns_of_nothing() {
        let mut g = Guard::new();
        assert_eq!(g.charon_interfaces(None, None, &devs(), false), None);
        assert!(g.warnings().is_empty());
    }

    #[test]
    fn an_ike_sa_without_mobike_warns_while_it_is_up() {
        let mut g = Guard::new();
        assert_eq!(g.ike_sa("vpn", 1, true, Some(true)), None);
        assert_eq!(
            g.ike_sa("vpn", 2, true, None),
            None,
            "the plugin did not say"
        );
        let w = g.ike_sa("vpn", 3, true, Some(false)).expect("no MOBIKE");
        assert!(w.to_string().contains("RFC 4555"), "{w}");
        assert_eq!(g.ike_sa("vpn", 3, true, Some(false)), None, "once");
        assert_eq!(g.warnings(), vec![&w]);
        // Down, or gone from a snapshot: the warning goes.
        g.ike_sa("vpn", 3, false, Some(false));
        assert!(g.warnings().is_empty());
        g.ike_sa("vpn", 4, true, Some(false)).unwrap();
        g.retain_ike_sas(&[1]);
        assert!(g.warnings().is_empty());
    }
}
