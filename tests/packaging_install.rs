//! `make install` (packaging/install.sh) puts every file where Debian's
//! strongSwan and systemd look for it, with root-only modes for what holds
//! keys, keeps the operator's edits on a second run, and refuses a plugin
//! built without the charon shim. Runs on the debug build cargo made for
//! the tests (the same script stages the .debs from the release build).
//! Needs nm (binutils) and systemd-analyze (systemd).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/cdylib.rs"]
mod cdylib;
#[allow(dead_code)] // sh(): the .deb tests'
mod packaging_support;
use packaging_support::{repo, DAEMONS};

/// target/debug, where cargo put the binaries.
fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mip4ctl"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A build dir as `cargo build` lays it out, from what cargo built for this
/// test run: the binaries, and the libmip4.so in target/debug/deps (`cargo
/// test` never copies a cdylib up to target/debug, where an older one may
/// sit).
fn staged_build() -> tempfile::TempDir {
    let stage = tempfile::tempdir().unwrap();
    for f in ["mip4ctl", "mip4d", "mip4-ha", "mip4-fa"] {
        let from = build_dir().join(f);
        if from.exists() {
            std::fs::copy(&from, stage.path().join(f)).unwrap();
        }
    }
    std::fs::copy(cdylib::built_cdylib(), stage.path().join("libmip4.so"))
        .expect("libmip4.so built for this test run");
    stage
}

fn install(destdir: &Path, build: &Path) -> std::process::Output {
    Command::new(repo().join("packaging/install.sh"))
        .env("DESTDIR", destdir)
        .env("BUILD_DIR", build)
        .output()
        .expect("run packaging/install.sh")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_lays_out_files_for_strongswan_and_systemd() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let build = staged_build();
    let out = install(d, build.path());
    assert!(
        out.status.success(),
        "install.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The plugin, under the name charon loads for `mip4`, identical to
    // the build, and its settings where charon includes them from.
    let plugin = d.join("usr/lib/ipsec/plugins/libstrongswan-mip4.so");
    assert_eq!(mode(&plugin), 0o644);
    assert_eq!(
        std::fs::read(&plugin).unwrap(),
        std::fs::read(build.path().join("libmip4.so")).unwrap()
    );
    let conf = d.join("etc/strongswan.d/charon/mip4.conf");
    assert_eq!(mode(&conf), 0o644);
    assert!(std::fs::read_to_string(&conf)
        .unwrap()
        .starts_with("mip4 {"));
    // charon keeps off mip4d's tunnel device (strongswan.conf includes
    // strongswan.d/*.conf at its top level, so this is charon.*).
    let ifaces = d.join("etc/strongswan.d/mip4-interfaces.conf");
    assert_eq!(mode(&ifaces), 0o644);
    let text = std::fs::read_to_string(&ifaces).unwrap();
    let setting = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("interfaces_ignore"))
        .expect("interfaces_ignore set");
    assert_eq!(setting, "interfaces_ignore = mip4mn0");
    assert!(text.contains("charon {"), "{text}");

    assert_eq!(mode(&d.join("usr/bin/mip4ctl")), 0o755);
    assert_eq!(mode(&d.join("etc/mip4")), 0o700, "/etc/mip4 holds keys");
    for &daemon in DAEMONS {
        assert_eq!(mode(&d.join("usr/sbin").join(daemon)), 0o755, "{daemon}");
        // The config holds MN-HA keys: root only; it is the example.
        let cfg = d.join(format!("etc/mip4/{daemon}.conf"));
        assert_eq!(mode(&cfg), 0o600, "{}", cfg.display());
        let example = repo().join(format!("packaging/{daemon}.conf.example"));
        assert_eq!(
            std::fs::read(&cfg).unwrap(),
            std::fs::read(&example).unwrap()
        );
        assert!(d
            .join(format!(
                "usr/share/doc/mip4-mobike/examples/{daemon}.conf.example"
            ))
            .is_file());
        let unit = d.join(format!("lib/systemd/system/{daemon}.service"));
        assert_eq!(mode(&unit), 0o644);
        check_unit(&unit, d);
    }
    assert!(d.join("usr/share/doc/mip4-mobike/README.md").is_file());
    // Man pages: mip4ctl and each command of it, each daemon and its
    // config file, as generated in man/.
    let man = |page: &str, section: &str| {
        let p = d.join(format!("usr/share/man/man{section}/{page}.{section}"));
        assert_eq!(mode(&p), 0o644, "{}", p.display());
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(repo().join(format!("man/{page}.{section}"))).unwrap()
        );
    };
    for page in ["mip4ctl", "mip4ctl-stats", "mip4ctl-force", "mip4ctl-probe"] {
        man(page, "1");
    }
    for &daemon in DAEMONS {
        man(daemon, "8");
        man(&format!("{daemon}.conf"), "5");
    }
}

/// Every command a unit runs exists (installed here, or on the system,
/// like /bin/kill) and is executable; systemd reads every key; and the
/// hardening leaves the exposure systemd-analyze calls "OK" (<= 3.0).
fn check_unit(unit: &Path, destdir: &Path) {
    let text = std::fs::read_to_string(unit).unwrap();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.starts_with("Exec") {
            continue;
        }
        let program = value
            .trim_start_matches(['-', '@', '+', '!', ':'])
            .split_whitespace()
            .next()
            .unwrap();
        let staged = destdir.join(program.trim_start_matches('/'));
        let path = if staged.exists() {
            staged
        } else {
            PathBuf::from(program)
        };
        assert!(
            path.is_file() && mode(&path) & 0o111 != 0,
            "{}: {key} runs {program}, which is not installed",
            unit.display()
        );
    }
    assert!(text.contains("RuntimeDirectory=mip4\n"));
    assert!(text.contains("RuntimeDirectoryMode=0700\n"));
    let caps = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet");
    for cap in ["CAP_NET_ADMIN", "CAP_NET_RAW"] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{cap}: {caps}");
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=30"])
        .arg(unit)
        .output()
        .expect("systemd-analyze (systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Unknown") && !stderr.contains("ignoring"),
        "{}: {stderr}",
        unit.display()
    );
    assert!(
        out.status.success(),
        "{}: exposure above 3.0:\n{}",
        unit.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn install_keeps_the_operators_configuration() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let build = staged_build();
    assert!(install(d, build.path()).status.success());
    let edited = [
        d.join("etc/strongswan.d/charon/mip4.conf"),
        d.join("etc/strongswan.d/mip4-interfaces.conf"),
        d.join("etc/mip4/mip4-ha.conf"),
        d.join("etc/mip4/mip4-fa.conf"),
    ];
    for f in &edited {
        std::fs::write(f, "# the operator's\n").unwrap();
    }
    let out = install(d, build.path());
    assert!(out.status.success());
    for f in &edited {
        assert_eq!(
            std::fs::read_to_string(f).unwrap(),
            "# the operator's\n",
            "{} overwritten",
            f.display()
        );
    }
}

#[test]
fn install_refuses_a_plugin_without_the_charon_shim() {
    // A build dir whose libmip4.so is some other shared object: charon
    // would not find mip4_plugin_create in it.
    let build = tempfile::tempdir().unwrap();
    for f in ["mip4ctl", "mip4-ha"] {
        std::fs::copy(build_dir().join(f), build.path().join(f)).unwrap();
    }
    let other = ["/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a system libm");
    std::fs::copy(other, build.path().join("libmip4.so")).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let out = install(dest.path(), build.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no mip4_plugin_create"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest
        .path()
        .join("usr/lib/ipsec/plugins/libstrongswan-mip4.so")
        .exists());
}
