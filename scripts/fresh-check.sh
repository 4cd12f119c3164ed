#!/usr/bin/env bash
# `make check-fresh`: the host half of `make check` (deps, fmt-check,
# clippy, test) on a pristine Debian 12 root, as a fresh CI machine runs it.
# The kernel tier needs no such run: each of its boots already starts from a
# pristine root (scripts/vm/image.sh).
#
# The root is a copy of the kernel tier's pristine debootstrap minbase
# (build/vm/root, made once by image.sh), plus only what a new machine of
# this kind has before the project runs (gcc, make, git, python3, the
# machine's CA certificates and pip settings, the rustup toolchain), then
# the committed tree (git archive HEAD: what CI clones). Everything else
# must come from scripts/install-deps.sh: a package it forgets fails here.
# crates.io is read afresh (an empty CARGO_HOME).
#
# Runs in a private mount namespace, so nothing stays mounted after it.
#
# Usage: scripts/fresh-check.sh [TARGETS...]   (run as root; default:
#        deps fmt-check clippy test)
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
	echo "check-fresh: $*" >&2
	exit 1
}
[[ $EUID -eq 0 ]] || die "needs root (chroot, mounts)"
command -v rustup >/dev/null || die "rustup not found: the toolchain is bind-mounted from it"
targets=("${@:-deps fmt-check clippy test}")

cache=build/vm
./scripts/vm/image.sh cache "$cache"
run=build/fresh
rm -rf "$run"
mkdir -p "$run"
root="$(realpath "$run")/root"
cp -a "$cache/root" "$root"

# The machine's apt sources (binary only, as a new image has them: the
# source fetch must add deb-src itself), CA certificates and pip settings.
rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
	[[ -e "$f" ]] || continue
	sed -E 's/^Types:.*/Types: deb/; /^deb-src[[:space:]]/d' "$f" >"$root$f"
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
[[ -e /etc/pip.conf ]] && cp /etc/pip.conf "$root/etc/pip.conf"
mkdir -p "$root/usr/local/share/ca-certificates"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true

toolchains="$(rustup show home)"
# Inside the root the toolchain lives under opt/rust (FHS: add-on software).
mkdir -p "$root/opt/rust/rustup" "$root/opt/rust/cargo/bin" "$root/proj"
cp -a "$(dirname "$(command -v cargo)")/." "$root/opt/rust/cargo/bin/"
git archive HEAD | tar -x -C "$root/proj"

cat >"$root/opt/fresh-check" <<EOF
#!/bin/bash
set -euo pipefail
export HOME=/opt/rust CARGO_HOME=/opt/rust/cargo RUSTUP_HOME=/opt/rust/rustup
export PATH=/opt/rust/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# What a new machine of this kind has before any project runs.
apt-get update -qq
apt-get install -y -qq --no-install-recommends make gcc libc6-dev git ca-certificates python3 >/dev/null
update-ca-certificates >/dev/null
cd /proj
time make ${targets[*]}
EOF
chmod +x "$root/opt/fresh-check"

echo "check-fresh: make ${targets[*]} in a pristine Debian 12 root ($run/root)" >&2
# / must be a mount point for `ip netns exec` (mount --make-rslave /).
unshare -m --propagation private sh -c "
	mount --rbind '$root' '$root' &&
	mount -t proc proc '$root/proc' &&
	mount --rbind /sys '$root/sys' &&
	mount --rbind /dev '$root/dev' &&
	mount --bind '$toolchains' '$root/opt/rust/rustup' &&
	mount -o remount,bind,ro '$root/opt/rust/rustup' &&
	chroot '$root' /opt/fresh-check"
