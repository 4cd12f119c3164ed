//! A real strongSwan charon inside a lab namespace, and swanctl around it.
//!
//! Each charon gets a private /run (its pid file is compiled in as
//! /run/charon.pid, so two charons on one machine need two /run), its own
//! strongswan.conf through `STRONGSWAN_CONF`, its own vici socket and a
//! file log that tests read. Where the kernel has no ESP (the development
//! machines), the lab loads kernel-libipsec (userspace ESP over a TUN
//! device, `ipsec0`); where it has (the kernel tier), kernel-netlink alone
//! installs the SAs in the kernel.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns::{run, Netns, Process};
use super::{wait, Error, Result};

/// The distribution's charon (strongswan-charon).
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// swanctl (strongswan-swanctl).
pub const SWANCTL: &str = "/usr/sbin/swanctl";

/// Plugins every lab charon loads, each with the Debian package that ships
/// it (scripts/install-deps.sh installs them all). strongSwan 5.9.8 needs
/// `kdf` for the PRF+; `openssl` and `gcm` carry the lab's AES-GCM ESP
/// proposal; `kernel-libipsec` replaces a missing kernel ESP (left out
/// where the kernel has ESP: [`plugins`]). Charon's
/// start is checked against this list (`swanctl --stats`), so a missing
/// plugin is an error at start, naming its package, not a failed proposal
/// later.
pub const BASE_PLUGINS: &[(&str, &str)] = &[
    ("random", "libstrongswan"),
    ("nonce", "libstrongswan"),
    ("openssl", "libstrongswan-standard-plugins"),
    ("gcm", "libstrongswan-standard-plugins"),
    ("aes", "libstrongswan"),
    ("sha1", "libstrongswan"),
    ("sha2", "libstrongswan"),
    ("hmac", "libstrongswan"),
    ("gmp", "libstrongswan"),
    ("curve25519", "libstrongswan-extra-plugins"),
    ("kdf", "libstrongswan"),
    ("pem", "libstrongswan"),
    ("pkcs1", "libstrongswan"),
    ("x509", "libstrongswan"),
    ("pubkey", "libstrongswan"),
    ("attr", "libstrongswan"),
    ("kernel-libipsec", "libcharon-extra-plugins"),
    ("kernel-netlink", "libstrongswan"),
    ("socket-default", "strongswan-libcharon"),
    ("vici", "strongswan-swanctl"),
];

/// Plugins a scenario adds (`lab::charon HOST plugin:NAME`), with their
/// Debian package, for the error that names a missing one.
pub const EXTRA_PLUGINS: &[(&str, &str)] = &[
    ("eap-mschapv2", "libcharon-extauth-plugins"),
    ("eap-identity", "libcharon-extra-plugins"),
];

/// The plugins of [`BASE_PLUGINS`] this kernel needs: kernel-libipsec
/// only where the kernel has no ESP of its own.
pub fn plugins() -> Vec<(&'static str, &'static str)> {
    let esp = super::platform::Kernel::detect().esp;
    BASE_PLUGINS
        .iter()
        .copied()
        .filter(|(name, _)| !(esp && *name == "kernel-libipsec"))
        .collect()
}

/// The plugins of [`plugins`] whose library is not in [`PLUGIN_DIR`], as
/// "name (package)".
pub fn missing_base_plugins() -> Vec<String> {
    plugins()
        .into_iter()
        .filter(|(name, _)| {
            !Path::new(PLUGIN_DIR)
                .join(format!("libstrongswan-{name}.so"))
                .exists()
        })
        .map(|(name, package)| format!("{name} ({package})"))
        .collect()
}

/// How a lab charon is configured beyond the base.
#[derive(Debug, Clone, Default)]
pub struct CharonConfig {
    /// Plugins loaded after [`BASE_PLUGINS`] (e.g. `mip4`).
    pub extra_plugins: Vec<String>,
    /// Extra lines placed inside the `charon { }` section verbatim
    /// (e.g. `plugins { mip4 { socket = ... } }`).
    pub extra_settings: String,
    /// Files laid over charon's plugin directory inside its private mount
    /// namespace only (an overlayfs), e.g. a freshly built
    /// `libstrongswan-mip4.so`: charon loads it from the standard plugin
    /// directory while the host's directory stays untouched.
    pub plugin_overlay: Option<PathBuf>,
    /// The file log's levels.
    pub log: CharonLog,
}

