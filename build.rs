//! Builds the charon plugin's C shim and the Rust side of its C ABI.
//!
//! 1. bindgen turns `include/mip4.h` into `$OUT_DIR/mip4_abi.rs` (src/ffi).
//! 2. The shim (`strongswan-plugin/*.c`) is compiled against the headers of
//!    the installed strongSwan, fetched from its Debian source package by
//!    `scripts/fetch-strongswan-source.sh` (or `MIP4_STRONGSWAN_SRC`).
//!    strongSwan's headers need `-include config.h`, and some of its defines
//!    change struct and vtable layouts (`ME` adds mediation methods in the
//!    middle of `ike_sa_t` and members to the `charon` struct). So config.h
//!    is generated from the distribution's own configure arguments
//!    (`debian/rules`), mapped to defines the way strongSwan's configure.ac
//!    does, plus the libc `HAVE_*` the headers test, probed like configure.
//! 3. The shim is linked into the cdylib only (whole archive), so the
//!    daemons and tests (rlib, bins) never need strongSwan's symbols; those
//!    resolve when charon dlopen()s the plugin.
//!
//! 4. The ABI guard: a missing source tree, a missing `debian/rules` or
//!    headers of another upstream release than the installed charon's are
//!    build errors (Debian's revisions of one upstream release keep its
//!    ABI, so an older revision's source is fine). The headers' upstream
//!    version is embedded in the plugin (`MIP4_STRONGSWAN_VERSION`), which
//!    refuses to load into a charon of another version (src/ffi).
//!
//! `MIP4_WITHOUT_SHIM=1` builds the cdylib without the shim on purpose
//! (e.g. for the fuzzers on a machine without strongSwan): charon cannot
//! load that library.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=include/mip4.h");
    println!("cargo:rerun-if-changed=strongswan-plugin");
    println!("cargo:rerun-if-env-changed=MIP4_STRONGSWAN_SRC");
    println!("cargo:rustc-check-cfg=cfg(mip4_shim)");

    println!("cargo:rerun-if-env-changed=MIP4_WITHOUT_SHIM");
    println!("cargo:rerun-if-env-changed=MIP4_CHARON_VERSION");

    // The binaries' relative relocations packed (DT_RELR, glibc >= 2.36,
    // Debian 12): a PIE's table of them was 280 KB of mip4d's file, read
    // by the dynamic loader at every start, in 2 KB (issue 14 §5).
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");

    generate_abi(&out);

    if env::var_os("MIP4_WITHOUT_SHIM").is_some_and(|v| v == "1") {
        println!(
            "cargo:warning=MIP4_WITHOUT_SHIM=1: libmip4.so is built WITHOUT the charon shim \
             and cannot be loaded by charon"
        );
        return;
    }
    let installed = installed_charon_version().unwrap_or_else(|e| fail(&e));
    let src = find_strongswan_source(&installed).unwrap_or_else(|e| fail(&e));
    let headers = headers_version(&src).unwrap_or_else(|e| fail(&e));
    if headers != installed {
        fail(&format!(
            "the strongSwan source in {} is upstream {headers}, the installed charon is \
             {installed}: a shim built against other headers would misread charon's \
             structs (run scripts/fetch-strongswan-source.sh)",
            src.display()
        ));
    }
    println!("cargo:rustc-env=MIP4_STRONGSWAN_VERSION={headers}");
    build_shim(&src, &out);
}

/// Ends the build with an error that says what to do.
fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    eprintln!(
        "(set MIP4_WITHOUT_SHIM=1 to build a libmip4.so that charon cannot load, e.g. for \
         the fuzzers)"
    );
    std::process::exit(1);
}

/// Upstream part of a Debian version: `1:5.9.8-5+deb12u6` -> `5.9.8`.
fn upstream(debian_version: &str) -> &str {
    let v = debian_version.trim();
    let v = v.split_once(':').map_or(v, |(_, v)| v);
    v.rsplit_once('-').map_or(v, |(u, _)| u)
}

