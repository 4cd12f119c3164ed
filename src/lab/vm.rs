//! The kernel tier: the lab's scenarios in a QEMU guest that runs Debian
//! 12's stock kernel, where charon's kernel-netlink carries ESP, mip4d and
//! mip4-ha get kernel ipip tunnels and netem delays the links
//! (`mip4-lab run NAME... --vm`, `make check-vm`).
//!
//! - The guest's parts come from `scripts/vm/image.sh`: a pristine cache
//!   (debootstrap minbase root, the kernel package pinned by version) and,
//!   per run, a fresh copy of the root with the project's own
//!   `install-deps.sh --runtime` run inside: the tier is also the
//!   fresh-machine test of that list.
//! - QEMU under TCG (KVM on these machines cannot boot Debian's kernel:
//!   ../shared/KERNEL-VM.md), the uncompressed vmlinux through qboot, the
//!   root and the host's binaries and lab data over virtio-9p, each at the
//!   same path as on the host, so the guest runs the very `mip4-lab` the
//!   host built, with the same scenario files.
//! - One boot runs several scenarios. The guest writes each scenario's
//!   JSON lines, exit status and logs into the run share; the host prints
//!   the lines as they come, and kills a guest that does not boot or hangs.
//!   Its console log stays beside the scenarios' logs.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Error, Result};

/// The QEMU system emulator (qemu-system-x86); `MIP4_VM_QEMU` names
/// another (the fault tests give one that is not there).
pub fn qemu() -> String {
    std::env::var("MIP4_VM_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}
/// qboot: boots the PVH vmlinux in a fraction of SeaBIOS's time.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// The guest's CPU model (QEMU's `-cpu`) unless `MIP4_VM_CPU` names
/// another. qemu64 has no AES-NI or PCLMULQDQ, which the laptops and
/// gateways modelled have; `max` has them (the kernel's ESP then runs on
/// aesni_intel) but cost the emulation more host CPU in a same-load pair
/// of boots, and an Intel model turns on Meltdown's page table isolation
/// (a TLB flush at every kernel entry under TCG). Measured per model in
/// lab/README.md (the kernel tier).
pub const DEFAULT_CPU: &str = "qemu64";

/// `MIP4_VM_CPU`, or [`DEFAULT_CPU`] when unset or empty.
pub fn cpu_model(var: Option<String>) -> String {
    var.filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_CPU.to_string())
}

/// The VPN gateway's IKE daemon in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gateway {
    #[default]
    StrongSwan,
    /// libreswan's pluto, in a root of its own (RFC 4093 §5.4: gateways of
    /// more than one vendor).
    Libreswan,
}

impl std::str::FromStr for Gateway {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "strongswan" => Ok(Gateway::StrongSwan),
            "libreswan" => Ok(Gateway::Libreswan),
            _ => Err(format!("unknown gateway `{s}` (strongswan or libreswan)")),
        }
    }
}

/// Where the guest mounts the libreswan root.
const LIBRESWAN_MOUNT: &str = "/mnt/libreswan";

/// One boot of the kernel tier.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The project folder (scripts/vm, lab/).
    pub project: PathBuf,
    /// The lab folder the scenarios come from.
    pub lab_dir: PathBuf,
    /// Where mip4-lab, mip4d, mip4-ha, mip4ctl and libmip4.so are.
    pub bin_dir: PathBuf,
    /// The pristine cache (default `build/vm` in the project).
    pub cache: PathBuf,
    pub scenarios: Vec<String>,
    pub gateway: Gateway,
    /// `--charon-plugin` for the guest's lab.
    pub charon_plugins: Vec<String>,
    /// `--capture DIR`: the guest's pcaps of each scenario, copied to
    /// DIR/NAME/ after the run.
    pub capture: Option<PathBuf>,
    /// From QEMU's start until the guest's init runs.
    pub boot_timeout: Duration,
    /// Per scenario, inside the guest.
    pub scenario_timeout: Duration,
    /// A job in place of the lab's scenarios (the packages' clean-system
    /// test, tests/packaging_clean.rs); `scenarios` then names its result.
    pub job: Option<Job>,
    /// The guest's mip4-lab arguments in place of `run NAME --json` (a
    /// bench run inside the guest: `scenarios` names it, one name).
    pub guest_args: Option<String>,
    /// vCPUs: 1 unless `MIP4_VM_SMP=N` says more (a bench may set its
    /// own default; the variable still wins).
    pub smp: u32,
    /// With more than one vCPU and `MIP4_VM_PIN=1`, the guest's lab pins
    /// the MN's processes to one and the rest to another
    /// (src/lab/machines.rs). Not by default: in three quiet pairs of
    /// handover bench boots (lab/README.md, the kernel tier) the two
    /// vCPUs shared were as fast or faster at every delay.
    pub pin: bool,
    /// QEMU's CPU model for the guest ([`cpu_model`]).
    pub cpu: String,
    /// The guest kernel's address-space randomisation ([`kernel_args`]):
    /// on unless `MIP4_VM_ASLR=0`.
    pub aslr: bool,
}

