//! mip4d's initiate reaches charon before charon's kernel interface knows
//! the address mip4d saw (each learns it on its own netlink socket): the
//! plugin waits until charon names a source that can reach the peer, not
//! the link's IPv6 link-local address. The lab's `ipv6-access-detect`
//! failed now and then on a loaded host this way: charon sent every
//! IKE_SA_INIT from fe80::/10 to the gateway's global address ("error
//! writing to socket: Invalid argument") until it gave up, and its roam job
//! kept that path. Here the race is made certain: the MN has only its
//! link-local address and a route to the gateway when mip4d asks; the
//! global address comes once the plugin waits.
//! Then the plugin's terminates: one asked after a waiting initiate cancels
//! it, and one of an IKE_SA whose address has gone deletes it at once.
//! Needs root and strongSwan 5.9.8; fails naming the missing piece.

mod plugin_support;

use std::time::Duration;

use mip4::bridge::proto::{Action, ActionStatus, Event, IkeState, PluginMsg};
use mip4::lab::charon::Charon;
use mip4::lab::netns::Netns;
use mip4::lab::{preflight, wait, WorkDir};
use plugin_support::{charon_config, hosts_dir, mn_and_gateway, FakeMip4d};

const T: Duration = Duration::from_secs(20);

/// The MN's charon and its fake mip4d, and the gateway's, with mip4d's
/// initiate (request 1) waiting because charon names only the MN's
/// link-local address; the global address is `GLOBAL`, not added yet.
/// Fields drop in order: the charons first, their namespaces last.
struct Deferred {
    mn_c: Charon,
    _gw_c: Charon,
    mn_d: FakeMip4d,
    _gw_d: FakeMip4d,
    mn: Netns,
    _gw: Netns,
    _tmp: WorkDir,
}

const GLOBAL: &str = "2001:db8:cafe::100/64";

fn deferred_initiate(name: &str) -> Deferred {
    preflight().expect("lab preflight");
    let tmp = WorkDir::new(name).unwrap();
    let (mn, gw) = mn_and_gateway();
    gw.add_addr("eth0", "2001:db8:cafe::10/64").unwrap();
    // The MN reaches the gateway's prefix on the link, from its link-local
    // address only, as right after its link came up.
    mn.ip(&["-6", "route", "add", "2001:db8:cafe::/64", "dev", "eth0"])
        .unwrap();
    // Its link-local address past DAD, so charon knows it from the start.
    wait::until(T, "the MN's link-local address past DAD", || {
        let out = mn
            .ip(&[
                "-6",
                "addr",
                "show",
                "dev",
                "eth0",
                "scope",
                "link",
                "-tentative",
            ])
            .ok()?;
        out.contains("fe80:").then_some(())
    })
    .unwrap();

    let gw_d = FakeMip4d::listen(&tmp.path().join("gw-mip4.sock"));
    let mn_d = FakeMip4d::listen(&tmp.path().join("mn-mip4.sock"));
    let gw_c = Charon::start(
        &gw,
        &tmp.path().join("vpngw"),
        &charon_config(tmp.path(), &gw_d.path, ""),
    )
    .unwrap();
    let mn_c = Charon::start(
        &mn,
        &tmp.path().join("mn"),
        &charon_config(tmp.path(), &mn_d.path, "vpn"),
    )
    .unwrap();
    gw_c.load_all(&hosts_dir().join("vpngw/swanctl.conf"))
        .unwrap();
    // The gateway's IPv6 address first: charon initiates to it.
    let lab = hosts_dir().join("..");
    mn_c.load_all(&lab.join("scenarios/ipv6-access-detect/hosts/mn/swanctl.conf"))
        .unwrap();
    mn_d.wait(0, "snapshot", T, |m| {
        matches!(m, PluginMsg::Snapshot { .. }).then_some(())
    });
    mn_d.request(
        1,
        Action::Initiate {
            connection: "vpn".into(),
        },
    );
    mn_c.wait_log(0, "waits for charon to know the path", T)
        .expect("the plugin waits while charon names only fe80::/10");
    Deferred {
        mn_c,
        _gw_c: gw_c,
        mn_d,
        _gw_d: gw_d,
        mn,
        _gw: gw,
        _tmp: tmp,
    }
}

