//! RFC 3519 on the mobile node end to end (issue 10 §2): mip4d and the
//! real mip4-ha as processes in namespaces this test makes (removed on
//! drop, also when an assertion fails):
//!
//! ```text
//!   cn 10.3.0.2 ── router ── 10.0.0.2 ha (mip4-ha, virtual home 10.1.0.0/24)
//!                    │  masquerades 10.20.0.0/16 towards the HA, each
//!                    │  mapping on a random port (NAT tests)
//!              10.20.1.0/24 ─────────── 10.20.2.0/24
//!                    │                        │
//!                mn0 mn (mip4d, home     f0 f (a forger behind the
//!                address 10.1.0.5,          same NAT, 10.20.2.5)
//!                care-of 10.20.1.5)
//! ```
//!
//! Behind the NAT, `udp_tunnel = "auto"` asks for UDP tunnelling without
//! forcing it, and the HA grants it because the request's source is not
//! its care-of address (RFC 3519 §4.6). Without a NAT, `"always"` (the F
//! flag, §3.1.1) gets it all the same. Either way the correspondent's
//! ping crosses a tunnel of Tunnel Data on UDP 434 and the MN sends
//! keepalives at the interval the HA granted. The HA believes a new NAT
//! port only from an authenticated registration (RFC 3519 §6.1.2): a
//! forged keepalive from another host behind the NAT moves nothing, and a
//! NAT that lost its mapping is repaired by mip4d registering again
//! (§4.10). Needs root, nftables and conntrack.

mod mip4d_support;

use std::time::Duration;

use mip4::lab::netns;
use mip4::lab::wait;
use mip4d_support::Lab;
use serde_json::Value;

const HOA: &str = "10.1.0.5";
const HA: &str = "10.0.0.2";
const COA: &str = "10.20.1.5";
const CN: &str = "10.3.0.2";
const FORGER: &str = "10.20.2.5";
const TIMEOUT: Duration = Duration::from_secs(20);

fn build(nat: bool, mip4d_conf: &str) -> Lab {
    let mut lab = Lab::new("nat", HOA, &["r", "f"]);
    let (router, ha, mn, cn) = (lab.host("r"), &lab.ha, &lab.mn, &lab.cn);
    netns::veth(router, "rha", ha, "ha0").unwrap();
    netns::veth(router, "rcn", cn, "cn0").unwrap();
    netns::veth(router, "r1", mn, "mn0").unwrap();
    router.enable_forwarding().unwrap();
    router.add_addr("rha", "10.0.0.1/30").unwrap();
    router.add_addr("rcn", "10.3.0.1/24").unwrap();
    router.add_addr("r1", "10.20.1.1/24").unwrap();
    router.route("10.1.0.0/24", HA).unwrap();
    if nat {
        let forger = lab.host("f");
        netns::veth(router, "r2", forger, "f0").unwrap();
        router.add_addr("r2", "10.20.2.1/24").unwrap();
        forger.add_addr("f0", &format!("{FORGER}/24")).unwrap();
        forger.route("default", "10.20.2.1").unwrap();
        router
            .sh("nft add table ip nat && \
                 nft add chain ip nat post '{ type nat hook postrouting priority srcnat; }' && \
                 nft add rule ip nat post oifname rha ip saddr 10.20.0.0/16 masquerade fully-random")
            .unwrap();
    }
    ha.add_addr("ha0", "10.0.0.2/30").unwrap();
    ha.enable_forwarding().unwrap();
    ha.route("default", "10.0.0.1").unwrap();
    cn.add_addr("cn0", "10.3.0.2/24").unwrap();
    cn.route("default", "10.3.0.1").unwrap();
    mn.add_addr("mn0", &format!("{COA}/24")).unwrap();
    mn.route("default", "10.20.1.1").unwrap();
    lab.start_ha();
    lab.start_mip4d_with(mip4d_conf, "mip4d.log");
    lab
}

/// The HA's tunnel for the home address, as its status lists it.
fn ha_tunnel(lab: &Lab) -> Option<Value> {
    let st = lab.ctl("ha.sock", &["status"])?;
    st["dataplane"]["tunnels"]
        .as_array()?
        .iter()
        .find(|t| t["home"] == HOA)
        .cloned()
}

/// Registered, the HA's tunnel in UDP to `remote_ip`, a ping from the
/// correspondent through it, keepalives sent.
fn udp_tunnel_carries_the_home_address(lab: &Lab, remote_ip: &str) {
    let st = lab.must(wait::until(TIMEOUT, "mip4d registered", || {
        lab.mn_registered(COA)
    }));
    assert_eq!(st["udp_tunnel"]["granted"], true, "{st}");
    assert_eq!(st["udp_tunnel"]["keepalive_s"], 1, "{st}");
    let t = lab.must(wait::until(TIMEOUT, "the HA's UDP tunnel", || {
        ha_tunnel(lab).filter(|t| t["encapsulation"] == "udp")
    }));
    let remote = t["remote"].as_str().unwrap();
    assert!(remote.starts_with(&format!("{remote_ip}:")), "{t}");
    assert_ne!(remote, format!("{remote_ip}:434"), "{t}");
    lab.must(wait::until(TIMEOUT, "ping cn -> home address", || {
        lab.cn.ping_once(CN, HOA, 500).then_some(())
    }));
    // The MN's end: datagrams in and out of the UDP tunnel, keepalives
    // at the granted interval, nothing refused.
    lab.must(wait::until(TIMEOUT, "keepalives and tunnel data", || {
        let s = lab.mn_status()?;
        let dp = &s["udp_tunnel"]["data_plane"];
        (dp["keepalives"].as_u64()? >= 2
            && dp["decapsulated"].as_u64()? >= 1
            && dp["encapsulated"].as_u64()? >= 1
            && dp["send_errors"] == 0)
            .then_some(())
    }));
    // The HA saw no tunnel data from elsewhere.
    assert_eq!(lab.ha_counter("unknown_tunnel_source"), Some(0));
}