/// A guest job other than the lab's scenarios: its own image and script.
#[derive(Debug, Clone)]
pub struct Job {
    /// `image.sh` command and the arguments after `CACHE RUN`.
    pub image: Vec<String>,
    /// The guest's script; like the scenarios' it leaves
    /// `/mnt/run/NAME.jsonl` and `NAME.rc` for `NAME` in `scenarios`.
    pub script: String,
}

impl VmOptions {
    pub fn new(project: &Path, lab_dir: &Path, bin_dir: &Path, scenarios: Vec<String>) -> Self {
        VmOptions {
            project: project.to_path_buf(),
            lab_dir: lab_dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            cache: std::env::var_os("MIP4_VM_CACHE")
                .map_or_else(|| project.join("build/vm"), PathBuf::from),
            scenarios,
            gateway: Gateway::StrongSwan,
            charon_plugins: Vec::new(),
            capture: None,
            // MIP4_VM_BOOT_TIMEOUT (seconds): the fault test of a guest
            // that never boots.
            boot_timeout: Duration::from_secs(
                std::env::var("MIP4_VM_BOOT_TIMEOUT")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(90),
            ),
            scenario_timeout: Duration::from_secs(600),
            job: None,
            guest_args: None,
            smp: smp_from_env().unwrap_or(1),
            pin: std::env::var("MIP4_VM_PIN").is_ok_and(|v| v == "1"),
            cpu: cpu_model(std::env::var("MIP4_VM_CPU").ok()),
            aslr: std::env::var("MIP4_VM_ASLR").map_or(true, |v| v != "0"),
        }
    }
}

/// `MIP4_VM_SMP=N`, if set to a number.
pub fn smp_from_env() -> Option<u32> {
    std::env::var("MIP4_VM_SMP").ok()?.parse().ok()
}

/// What one scenario did in the guest.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: String,
    /// The guest mip4-lab's exit status.
    pub status: i32,
    /// Its `--json` summary line, if it printed one.
    pub summary: Option<serde_json::Value>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.status == 0
    }
}

