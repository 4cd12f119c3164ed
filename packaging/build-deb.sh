#!/usr/bin/env bash
# Builds strongswan-mip4-plugin and mip4-mobike .debs into build/deb/ (or
# $1) with dpkg-buildpackage -b -uc -us. `make deb` runs it.
#
# dpkg-buildpackage wants debian/ at the top of the source tree and writes
# the .debs next to it, so it runs in a copy of the working tree (uncommitted
# edits included) under the output directory, with packaging/debian as its
# debian/. The copy shares the checkout's target/ (CARGO_TARGET_DIR) so a
# release build already made is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="${1:-build/deb}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

ss_src="${MIP4_STRONGSWAN_SRC:-$(compgen -G "$root/build/strongswan-src/strongswan-*" | head -n 1 || true)}"
if [[ -z "$ss_src" || ! -f "$ss_src/src/libcharon/sa/ike_sa.h" ]]; then
	echo "build-deb: no strongSwan source tree (run scripts/fetch-strongswan-source.sh)" >&2
	exit 1
fi
version="$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)"
crate_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
if [[ "$version" != "$crate_version" ]]; then
	echo "build-deb: debian/changelog says $version, Cargo.toml $crate_version" >&2
	exit 1
fi

src="$out/mip4-mobike-$version"
rm -rf "$src"
mkdir -p "$src"
tar -C "$root" --exclude=./.git --exclude=./target --exclude=./build \
	--exclude=./fuzz/target --exclude=./debian -cf - . | tar -C "$src" -xf -
cp -a packaging/debian "$src/debian"
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo

(
	cd "$src"
	CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" MIP4_STRONGSWAN_SRC="$ss_src" \
		dpkg-buildpackage -b -uc -us
)
rm -rf "$src"
ls -1 "$out"/*.deb