/// The installed charon's upstream version: `MIP4_CHARON_VERSION`, else
/// what dpkg says of libstrongswan (charon's own library).
fn installed_charon_version() -> Result<String, String> {
    if let Ok(v) = env::var("MIP4_CHARON_VERSION") {
        return Ok(upstream(&v).to_string());
    }
    println!("cargo:rerun-if-changed=/var/lib/dpkg/status");
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "libstrongswan"])
        .output()
        .map_err(|e| format!("dpkg-query: {e}; set MIP4_CHARON_VERSION to charon's version"))?;
    let v = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || v.trim().is_empty() {
        return Err(
            "libstrongswan is not installed (scripts/install-deps.sh), or set \
             MIP4_CHARON_VERSION to the version of the charon the plugin is for"
                .into(),
        );
    }
    Ok(upstream(&v).to_string())
}

/// The upstream version of a strongSwan source tree, from configure.ac's
/// `AC_INIT([strongSwan],[X])`.
fn headers_version(src: &Path) -> Result<String, String> {
    let path = src.join("configure.ac");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("AC_INIT([strongSwan],["))
        .and_then(|rest| rest.split(']').next())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no AC_INIT([strongSwan],[...])", path.display()))
}

/// The Rust side of include/mip4.h.
fn generate_abi(out: &Path) {
    bindgen::Builder::default()
        .header("include/mip4.h")
        .allowlist_type("mip4_.*")
        .allowlist_function("mip4_.*")
        .allowlist_var("MIP4_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen: include/mip4.h")
        .write_to_file(out.join("mip4_abi.rs"))
        .expect("write mip4_abi.rs");
}

/// `MIP4_STRONGSWAN_SRC`, else `build/strongswan-src/strongswan-VERSION`
/// (what scripts/fetch-strongswan-source.sh unpacks) for the installed
/// upstream version: never another release's tree.
fn find_strongswan_source(version: &str) -> Result<PathBuf, String> {
    let ok = |p: &Path| p.join("src/libcharon/sa/ike_sa.h").is_file();
    let dir = match env::var_os("MIP4_STRONGSWAN_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let base = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("no manifest dir")?)
                .join("build/strongswan-src");
            println!("cargo:rerun-if-changed={}", base.display());
            base.join(format!("strongswan-{version}"))
        }
    };
    if !ok(&dir) {
        return Err(format!(
            "no strongSwan {version} headers in {} (no src/libcharon/sa/ike_sa.h): run \
             scripts/fetch-strongswan-source.sh or set MIP4_STRONGSWAN_SRC",
            dir.display()
        ));
    }
    Ok(dir)
}

fn build_shim(src: &Path, out: &Path) {
    let rules = src.join("debian/rules");
    println!("cargo:rerun-if-changed={}", rules.display());
    // Without the distribution's configure arguments the ABI defines
    // (ME above all) are a guess, and a guess misreads vtables.
    let args = match fs::read_to_string(&rules) {
        Ok(text) => configure_args(&text, &deb_host_vars()),
        Err(e) => fail(&format!(
            "{}: {e}: the distribution's configure arguments decide charon's struct \
             layouts; fetch the Debian source package (scripts/fetch-strongswan-source.sh)",
            rules.display()
        )),
    };
    let mut config = String::from(
        "/* Generated by mip4-mobike's build.rs: the ABI-relevant defines of the\n \
         * distribution's strongSwan build (debian/rules configure arguments,\n \
         * mapped as strongSwan's configure.ac does) and probed libc features. */\n\
         #ifndef MIP4_CONFIG_H\n#define MIP4_CONFIG_H\n#define CONFIG_H_INCLUDED\n",
    );
    for (define, why) in abi_defines(&args) {
        let _ = writeln!(config, "#define {define} /* {why} */");
    }
    let build = shim_build(src, out);
    for (define, found) in probe_libc(&build, out) {
        if found {
            let _ = writeln!(config, "#define {define}");
        } else {
            let _ = writeln!(config, "/* #undef {define} */");
        }
    }
    config.push_str("#endif\n");
    let config_h = out.join("config.h");
    fs::write(&config_h, config).expect("write config.h");

    let mut build = shim_build(src, out);
    build
        .flag("-include")
        .flag(config_h.to_str().expect("utf-8 OUT_DIR"))
        .cargo_metadata(false);
    for entry in fs::read_dir("strongswan-plugin").expect("strongswan-plugin/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "c") {
            build.file(path);
        }
    }
    build.compile("mip4_shim");

    // Only the cdylib (the plugin) carries the shim; whole-archive keeps
    // every object although nothing in Rust references mip4_shim_* but the
    // constructor.
    println!("cargo:rustc-link-arg-cdylib=-L{}", out.display());
    println!("cargo:rustc-link-arg-cdylib=-Wl,--whole-archive");
    println!("cargo:rustc-link-arg-cdylib=-lmip4_shim");
    println!("cargo:rustc-link-arg-cdylib=-Wl,--no-whole-archive");
    println!("cargo:rustc-cfg=mip4_shim");
}