/// The kernel tier's host side: checks, image, boot, results. Logs (the
/// console's and each scenario's) are kept in the run folder, whose path
/// [`run`] reports through `on_line` as a `vm` line.
pub fn run(opts: &VmOptions, on_line: &mut dyn FnMut(&serde_json::Value)) -> Result<Vec<Outcome>> {
    preflight()?;
    check_cpu(&opts.cpu)?;
    let scenarios = opts.job.is_none() && opts.guest_args.is_none();
    for name in opts.scenarios.iter().filter(|_| scenarios) {
        if !opts.lab_dir.join("scenarios").join(name).is_dir() {
            return Err(Error::Other(format!(
                "no scenario `{name}` in {} (see `mip4-lab list`)",
                opts.lab_dir.display()
            )));
        }
    }
    let lab = opts.bin_dir.join("mip4-lab");
    if opts.job.is_none() && !lab.is_file() {
        return Err(Error::Other(format!(
            "{} not found: build it first (cargo build --bins --lib)",
            lab.display()
        )));
    }
    let run_dir = super::fresh_dir(&opts.cache.join("runs"), "")?;
    let share = run_dir.join("share");
    mkdir(&share.join("logs"))?;
    let _root = RootGuard(run_dir.clone());
    on_line(&serde_json::json!({"type": "vm", "event": "image", "run_dir": run_dir}));
    image(opts, &run_dir)?;
    write_share(opts, &share)?;
    let console = share.join("logs").join("console.log");
    let started = Instant::now();
    let mut qemu = Guest::boot(opts, &run_dir, &console)?;
    let outcomes = qemu.follow(opts, &share, &console, on_line);
    let took = started.elapsed().as_secs_f64();
    on_line(
        &serde_json::json!({"type": "vm", "event": "powered_off", "boot_to_off_s": (took * 10.0).round() / 10.0, "console": console, "cpu": opts.cpu, "aslr": opts.aslr, "vcpus": opts.smp.max(1), "pinned": opts.smp > 1 && opts.pin,
            "vcpu_ran_s": (qemu.vcpu.0 * 10.0).round() / 10.0, "vcpu_waited_s": (qemu.vcpu.1 * 10.0).round() / 10.0}),
    );
    if let Some(dir) = &opts.capture {
        copy_captures(opts, &share, dir)?;
    }
    // As the host lab: the logs of a passing run go (MIP4_LAB_KEEP=1
    // keeps them), those of a failed or killed one stay.
    let keep = std::env::var_os("MIP4_LAB_KEEP").is_some_and(|v| v == "1");
    if !keep
        && outcomes
            .as_ref()
            .is_ok_and(|o| o.iter().all(Outcome::passed))
    {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    outcomes
}

/// The pcaps the guest wrote into each scenario's logs (`capture/`), to
/// `dir/NAME/`.
fn copy_captures(opts: &VmOptions, share: &Path, dir: &Path) -> Result<()> {
    for name in &opts.scenarios {
        let from = share.join("logs").join(name).join("capture");
        let to = dir.join(name);
        mkdir(&to)?;
        for entry in std::fs::read_dir(&from).into_iter().flatten().flatten() {
            let target = to.join(entry.file_name());
            std::fs::copy(entry.path(), &target).map_err(|source| Error::Io {
                path: target.display().to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

/// The host's side of the tier: root (9p passthrough, chroot), QEMU and
/// qboot, and the image tools. Each missing piece names its fix.
pub fn preflight() -> Result<()> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root privileges (9p passthrough, chroot)".to_string());
    }
    let qemu = qemu();
    if !super::scenario::have(&qemu) {
        missing.push(format!("QEMU ({qemu} from qemu-system-x86)"));
    }
    for (path, what) in [
        (QBOOT, "qboot (qemu-system-x86)"),
        ("/usr/sbin/debootstrap", "debootstrap"),
        ("/bin/busybox", "busybox (busybox-static)"),
        ("/usr/bin/xz", "xz (xz-utils)"),
    ] {
        if !Path::new(path).exists() {
            missing.push(format!("{what}: {path} not found"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "the kernel tier cannot run here, missing: {}; run scripts/install-deps.sh",
            missing.join("; ")
        )))
    }
}

/// A CPU model QEMU does not know fails before the image step, named.
fn check_cpu(model: &str) -> Result<()> {
    let help = Command::new(qemu())
        .args(["-cpu", "help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            cmd: format!("{} -cpu help", qemu()),
            source,
        })?;
    match cpu_known(&String::from_utf8_lossy(&help.stdout), model) {
        true => Ok(()),
        false => Err(Error::Other(format!(
            "QEMU has no CPU model `{model}` (MIP4_VM_CPU): `{} -cpu help` lists them",
            qemu()
        ))),
    }
}

/// Whether `-cpu help`'s list has the model (its name before any
/// `,+feature`).
fn cpu_known(help: &str, model: &str) -> bool {
    let name = model.split(',').next().unwrap_or_default();
    help.lines()
        .filter_map(|l| l.strip_prefix("x86 ")?.split_whitespace().next())
        .any(|n| n == name)
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|source| Error::Io {
        path: p.display().to_string(),
        source,
    })
}

fn write(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).map_err(|source| Error::Io {
        path: p.display().to_string(),
        source,
    })
}

/// The guest roots are big (~200 MB each): gone after the run, whatever
/// happened; the logs in `share/` stay.
struct RootGuard(PathBuf);

impl Drop for RootGuard {
    fn drop(&mut self) {
        for r in ["root", "root-libreswan"] {
            let _ = std::fs::remove_dir_all(self.0.join(r));
        }
    }
}

/// `scripts/vm/image.sh root CACHE RUN [libreswan]`: its progress and
/// errors go to our stderr; a failure is the run's error.
fn image(opts: &VmOptions, run_dir: &Path) -> Result<()> {
    let script = opts.project.join("scripts/vm/image.sh");
    let mut cmd = Command::new(&script);
    let (verb, rest) = match &opts.job {
        Some(job) => (job.image[0].as_str(), &job.image[1..]),
        None => ("root", &[][..]),
    };
    cmd.arg(verb).arg(&opts.cache).arg(run_dir).args(rest);
    if opts.gateway == Gateway::Libreswan {
        cmd.arg("libreswan");
    }
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|source| Error::Spawn {
            cmd: script.display().to_string(),
            source,
        })?;
    if !status.success() {
        return Err(Error::Other(format!(
            "the guest image was not made ({} {status}); its message is above",
            script.display()
        )));
    }
    Ok(())
}

/// The host folders the guest mounts at the same paths, read-only.
fn shared_folders(opts: &VmOptions) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in [&opts.project, &opts.lab_dir, &opts.bin_dir] {
        let p = p.canonicalize().unwrap_or_else(|_| p.clone());
        if !out.iter().any(|o| p.starts_with(o)) {
            out.retain(|o| !o.starts_with(&p));
            out.push(p);
        }
    }
    out
}

