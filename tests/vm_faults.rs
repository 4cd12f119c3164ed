//! The kernel tier fails loudly on bad input and faults: each
//! fault exits non-zero and names its cause and its fix, before minutes of
//! work where it can. Runs `mip4-lab run NAME --vm` as a user would, with
//! one fault injected through the tier's environment. Needs root and the
//! tier's host packages (scripts/install-deps.sh), like the tier itself.

use std::process::{Command, Output};

/// `mip4-lab run untrusted-move --vm` with `env`, its cache in a fresh
/// temporary folder unless `env` names one.
fn run_vm(env: &[(&str, &str)]) -> (Output, String) {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mip4-lab"));
    cmd.args(["run", "untrusted-move", "--vm"])
        .env("MIP4_VM_CACHE", cache.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[test]
fn vm_without_qemu_names_qemu_and_install_deps() {
    let (out, err) = run_vm(&[("MIP4_VM_QEMU", "/nonexistent/qemu-system-x86_64")]);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("QEMU") && err.contains("qemu-system-x86"),
        "{err}"
    );
    assert!(err.contains("scripts/install-deps.sh"), "{err}");
}

#[test]
fn vm_without_a_mirror_names_the_apt_sources() {
    let sources = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(sources.path(), "# no mirror here\n").unwrap();
    let path = sources.path().display().to_string();
    let (out, err) = run_vm(&[("MIP4_VM_APT_SOURCES", &path)]);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no Debian mirror"), "{err}");
    assert!(err.contains(&path) && err.contains("add one"), "{err}");
}

#[test]
fn vm_with_the_kernel_package_gone_says_apt_get_update() {
    // A meta package the archive does not have, and nothing cached: no
    // kernel to boot.
    let (out, err) = run_vm(&[("MIP4_VM_KERNEL_META", "linux-image-gone-amd64")]);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot resolve Debian's kernel package"),
        "{err}"
    );
    assert!(
        err.contains("linux-image-gone-amd64") && err.contains("apt-get update"),
        "{err}"
    );
}

/// A guest that does not reach its init in time is killed, and the
/// console log is named and kept. Makes a real guest root (a minute or
/// two from the tier's cache): `make check-vm` runs it.
#[test]
#[ignore = "builds a guest root; run by make check-vm"]
fn vm_guest_that_never_boots_is_killed_with_its_console_log_kept() {
    let cache = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("build/vm");
    let cache = cache.display().to_string();
    let (out, err) = run_vm(&[("MIP4_VM_CACHE", &cache), ("MIP4_VM_BOOT_TIMEOUT", "1")]);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("never booted"), "{err}");
    let log = err
        .split("console log ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no console log named: {err}"));
    assert!(std::path::Path::new(log).is_file(), "{log} not kept");
}
