#!/usr/bin/env bash
# Installs a build of mip4-mobike where Debian's strongSwan and
# systemd look for its pieces. `make install` runs it (DESTDIR default /);
# packaging/debian/rules runs it with DESTDIR=debian/tmp, so the .debs and a
# package-less install have the same layout:
#
#   libmip4.so            -> /usr/lib/ipsec/plugins/libstrongswan-mip4.so
#   strongswan.d/charon/mip4.conf -> /etc/strongswan.d/charon/mip4.conf
#   mip4d, mip4-ha, mip4-fa (those built) -> /usr/sbin        (daemons)
#   mip4ctl               -> /usr/bin
#   systemd/<daemon>.service -> /lib/systemd/system (Debian 12's unit dir)
#   <daemon>.conf.example -> /etc/mip4/<daemon>.conf (0600: holds keys)
#                            and /usr/share/doc/mip4-mobike/examples/
#   man/ (generated, tests/man_pages.rs) -> /usr/share/man/man{1,5,8}: those
#                            of mip4ctl and of each daemon installed
#
# Files under /etc are the operator's: an existing one is never overwritten
# (as dpkg does with conffiles).
#
# Environment: DESTDIR, BUILD_DIR (default target/dist: cargo's `dist`
# profile, what `make install` and the .debs build), PREFIX (/usr),
# SYSCONFDIR (/etc), UNITDIR (/lib/systemd/system).
set -euo pipefail
cd "$(dirname "$0")/.."

destdir="${DESTDIR:-}"
build="${BUILD_DIR:-target/dist}"
prefix="${PREFIX:-/usr}"
sysconfdir="${SYSCONFDIR:-/etc}"
unitdir="${UNITDIR:-/lib/systemd/system}"
docdir="$prefix/share/doc/mip4-mobike"

die() {
	echo "install: $*" >&2
	exit 1
}

[[ -x "$build/mip4ctl" ]] || die "$build/mip4ctl not found (cargo build --profile dist --lib --bins)"

# The plugin (install-plugin.sh refuses a library built without the shim).
# `cargo build` puts the cdylib in target/<profile>; `cargo test` leaves it
# in target/<profile>/deps only.
plugin="$build/libmip4.so"
[[ -f "$plugin" ]] || plugin="$build/deps/libmip4.so"
DESTDIR="$destdir" PLUGINDIR="$prefix/lib/ipsec/plugins" \
	CONFDIR="$sysconfdir/strongswan.d/charon" \
	./packaging/install-plugin.sh "$plugin" >/dev/null

install -D -m 0755 "$build/mip4ctl" "$destdir$prefix/bin/mip4ctl"
mandir="$destdir$prefix/share/man"
install -d -m 0755 "$mandir/man1" "$mandir/man5" "$mandir/man8"
install -m 0644 man/mip4ctl.1 man/mip4ctl-*.1 "$mandir/man1/"

# /etc/mip4 holds MN-HA keys: root only.
install -d -m 0700 "$destdir$sysconfdir/mip4"
install -d -m 0755 "$destdir$docdir/examples"

daemons=()
for d in mip4d mip4-ha mip4-fa; do
	# mip4d and mip4-fa arrive on their own branches: install what is built.
	[[ -x "$build/$d" ]] || continue
	daemons+=("$d")
	install -D -m 0755 "$build/$d" "$destdir$prefix/sbin/$d"
	install -m 0644 "man/$d.8" "$mandir/man8/"
	install -m 0644 "man/$d.conf.5" "$mandir/man5/"
	if [[ -f "packaging/systemd/$d.service" ]]; then
		install -D -m 0644 "packaging/systemd/$d.service" "$destdir$unitdir/$d.service"
	fi
	example="packaging/$d.conf.example"
	if [[ -f "$example" ]]; then
		install -m 0644 "$example" "$destdir$docdir/examples/$d.conf.example"
		if [[ ! -e "$destdir$sysconfdir/mip4/$d.conf" ]]; then
			install -m 0600 "$example" "$destdir$sysconfdir/mip4/$d.conf"
		fi
	fi
done
((${#daemons[@]})) || die "no daemon (mip4d, mip4-ha, mip4-fa) in $build"

install -m 0644 packaging/README.md "$destdir$docdir/README.md"
echo "install: plugin, mip4ctl and ${daemons[*]} into ${destdir:-/}"
