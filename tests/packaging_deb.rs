//! The .debs that `make deb` builds (packaging/debian, dpkg-buildpackage):
//! every file where strongSwan and systemd expect it, with root-only modes
//! for what holds keys; conffiles; the plugin pinned to the installed
//! strongSwan release and installable next to it (apt simulation); the
//! packaged (stripped) plugin loaded by the distribution's charon with the
//! packaged mip4.conf; and no lintian errors.
//!
//! Ignored by `cargo test`: it needs a release build and dpkg-buildpackage
//! (minutes). `make deb` builds the packages and runs it on them
//! (MIP4_DEB_DIR); without MIP4_DEB_DIR it builds them itself into
//! build/deb. Needs root, debhelper and lintian
//! (`scripts/install-deps.sh --deb`), strongSwan 5.9.8.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mip4::lab::charon::{Charon, CharonConfig};
use mip4::lab::netns::{unique_prefix, Netns};
use mip4::lab::{preflight, WorkDir};

mod packaging_support;
use packaging_support::{repo, sh, DAEMONS};

/// The directory holding the .debs: MIP4_DEB_DIR, else freshly built.
fn deb_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MIP4_DEB_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            repo().join(dir)
        };
    }
    let dir = repo().join("build/deb");
    sh(Command::new(repo().join("packaging/build-deb.sh")).arg(&dir));
    dir
}

fn deb(dir: &Path, package: &str) -> PathBuf {
    let p = dir.join(format!(
        "{package}_{}_{}.deb",
        env!("CARGO_PKG_VERSION"),
        sh(Command::new("dpkg").arg("--print-architecture")).trim()
    ));
    assert!(p.is_file(), "{} not built", p.display());
    p
}

/// `dpkg-deb -c`: path -> (mode string, owner).
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    sh(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_start_matches('.').to_string();
            (path, f[0].to_string(), f[1].to_string())
        })
        .collect()
}

fn assert_entry(list: &[(String, String, String)], path: &str, mode: &str) {
    let e = list
        .iter()
        .find(|(p, _, _)| p == path)
        .unwrap_or_else(|| panic!("{path} not in the package: {list:#?}"));
    assert_eq!(e.1, mode, "mode of {path}");
    assert_eq!(e.2, "root/root", "owner of {path}");
}

