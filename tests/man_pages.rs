//! The man pages in man/ are generated, and this test keeps them true:
//! sections 1 and 8 from each binary's clap definition (the very structs its
//! `--help` comes from, included here from src/bin/), section 5 from the
//! commented example of each config file (packaging/*.conf.example, the
//! file installed as the default config and loaded by the config tests).
//! A page that differs from what the sources give fails the test;
//! `MIP4_WRITE_MAN=1 cargo test --test man_pages` (`make man`) rewrites
//! them. Committed rather than built: install.sh and the .debs install
//! them without running cargo, and a reviewer sees a changed page.

// The binaries' sources, for their `Args`/`Cli` (their mains are unused).
#[allow(dead_code)]
#[path = "../src/bin/mip4-fa.rs"]
mod mip4_fa;
#[allow(dead_code)]
#[path = "../src/bin/mip4-ha.rs"]
mod mip4_ha;
#[allow(dead_code)]
#[path = "../src/bin/mip4-lab.rs"]
mod mip4_lab;
#[allow(dead_code)]
#[path = "../src/bin/mip4ctl.rs"]
mod mip4ctl;
#[allow(dead_code)]
#[path = "../src/bin/mip4d.rs"]
mod mip4d;

use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

/// One page rendered from a clap command, in `section`.
fn render(cmd: clap::Command, section: &str) -> String {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .source(format!("mip4-mobike {}", env!("CARGO_PKG_VERSION")))
        .manual("mip4-mobike")
        .render(&mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// Section 8 for the daemons (/usr/sbin), 1 for the tools, and each
/// mip4ctl command on its own page.
fn commands() -> Vec<(String, String)> {
    let mut pages = vec![
        ("mip4d.8".to_string(), render(mip4d::Args::command(), "8")),
        (
            "mip4-ha.8".to_string(),
            render(mip4_ha::Args::command(), "8"),
        ),
        (
            "mip4-fa.8".to_string(),
            render(mip4_fa::Args::command(), "8"),
        ),
        // The lab's default folder is the build tree's: not for a page.
        (
            "mip4-lab.1".to_string(),
            render(
                mip4_lab::Cli::command().mut_arg("lab_dir", |a| a.hide_default_value(true)),
                "1",
            ),
        ),
    ];
    let ctl = mip4ctl::Args::command();
    pages.push(("mip4ctl.1".to_string(), render(ctl.clone(), "1")));
    for sub in ctl.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("mip4ctl-{}", sub.get_name());
        // clap takes a &'static name (no `string` feature): one per page.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let sub = sub
            .clone()
            .name(leak(name.clone()))
            .bin_name(leak(format!("mip4ctl {}", sub.get_name())))
            .version(env!("CARGO_PKG_VERSION"))
            .after_help("Global options (--socket, --json) and exit status: mip4ctl(1).");
        pages.push((format!("{name}.1"), render(sub, "1")));
    }
    pages
}

/// roff text for a verbatim line.
fn roff_line(l: &str) -> String {
    let l = l.replace('\\', "\\e");
    if l.starts_with('.') || l.starts_with('\'') {
        format!("\\&{l}")
    } else {
        l
    }
}

/// Section 5: the config file `name` from its commented example.
fn section5(daemon: &str, what: &str) -> (String, String) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(format!("{daemon}.conf.example"));
    let text = std::fs::read_to_string(&example).unwrap();
    let mut p = String::new();
    p.push_str(&format!(
        ".TH {} 5 \"\" \"mip4-mobike {}\" \"mip4-mobike\"\n",
        format!("{daemon}.conf").to_uppercase(),
        env!("CARGO_PKG_VERSION")
    ));
    p.push_str(&format!(
        ".SH NAME\n{daemon}.conf \\- configuration of {daemon}, {what}\n"
    ));
    p.push_str(&format!(
        ".SH SYNOPSIS\n/etc/mip4/{daemon}.conf\n.SH DESCRIPTION\n\
         The configuration of \\fB{daemon}\\fR(8) is one TOML file, read at start \
         (\\fB{daemon} \\-\\-config\\fR \\fIFILE\\fR). Every key, its default and \
         its meaning are in the annotated example below, which is also the file \
         the packages install (mode 0600: it may hold MN\\-HA keys) and which \
         \\fB/usr/share/doc/mip4\\-mobike/examples/{daemon}.conf.example\\fR keeps.\n\
         .PP\nCheck a file with \\fB{daemon} \\-\\-check\\-config \\-\\-config\\fR \
         \\fIFILE\\fR: every error is printed as \\fIFILE\\fR:\\fILINE\\fR: key \
         `\\fIKEY\\fR': what is wrong, key files named by \\fBkey_file\\fR are read \
         and checked too (they must be mode 0600), a key's value is never shown, \
         and the exit status is 1 if there is any error.\n"
    ));
    p.push_str(".SH EXAMPLE\n.nf\n");
    for l in text.lines() {
        p.push_str(&roff_line(l));
        p.push('\n');
    }
    p.push_str(".fi\n");
    p.push_str(&format!(
        ".SH SEE ALSO\n\\fB{daemon}\\fR(8), \\fBmip4ctl\\fR(1), \
         /usr/share/doc/mip4\\-mobike/README.md, docs/operator\\-guide.md in the source\n"
    ));
    (format!("{daemon}.conf.5"), p)
}

fn all_pages() -> Vec<(String, String)> {
    let mut pages = commands();
    pages.push(section5("mip4d", "the Mobile IPv4 mobile node"));
    pages.push(section5("mip4-ha", "the Mobile IPv4 home agent"));
    pages.push(section5("mip4-fa", "the Mobile IPv4 foreign agent"));
    pages
}

#[test]
fn man_pages_match_their_sources() {
    let dir = man_dir();
    let write = std::env::var_os("MIP4_WRITE_MAN").is_some();
    let pages = all_pages();
    let mut stale = Vec::new();
    for (name, text) in &pages {
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "man pages out of date with --help or the config examples: {stale:?}; \
         run `make man` and commit man/"
    );
    // Nothing else in man/: a page whose source went is gone too.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut want: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
    on_disk.sort();
    want.sort();
    assert_eq!(on_disk, want);
}

#[test]
fn pages_say_what_an_operator_looks_up() {
    let pages = all_pages();
    let page = |n: &str| &pages.iter().find(|(name, _)| name == n).unwrap().1;
    // mip4ctl: its commands and its exit codes.
    let ctl = page("mip4ctl.1");
    for w in [
        "stats",
        "probe",
        "force",
        "release",
        "\\-\\-json",
        "Exit status",
    ] {
        assert!(ctl.contains(w), "mip4ctl.1 lacks {w}");
    }
    assert!(page("mip4ctl-force.1").contains("mc"));
    // Each daemon: --check-config and its exit codes.
    for d in ["mip4d.8", "mip4-ha.8", "mip4-fa.8"] {
        assert!(page(d).contains("check\\-config"), "{d}");
        assert!(page(d).contains("Exit status"), "{d}");
    }
    // No path of the machine that generated them.
    for (name, text) in &pages {
        assert!(!text.contains(env!("CARGO_MANIFEST_DIR")), "{name}");
    }
    // Config pages: every key of the example.
    assert!(page("mip4d.conf.5").contains("home_agent = "));
    assert!(page("mip4-ha.conf.5").contains("[[mobile_node]]"));
}
