//! `--check-config` of mip4d, mip4-ha and mip4-fa (issue 12): the whole
//! file and the key files it names are checked, every error is reported
//! with its file, line and key, the exit status says whether there were
//! any, and no key's value is ever printed. Runs the real binaries on
//! files this test writes; needs no root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A secret that must never appear in any output.
const SECRET: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e7zz";
const GOOD_KEY: &str = "00112233445566778899aabbccddeeff";

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn check(bin: &str, conf: &Path) -> Output {
    std::process::Command::new(bin)
        .arg("--check-config")
        .arg("--config")
        .arg(conf)
        .output()
        .unwrap()
}

/// Asserts the exit status 1, that each of `want` (`LINE: key `KEY``)
/// is reported for `conf`, and that `secret` appears nowhere.
fn assert_errors(out: &Output, conf: &Path, want: &[&str], secret: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "{all}");
    for w in want {
        let line = format!("{}:{w}", conf.display());
        assert!(stderr.contains(&line), "missing `{line}` in:\n{all}");
    }
    assert!(
        stderr.contains(&format!("{} errors", want.len())),
        "every error, counted:\n{all}"
    );
    for part in [secret, &secret[..8], &secret[8..16]] {
        assert!(!all.contains(part), "a key's value echoed:\n{all}");
    }
}

#[test]
fn mip4d_reports_every_error_with_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "mip4d.conf",
        &format!(
            "home_address = \"10.1.0.5\"\n\
             home_agent = \"10.1.0.1\"\n\
             spi = 100\n\
             key = \"{SECRET}\"\n\
             lifetime = \"long\"\n\
             tunnel_devise = \"x\"\n\
             routing_table = 0\n\
             [retransmission]\n\
             initial_timeout_ms = 10\n\
             [detect]\n\
             timeout_ms = 1000\n\
             monitor_grace_s = 90\n"
        ),
        0o600,
    );
    let out = check(env!("CARGO_BIN_EXE_mip4d"), &conf);
    assert_errors(
        &out,
        &conf,
        &[
            "3: key `spi`: SPI 100 is reserved",
            "4: key `key`: ",
            "5: key `lifetime`: expected an integer",
            "6: key `tunnel_devise`: unknown field",
            "7: key `routing_table`: must be a table of its own",
            "9: key `retransmission.initial_timeout_ms`: must be at least 1000",
            "12: key `detect.monitor_grace_s`: must be below t_monitor_s",
        ],
        SECRET,
    );
}

#[test]
fn mip4_ha_checks_the_key_files_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let shared = write(dir.path(), "shared.key", GOOD_KEY, 0o644);
    let not_hex = write(dir.path(), "bad.key", SECRET, 0o600);
    let missing = dir.path().join("missing.key");
    let conf = write(
        dir.path(),
        "mip4-ha.conf",
        &format!(
            "home_agent = \"10.1.0.1\"\n\
             max_lifetime = 0\n\
             \n\
             [[home_network]]\n\
             prefix = \"10.1.0.0/24\"\n\
             \n\
             [[mobile_node]]\n\
             home_address = \"10.1.0.10\"\n\
             spi = 256\n\
             key_file = \"{}\"\n\
             \n\
             [[mobile_node]]\n\
             home_address = \"10.1.0.11\"\n\
             spi = 257\n\
             key_file = \"{}\"\n\
             \n\
             [[mobile_node]]\n\
             home_address = \"10.9.0.12\"\n\
             spi = 258\n\
             key_file = \"{}\"\n",
            shared.display(),
            not_hex.display(),
            missing.display()
        ),
        0o600,
    );
    let out = check(env!("CARGO_BIN_EXE_mip4-ha"), &conf);
    assert_errors(
        &out,
        &conf,
        &[
            "2: key `max_lifetime`: must be between 1 and 65534",
            "10: key `mobile_node.key_file`: ",
            "15: key `mobile_node.key_file`: ",
            "18: key `mobile_node.home_address`: 10.9.0.12 is on none of the home networks",
            "20: key `mobile_node.key_file`: ",
        ],
        SECRET,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(stderr.contains("key is not hex"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn mip4_fa_reports_every_error_and_a_good_file_passes() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "mip4-fa.conf",
        "care_of_address = \"0.0.0.0\"\n\
         max_lifetime = 600\n\
         allowed_home_agents = []\n\
         registration_timeout = 0\n\
         [advertisement]\n\
         interval = 5000\n\
         [[interface]]\n\
         name = \"eth1\"\n\
         address = \"10.50.0.1/24\"\n",
        0o600,
    );
    let out = check(env!("CARGO_BIN_EXE_mip4-fa"), &conf);
    assert_errors(
        &out,
        &conf,
        &[
            "1: key `care_of_address`: must be a unicast address",
            "3: key `allowed_home_agents`: must list the home agents",
            "4: key `registration_timeout`: must be between 1 and 600",
            "6: key `advertisement.interval`: must be between 1 and 1800",
        ],
        "no secret in this file",
    );
    // The shipped example is valid: exit 0, nothing on stderr.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mip4-fa.conf.example");
    let out = check(env!("CARGO_BIN_EXE_mip4-fa"), &example);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

#[test]
fn an_unreadable_file_is_one_error_and_the_old_flag_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("absent.conf");
    for bin in [
        env!("CARGO_BIN_EXE_mip4d"),
        env!("CARGO_BIN_EXE_mip4-ha"),
        env!("CARGO_BIN_EXE_mip4-fa"),
    ] {
        let out = std::process::Command::new(bin)
            .args(["--check", "--config"])
            .arg(&conf)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bin}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot read"), "{bin}: {stderr}");
        assert!(stderr.contains("1 error"), "{bin}: {stderr}");
    }
}