/// What a lab charon writes to its file log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CharonLog {
    /// `ike`, `cfg` and `knl` at 2, every line flushed as written: the
    /// lines the scenarios' checks and the handover timelines read.
    #[default]
    Lab,
    /// strongSwan's default levels (1) and buffered writes, as a
    /// deployment logs: under TCG each flushed line at level 2 is charon
    /// CPU on a move's path (the handover bench, which reads no charon
    /// log).
    Default,
}

impl std::str::FromStr for CharonLog {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "lab" => Ok(CharonLog::Lab),
            "default" => Ok(CharonLog::Default),
            _ => Err(format!("unknown charon log `{s}` (lab or default)")),
        }
    }
}

impl CharonLog {
    /// The word `FromStr` reads.
    pub fn name(self) -> &'static str {
        match self {
            CharonLog::Lab => "lab",
            CharonLog::Default => "default",
        }
    }

    /// The filelog's lines after `append`.
    fn settings(self) -> &'static str {
        match self {
            CharonLog::Lab => {
                "flush_line = yes
            default = 1
            ike = 2
            cfg = 2
            knl = 2"
            }
            CharonLog::Default => "default = 1",
        }
    }
}

/// Where Debian's charon looks for `libstrongswan-<name>.so`.
pub const PLUGIN_DIR: &str = "/usr/lib/ipsec/plugins";

/// A running charon; stopped when dropped.
#[derive(Debug)]
pub struct Charon {
    host: String,
    dir: PathBuf,
    vici: PathBuf,
    log: PathBuf,
    process: Process,
    /// The plugins charon reported loaded at start (`swanctl --stats`).
    loaded: Vec<String>,
}

impl Charon {
    /// Writes `dir/strongswan.conf` and starts charon in `ns`; returns once
    /// its vici socket answers.
    pub fn start(ns: &Netns, dir: &Path, cfg: &CharonConfig) -> Result<Charon> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let vici = dir.join("charon.vici");
        let log = dir.join("charon.log");
        let conf = dir.join("strongswan.conf");
        let _ = std::fs::remove_file(&vici);
        let _ = std::fs::remove_file(&log);
        let mut plugins: Vec<&str> = self::plugins().iter().map(|(p, _)| *p).collect();
        plugins.extend(cfg.extra_plugins.iter().map(String::as_str));
        let text = strongswan_conf(&plugins.join(" "), &vici, &log, cfg);
        std::fs::write(&conf, text).map_err(|source| Error::Io {
            path: conf.display().to_string(),
            source,
        })?;

