#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12 (run as root).
# Idempotent and quick when everything is present: apt is only asked for
# packages that are missing, pip only when scapy is missing.
#
#   --deb      also what `make deb` needs (debhelper, lintian); `make check`
#              does not pass it, so CI does not pay for them.
#   --runtime  only what the lab runs (strongSwan, iproute2, ...), no Rust
#              toolchain, scapy or strongSwan source: the kernel tier runs
#              this inside its fresh guest root (scripts/vm/image.sh), which
#              makes the tier the fresh-machine test of this list.
#   --build    only what `make install` needs to build and install the
#              daemons and the plugin (the Rust toolchain is checked, not
#              installed): no lab, test oracles or kernel tier.
#   --gateway libreswan
#              with --runtime: the VPN gateway's root for `--gateway
#              libreswan` (libreswan conflicts with strongSwan's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

deb=no
runtime=no
build=no
gateway=strongswan
while (($#)); do
	case "$1" in
	--deb) deb=yes ;;
	--runtime) runtime=yes ;;
	--build) build=yes ;;
	--gateway)
		gateway="${2:-}"
		shift
		;;
	*)
		echo "install-deps: unknown option $1 (known: --deb, --runtime, --build, --gateway libreswan)" >&2
		exit 2
		;;
	esac
	shift
done

# Debian packages, one per line with what needs it. The lab runs these.
runtime_packages=(
	strongswan-charon       # the distribution's charon: lab + plugin tests
	charon-systemd          # charon-systemd, the daemon Debian ships by default
	strongswan-swanctl      # swanctl: loading configs, listing SAs in tests
	libcharon-extra-plugins # kernel-libipsec (where the kernel has no ESP)
	libcharon-extauth-plugins # eap-mschapv2: the reestablish-eap baseline
	libstrongswan-standard-plugins # openssl, gcm: the lab's AES-GCM proposals
	libstrongswan-extra-plugins    # curve25519
	iproute2 nftables iptables tcpdump
	iputils-ping            # the lab's scenarios ping through the tunnels
	kmod                    # modprobe: the kernel loads esp4, ipip, netem on demand
	procps                  # /bin/kill: the shipped units' ExecReload (not in a minbase)
	conntrack               # conntrack -F: the NAT scenarios flush a NAT's mappings
)
case "$gateway" in
strongswan) ;;
libreswan)
	# pluto, in a root of its own (conflicts with strongSwan's packages).
	runtime_packages=(libreswan iproute2 nftables iptables tcpdump iputils-ping kmod procps)
	;;
*)
	echo "install-deps: unknown gateway $gateway (strongswan or libreswan)" >&2
	exit 2
	;;
esac
# The build, the tests' oracles and the kernel tier's host side.
build_packages=(
	tshark                  # conformance oracle (MIPv4 and IKEv2 dissectors)
	libclang-dev clang      # bindgen for the plugin's C ABI
	dpkg-dev                # apt-get source / dpkg-source: strongSwan headers
	binutils                # nm: the plugin tests check the exported constructor
	python3-pip             # scapy, the second MobileIP encoder
	qemu-system-x86         # the kernel tier: Debian's kernel in a TCG guest
	debootstrap             # the kernel tier's guest root
	busybox-static          # the kernel tier's initramfs
	xz-utils                # the kernel tier: vmlinux out of vmlinuz
	systemd                 # systemd-analyze: tests/packaging_install.rs checks the units
	jq                      # scripts/bench.sh (make bench) reads criterion's and mip4-lab's JSON
)
# `make install` alone (--build): the shim's headers and bindgen, nm for
# install-plugin.sh. Charon itself is the operator's to install
# (packaging/README.md); its library's version pins the headers (build.rs).
install_packages=(
	libstrongswan           # the installed release the shim is built for
	libclang-dev clang      # bindgen for the plugin's C ABI
	dpkg-dev                # apt-get source / dpkg-source: strongSwan headers
	binutils                # nm: install-plugin.sh checks the plugin's constructor
)
if [[ $build == yes ]]; then
	packages=("${install_packages[@]}")
else
	packages=("${runtime_packages[@]}")
	[[ $runtime == yes ]] || packages+=("${build_packages[@]}")
fi
if [[ $deb == yes ]]; then
	packages+=(
		debhelper       # dh: packaging/debian/rules (make deb)
		fakeroot        # dpkg-buildpackage -rfakeroot when not root
		lintian         # the package test: no lintian errors
	)
fi

missing=()
for p in "${packages[@]}"; do
	status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
	[[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
	if [[ $EUID -ne 0 ]]; then
		echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# tshark asks whether non-root users may capture; the tests run as root.
	echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $runtime == yes ]]; then
	exit 0
fi

command -v cargo >/dev/null || { echo "install-deps: cargo not found (a rustup toolchain is required)" >&2; exit 1; }
if [[ $build == yes ]]; then
	exec ./scripts/fetch-strongswan-source.sh
fi

# Rust toolchain components used by `make check`.
if command -v rustup >/dev/null; then
	installed="$(rustup component list --installed 2>/dev/null || true)"
	for c in rustfmt clippy; do
		grep -q "^$c" <<<"$installed" || rustup component add "$c"
	done
fi

# scapy (PyPI) for the conformance tests; whichever python3 is on PATH.
if ! python3 -c 'import scapy' 2>/dev/null; then
	python3 -m pip install --quiet scapy 2>/dev/null ||
		python3 -m pip install --quiet --break-system-packages scapy
fi

# strongSwan's headers, from the installed version's source package.
./scripts/fetch-strongswan-source.sh
