#!/usr/bin/env bash
# Repacks the .debs `make deb` built as the clean-system test's other
# versions (tests/packaging_clean.rs), without a second build:
#
#   repack-deb.sh upgrade DEBS OUT     each package as VERSION+up1, and
#                                      mip4-mobike's /etc/mip4/mip4d.conf
#                                      changed (a new default line): an
#                                      upgrade meets an edited conffile
#   repack-deb.sh strongswan DEBS OUT X.Y.Z
#                                      the plugin as if built against
#                                      strongSwan X.Y.Z: the headers
#                                      version it embeds and its Depends
#                                      (same length as the real version)
#
# Needs root (dpkg-deb keeps the files' owners) and perl.
set -euo pipefail
cmd="${1:?usage: repack-deb.sh upgrade|strongswan DEBS OUT [X.Y.Z]}"
debs="${2:?DEBS}"
out="${3:?OUT}"
rm -rf "$out"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# repack DEB SUFFIX EDIT: unpacks DEB, runs EDIT in the tree, packs it as
# VERSION+SUFFIX with fresh md5sums.
repack() {
	local deb="$1" suffix="$2" edit="$3" tree version
	tree="$work/$(basename "$deb" .deb)"
	dpkg-deb -R "$deb" "$tree"
	version="$(sed -n 's/^Version: //p' "$tree/DEBIAN/control")"
	sed -i "s/^Version: .*/Version: $version+$suffix/" "$tree/DEBIAN/control"
	(cd "$tree" && $edit)
	(cd "$tree" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
		sort -z | xargs -0 md5sum >DEBIAN/md5sums)
	dpkg-deb -Zgzip -b "$tree" "$out/" >/dev/null
}

no_edit() { :; }
new_mip4d_default() { printf '\n# (a new default in the next version)\n' >>etc/mip4/mip4d.conf; }
other_strongswan() {
	local so=usr/lib/ipsec/plugins/libstrongswan-mip4.so next
	next="$(echo "$SS" | awk -F. -v OFS=. '{ $NF = $NF + 1; print }')"
	SS="$SS" perl -0777 -pi -e '
		s/(mip4-strongswan-headers=)([0-9.]+)/length($2) == length($ENV{SS}) ? $1 . $ENV{SS} : die "version length differs\n"/e
			or die "no headers version in the plugin\n"' "$so"
	sed -i "s/strongswan-libcharon (>= [^)]*)/strongswan-libcharon (>= $SS)/; s/strongswan-libcharon (<< [^)]*)/strongswan-libcharon (<< $next~)/" DEBIAN/control
}

case "$cmd" in
upgrade)
	repack "$(ls "$debs"/strongswan-mip4-plugin_*.deb)" up1 no_edit
	repack "$(ls "$debs"/mip4-mobike_*.deb)" up1 new_mip4d_default
	;;
strongswan)
	SS="${4:?usage: repack-deb.sh strongswan DEBS OUT X.Y.Z}"
	export SS
	repack "$(ls "$debs"/strongswan-mip4-plugin_*.deb)" "ss$SS" other_strongswan
	;;
*)
	echo "usage: repack-deb.sh upgrade|strongswan DEBS OUT [X.Y.Z]" >&2
	exit 2
	;;
esac
ls -1 "$out"/*.deb
