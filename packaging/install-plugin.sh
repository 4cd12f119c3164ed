#!/usr/bin/env bash
# Installs the charon plugin built by `cargo build --release` where Debian's
# strongSwan looks for it. Run as root from the repository; DESTDIR stages
# into a tree instead (for packaging).
#
#   target/release/libmip4.so -> /usr/lib/ipsec/plugins/libstrongswan-mip4.so
#   packaging/strongswan.d/charon/mip4.conf -> /etc/strongswan.d/charon/
#   packaging/strongswan.d/mip4-interfaces.conf -> /etc/strongswan.d/
#     (charon.interfaces_ignore: charon keeps off mip4d's tunnel device)
#
# Existing files are kept (they are the operator's), like dpkg conffiles.
set -euo pipefail
cd "$(dirname "$0")/.."

destdir="${DESTDIR:-}"
plugindir="${PLUGINDIR:-/usr/lib/ipsec/plugins}"
confdir="${CONFDIR:-/etc/strongswan.d/charon}"
swanddir="$(dirname "$confdir")"
lib="${1:-target/release/libmip4.so}"

if [[ ! -f "$lib" ]]; then
	echo "install-plugin: $lib not found (cargo build --release --lib)" >&2
	exit 1
fi
if ! nm -D --defined-only "$lib" | grep -q ' T mip4_plugin_create$'; then
	echo "install-plugin: $lib has no mip4_plugin_create (built without the strongSwan source?" \
		"run scripts/fetch-strongswan-source.sh and rebuild)" >&2
	exit 1
fi
install -D -m 0644 "$lib" "$destdir$plugindir/libstrongswan-mip4.so"
if [[ ! -e "$destdir$confdir/mip4.conf" ]]; then
	install -D -m 0644 packaging/strongswan.d/charon/mip4.conf "$destdir$confdir/mip4.conf"
fi
if [[ ! -e "$destdir$swanddir/mip4-interfaces.conf" ]]; then
	install -D -m 0644 packaging/strongswan.d/mip4-interfaces.conf \
		"$destdir$swanddir/mip4-interfaces.conf"
fi
echo "install-plugin: installed $destdir$plugindir/libstrongswan-mip4.so"