/// Gives the MN its global address and waits for the deferred initiate's
/// IKE_SA to come up; returns its local address.
fn global_and_up(d: &Deferred) -> std::net::IpAddr {
    let (mn, mn_d) = (&d.mn, &d.mn_d);
    let mark = mn_d.msgs().len();
    mn.add_addr("eth0", GLOBAL).unwrap();

    // The IKE_SA comes up from the global address, reported connecting
    // first (ike_state_change).
    let (connecting, at) = mn_d.wait(mark, "IKE_SA connecting", T, |m| match m {
        PluginMsg::Event {
            event:
                Event::IkeState {
                    ike,
                    state: IkeState::Connecting,
                },
            ..
        } => Some(ike.unique_id),
        _ => None,
    });
    let (local, _) = mn_d.wait(at, "ike_updown(up)", T, |m| match m {
        PluginMsg::Event {
            event: Event::IkeUpdown { ike, up: true },
            ..
        } if ike.unique_id == connecting => ike.local.map(|l| l.addr),
        _ => None,
    });
    local
}

#[test]
fn plugin_initiate_waits_for_charon_to_know_a_source_that_reaches_the_peer() {
    let d = deferred_initiate("plugin-initiate");
    let local = global_and_up(&d);
    let mn_c = &d.mn_c;
    assert_eq!(
        local,
        "2001:db8:cafe::100".parse::<std::net::IpAddr>().unwrap()
    );
    let log = mn_c.log_text();
    assert!(
        !log.contains("error writing to socket"),
        "charon sent from an address that cannot reach the peer:\n{log}"
    );
}

/// mip4d asks for the VPN with a probe and, the verdict being trusted,
/// to terminate it while the initiate still waits for its path: the
/// terminate finds no IKE_SA, and the initiate must not bring one up
/// afterwards (nothing would close it: the lab's `flap` kept the VPN's
/// routes on a loaded host).
#[test]
fn plugin_terminate_asked_after_a_waiting_initiate_cancels_it() {
    let d = deferred_initiate("plugin-initiate-cancel");
    d.mn_d.request(
        2,
        Action::Terminate {
            connection: "vpn".into(),
        },
    );
    let result = |id: u64| {
        move |m: &PluginMsg| match m {
            PluginMsg::ActionResult { id: i, status, .. } if *i == id => Some(*status),
            _ => None,
        }
    };
    let (terminate, _) = d.mn_d.wait(0, "the terminate's result", T, result(2));
    assert_eq!(terminate, ActionStatus::NotFound);
    d.mn.add_addr("eth0", GLOBAL).unwrap();
    let (initiate, _) = d.mn_d.wait(0, "the initiate's result", T, result(1));
    assert_eq!(initiate, ActionStatus::Failed);
    // The initiate ran (it reports after charon checked its IKE_SA in).
    let sas = d.mn_c.list_sas().unwrap();
    assert!(sas.is_empty(), "an IKE_SA came up: {sas:?}");
    assert!(d.mn_c.log_text().contains("initiate of 'vpn' dropped"));
}

/// mip4d asks to close the VPN after the IKE_SA's own address has left
/// the MN (the lab's `flap`: a move out of the VPN's network, then a
/// trusted verdict). Its DELETE cannot leave from that address: the
/// IKE_SA, and with it the VPN's policies and routes, must go at once
/// rather than after charon's retransmissions of a DELETE give up.
#[test]
fn plugin_terminate_of_an_ike_sa_whose_address_left_deletes_it_at_once() {
    let d = deferred_initiate("plugin-terminate-gone");
    global_and_up(&d);
    let from = d.mn_c.log_text().len();
    d.mn.del_addr("eth0", GLOBAL).unwrap();
    d.mn_c
        .wait_log(from, "disappeared from eth0", T)
        .expect("charon sees the address go");
    d.mn_d.request(
        2,
        Action::Terminate {
            connection: "vpn".into(),
        },
    );
    wait::until(T, "the IKE_SA gone", || {
        d.mn_c.list_sas().ok()?.is_empty().then_some(())
    })
    .unwrap();
    let log = d.mn_c.log_text();
    let after = &log[from..];
    assert!(after.contains("with force"), "{after}");
    assert!(
        !after.contains("retransmit"),
        "charon retransmitted before the IKE_SA went:\n{after}"
    );
}