fn field(deb: &Path, name: &str) -> String {
    sh(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim()
        .to_string()
}

fn dpkg_lt(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .unwrap()
        .success()
}

#[test]
#[ignore = "needs a release build and dpkg-buildpackage: run by `make deb`"]
fn deb_packages_install_next_to_debian_strongswan() {
    preflight().expect("lab preflight");
    let dir = deb_dir();
    let plugin_deb = deb(&dir, "strongswan-mip4-plugin");
    let main_deb = deb(&dir, "mip4-mobike");

    // --- strongswan-mip4-plugin: where charon loads plugins and reads
    // their settings; mip4.conf a conffile.
    let list = contents(&plugin_deb);
    assert_entry(
        &list,
        "/usr/lib/ipsec/plugins/libstrongswan-mip4.so",
        "-rw-r--r--",
    );
    assert_entry(&list, "/etc/strongswan.d/charon/mip4.conf", "-rw-r--r--");
    assert_entry(
        &list,
        "/etc/strongswan.d/mip4-interfaces.conf",
        "-rw-r--r--",
    );
    assert_eq!(
        sh(Command::new("dpkg-deb")
            .arg("-I")
            .arg(&plugin_deb)
            .arg("conffiles"))
        .trim(),
        "/etc/strongswan.d/charon/mip4.conf\n/etc/strongswan.d/mip4-interfaces.conf"
    );

    // The pin: exactly the upstream release of the installed charon.
    let installed =
        sh(Command::new("dpkg-query").args(["-W", "-f=${Version}", "strongswan-libcharon"]));
    let upstream = installed.split('-').next().unwrap().to_string();
    let depends = field(&plugin_deb, "Depends");
    let lower = format!("strongswan-libcharon (>= {upstream})");
    assert!(depends.contains(&lower), "{depends}");
    let upper = depends
        .split(", ")
        .find_map(|d| d.strip_prefix("strongswan-libcharon (<< "))
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no upper bound on strongswan-libcharon: {depends}"));
    assert!(dpkg_lt(&installed, upper), "{installed} outside {depends}");
    let mut next: Vec<u32> = upstream.split('.').map(|n| n.parse().unwrap()).collect();
    *next.last_mut().unwrap() += 1;
    let next = next
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    assert!(
        !dpkg_lt(&format!("{next}-1"), upper),
        "strongSwan {next} would satisfy {depends}"
    );

    // --- mip4-mobike: daemons, CLI, units, root-only configs.
    let list = contents(&main_deb);
    assert_entry(&list, "/usr/bin/mip4ctl", "-rwxr-xr-x");
    assert_entry(&list, "/etc/mip4/", "drwx------");
    let conffiles = sh(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&main_deb)
        .arg("conffiles"));
    for d in DAEMONS {
        assert_entry(&list, &format!("/usr/sbin/{d}"), "-rwxr-xr-x");
        assert_entry(&list, &format!("/etc/mip4/{d}.conf"), "-rw-------");
        assert_entry(
            &list,
            &format!("/lib/systemd/system/{d}.service"),
            "-rw-r--r--",
        );
        assert_entry(
            &list,
            &format!("/usr/share/doc/mip4-mobike/examples/{d}.conf.example"),
            "-rw-r--r--",
        );
        assert!(
            conffiles
                .lines()
                .any(|l| l == format!("/etc/mip4/{d}.conf")),
            "{d}.conf not a conffile: {conffiles}"
        );
    }
    assert_entry(&list, "/usr/share/doc/mip4-mobike/README.md", "-rw-r--r--");
    assert!(
        !field(&main_deb, "Depends").contains("strongswan"),
        "the home agent host must not need strongSwan"
    );
    // The units are registered with systemd but neither enabled nor
    // started by the package (the example configs are not a network).
    let postinst = sh(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&main_deb)
        .arg("postinst"));
    for d in DAEMONS {
        assert!(
            postinst.contains(&format!("deb-systemd-helper update-state '{d}.service'")),
            "{d}: {postinst}"
        );
    }
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");

    // --- Both install next to this machine's strongSwan (simulated).
    let sim = sh(Command::new("apt-get")
        .args(["install", "-s", "-q", "--no-install-recommends"])
        .arg(&plugin_deb)
        .arg(&main_deb));
    assert!(sim.contains("Inst strongswan-mip4-plugin"), "{sim}");
    assert!(sim.contains("Inst mip4-mobike"), "{sim}");

    // --- The packaged plugin, stripped by dh_strip, in Debian's charon,
    // configured by the packaged mip4.conf.
    let root = tempfile::tempdir().unwrap();
    sh(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&plugin_deb)
        .arg(root.path()));
    let work = WorkDir::new("packaged-plugin").unwrap();
    let ns = Netns::new(&unique_prefix(), "mn").unwrap();
    let cfg = CharonConfig {
        extra_plugins: vec!["mip4".into()],
        extra_settings: format!(
            "    plugins {{\n        include {}\n    }}\n",
            root.path()
                .join("etc/strongswan.d/charon/mip4.conf")
                .display()
        ),
        plugin_overlay: Some(root.path().join("usr/lib/ipsec/plugins")),
        ..CharonConfig::default()
    };
    let charon = Charon::start(&ns, &work.path().join("mn"), &cfg).unwrap();
    let t = Duration::from_secs(10);
    let (line, _) = charon.wait_log(0, "loaded plugins:", t).unwrap();
    assert!(
        line.split_whitespace().any(|p| p == "mip4"),
        "packaged plugin not loaded: {line}"
    );
    charon.wait_log(0, "mip4: bridge started", t).unwrap();
    drop(charon);

    // --- lintian: warnings are reported, errors fail.
    let out = Command::new("lintian")
        .args(["--fail-on", "error"])
        .arg(&plugin_deb)
        .arg(&main_deb)
        .output()
        .expect("lintian (scripts/install-deps.sh --deb)");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{report}");
    assert!(
        out.status.success() && !report.lines().any(|l| l.starts_with("E: ")),
        "lintian errors:\n{report}"
    );
}