/// A cc build with the strongSwan include paths.
fn shim_build(src: &Path, out: &Path) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .include(out)
        .include("include")
        .include("strongswan-plugin")
        .include(src.join("src/libstrongswan"))
        .include(src.join("src/libcharon"))
        .warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .flag_if_supported("-Wno-sign-compare")
        .flag_if_supported("-Wno-pointer-sign");
    build
}

/// `DEB_HOST_ARCH_OS` and `DEB_HOST_ARCH_CPU` of the cargo target, for the
/// conditionals in debian/rules.
fn deb_host_vars() -> BTreeMap<&'static str, String> {
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let cpu = match arch.as_str() {
        "x86_64" => "amd64",
        "x86" => "i386",
        "aarch64" => "arm64",
        other => other,
    };
    BTreeMap::from([
        ("DEB_HOST_ARCH_OS", os),
        ("DEB_HOST_ARCH_CPU", cpu.to_string()),
    ])
}

/// The `--enable-*`, `--disable-*` and `--with-*` arguments that
/// debian/rules adds to `CONFIGUREARGS`, honouring its
/// `ifeq ($(DEB_HOST_ARCH_*),...)` blocks for this target. Conditions on
/// other variables count as false.
fn configure_args(rules: &str, vars: &BTreeMap<&'static str, String>) -> Vec<String> {
    // make: backslash-newline joins lines, then '#' starts a comment.
    let joined = rules.replace("\\\n", " ");
    let mut stack: Vec<bool> = Vec::new();
    let mut args = Vec::new();
    for line in joined.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(cond) = line
            .strip_prefix("ifeq")
            .map(|c| (c, true))
            .or_else(|| line.strip_prefix("ifneq").map(|c| (c, false)))
        {
            let (expr, want_eq) = cond;
            stack.push(eval_ifeq(expr.trim(), vars) == want_eq);
            continue;
        }
        if line == "else" {
            if let Some(top) = stack.last_mut() {
                *top = !*top;
            }
            continue;
        }
        if line == "endif" {
            stack.pop();
            continue;
        }
        if line.starts_with("ifdef") || line.starts_with("ifndef") {
            stack.push(false);
            continue;
        }
        if !stack.iter().all(|&b| b) || !line.starts_with("CONFIGUREARGS") {
            continue;
        }
        args.extend(
            line.split_whitespace()
                .filter(|t| {
                    t.starts_with("--enable-")
                        || t.starts_with("--disable-")
                        || t.starts_with("--with-")
                })
                .map(str::to_string),
        );
    }
    args
}

/// `($(VAR),value)` -> whether they are equal (unknown VAR: never).
fn eval_ifeq(expr: &str, vars: &BTreeMap<&'static str, String>) -> bool {
    let inner = expr.trim_start_matches('(').trim_end_matches(')');
    let Some((lhs, rhs)) = inner.split_once(',') else {
        return false;
    };
    let var = lhs.trim().trim_start_matches("$(").trim_end_matches(')');
    vars.get(var).is_some_and(|v| v == rhs.trim())
}

