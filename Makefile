# mip4-mobike: the two README commands are `make demo` and `make check`.
# Both install what they need on a fresh Debian 12 machine (as root).

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps build check check-vm check-vm-lane-1 check-vm-lane-2 check-fresh fmt-check clippy test demo bench fuzz clean deb install man

all: build

deps:
	./scripts/install-deps.sh

build: deps
	$(CARGO) build --release --all-targets

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy --all-targets -- -D warnings

test: deps
	$(CARGO) test --all-targets

# The host tests (5.5-6.5 min run, 692 tests, once built), then the kernel tier
# (make check-vm: two guests side by side, 7.2-7.3 min on 2 cores with its
# cache filled and nothing else running, 11.5 min at a load average of 5
# from other work; ~1-2 min more to fill the cache. One guest for
# everything took ~19 min, 2026-11-29; two lanes measured 2026-11-30).
# All of make check from a fresh clone (empty target/ and tier cache),
# nothing else running: 15 min 40 s on 2 cores, 2026-11-30.
check: deps fmt-check clippy test check-vm

# The kernel tier (lab/README.md): the scenarios again in a QEMU guest with
# Debian's stock kernel (kernel ESP, kernel ipip, netem), one boot per
# gateway. The guest runs the binaries built here.
# Each also checks what only the kernel path shows (lab/README.md, kernel
# tier): trusted-move the RFC 3024 ingress rule on kernel ipip,
# untrusted-move MTU and DF over ESP, enter-full-tunnel the probe's bypass
# of a 0.0.0.0/0 policy; the mode 'mc' ones no clear text on ext-a/ext-b.
# Issue 10's: NAT traversal (RFC 3519), the VPN asked for with the probe,
# more than one interface. Issue 11 §1's: mode 'f' through mip4-fa, on its
# kernel backend (fa-trusted fails on a fall back to the userspace plane;
# fa-to-colocated: its successor removes the killed one's ipip link). Issue
# 11 §2's: DSMIPv4 on mip4-ha's kernel sit links (dual-stack-kernel, 18-42 s
# of guest time, no charon); dual-stack with mip4d's kernel backend too (its
# IPv6 home address on its own sit link, across c -> mc -> c and a SIGKILL;
# ~80 s of guest time). late-address (issue 14 §1): the new address and
# route 0.3 s and 1.5 s after the link, each move still the plugin's direct
# update (~20 s of guest time).
#
# Two lanes run side by side (make -j2): each guest is one emulated CPU,
# one host thread, so on 2 cores two guests take about half the wall time
# of one guest running everything. Lane 1 is strongSwan scenarios only;
# lane 2 the others and early-moves (issue 14: the early SA move between
# two NATs and with a wrong guess of UDP encapsulation, ~70-85 s of guest
# time), then libreswan's boot and vm_faults, split so that
# both lanes take about as long (guest times: lab/README.md, kernel
# tier). Each lane prints its output when a command ends (--output-sync),
# so two guests' lines never interleave; a failed scenario's lines and
# the path of its kept logs are in its lane's block. VM_SCENARIOS is all
# of them (one guest: `mip4-lab run $(VM_SCENARIOS) --vm`).
VM_LANE_1 ?= trusted-move untrusted-move leave-enterprise forged-tnc enter-full-tunnel ipv6-access ipv6-access-detect \
	multihomed fa-trusted dual-stack-kernel dual-stack private-tia verdict-cache late-address
VM_LANE_2 ?= trusted-nat nat-flush leave-enterprise-cold fa-untrusted fa-to-colocated early-moves
VM_SCENARIOS = $(VM_LANE_1) $(VM_LANE_2)
# Against libreswan's pluto (untrusted-move with the MN forcing ESP in UDP:
# pluto 4.10 cannot switch to it on a MOBIKE move, docs/interop.md).
VM_LIBRESWAN_SCENARIOS ?= untrusted-move tia-change leave-enterprise
# Everything built first: nothing is compiled while the guests run.
check-vm: deps
	$(CARGO) build --lib --bins
	$(CARGO) test --no-run --test vm_faults
	$(MAKE) --no-print-directory -j2 --output-sync=line check-vm-lane-1 check-vm-lane-2

check-vm-lane-1:
	./target/debug/mip4-lab run $(VM_LANE_1) --vm

check-vm-lane-2:
	./target/debug/mip4-lab run $(VM_LANE_2) --vm
	./target/debug/mip4-lab run $(VM_LIBRESWAN_SCENARIOS) --vm --gateway libreswan
	$(CARGO) test --test vm_faults -- --include-ignored

# The host half of make check (deps fmt-check clippy test) in a pristine
# Debian 12 root, as a fresh CI machine runs it (scripts/fresh-check.sh):
# proves that install-deps installs everything. 34 min on 2 cores shared
# with other builds (402 tests passed, 2026-11-29).
check-fresh:
	./scripts/fresh-check.sh

# mip4-lab runs the mip4d, mip4-ha, mip4ctl and the mip4 plugin (libmip4.so)
# built beside it: build them all.
demo: deps
	$(CARGO) build --release --lib --bins
	$(CARGO) run --release --bin mip4-lab -- tour

# docs/PERFORMANCE.md, every figure of issue 14 (scripts/bench.sh: one
# producer per section, e.g. criterion's codec, the plugin's cost on
# MOBIKE, the home agent at scale). `make bench BENCH="40-ha-scale"` runs
# only the named sections and keeps the others.
BENCH ?=
bench: deps
	CARGO="$(CARGO)" ./scripts/bench.sh $(BENCH)

# strongswan-mip4-plugin and mip4-mobike .debs in build/deb/, then the
# package tests on them (ignored by `make check`): tests/packaging_deb.rs,
# and tests/packaging_clean.rs, the clean-system test (apt into the kernel
# tier's pristine root booted with systemd: packaging/README.md; 5-9 min).
deb:
	./scripts/install-deps.sh --deb
	./packaging/build-deb.sh build/deb
	MIP4_DEB_DIR=build/deb $(CARGO) test --test packaging_deb -- --ignored
	MIP4_DEB_DIR=build/deb $(CARGO) test --test packaging_clean -- --ignored --nocapture

# The build the .debs ship (cargo profile `dist`) into DESTDIR (default /),
# without a package; same layout as the .debs (packaging/install.sh). Keeps
# existing files in /etc. Installs only what building needs
# (install-deps.sh --build), and builds only what is installed (not
# mip4-lab). Proven on a pristine Debian 12 root: scripts/fresh-check.sh install.
DESTDIR ?=
install:
	./scripts/install-deps.sh --build
	$(CARGO) build --profile dist --lib --bin mip4d --bin mip4-ha --bin mip4-fa --bin mip4ctl
	DESTDIR=$(DESTDIR) BUILD_DIR=target/dist ./packaging/install.sh

# Rewrites man/ from the binaries' clap definitions and the config
# examples (tests/man_pages.rs fails while a page is out of date).
man:
	MIP4_WRITE_MAN=1 $(CARGO) test --test man_pages

fuzz:
	./scripts/fuzz.sh

clean:
	$(CARGO) clean