/// The run share: `mounts` (tag and path of each shared folder) and
/// `script.sh`, which runs each scenario with the guest's mip4-lab and
/// leaves `NAME.jsonl`, `NAME.stderr`, `NAME.rc` and `logs/NAME/`.
fn write_share(opts: &VmOptions, share: &Path) -> Result<()> {
    let mut mounts: String = shared_folders(opts)
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i} {}\n", p.display()))
        .collect();
    if opts.gateway == Gateway::Libreswan {
        // pluto writes into its root (its config, NSS): read-write.
        mounts.push_str(&format!("lsw {LIBRESWAN_MOUNT} rw\n"));
    }
    write(&share.join("mounts"), &mounts)?;
    if let Some(job) = &opts.job {
        return write(&share.join("script.sh"), &job.script);
    }
    let mut lab = format!(
        "{} --lab-dir {}",
        opts.bin_dir.join("mip4-lab").display(),
        opts.lab_dir.display()
    );
    for p in &opts.charon_plugins {
        lab.push_str(&format!(" --charon-plugin {p}"));
    }
    let mut run_args = match opts.gateway {
        Gateway::StrongSwan => "",
        Gateway::Libreswan => " --gateway libreswan",
    }
    .to_string();
    if opts.capture.is_some() {
        // Into the scenario's folder, which the logs' tar brings home.
        run_args.push_str(" --capture $TMPDIR/capture");
    }
    let mut script = String::from(
        "# Written by mip4-lab --vm: the scenarios, one after another.\n\
         set -u\n\
         # TCG is several times slower than the host: the lab's waits allow for it.\n\
         export MIP4_LAB_TIMEOUT_SCALE=4 MIP4_LAB_KEEP=1 TMPDIR=/tmp/lab\n\
         # Modules first: their load time stays out of the measured figures.\n\
         modprobe -a -q esp4 xfrm_user xfrm4_tunnel ipip sch_netem sch_prio cls_u32 veth tun overlay gcm ghash-generic nf_tables\n\
         # AES-NI's and PCLMULQDQ's drivers, which a distribution's udev loads\n\
         # from the CPU's modalias (the guest runs no udev): without them the\n\
         # kernel's ESP stays on the generic AES even on a CPU that has it.\n\
         # On a CPU without those instructions they do not load.\n\
         modprobe -a -q aesni_intel ghash-clmulni-intel 2>/dev/null\n\
         echo \"mip4-vm: modules $(cut -d' ' -f1 /proc/modules | tr '\\n' ' ')\"\n\
         # The guest's clock and CPUs: a TSC found unstable (more than one\n\
         # vCPU under TCG) makes every clock read an emulated device's.\n\
         echo \"mip4-vm: cpus $(nproc) clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\" >/dev/console\n\
         # The CPU model's features that change the guest's code paths\n\
         # (crypto, string copies, page tables, the TSC), and Meltdown's page\n\
         # table isolation (under TCG a TLB flush at every kernel entry).\n\
         echo \"mip4-vm: cpu $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\\n' | grep -x -E 'aes|pclmulqdq|sse4_2|avx|avx2|erms|smap|la57|constant_tsc|nonstop_tsc' | tr '\\n' ' ')meltdown: $(cat /sys/devices/system/cpu/vulnerabilities/meltdown)\" >/dev/console\n",
    );
    if opts.gateway == Gateway::Libreswan {
        script.push_str(&format!(
            "export MIP4_LAB_LIBRESWAN_ROOT={LIBRESWAN_MOUNT}\n"
        ));
    }
    if opts.smp > 1 && opts.pin {
        script.push_str(&format!(
            "# Two machines: the MN on one vCPU, the rest on another.\n\
             export {}=1\n",
            super::machines::PIN_VAR
        ));
    }
    for name in &opts.scenarios {
        let args = match &opts.guest_args {
            Some(args) => args.clone(),
            None => format!("run {name} --json{run_args}"),
        };
        script.push_str(&format!(
            "mkdir -p $TMPDIR\n\
             echo \"mip4-vm: {name} start\" >/dev/console\n\
             {lab} {args} >/mnt/run/{name}.jsonl.part 2>/mnt/run/{name}.stderr\n\
             rc=$?\n\
             mv /mnt/run/{name}.jsonl.part /mnt/run/{name}.jsonl\n\
             mkdir -p /mnt/run/logs/{name}\n\
             tar -C $TMPDIR --exclude=plugins -cf - . 2>/dev/null | tar -C /mnt/run/logs/{name} -xf -\n\
             rm -rf $TMPDIR\n\
             echo $rc >/mnt/run/{name}.rc.part\n\
             mv /mnt/run/{name}.rc.part /mnt/run/{name}.rc\n\
             echo \"mip4-vm: {name} exit $rc\" >/dev/console\n"
        ));
    }
    // What the scenarios' ESP SAs ran on (AES-NI or the generic code).
    script.push_str(
        "echo \"mip4-vm: crypto $(awk -v OFS== '/^name/ {n = $3} /^driver/ && n ~ /aes|gcm|ghash/ {print n, $3}' /proc/crypto | sort -u | tr '\\n' ' ')\" >/dev/console\n",
    );
    write(&share.join("script.sh"), &script)
}