        // A private mount namespace with a tmpfs on /run: charon's pid file
        // and any runtime state stay per host.
        let mut script = String::from("mount -t tmpfs lab-run /run");
        if let Some(overlay) = &cfg.plugin_overlay {
            script.push_str(&format!(
                " && mount -t overlay lab-plugins -o 'lowerdir={}:{PLUGIN_DIR}' {PLUGIN_DIR}",
                overlay.display()
            ));
        }
        script.push_str(" && exec \"$0\"");
        let mut cmd = ns.command("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            CHARON,
        ])
        .env("STRONGSWAN_CONF", &conf);
        let process = ns.spawn("charon", cmd, &dir.join("charon.stdout"))?;
        let mut charon = Charon {
            host: ns.host().to_string(),
            dir: dir.to_path_buf(),
            vici,
            log,
            process,
            loaded: Vec::new(),
        };
        let what = format!("charon on {} to answer on its vici socket", charon.host);
        wait::until(Duration::from_secs(10), &what, || {
            if !charon.process.is_running() {
                return Some(Err(Error::Other(format!(
                    "charon on {} exited at start; see {}",
                    charon.host,
                    charon.dir.join("charon.stdout").display()
                ))));
            }
            let stats = charon
                .vici
                .exists()
                .then(|| charon.swanctl(&["--stats"]).ok())??;
            Some(charon.check_loaded(&stats, &plugins))
        })?
        .0?;
        Ok(charon)
    }

    /// The IPsec backend this charon runs on (from its loaded plugins).
    pub fn ipsec_backend(&self) -> &'static str {
        super::platform::ipsec_backend(&self.loaded)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Checks `swanctl --stats`'s "loaded plugins:" line against the
    /// plugins this charon was told to load: charon skips a plugin it
    /// cannot load and starts anyway, so without this a missing package
    /// shows up only later, as a failed proposal.
    fn check_loaded(&mut self, stats: &str, wanted: &[&str]) -> Result<()> {
        self.loaded = stats
            .lines()
            .find_map(|l| l.trim().strip_prefix("loaded plugins:"))
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let missing: Vec<String> = wanted
            .iter()
            .filter(|p| !self.loaded.iter().any(|l| l == *p))
            .map(|p| {
                match BASE_PLUGINS
                    .iter()
                    .chain(EXTRA_PLUGINS)
                    .find(|(name, _)| name == p)
                {
                    Some((_, package)) => format!("{p} (Debian package {package})"),
                    None => p.to_string(),
                }
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Other(format!(
            "charon on {} did not load the plugins {}; scripts/install-deps.sh installs them (see {})",
            self.host,
            missing.join(", "),
            self.log.display()
        )))
    }

    /// The charon log (filelog, milliseconds, `ike`/`knl`/`cfg` at 2).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The vici URI swanctl uses for this charon.
    pub fn uri(&self) -> String {
        format!("unix://{}", self.vici.display())
    }

    /// charon's pid (`unshare` and `sh` exec it, so the spawned pid is
    /// charon's own).
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The charon process (to stop or restart it in a scenario).
    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    /// `swanctl <args> --uri <this charon>`. vici is a unix socket, so
    /// swanctl need not run inside the namespace.
    pub fn swanctl(&self, args: &[&str]) -> Result<String> {
        run(Command::new(SWANCTL)
            .args(args)
            .arg("--uri")
            .arg(self.uri()))
    }

    /// `swanctl --load-all --file <swanctl.conf>`.
    pub fn load_all(&self, swanctl_conf: &Path) -> Result<String> {
        self.swanctl(&["--load-all", "--file", &swanctl_conf.display().to_string()])
    }

    /// `swanctl --initiate --child <child>` (blocks until done or failed).
    /// swanctl's own timeout is scaled as every lab wait is
    /// ([`wait::scale`]).
    pub fn initiate(&self, child: &str) -> Result<String> {
        let timeout = (20.0 * wait::scale()).ceil().to_string();
        self.swanctl(&["--initiate", "--child", child, "--timeout", &timeout])
    }

    /// The IKE_SAs as `swanctl --list-sas --raw` reports them.
    pub fn list_sas(&self) -> Result<Vec<IkeSa>> {
        Ok(parse_list_sas(&self.swanctl(&["--list-sas", "--raw"])?))
    }

    /// Waits until the IKE_SA `name` is ESTABLISHED with an INSTALLED
    /// CHILD_SA and `pred` holds for it.
    pub fn wait_sa(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&IkeSa) -> bool,
    ) -> Result<(IkeSa, Instant)> {
        let what = format!("{what} (IKE_SA {name} on {})", self.host);
        wait::until(timeout, &what, || {
            self.list_sas().ok()?.into_iter().find(|sa| {
                sa.name == name
                    && sa.state == "ESTABLISHED"
                    && sa.children.iter().any(|c| c.state == "INSTALLED")
                    && pred(sa)
            })
        })
    }

    /// The log's text so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a log line after byte `from` contains `needle`; returns
    /// the line and the byte offset after it.
    pub fn wait_log(
        &self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<(String, usize)> {
        let what = format!("`{needle}` in {}", self.log.display());
        wait::until(timeout, &what, || {
            let text = self.log_text();
            let tail = text.get(from..)?;
            let at = tail.find(needle)?;
            let start = tail[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = tail[at..].find('\n').map_or(tail.len(), |i| at + i);
            Some((tail[start..end].to_string(), from + end))
        })
        .map(|(v, _)| v)
    }
}

/// charon's retransmissions: 1 s, then 1.4 times longer each. Four give
/// up after ~11 s; where the lab's clock is scaled ([`wait::scale`]: the
/// kernel tier's TCG guest, where a peer takes several times longer to
/// answer), as many more as scale that window too. The first
/// retransmissions stay as fast, so measured figures do not change.
fn retransmit_tries(scale: f64) -> i32 {
    (4..16)
        .find(|&t| retransmit_window(t) >= retransmit_window(4) * scale)
        .unwrap_or(16)
}

/// Seconds from the first transmission until charon gives up.
fn retransmit_window(tries: i32) -> f64 {
    (1.4f64.powi(tries + 1) - 1.0) / 0.4
}

fn strongswan_conf(load: &str, vici: &Path, log: &Path, cfg: &CharonConfig) -> String {
    let tries = retransmit_tries(wait::scale());
    format!(
        r#"# Written by mip4-lab for one lab host.
charon {{
    load = {load}
    # Short retransmissions: the lab's links are fast and scenario time is
    # measured in RTTs; keep the defaults' shape (exponential backoff).
    retransmit_timeout = 1.0
    retransmit_base = 1.4
    retransmit_tries = {tries}
    install_routes = yes
    filelog {{
        lab {{
            path = {log}
            # Milliseconds after the seconds, for the handover's
            # timelines: charon 5.9.8 reads `time_add_ms` (it ignores
            # `time_precision`, the option of later releases).
            time_format = %H:%M:%S
            time_add_ms = yes
            append = no
            {levels}
        }}
    }}
    syslog {{
        daemon {{
            default = -1
        }}
    }}
    plugins {{
        vici {{
            socket = unix://{vici}
        }}
        kernel-libipsec {{
            # Let the MN's virtual IP be the inner source on the gateway
            # side too.
            allow_peer_ts = yes
        }}
    }}
{extra}
}}
"#,
        vici = vici.display(),
        log = log.display(),
        levels = cfg.log.settings(),
        extra = cfg.extra_settings,
    )
}

/// An IKE_SA as `swanctl --list-sas --raw` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IkeSa {
    pub name: String,
    pub state: String,
    pub local_host: String,
    pub local_port: String,
    pub remote_host: String,
    pub remote_port: String,
    /// The virtual IPs we received (on the MN: the TIA).
    pub local_vips: Vec<String>,
    /// The virtual IPs we handed out (on the gateway).
    pub remote_vips: Vec<String>,
    pub nat_local: bool,
    pub nat_remote: bool,
    pub children: Vec<ChildSa>,
}