/// configure.ac's "set global definitions" for the given arguments, each
/// with the argument that causes it. These are the defines strongSwan puts
/// in config.h that its installed headers test; everything else an
/// --enable-X selects is a plugin, not a layout.
fn abi_defines(args: &[String]) -> Vec<(&'static str, String)> {
    let has = |a: &str| args.iter().any(|x| x == a);
    let with = |k: &str| {
        args.iter()
            .find_map(|x| x.strip_prefix(&format!("--with-{k}=")).map(str::to_string))
    };
    let mut defs = Vec::new();
    // medsrv and medcli imply mediation (configure.ac).
    for a in ["--enable-mediation", "--enable-medsrv", "--enable-medcli"] {
        if has(a) {
            defs.push((
                "ME",
                format!("{a}: IKEv2 mediation, changes ike_sa_t and charon layout"),
            ));
            break;
        }
    }
    // IKEv1 and IKEv2 are on unless disabled.
    if !has("--disable-ikev1") {
        defs.push(("USE_IKEV1", "IKEv1 not disabled".to_string()));
    }
    if !has("--disable-ikev2") {
        defs.push(("USE_IKEV2", "IKEv2 not disabled".to_string()));
    }
    match with("capabilities").as_deref() {
        Some("libcap") => {
            defs.push(("CAPABILITIES", "--with-capabilities=libcap".to_string()));
            defs.push((
                "CAPABILITIES_LIBCAP",
                "--with-capabilities=libcap".to_string(),
            ));
        }
        Some("native") => {
            defs.push(("CAPABILITIES", "--with-capabilities=native".to_string()));
            defs.push((
                "CAPABILITIES_NATIVE",
                "--with-capabilities=native".to_string(),
            ));
        }
        _ => {}
    }
    let flags: [(&str, &'static str); 3] = [
        ("--enable-log-thread-ids", "USE_THREAD_IDS"),
        ("--enable-monolithic", "MONOLITHIC"),
        ("--enable-fuzzing", "USE_FUZZING"),
    ];
    for (arg, define) in flags {
        if has(arg) {
            defs.push((define, arg.to_string()));
        }
    }
    if has("--enable-imc-swima") || has("--enable-imv-swima") {
        defs.push(("USE_JSON", "--enable-im[cv]-swima".to_string()));
    }
    defs
}

/// Probes the libc features strongSwan's headers test, as configure does:
/// a program that must compile and link.
fn probe_libc(build: &cc::Build, out: &Path) -> Vec<(&'static str, bool)> {
    const PROBES: &[(&str, &str)] = &[
        ("HAVE_STDBOOL_H", "#include <stdbool.h>\nint main(void){bool b=true;return !b;}"),
        ("HAVE__BOOL", "int main(void){_Bool b=1;return !b;}"),
        ("HAVE_ALLOCA_H", "#include <alloca.h>\nint main(void){char *p=alloca(2);return p==0;}"),
        ("HAVE_SYS_PARAM_H", "#include <sys/param.h>\nint main(void){return 0;}"),
        ("HAVE_INT128", "int main(void){__int128 x=1;return (int)(x-1);}"),
        (
            "HAVE_CLOCK_GETTIME",
            "#include <time.h>\nint main(void){struct timespec t;return clock_gettime(CLOCK_MONOTONIC,&t);}",
        ),
        (
            "HAVE_CONDATTR_CLOCK_MONOTONIC",
            "#include <pthread.h>\n#include <time.h>\nint main(void){pthread_condattr_t a;\
             pthread_condattr_init(&a);return pthread_condattr_setclock(&a,CLOCK_MONOTONIC);}",
        ),
        (
            "HAVE_GCC_ATOMIC_OPERATIONS",
            "int main(void){int x=0;__atomic_add_fetch(&x,1,__ATOMIC_RELAXED);\
             return __atomic_load_n(&x,__ATOMIC_RELAXED)-1;}",
        ),
        ("HAVE_GCC_SYNC_OPERATIONS", "int main(void){int x=0;return __sync_add_and_fetch(&x,1)-1;}"),
        ("HAVE_SIGWAITINFO", "char sigwaitinfo(void);\nint main(void){return sigwaitinfo();}"),
        ("HAVE_CLOSEFROM", "char closefrom(void);\nint main(void){return closefrom();}"),
        ("HAVE_EXPLICIT_BZERO", "char explicit_bzero(void);\nint main(void){return explicit_bzero();}"),
        ("HAVE_MEMRCHR", "char memrchr(void);\nint main(void){return memrchr();}"),
        ("HAVE_FMEMOPEN", "char fmemopen(void);\nint main(void){return fmemopen();}"),
        ("HAVE_SYS_CAPABILITY_H", "#include <sys/capability.h>\nint main(void){return 0;}"),
    ];
    let compiler = build.get_compiler();
    let dir = out.join("probes");
    fs::create_dir_all(&dir).expect("probe dir");
    PROBES
        .iter()
        .map(|(define, code)| {
            let c = dir.join(format!("{define}.c"));
            fs::write(&c, code).expect("write probe");
            let found = Command::new(compiler.path())
                .arg(&c)
                .arg("-o")
                .arg(dir.join(define))
                .arg("-pthread")
                .output()
                .is_ok_and(|o| o.status.success());
            (*define, found)
        })
        .collect()
}
