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
//! Needs root and strongSwan 5.9.8; fails naming the missing piece.

mod plugin_support;

use std::time::Duration;

use mip4::bridge::proto::{Action, Event, IkeState, PluginMsg};
use mip4::lab::charon::Charon;
use mip4::lab::{preflight, wait, WorkDir};
use plugin_support::{charon_config, hosts_dir, mn_and_gateway, FakeMip4d};

const T: Duration = Duration::from_secs(20);

#[test]
fn plugin_initiate_waits_for_charon_to_know_a_source_that_reaches_the_peer() {
    preflight().expect("lab preflight");
    let tmp = WorkDir::new("plugin-initiate").unwrap();
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
    let mark = mn_d.msgs().len();
    mn.add_addr("eth0", "2001:db8:cafe::100/64").unwrap();

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
