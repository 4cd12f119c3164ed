//! Two real charons (MN and VPN gateway) in two namespaces: PSK, a TIA
//! from the gateway's pool, a ping through the kernel-libipsec tunnel, then
//! the MN's address changes and MOBIKE moves the IKE_SA, TIA kept.
//! Needs root and strongSwan 5.9.8 (charon, swanctl, kernel-libipsec);
//! fails with the missing piece named otherwise.

use std::time::Duration;

use mip4::lab::charon::{Charon, CharonConfig};
use mip4::lab::netns::{unique_prefix, Netns};
use mip4::lab::{preflight, wait, WorkDir};
use plugin_support::{hosts_dir, mn_and_gateway};

mod plugin_support;

#[test]
fn lab_mobike_update_keeps_tia() {
    preflight().expect("lab preflight");
    let tmp = WorkDir::new("mobike").unwrap();
    // An intranet address (10.1.0.1) behind the gateway to ping through
    // the tunnel.
    let (mn, gw) = mn_and_gateway();

    let gw_charon =
        Charon::start(&gw, &tmp.path().join("vpngw"), &CharonConfig::default()).unwrap();
    let mn_charon = Charon::start(&mn, &tmp.path().join("mn"), &CharonConfig::default()).unwrap();
    gw_charon
        .load_all(&hosts_dir().join("vpngw/swanctl.conf"))
        .unwrap();
    mn_charon
        .load_all(&hosts_dir().join("mn/swanctl.conf"))
        .unwrap();
    mn_charon.initiate("net").unwrap();

    let (sa, _) = mn_charon
        .wait_sa("vpn", Duration::from_secs(10), "VPN up with a TIA", |sa| {
            !sa.local_vips.is_empty()
        })
        .unwrap();
    assert_eq!(sa.local_host, "203.0.113.100");
    let tia = sa.local_vips[0].clone();
    assert!(tia.starts_with("10.200.0."), "TIA {tia} not from the pool");
    // The TIA is installed on the MN (kernel-libipsec puts it on ipsec0).
    wait::until(Duration::from_secs(5), "TIA on the MN", || {
        mn.ip(&["-4", "-o", "addr", "show"])
            .ok()?
            .contains(&format!("inet {tia}/"))
            .then_some(())
    })
    .unwrap();
    wait::until(Duration::from_secs(5), "ping through the tunnel", || {
        mn.ping_once(&tia, "10.1.0.1", 200).then_some(())
    })
    .unwrap();

    // The move: new address first, then the old one goes (the new one is
    // promoted, promote_secondaries=1), as a DHCP renumbering would do.
    mn.add_addr("eth0", "203.0.113.101/24").unwrap();
    mn.del_addr("eth0", "203.0.113.100/24").unwrap();
    assert_eq!(mn.addrs("eth0").unwrap(), vec!["203.0.113.101"]);

    let (moved, _) = mn_charon
        .wait_sa(
            "vpn",
            Duration::from_secs(15),
            "MOBIKE update to the new address",
            |sa| sa.local_host == "203.0.113.101",
        )
        .unwrap();
    assert_eq!(
        moved.local_vips,
        vec![tia.clone()],
        "TIA changed by the MOBIKE update"
    );
    // The gateway sees the MN at its new address, same TIA handed out.
    gw_charon
        .wait_sa(
            "vpn",
            Duration::from_secs(5),
            "gateway follows the MN",
            |sa| sa.remote_host == "203.0.113.101" && sa.remote_vips == vec![tia.clone()],
        )
        .unwrap();
    assert!(
        mn_charon.log_text().contains("N(UPD_SA_ADDR)"),
        "no MOBIKE UPDATE_SA_ADDRESSES in the MN's log"
    );
    wait::until(
        Duration::from_secs(5),
        "ping through the tunnel after the move",
        || mn.ping_once(&tia, "10.1.0.1", 200).then_some(()),
    )
    .unwrap();
}

/// A plugin charon cannot load is an error at start that names it: charon
/// itself skips such a plugin and starts, and the lab would otherwise fail
/// much later on a proposal (as a fresh machine without
/// libstrongswan-standard-plugins did).
#[test]
fn charon_missing_a_plugin_fails_at_start_naming_it() {
    preflight().expect("lab preflight");
    let prefix = unique_prefix();
    let tmp = WorkDir::new("noplugin").unwrap();
    let ns = Netns::new(&prefix, "gw").unwrap();
    let cfg = CharonConfig {
        extra_plugins: vec!["mip4-lab-no-such-plugin".into()],
        ..CharonConfig::default()
    };
    let err = Charon::start(&ns, &tmp.path().join("gw"), &cfg).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("did not load the plugins mip4-lab-no-such-plugin"),
        "{text}"
    );
}
