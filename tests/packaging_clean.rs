//! The packages on a clean system (issue 12): the .debs `make deb` built,
//! installed with apt into a fresh copy of the kernel tier's pristine
//! Debian 12 root, booted in QEMU with systemd as init, next to Debian's
//! charon-systemd. In the guest (scripts/vm/packages-guest.sh):
//! charon-systemd loads the plugin; every shipped unit passes `systemd-
//! analyze verify`; mip4-ha and mip4d start under their shipped units and
//! do what they are for under the units' restrictions (a registration:
//! tunnels, rules, proxy and gratuitous ARP, the RFC 3024 nft table, the
//! probe's XFRM bypass, traffic through the tunnel); mip4-fa starts under
//! its unit, installs its nft table and advertises on its served link; an
//! upgrade keeps the operator's edited configs; remove stops everything
//! and purge leaves the file lists as before the install; the plugin
//! built for another strongSwan release is refused by apt, and forced in
//! refuses to load, logging both versions.
//!
//! Ignored by `cargo test` (minutes of TCG and a release build): `make
//! deb` runs it on the .debs it built (MIP4_DEB_DIR). Needs root and the
//! kernel tier's host tools (scripts/install-deps.sh).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mip4::lab::vm::{self, Job, VmOptions};

mod packaging_support;
use packaging_support::{repo, sh};

/// Every assertion the guest makes; one missing is a failure too.
const CHECKS: &[&str] = &[
    "systemd_is_init",
    "charon_systemd_running",
    "apt_install",
    "units_installed_disabled",
    "units_verify",
    "charon_systemd_loads_plugin",
    "plugin_logs_to_journal",
    "ha_started_under_unit",
    "ha_nft_ingress_table",
    "mip4d_started_under_unit",
    "fa_started_under_unit",
    "fa_nft_ingress_table",
    "fa_advertises",
    "registration_accepted",
    "ha_tunnel_installed",
    "ha_proxy_arp",
    "ha_gratuitous_arp",
    "mn_tunnel_and_rules",
    "home_link_reaches_mn_through_tunnel",
    "no_sandbox_denials",
    "mn_probe_ran",
    "control_socket_root_only",
    "upgrade_keeps_edited_configs",
    "upgrade_restarts_running_daemons",
    "apt_remove_stops_and_cleans",
    "charon_without_plugin_after_remove",
    "apt_purge_leaves_nothing",
    "apt_refuses_plugin_for_other_strongswan",
    "forced_plugin_refuses_to_load",
    "apt_refuses_plugin_next_to_other_strongswan",
];

/// A strongSwan version of the same length as `v` and different from it
/// (the plugin's embedded version is patched in place).
fn other_version(v: &str) -> String {
    let o: String = v
        .chars()
        .map(|c| if c == '.' { '.' } else { '9' })
        .collect();
    if o == v {
        v.replace('9', "8")
    } else {
        o
    }
}

fn repack(args: &[&str]) {
    sh(Command::new(repo().join("packaging/repack-deb.sh")).args(args));
}

#[test]
#[ignore = "make deb runs it: minutes of TCG on the .debs it built"]
fn packages_on_a_clean_debian_with_systemd() {
    let debs = std::env::var_os("MIP4_DEB_DIR")
        .map_or_else(|| repo().join("build/deb"), PathBuf::from)
        .canonicalize()
        .expect("no .debs: run make deb");
    let built = sh(Command::new("dpkg-query").args([
        "-W",
        "-f=${source:Upstream-Version}",
        "strongswan-libcharon",
    ]));
    let other = other_version(built.trim());
    let (up, oth) = (debs.join("upgrade"), debs.join("other"));
    let d = debs.to_str().unwrap();
    repack(&["upgrade", d, up.to_str().unwrap()]);
    repack(&["strongswan", d, oth.to_str().unwrap(), &other]);

    let project = repo();
    let script = format!(
        "set -u\n\
         bash {guest} {d} {up} {oth} >/mnt/run/packages.jsonl.part 2>/mnt/run/packages.stderr\n\
         rc=$?\n\
         mv /mnt/run/packages.jsonl.part /mnt/run/packages.jsonl\n\
         echo $rc >/mnt/run/packages.rc.part\n\
         mv /mnt/run/packages.rc.part /mnt/run/packages.rc\n",
        guest = project.join("scripts/vm/packages-guest.sh").display(),
        up = up.display(),
        oth = oth.display(),
    );
    let mut opts = VmOptions::new(
        &project,
        &project.join("lab"),
        &project,
        vec!["packages".into()],
    );
    opts.job = Some(Job {
        image: vec!["packages".into(), d.into()],
        script,
    });
    // systemd's boot and a dozen apt runs under TCG.
    opts.boot_timeout = Duration::from_secs(180);
    opts.scenario_timeout = Duration::from_secs(1500);

    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let result = vm::run(&opts, &mut |v| {
        println!("{v}");
        if v["type"] == "check" {
            checks.push((
                v["name"].as_str().unwrap_or_default().to_string(),
                v["ok"] == true,
                v["detail"].as_str().unwrap_or_default().to_string(),
            ));
        }
    });
    let outcomes = result.unwrap_or_else(|e| panic!("the guest did not complete: {e}"));
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.1)
        .map(|c| format!("{}: {}", c.0, c.2))
        .collect();
    assert!(
        failed.is_empty(),
        "failed in the guest:\n{}",
        failed.join("\n")
    );
    for name in CHECKS {
        assert!(
            checks.iter().any(|c| c.0 == *name),
            "the guest never checked {name}"
        );
    }
    assert!(
        outcomes.iter().all(vm::Outcome::passed),
        "the guest script failed: {outcomes:?}"
    );
}

#[test]
fn another_strongswan_version_keeps_the_layout() {
    assert_eq!(other_version("5.9.8"), "9.9.9");
    assert_eq!(other_version("5.10.1"), "9.99.9");
    assert_eq!(other_version("9.9.9"), "8.8.8");
}
