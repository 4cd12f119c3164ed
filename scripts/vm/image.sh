#!/usr/bin/env bash
# The kernel tier's guest (lab/README.md, "The kernel tier"): Debian 12's
# stock kernel and a debootstrap minbase root, booted by QEMU (src/lab/vm.rs).
#
#   image.sh cache CACHE            the pristine parts, made once and kept:
#                                   CACHE/root (debootstrap --variant=minbase
#                                   bookworm) and CACHE/kernel/NAME_VERSION
#                                   (the package linux-image-amd64 depends
#                                   on, pinned by version, with its vmlinux)
#   image.sh packages CACHE RUN DEBS  the packages' clean system: systemd
#                                   as init, Debian's charon-systemd, what
#                                   the .debs in DEBS depend on (not them)
#   image.sh root CACHE RUN [GW]    a fresh copy of the pristine root in
#                                   RUN/root, with the project's own
#                                   install-deps.sh --runtime run inside
#                                   (GW=libreswan: --gateway libreswan into
#                                   RUN/root-libreswan too), the kernel's
#                                   modules, and RUN/initramfs.gz
#
# Nothing install-deps adds is cached: a package it forgets fails here.
# Every failure names its cause and the fix, and exits non-zero.
#
# For the fault tests (tests/vm_faults.rs): MIP4_VM_APT_SOURCES (the apt
# source files the mirror is read from), MIP4_VM_KERNEL_META (the package
# whose dependency is the kernel, default linux-image-amd64).
set -euo pipefail
cd "$(dirname "$0")/../.."

die() {
	echo "mip4-lab vm: $*" >&2
	exit 1
}

# The Debian mirror of the host's own apt sources (deb822 or one-line).
mirror() {
	local uri
	local sources="${MIP4_VM_APT_SOURCES:-/etc/apt/sources.list.d/*.sources /etc/apt/sources.list}"
	# shellcheck disable=SC2086 # a list of files and globs
	uri="$(grep -hoE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+' \
		$sources 2>/dev/null |
		grep -oE 'https?://[^[:space:]]+' | grep -v security | grep -E '/debian/?$' | head -n1 || true)"
	[[ -n "$uri" ]] || die "no Debian mirror in the host's apt sources ($sources): add one (e.g. http://deb.debian.org/debian)"
	echo "${uri%/}"
}

# The pristine root: debootstrap minbase of bookworm.
cache_root() {
	local cache="$1" m
	[[ -f "$cache/root.done" ]] && return 0
	command -v debootstrap >/dev/null || die "debootstrap not found: run scripts/install-deps.sh"
	m="$(mirror)"
	rm -rf "$cache/root" "$cache/root.tmp"
	echo "mip4-lab vm: debootstrap --variant=minbase bookworm from $m (once, ~1-2 min)" >&2
	if ! debootstrap --variant=minbase bookworm "$cache/root.tmp" "$m" >"$cache/debootstrap.log" 2>&1; then
		tail -n 5 "$cache/debootstrap.log" >&2
		die "debootstrap from $m failed (log: $cache/debootstrap.log): check the mirror is reachable and the host's apt sources"
	fi
	mv "$cache/root.tmp" "$cache/root"
	echo "$m" >"$cache/root.done"
}