/// QEMU's accelerator and CPUs: one vCPU under TCG, or N > 1 vCPUs
/// under multi-threaded TCG, one host thread each. Measured on 2 shared
/// cores (lab/README.md, kernel tier): two vCPUs did not make a loaded
/// scenario run faster, so one stays the scenarios' default.
fn accel_args(smp: u32) -> Vec<String> {
    match smp {
        n if n > 1 => vec![
            "-accel".into(),
            "tcg,thread=multi".into(),
            "-smp".into(),
            n.to_string(),
        ],
        _ => ["-accel", "tcg", "-smp", "1"].map(String::from).to_vec(),
    }
}

/// The guest kernel's command line. With more than one vCPU, `tsc=reliable`:
/// TCG's default CPU (qemu64) says AMD and has no constant-TSC flag, so
/// Linux takes the TSCs of more than one CPU for unsynchronised and falls
/// back to the HPET, an emulated device: every clock read (charon's,
/// ping's, the heartbeat's every 2 ms) is then an MMIO exit that takes
/// QEMU's global lock, which serialises the vCPUs. TCG's TSC comes from the
/// host's monotonic clock, the same for every vCPU, and the laptops and
/// gateways the tier models have a reliable TSC.
///
/// Without `aslr` (`MIP4_VM_ASLR=0`), `norandmaps`: QEMU 7.2's TCG keys
/// a translated block by its guest virtual address, so under
/// randomisation every new process (each `ip`, `swanctl`, each round's
/// fresh charon) translates its libraries again; a handover bench boot
/// generated 1.2-1.3 GB of code and flushed the whole 1 GiB cache once
/// mid-run (162 MB and no flush without). In one quiet pair of bench
/// boots it made stock's moves faster and mip4's no faster
/// (lab/README.md, the kernel tier), so the guest keeps randomisation,
/// as a deployed machine does, unless asked.
fn kernel_args(smp: u32, aslr: bool) -> String {
    let mut args = "console=ttyS0 quiet loglevel=3 panic=-1".to_string();
    if smp > 1 {
        args.push_str(" tsc=reliable");
    }
    if !aslr {
        args.push_str(" norandmaps");
    }
    args
}

/// A running QEMU; killed when dropped.
struct Guest {
    child: Child,
    /// Its vCPU threads (under TCG), last read: seconds on a host CPU
    /// and seconds runnable but waiting for one (schedstat), summed. The
    /// second is time a vCPU stood still while the guest's clock ran on.
    vcpu: (f64, f64),
}

