//! The distribution's charon loads libstrongswan-mip4.so from its standard
//! plugin directory (the built plugin is laid over that directory inside
//! charon's private mount namespace only), lists `mip4` among its loaded
//! plugins, logs the plugin's own lines through DBG, and the plugin
//! connects to mip4d with a hello and a snapshot.
//! A plugin built against another strongSwan release's headers is refused:
//! its constructor returns NULL and logs both versions.
//! Needs root and strongSwan 5.9.8; fails naming the missing piece.

mod plugin_support;

use std::time::Duration;

use mip4::bridge::proto::{PluginMsg, VERSION};
use mip4::lab::charon::Charon;
use mip4::lab::netns::{unique_prefix, Netns};
use mip4::lab::{preflight, WorkDir};
use plugin_support::{charon_config, overlay_dir_built_for, FakeMip4d};

#[test]
fn plugin_load_by_distribution_charon() {
    preflight().expect("lab preflight");
    let tmp = WorkDir::new("plugin-load").unwrap();
    let ns = Netns::new(&unique_prefix(), "mn").unwrap();
    let fake = FakeMip4d::listen(&tmp.path().join("mip4.sock"));
    let cfg = charon_config(tmp.path(), &fake.path, "");
    let charon = Charon::start(&ns, &tmp.path().join("mn"), &cfg).unwrap();

    let (line, _) = charon
        .wait_log(0, "loaded plugins:", Duration::from_secs(10))
        .unwrap();
    assert!(
        line.split_whitespace().any(|p| p == "mip4"),
        "mip4 not among loaded plugins: {line}"
    );
    // Rust's log lines land in charon's log (CFG group).
    charon
        .wait_log(0, "mip4: bridge started", Duration::from_secs(10))
        .unwrap();

    let (version, i) = fake.wait(0, "hello", Duration::from_secs(10), |m| match m {
        PluginMsg::Hello { version, .. } => Some(*version),
        _ => None,
    });
    assert_eq!(version, VERSION);
    let (ike_sas, _) = fake.wait(i, "snapshot", Duration::from_secs(10), |m| match m {
        PluginMsg::Snapshot { ike_sas } => Some(ike_sas.clone()),
        _ => None,
    });
    assert!(ike_sas.is_empty(), "no IKE_SA yet: {ike_sas:?}");
    charon
        .wait_log(0, "mip4: connected to mip4d", Duration::from_secs(10))
        .unwrap();
}

#[test]
fn plugin_built_for_another_strongswan_is_not_loaded() {
    preflight().expect("lab preflight");
    let tmp = WorkDir::new("plugin-version").unwrap();
    let ns = Netns::new(&unique_prefix(), "mn").unwrap();
    let fake = FakeMip4d::listen(&tmp.path().join("mip4.sock"));
    let mut cfg = charon_config(tmp.path(), &fake.path, "");
    let (dir, built) = overlay_dir_built_for(tmp.path(), "9.9.9");
    cfg.plugin_overlay = Some(dir);
    let dir = tmp.path().join("mn");
    let Err(err) = Charon::start(&ns, &dir, &cfg) else {
        panic!("charon loaded a plugin built for strongSwan 9.9.9");
    };
    assert!(
        err.to_string().contains("did not load the plugins mip4"),
        "{err}"
    );
    let log = std::fs::read_to_string(dir.join("charon.log")).unwrap();
    assert!(
        log.contains(&format!(
            "mip4: built against strongSwan 9.9.9 headers, but this charon is strongSwan {built}"
        )),
        "no refusal naming both versions in charon's log:\n{log}"
    );
    assert_eq!(
        fake.connections(),
        0,
        "a refused plugin never talks to mip4d"
    );
}