# The kernel: the package linux-image-amd64 depends on now; a cached one
# with the same name and version is used as is. When the archive no longer
# has it, the newest cached kernel is used (pinned), else the run fails.
cache_kernel() {
	local cache="$1" name version dir meta="${MIP4_VM_KERNEL_META:-linux-image-amd64}"
	name="$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)"
	version=""
	[[ -n "$name" ]] && version="$(apt-cache policy "$name" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
	if [[ -z "$name" || -z "$version" || "$version" == "(none)" ]]; then
		dir="$(ls -d "$cache"/kernel/linux-image-*/ 2>/dev/null | sort -V | tail -n1 || true)"
		[[ -n "$dir" && -f "$dir/done" ]] || die "cannot resolve Debian's kernel package (apt-cache depends $meta gave '${name:-nothing}'): run apt-get update, or check the host's apt sources"
		echo "mip4-lab vm: $meta not resolvable, using the cached ${dir%/}" >&2
		echo "${dir%/}"
		return 0
	fi
	dir="$cache/kernel/${name}_${version}"
	if [[ ! -f "$dir/done" ]]; then
		rm -rf "$dir"
		mkdir -p "$dir/pkg"
		echo "mip4-lab vm: apt-get download $name=$version (once, 68 MB)" >&2
		if ! (cd "$dir" && apt-get download -q "$name=$version" >download.log 2>&1); then
			local old
			old="$(ls -d "$cache"/kernel/linux-image-*/done 2>/dev/null | sort -V | tail -n1 || true)"
			rm -rf "$dir"
			if [[ -n "$old" ]]; then
				echo "mip4-lab vm: $name=$version is gone from the mirror, using the cached $(dirname "$old")" >&2
				dirname "$old"
				return 0
			fi
			die "the kernel package $name=$version cannot be downloaded (gone from the mirror?): run apt-get update and try again"
		fi
		dpkg -x "$dir"/*.deb "$dir/pkg"
		rm -f "$dir"/*.deb
		# QEMU boots an ELF vmlinux through its PVH entry point: skips the
		# XZ decompressor, ~6 s under TCG. The ELF is vmlinuz's XZ stream.
		local z off
		z="$(ls "$dir"/pkg/boot/vmlinuz-*)"
		off="$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$z" | head -n1 | cut -d: -f1)"
		[[ -n "$off" ]] || die "no XZ stream in $z: cannot extract vmlinux"
		tail -c +"$((off + 1))" "$z" | xz -dc >"$dir/vmlinux" 2>/dev/null || [[ -s "$dir/vmlinux" ]] ||
			die "cannot decompress $z (xz-utils installed?)"
		head -c 4 "$dir/vmlinux" | grep -q 'ELF' || die "$dir/vmlinux is not an ELF image"
		echo "$name $version" >"$dir/done"
	fi
	echo "$dir"
}

# Modules the guest needs (net, crypto, 9p, virtio), with the root's own
# depmod (the host has none).
install_modules() {
	local kdir="$1" root="$2" kver src dst d
	kver="$(ls "$kdir/pkg/lib/modules")"
	src="$kdir/pkg/lib/modules/$kver"
	dst="$root/usr/lib/modules/$kver"
	mkdir -p "$dst/kernel"
	cp "$src"/modules.order "$src"/modules.builtin* "$dst/"
	for d in net crypto lib arch fs/9p fs/netfs fs/fscache fs/overlayfs drivers/virtio drivers/net; do
		[[ -d "$src/kernel/$d" ]] || continue
		mkdir -p "$dst/kernel/$(dirname "$d")"
		cp -a "$src/kernel/$d" "$dst/kernel/$(dirname "$d")/"
	done
	chroot "$root" depmod "$kver"
}

# A busybox initramfs: loads virtio and 9p, mounts the root share,
# switch_roots into the guest's init (scripts/vm/guest-init.sh).
make_initramfs() {
	local root="$1" out="$2" kver dir mods m
	kver="$(ls "$root/usr/lib/modules")"
	dir="$(mktemp -d)"
	mkdir -p "$dir"/{bin,dev,proc,sys,newroot,modules}
	cp /bin/busybox "$dir/bin/busybox" 2>/dev/null || die "busybox not found: run scripts/install-deps.sh (busybox-static)"
	# 9p's module and everything it needs, in load order (modules.dep).
	mods="$(for m in virtio_pci 9pnet_virtio 9p; do
		chroot "$root" modprobe -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
	done)"
	[[ -n "$mods" ]] || die "no virtio/9p modules for $kver in the guest root"
	: >"$dir/modules/order"
	for m in $mods; do
		grep -qxF "$(basename "$m")" "$dir/modules/order" && continue
		cp "$root$m" "$dir/modules/"
		basename "$m" >>"$dir/modules/order"
	done
	cat >"$dir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules/order); do /bin/busybox insmod /modules/$m; done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose root /newroot ||
	{ echo "mip4-vm: cannot mount the root share"; /bin/busybox poweroff -f; }
/bin/busybox umount /proc
/bin/busybox umount /dev
exec /bin/busybox switch_root /newroot /usr/local/sbin/mip4-vm-init
INIT
	chmod +x "$dir/init"
	(cd "$dir" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$out"
	rm -rf "$dir"
}

# Two runs may make their images at once (make check-vm boots two guests
# side by side): the cache's fill and the apt step, whose package lists
# and downloads are the cache's and locked by apt itself (a second apt
# fails at once), take turns on CACHE/lock. The copies are each run's own.
lock_cache() {
	exec 9>"$1/lock"
	flock 9
}
unlock_cache() {
	flock -u 9
}

# A fresh copy of the pristine root, with `$@` run in it by chroot (apt
# from the mirror of the host's sources; services kept from starting).
fresh_root() {
	local cache="$1" root="$2" log="$3"
	shift 3
	rm -rf "$root"
	cp -a "$cache/root" "$root"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	# The same suites as the host (bookworm's security and updates carry
	# the strongSwan the plugin was built against).
	local m
	m="$(cat "$cache/root.done")"
	cat >"$root/etc/apt/sources.list" <<SRC
deb $m bookworm main
deb $m bookworm-updates main
deb ${m%/debian}/debian-security bookworm-security main
SRC
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod +x "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/opt/mip4/scripts" "$cache/apt-archives/partial" "$cache/apt-lists/partial"
	cp scripts/install-deps.sh "$root/opt/mip4/scripts/"
	# Downloaded .debs and package lists are the archive's own bytes:
	# shared between runs, so a run does not download them again.
	lock_cache "$cache"
	mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
	mount --bind "$cache/apt-lists" "$root/var/lib/apt/lists"
	mount -t proc proc "$root/proc"
	local rc=0
	chroot "$root" "$@" >"$log" 2>&1 || rc=$?
	umount "$root/proc" "$root/var/lib/apt/lists" "$root/var/cache/apt/archives"
	unlock_cache
	if ((rc != 0)); then
		tail -n 5 "$log" >&2
		die "$* failed inside the guest root (log: $log)"
	fi
	rm -f "$root/usr/sbin/policy-rc.d"
	install -m 0755 scripts/vm/guest-init.sh "$root/usr/local/sbin/mip4-vm-init"
}

# The lab's root: install-deps.sh --runtime [--gateway GW].
lab_root() {
	local cache="$1" root="$2" gw="$3"
	local args=(--runtime)
	[[ -n "$gw" ]] && args+=(--gateway "$gw")
	fresh_root "$cache" "$root" "$root.install-deps.log" /opt/mip4/scripts/install-deps.sh "${args[@]}"
}

# The packages' clean system (tests/packaging_clean.rs): systemd as init,
# Debian's strongSwan (charon-systemd, with swanctl), what the .debs in
# DEBS depend on (apt-get satisfy: the guest, offline, then installs the
# .debs themselves with apt), kmod (the kernel loads modules with it) and
# the test's own tools (ip, ping). The guest's init starts systemd, which
# runs the host's script as a service.
packages_root() {
	local cache="$1" root="$2" debs="$3" deps="" d
	for d in "$debs"/*.deb; do
		deps="${deps:+$deps, }$(dpkg-deb -f "$d" Depends)"
	done
	[[ -n "$deps" ]] || die "no .debs in $debs: run make deb"
	fresh_root "$cache" "$root" "$root.apt.log" sh -ec "
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q --no-install-recommends systemd-sysv charon-systemd kmod iproute2 iputils-ping
		apt-get satisfy -y -q --no-install-recommends '$deps'"
	mkdir -p "$root/etc/mip4-vm"
	touch "$root/etc/mip4-vm/systemd"
	cat >"$root/etc/systemd/system/mip4-vm.service" <<'UNIT'
[Unit]
Description=mip4 kernel tier: the host's script
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/mip4-vm-init --systemd
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
UNIT
	mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
	# No udev in the guest: a getty on the console would wait 90 s for
	# its device unit, and the host reads the console anyway.
	ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
	ln -sf ../mip4-vm.service "$root/etc/systemd/system/multi-user.target.wants/mip4-vm.service"
}

cmd="${1:-}"
# Absolute: the run's vmlinux link and the chroot's bind mounts use them.
[[ -n "${2:-}" ]] && set -- "$1" "$(realpath -m "$2")" "${@:3}"
[[ -n "${3:-}" ]] && set -- "$1" "$2" "$(realpath -m "$3")" "${@:4}"
case "$cmd" in
cache)
	cache="${2:?usage: image.sh cache CACHE}"
	mkdir -p "$cache/kernel"
	mirror >/dev/null
	lock_cache "$cache"
	cache_kernel "$cache" >/dev/null
	cache_root "$cache"
	;;
root)
	cache="${2:?usage: image.sh root CACHE RUN [GW]}"
	run="${3:?usage: image.sh root CACHE RUN [GW]}"
	gw="${4:-}"
	mkdir -p "$cache/kernel" "$run"
	# The cheap checks first: a fault is named before minutes of work.
	mirror >/dev/null
	lock_cache "$cache"
	kdir="$(cache_kernel "$cache")"
	cache_root "$cache"
	unlock_cache
	lab_root "$cache" "$run/root" ""
	install_modules "$kdir" "$run/root"
	make_initramfs "$run/root" "$run/initramfs.gz"
	if [[ "$gw" == libreswan ]]; then
		lab_root "$cache" "$run/root-libreswan" libreswan
	fi
	ln -sf "$kdir/vmlinux" "$run/vmlinux"
	echo "$run"
	;;
packages)
	cache="${2:?usage: image.sh packages CACHE RUN DEBS}"
	run="${3:?usage: image.sh packages CACHE RUN DEBS}"
	debs="$(realpath "${4:?usage: image.sh packages CACHE RUN DEBS}")"
	mkdir -p "$cache/kernel" "$run"
	mirror >/dev/null
	lock_cache "$cache"
	kdir="$(cache_kernel "$cache")"
	cache_root "$cache"
	unlock_cache
	packages_root "$cache" "$run/root" "$debs"
	install_modules "$kdir" "$run/root"
	make_initramfs "$run/root" "$run/initramfs.gz"
	ln -sf "$kdir/vmlinux" "$run/vmlinux"
	echo "$run"
	;;
*)
	echo "usage: image.sh cache CACHE | root CACHE RUN [libreswan] | packages CACHE RUN DEBS" >&2
	exit 2
	;;
esac