#[test]
fn behind_a_nat_auto_gets_udp_tunnelling_and_the_ping_crosses_it() {
    let lab = build(true, "mip4d.conf");
    // The tunnel goes to the NAT's mapping, the router's address.
    udp_tunnel_carries_the_home_address(&lab, "10.0.0.1");
    assert_eq!(lab.ha_care_of().as_deref(), Some(COA));
}

#[test]
fn without_a_nat_always_forces_udp_tunnelling() {
    let lab = build(false, "mip4d-always.conf");
    udp_tunnel_carries_the_home_address(&lab, COA);
}

#[test]
fn without_a_nat_auto_stays_ip_in_ip() {
    let lab = build(false, "mip4d.conf");
    let st = lab.must(wait::until(TIMEOUT, "mip4d registered", || {
        lab.mn_registered(COA)
    }));
    assert_eq!(st["udp_tunnel"]["granted"], false, "{st}");
    lab.must(wait::until(TIMEOUT, "ping cn -> home address", || {
        lab.cn.ping_once(CN, HOA, 500).then_some(())
    }));
    let t = ha_tunnel(&lab).expect("the HA's tunnel");
    assert_eq!(t["encapsulation"], "ip-in-ip", "{t}");
}

/// The HA's tunnel endpoint for the home address (`address:port`).
fn ha_remote(lab: &Lab) -> String {
    let t = ha_tunnel(lab).expect("the HA's tunnel");
    t["remote"].as_str().expect("remote").to_string()
}

/// RFC 3519 §6.1.2: another host behind the MN's NAT (so the same public
/// address, another port) sends keepalives with the MN's home address as
/// inner source, as the MN's own would look after the NAT lost its
/// mapping. The HA moves nothing for unauthenticated tunnel data: it
/// drops and counts them, the correspondent's traffic still reaches the
/// MN, and the forger receives none of it.
#[test]
fn a_host_behind_the_same_nat_cannot_take_the_mobile_nodes_traffic() {
    let lab = build(true, "mip4d.conf");
    udp_tunnel_carries_the_home_address(&lab, "10.0.0.1");
    let before = ha_remote(&lab);
    let ns = lab.host("f").name().to_string();
    let forger = std::thread::spawn(move || {
        netns::enter(&ns).unwrap();
        std::net::UdpSocket::bind((FORGER, 0)).unwrap()
    })
    .join()
    .unwrap();
    let mut msg = Vec::new();
    for seq in 1..=3 {
        mip4::dataplane::udp::keepalive(
            HOA.parse().unwrap(),
            HA.parse().unwrap(),
            7,
            seq,
            &mut msg,
        );
        forger.send_to(&msg, (HA, 434)).unwrap();
    }
    lab.must(wait::until(
        TIMEOUT,
        "the forged keepalives dropped",
        || (lab.ha_counter("unknown_tunnel_source")? >= 3).then_some(()),
    ));
    assert_eq!(ha_remote(&lab), before);
    for _ in 0..3 {
        assert!(lab.cn.ping_once(CN, HOA, 1000), "cn -> home address");
    }
    forger
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let got = forger.recv_from(&mut buf);
    assert!(got.is_err(), "the forger received {got:?}");
    assert_eq!(ha_remote(&lab), before);
}

/// RFC 3519 §4.10: the NAT loses every mapping (`conntrack -F`); the
/// next one takes another port. The HA keeps sending to the dead one,
/// mip4d hears nothing through the tunnel for 3 keepalive intervals and
/// registers again, from the NAT's new port: the HA's tunnel moves there
/// on that authenticated renewal, and the ping flows again.
#[test]
fn a_lost_nat_mapping_is_repaired_by_a_registration_from_the_new_port() {
    let lab = build(true, "mip4d.conf");
    udp_tunnel_carries_the_home_address(&lab, "10.0.0.1");
    let before = ha_remote(&lab);
    lab.host("r").sh("conntrack -F").unwrap();
    let st = lab.must(wait::until(TIMEOUT, "mip4d registered again", || {
        lab.mn_status()
            .filter(|s| s["node"]["nat_reregistrations"].as_u64() >= Some(1))
    }));
    assert_eq!(st["care_of_address"], COA, "{st}");
    let after = lab.must(wait::until(
        TIMEOUT,
        "the HA's tunnel on the new port",
        || Some(ha_remote(&lab)).filter(|r| *r != before),
    ));
    assert!(after.starts_with("10.0.0.1:"), "{after}");
    lab.must(wait::until(TIMEOUT, "ping cn -> home address", || {
        lab.cn.ping_once(CN, HOA, 500).then_some(())
    }));
}
