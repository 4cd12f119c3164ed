//! libreswan's pluto as the lab's VPN gateway (`--gateway libreswan`, the
//! kernel tier only): RFC 4093 §5.4 asks for gateways of more than one
//! vendor. Debian's libreswan conflicts with strongSwan's packages, so it
//! lives in a root of its own (scripts/vm/image.sh); pluto runs chrooted
//! there, inside the gateway's namespace, with a private /run and the
//! namespace's own /proc (pluto reads /proc/net/xfrm_stat).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::netns::{Netns, Process};
use super::{wait, Error, Result};

/// Where the tier's guest mounts the libreswan root:
/// `MIP4_LAB_LIBRESWAN_ROOT`.
pub fn root() -> Option<PathBuf> {
    std::env::var_os("MIP4_LAB_LIBRESWAN_ROOT").map(PathBuf::from)
}

/// A running pluto; stopped when dropped.
#[derive(Debug)]
pub struct Pluto {
    log: PathBuf,
    _process: Process,
}

impl Pluto {
    /// Puts `conf` and `secrets` into the root's /etc and starts pluto in
    /// `ns`; returns once it has loaded its secrets and listens.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        root: &Path,
        conf: &Path,
        secrets: &Path,
    ) -> Result<Pluto> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let etc_conf = root.join("etc/ipsec.conf");
        let etc_secrets = root.join("etc/ipsec.secrets");
        std::fs::copy(conf, &etc_conf).map_err(io(&etc_conf))?;
        std::fs::copy(secrets, &etc_secrets).map_err(io(&etc_secrets))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&etc_secrets, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&etc_secrets))?;
        let r = root.display();
        let script = format!(
            "mount -t tmpfs lab-run {r}/run && mount -t proc proc {r}/proc && \
             mount --rbind /dev {r}/dev && mkdir -p {r}/run/pluto && \
             {{ [ -f {r}/var/lib/ipsec/nss/cert9.db ] || chroot {r} ipsec initnss; }} && \
             exec chroot {r} /usr/libexec/ipsec/pluto --config /etc/ipsec.conf --nofork --stderrlog"
        );
        let mut cmd = ns.command("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        let log = dir.join("pluto.log");
        let process = ns.spawn("pluto", cmd, &log)?;
        let what = format!("pluto on {} to load its secrets", ns.host());
        wait::until(Duration::from_secs(20), &what, || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("loading secrets from")
                .then_some(())
        })?;
        Ok(Pluto {
            log,
            _process: process,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}