/// A CHILD_SA inside an [`IkeSa`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildSa {
    pub name: String,
    pub state: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
}

/// A vici message as swanctl's `--raw` prints it: `key=value`,
/// `key=[a b]` and `key { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Vici {
    Value(String),
    List(Vec<String>),
    Section(Vec<(String, Vici)>),
}

impl Vici {
    fn get(&self, key: &str) -> Option<&Vici> {
        match self {
            Vici::Section(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str(&self, key: &str) -> String {
        match self.get(key) {
            Some(Vici::Value(v)) => v.clone(),
            _ => String::new(),
        }
    }
    fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Vici::List(v)) => v.clone(),
            Some(Vici::Value(v)) => vec![v.clone()],
            _ => Vec::new(),
        }
    }
}

/// Parses one `--raw` section body starting after `{`; stops at `}`.
fn parse_section(tokens: &mut std::iter::Peekable<std::vec::IntoIter<String>>) -> Vici {
    let mut items = Vec::new();
    while let Some(tok) = tokens.next() {
        if tok == "}" {
            break;
        }
        if let Some((key, value)) = tok.split_once('=') {
            if value == "[" {
                let mut list = Vec::new();
                for t in tokens.by_ref() {
                    if t == "]" {
                        break;
                    }
                    list.push(t);
                }
                items.push((key.to_string(), Vici::List(list)));
            } else {
                items.push((key.to_string(), Vici::Value(value.to_string())));
            }
        } else if tokens.peek().map(String::as_str) == Some("{") {
            tokens.next();
            items.push((tok, parse_section(tokens)));
        }
    }
    Vici::Section(items)
}

fn tokenize(text: &str) -> Vec<String> {
    // `[` and `]` and braces are separate tokens; `key=[a b]` becomes
    // `key=[`, `a`, `b`, `]`.
    let spaced = text
        .replace('{', " { ")
        .replace('}', " } ")
        .replace("=[", "=[ ")
        .replace(']', " ] ");
    spaced
        .split_whitespace()
        .map(|t| {
            if t.ends_with("=[") {
                format!("{}[", &t[..t.len() - 1])
            } else {
                t.to_string()
            }
        })
        .collect()
}