/// `/proc/PID/task/*/schedstat` of QEMU's vCPU threads (named
/// "CPU N/TCG", or "ALL CPUs/TCG" with one thread for all), summed:
/// (seconds run, seconds waited on a run queue); without named threads,
/// the one with the most CPU time.
fn vcpu_threads(pid: u32) -> Option<(f64, f64)> {
    let threads: Vec<(bool, (f64, f64))> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|t| {
            let text = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let mut w = text.split_whitespace().map(|n| n.parse::<f64>().ok());
            Some((comm.contains("/TCG"), (w.next()?? / 1e9, w.next()?? / 1e9)))
        })
        .collect();
    let vcpus: Vec<(f64, f64)> = threads.iter().filter(|t| t.0).map(|t| t.1).collect();
    match vcpus.is_empty() {
        false => Some(vcpus.iter().fold((0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1))),
        true => threads
            .into_iter()
            .map(|t| t.1)
            .max_by(|a, b| a.0.total_cmp(&b.0)),
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guest {
    fn boot(opts: &VmOptions, run_dir: &Path, console: &Path) -> Result<Guest> {
        let log = std::fs::File::create(console).map_err(|source| Error::Io {
            path: console.display().to_string(),
            source,
        })?;
        let err = log.try_clone().map_err(|source| Error::Io {
            path: console.display().to_string(),
            source,
        })?;
        let virtfs = |path: &Path, tag: &str, ro: bool| {
            format!(
                "local,path={},mount_tag={tag},security_model=passthrough,id={tag}{}",
                path.display(),
                if ro { ",readonly=on" } else { "" }
            )
        };
        let mut cmd = Command::new(qemu());
        // TCG: KVM on these machines cannot boot Debian's kernel.
        cmd.args(["-m", "1024"])
            .args(accel_args(opts.smp))
            .args(["-cpu", &opts.cpu])
            // Named threads ("CPU 0/TCG"): the host's view sums the vCPUs'.
            .args(["-name", "mip4-vm,debug-threads=on"])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .args(["-bios", QBOOT])
            .arg("-kernel")
            .arg(run_dir.join("vmlinux"))
            .arg("-initrd")
            .arg(run_dir.join("initramfs.gz"))
            .arg("-append")
            .arg(kernel_args(opts.smp, opts.aslr))
            .arg("-virtfs")
            .arg(virtfs(&run_dir.join("root"), "root", false))
            .arg("-virtfs")
            .arg(virtfs(&run_dir.join("share"), "run", false));
        for (i, p) in shared_folders(opts).iter().enumerate() {
            cmd.arg("-virtfs").arg(virtfs(p, &format!("m{i}"), true));
        }
        if opts.gateway == Gateway::Libreswan {
            cmd.arg("-virtfs")
                .arg(virtfs(&run_dir.join("root-libreswan"), "lsw", false));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn {
                cmd: qemu(),
                source,
            })?;
        Ok(Guest {
            child,
            vcpu: (0.0, 0.0),
        })
    }

    /// Follows the guest until it powers off: prints each scenario's lines
    /// as they come, kills it when it does not boot or a scenario hangs.
    fn follow(
        &mut self,
        opts: &VmOptions,
        share: &Path,
        console: &Path,
        on_line: &mut dyn FnMut(&serde_json::Value),
    ) -> Result<Vec<Outcome>> {
        let start = Instant::now();
        let mut booted = None;
        let mut outcomes = Vec::new();
        let mut tails: BTreeMap<String, u64> = BTreeMap::new();
        let mut current = 0usize;
        let mut since = Instant::now();
        loop {
            let text = std::fs::read_to_string(console).unwrap_or_default();
            if booted.is_none() && text.contains("mip4-vm: kernel") {
                booted = Some(start.elapsed());
                on_line(&serde_json::json!({"type": "vm", "event": "booted",
                    "boot_s": (start.elapsed().as_secs_f64() * 10.0).round() / 10.0, "cpu": opts.cpu,
                    "kernel": text.split("mip4-vm: kernel ").nth(1).and_then(|t| t.split_whitespace().next())}));
                since = Instant::now();
            }
            // The scenario now running: stream its lines.
            while let Some(name) = opts.scenarios.get(current) {
                let part = share.join(format!("{name}.jsonl.part"));
                let done = share.join(format!("{name}.jsonl"));
                let finished = done.exists();
                let file = if finished { &done } else { &part };
                let off = tails.entry(name.clone()).or_default();
                let (lines, new_off) = read_lines(file, *off);
                *off = new_off;
                let mut summary = None;
                for l in lines {
                    let v: serde_json::Value = serde_json::from_str(&l)
                        .unwrap_or_else(|_| serde_json::json!({"type": "guest", "line": l}));
                    if v["type"] == "summary" {
                        summary = Some(v.clone());
                    }
                    on_line(&v);
                }
                if let Some(s) = summary {
                    outcomes.push(Outcome {
                        scenario: name.clone(),
                        status: -1,
                        summary: Some(s),
                    });
                }
                // The guest writes the status to `NAME.rc.part` and renames
                // it, so a status file seen here is complete (read while it
                // was being written, an empty one made a passing scenario
                // count as failed). The jsonl rename comes before the
                // status: once both are there and the lines were read from
                // the renamed file, all were.
                let rc = std::fs::read_to_string(share.join(format!("{name}.rc")));
                let Ok(rc) = rc else { break };
                if !finished {
                    break;
                }
                let status = rc.trim().parse().unwrap_or(-1);
                match outcomes.iter_mut().find(|o| &o.scenario == name) {
                    Some(o) => o.status = status,
                    None => outcomes.push(Outcome {
                        scenario: name.clone(),
                        status,
                        summary: None,
                    }),
                }
                current += 1;
                since = Instant::now();
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            let killed = |what: String| {
                Error::Other(format!(
                    "{what}: QEMU killed; console log {} (and the guest's own output in {})",
                    console.display(),
                    share.join("logs").display()
                ))
            };
            if booted.is_none() && start.elapsed() > opts.boot_timeout {
                let _ = self.child.kill();
                return Err(killed(format!(
                    "the guest never booted within {:?} (no `mip4-vm: kernel` line on its console)",
                    opts.boot_timeout
                )));
            }
            if booted.is_some() && since.elapsed() > opts.scenario_timeout {
                let _ = self.child.kill();
                let what = match opts.scenarios.get(current) {
                    Some(n) => format!(
                        "scenario `{n}` did not end within {:?}",
                        opts.scenario_timeout
                    ),
                    None => "the guest did not power off after the last scenario".to_string(),
                };
                return Err(killed(format!("the guest hung: {what}")));
            }
            // CPU time only grows: less than before means the vCPU
            // thread is gone (QEMU exiting), keep its last reading.
            if let Some(v) = vcpu_threads(self.child.id()).filter(|v| v.0 >= self.vcpu.0) {
                self.vcpu = v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if current < opts.scenarios.len() {
            let name = &opts.scenarios[current];
            let tail =
                std::fs::read_to_string(share.join(format!("{name}.stderr"))).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(Error::Other(format!(
                "the guest powered off during scenario `{name}` (console log {}){}",
                console.display(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; its last words: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    )
                }
            )));
        }
        Ok(outcomes)
    }
}

/// Whole lines of `path` from byte `off` on, and the offset after them.
fn read_lines(path: &Path, off: u64) -> (Vec<String>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), off);
    };
    let mut buf = String::new();
    if f.seek(SeekFrom::Start(off)).is_err() || f.read_to_string(&mut buf).is_err() {
        return (Vec::new(), off);
    }
    let Some(end) = buf.rfind('\n') else {
        return (Vec::new(), off);
    };
    let lines = buf[..end].lines().map(str::to_string).collect();
    (lines, off + end as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_lines_keeps_a_partial_line_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"b\"").unwrap();
        let (lines, off) = read_lines(&p, 0);
        assert_eq!(lines, vec!["{\"a\":1}"]);
        std::fs::write(&p, "{\"a\":1}\n{\"b\":2}\n").unwrap();
        let (lines, _) = read_lines(&p, off);
        assert_eq!(lines, vec!["{\"b\":2}"]);
    }

    #[test]
    fn shared_folders_nest_into_one() {
        let mut o = VmOptions::new(
            Path::new("/p"),
            Path::new("/p/lab"),
            Path::new("/p/target/debug"),
            vec![],
        );
        assert_eq!(shared_folders(&o), vec![PathBuf::from("/p")]);
        o.bin_dir = PathBuf::from("/t/debug");
        assert_eq!(
            shared_folders(&o),
            vec![PathBuf::from("/p"), PathBuf::from("/t/debug")]
        );
    }

    #[test]
    fn captures_are_taken_in_the_guest_and_brought_home() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        mkdir(&share).unwrap();
        let mut o = VmOptions::new(
            Path::new("/p"),
            Path::new("/p/lab"),
            Path::new("/p/target/debug"),
            vec!["untrusted-move".into()],
        );
        o.gateway = Gateway::Libreswan;
        o.capture = Some(dir.path().join("pcaps"));
        write_share(&o, &share).unwrap();
        let script = std::fs::read_to_string(share.join("script.sh")).unwrap();
        assert!(script
            .contains("run untrusted-move --json --gateway libreswan --capture $TMPDIR/capture >"));
        // What the guest's tar of the work folder brought home.
        let got = share.join("logs/untrusted-move/capture");
        mkdir(&got).unwrap();
        write(&got.join("vpngw-eth-ext.pcap"), "pcap").unwrap();
        copy_captures(&o, &share, &dir.path().join("pcaps")).unwrap();
        let pcap = dir.path().join("pcaps/untrusted-move/vpngw-eth-ext.pcap");
        assert_eq!(std::fs::read_to_string(pcap).unwrap(), "pcap");
    }

    #[test]
    fn two_vcpus_make_the_guests_lab_two_machines() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = VmOptions::new(
            Path::new("/p"),
            Path::new("/p/lab"),
            Path::new("/p/target/debug"),
            vec!["untrusted-move".into()],
        );
        let pins = |o: &VmOptions| {
            write_share(o, dir.path()).unwrap();
            let script = std::fs::read_to_string(dir.path().join("script.sh")).unwrap();
            script.contains(&format!("export {}=1", super::super::machines::PIN_VAR))
        };
        (o.smp, o.pin) = (1, true);
        assert!(!pins(&o), "one vCPU: nothing to pin");
        o.smp = 2;
        assert!(pins(&o));
        o.pin = false;
        assert!(!pins(&o), "not pinned unless MIP4_VM_PIN=1");
    }

    #[test]
    fn more_vcpus_keep_the_tsc_as_the_clock() {
        assert!(!kernel_args(1, true).contains("tsc="));
        assert!(kernel_args(2, true).ends_with(" tsc=reliable"));
    }

    #[test]
    fn the_guest_runs_without_randomised_maps_only_when_asked() {
        assert!(kernel_args(1, false).ends_with(" norandmaps"));
        assert!(kernel_args(2, false).contains(" tsc=reliable"));
        assert!(!kernel_args(1, true).contains("norandmaps"));
    }

    #[test]
    fn one_vcpu_unless_more_are_asked_for() {
        assert_eq!(accel_args(1), ["-accel", "tcg", "-smp", "1"]);
        assert_eq!(accel_args(0), ["-accel", "tcg", "-smp", "1"]);
        assert_eq!(accel_args(2), ["-accel", "tcg,thread=multi", "-smp", "2"]);
    }

    #[test]
    fn the_cpu_model_is_the_default_unless_named() {
        assert_eq!(cpu_model(None), DEFAULT_CPU);
        assert_eq!(cpu_model(Some(" ".into())), DEFAULT_CPU);
        assert_eq!(cpu_model(Some("Haswell-noTSX".into())), "Haswell-noTSX");
    }

    #[test]
    fn a_cpu_model_is_known_by_its_name_in_qemus_list() {
        let help = "Available CPUs:\nx86 Haswell-noTSX         (alias of Haswell-v2)\n\
                    x86 max                   Enables all features\n\n\
                    Recognized CPUID flags:\n  3dnow aes\n";
        assert!(cpu_known(help, "max"));
        assert!(cpu_known(help, "Haswell-noTSX,+invtsc"));
        assert!(!cpu_known(help, "Haswell"));
        assert!(!cpu_known(help, "aes"));
    }

    #[test]
    fn the_guest_says_its_cpu_and_the_crypto_its_esp_ran_on() {
        let dir = tempfile::tempdir().unwrap();
        let o = VmOptions::new(
            Path::new("/p"),
            Path::new("/p/lab"),
            Path::new("/p/target/debug"),
            vec!["untrusted-move".into()],
        );
        write_share(&o, dir.path()).unwrap();
        let script = std::fs::read_to_string(dir.path().join("script.sh")).unwrap();
        assert!(script.contains("modprobe -a -q aesni_intel ghash-clmulni-intel"));
        assert!(script.contains("echo \"mip4-vm: cpu $(grep -m1 '^flags' /proc/cpuinfo"));
        // After the scenarios, whose SAs instantiated the ESP transforms.
        let crypto = script.find("mip4-vm: crypto").unwrap();
        assert!(crypto > script.find("mip4-vm: untrusted-move exit").unwrap());
    }

    #[test]
    fn gateway_names() {
        assert_eq!("libreswan".parse(), Ok(Gateway::Libreswan));
        assert!("openswan".parse::<Gateway>().is_err());
    }
}
