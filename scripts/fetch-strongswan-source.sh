#!/usr/bin/env bash
# Fetches the Debian source package of the INSTALLED strongSwan into
# build/strongswan-src, for its headers (the charon plugin's C shim is built
# against them; strongSwan's code is never committed into this project).
#
# - Adds `deb-src` to the configured Debian sources if it is missing.
# - `apt-get source strongswan=<installed version>`; when that version's .dsc
#   is not on the mirror (security updates are sometimes published without
#   it), falls back to the newest source of the SAME upstream release the
#   mirror has (e.g. 5.9.8-5+deb12u5 for an installed 5.9.8-5+deb12u6): the
#   revisions of one upstream release keep its ABI. Another upstream
#   release is never taken, and a tree whose configure.ac names another
#   release is an error (build.rs refuses it too).
# - Records the fetched version in build/strongswan-src/VERSION.
# - Does nothing when the tree of the installed upstream release is there.
#
# Usage: scripts/fetch-strongswan-source.sh [DESTDIR]   (run as root)
set -euo pipefail

cd "$(dirname "$0")/.."
dest="${1:-build/strongswan-src}"

installed="$(dpkg-query -W -f='${Version}' libstrongswan 2>/dev/null || true)"
if [[ -z "$installed" ]]; then
	echo "fetch-strongswan-source: libstrongswan is not installed (run scripts/install-deps.sh)" >&2
	exit 1
fi
upstream="${installed#*:}"
upstream="${upstream%-*}"

# The upstream release a tree's configure.ac names.
tree_version() {
	sed -n 's/^AC_INIT(\[strongSwan\],\[\([^]]*\)\]).*/\1/p' "$1/configure.ac" 2>/dev/null
}

if [[ -f "$dest/strongswan-$upstream/src/libcharon/sa/ike_sa.h" && -s "$dest/VERSION" &&
	"$(tree_version "$dest/strongswan-$upstream")" == "$upstream" ]]; then
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# deb-src: deb822 sources (Debian 12 default) get `deb-src` added to Types;
# one-line sources get a deb-src twin of each `deb` line.
add_deb_src() {
	local changed=0 f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -e "$f" ]] || continue
		grep -q 'debian' "$f" || continue
		if grep -qE '^Types:' "$f" && ! grep -qE '^Types:.*deb-src' "$f"; then
			sed -i -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb deb-src/' "$f"
			changed=1
		fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -e "$f" ]] || continue
		if grep -qE '^deb[[:space:]].*debian' "$f" && ! grep -qE '^deb-src[[:space:]]' "$f"; then
			sed -n -E 's/^deb([[:space:]].*debian.*)$/deb-src\1/p' "$f" >>"$f"
			changed=1
		fi
	done
	return $((1 - changed))
}

if ! apt-cache showsrc strongswan 2>/dev/null | grep -q '^Version:'; then
	add_deb_src || true
	apt-get update -qq
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fetched=""
# The installed version first, then every other source of the same upstream
# release on the mirror, newest first.
candidates="$installed $(apt-cache showsrc strongswan 2>/dev/null |
	sed -n 's/^Version: //p' | grep -F "$upstream-" | grep -vxF "$installed" | sort -rV | uniq || true)"
for v in $candidates; do
	rm -f "$tmp"/strongswan_*
	if (cd "$tmp" && apt-get source -qq --download-only "strongswan=$v" >/dev/null 2>&1); then
		fetched="$v"
		break
	fi
	echo "fetch-strongswan-source: strongswan $v source not on the mirror" >&2
done
if [[ -z "$fetched" ]]; then
	echo "fetch-strongswan-source: no strongswan $upstream source on the mirror" >&2
	exit 1
fi

# Unpack without apt-get's build-dependency checks, then move into place.
dsc="$(ls "$tmp"/strongswan_*.dsc | head -n1)"
(cd "$tmp" && dpkg-source --no-check -x "$(basename "$dsc")" >/dev/null)
got="$(tree_version "$tmp/strongswan-$upstream")"
if [[ "$got" != "$upstream" ]]; then
	echo "fetch-strongswan-source: strongswan $fetched unpacked as upstream '$got', not $upstream" >&2
	exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp"/strongswan-"$upstream" "$dest/"
printf 'installed=%s\nfetched=%s\n' "$installed" "$fetched" >"$dest/VERSION"
echo "fetch-strongswan-source: strongswan $fetched source in $dest (installed: $installed)"