/// Parses the output of `swanctl --list-sas --raw`: one `list-sa event
/// { <ike name> { ... } }` per IKE_SA.
pub fn parse_list_sas(text: &str) -> Vec<IkeSa> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(body) = line.trim().strip_prefix("list-sa event") else {
            continue;
        };
        let mut tokens = tokenize(body).into_iter().peekable();
        if tokens.next().as_deref() != Some("{") {
            continue;
        }
        let Vici::Section(sas) = parse_section(&mut tokens) else {
            continue;
        };
        for (name, sa) in sas {
            let children = match sa.get("child-sas") {
                Some(Vici::Section(cs)) => cs
                    .iter()
                    .map(|(_, c)| ChildSa {
                        name: c.str("name"),
                        state: c.str("state"),
                        local_ts: c.list("local-ts"),
                        remote_ts: c.list("remote-ts"),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            out.push(IkeSa {
                name,
                state: sa.str("state"),
                local_host: sa.str("local-host"),
                local_port: sa.str("local-port"),
                remote_host: sa.str("remote-host"),
                remote_port: sa.str("remote-port"),
                local_vips: sa.list("local-vips"),
                remote_vips: sa.list("remote-vips"),
                nat_local: sa.str("nat-local") == "yes",
                nat_remote: sa.str("nat-remote") == "yes",
                children,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_scale_with_the_lab_clock() {
        assert_eq!(retransmit_tries(1.0), 4);
        // The kernel tier (scale 4): ~11 s become ~49 s.
        let t = retransmit_tries(4.0);
        assert_eq!(t, 8);
        assert!(retransmit_window(t) >= 4.0 * retransmit_window(4));
        assert!(retransmit_window(t - 1) < 4.0 * retransmit_window(4));
    }

    #[test]
    fn the_bench_can_log_as_a_deployment_does() {
        let conf = |log| {
            let cfg = CharonConfig {
                log,
                extra_settings: "    # extra\n".into(),
                ..CharonConfig::default()
            };
            strongswan_conf("nonce", Path::new("/v"), Path::new("/l"), &cfg)
        };
        let lab = conf(CharonLog::Lab);
        for line in [
            "flush_line = yes",
            "ike = 2",
            "cfg = 2",
            "knl = 2",
            "# extra",
        ] {
            assert!(lab.contains(line), "{line}: {lab}");
        }
        let default = conf(CharonLog::Default);
        assert!(default.contains("default = 1") && default.contains("# extra"));
        for line in ["flush_line", "ike = 2", "cfg = 2", "knl = 2"] {
            assert!(!default.contains(line), "{line}: {default}");
        }
        assert_eq!("default".parse(), Ok(CharonLog::Default));
        assert_eq!(CharonLog::Lab.name().parse(), Ok(CharonLog::Lab));
        assert!("verbose".parse::<CharonLog>().is_err());
    }

    #[test]
    fn parses_list_sas_raw() {
        let text = "list-sa event {vpn {uniqueid=1 version=2 state=ESTABLISHED \
            local-host=192.0.2.20 local-port=4500 local-id=mn@lab remote-host=203.0.113.10 \
            remote-port=4500 remote-id=gw@lab initiator=yes nat-local=yes \
            local-vips=[10.200.0.1] child-sas {net-1 {name=net uniqueid=1 state=INSTALLED \
            local-ts=[10.200.0.1/32] remote-ts=[10.1.0.0/16 10.2.0.0/16]}}}}\n";
        let sas = parse_list_sas(text);
        assert_eq!(sas.len(), 1);
        let sa = &sas[0];
        assert_eq!(sa.name, "vpn");
        assert_eq!(sa.state, "ESTABLISHED");
        assert_eq!(sa.local_host, "192.0.2.20");
        assert_eq!(sa.remote_host, "203.0.113.10");
        assert_eq!(sa.local_vips, vec!["10.200.0.1"]);
        assert!(sa.nat_local && !sa.nat_remote);
        assert_eq!(sa.children.len(), 1);
        assert_eq!(sa.children[0].state, "INSTALLED");
        assert_eq!(sa.children[0].remote_ts, vec!["10.1.0.0/16", "10.2.0.0/16"]);
    }

    #[test]
    fn ignores_other_lines() {
        assert!(parse_list_sas("no SAs\n").is_empty());
    }
}
