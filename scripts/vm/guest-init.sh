#!/bin/sh
# PID 1 of the kernel tier's guest (src/lab/vm.rs boots it): mounts what
# the host shares over 9p, runs the host's script, powers off. The host
# reads the results from the run share and the serial console.
#
# In a root made by `image.sh packages` (/etc/mip4-vm/systemd), PID 1 is
# systemd, and systemd runs this again (`--systemd`, mip4-vm.service) once
# the system is up: the script then runs under systemd.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$$" = 1 ] && [ -e /etc/mip4-vm/systemd ]; then
	echo "mip4-vm: kernel $(uname -r) up, starting systemd"
	exec /lib/systemd/systemd
fi
if [ "${1:-}" = --systemd ]; then
	echo "mip4-vm: systemd up"
else
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
echo "mip4-vm: kernel $(uname -r) up"
fi
mkdir -p /run/netns
# The run share is written here and read by the host as it grows: no
# cache. The others only change on the host before the boot: cached.
nine='trans=virtio,version=9p2000.L,msize=512000'
mkdir -p /mnt/run
mount -t 9p -o "$nine,cache=none" run /mnt/run || { echo "mip4-vm: no run share"; echo o >/proc/sysrq-trigger; }
# The host's folders, each at the same path as on the host (binaries,
# lab data), read-only; `rw` ones (the libreswan root) read-write.
while read -r tag path mode; do
	mkdir -p "$path"
	if [ "$mode" = rw ]; then opts="$nine,cache=none"; else opts="$nine,cache=loose,ro"; fi
	mount -t 9p -o "$opts" "$tag" "$path" || echo "mip4-vm: cannot mount $tag at $path"
done </mnt/run/mounts
ip link set lo up
bash /mnt/run/script.sh >/mnt/run/script.log 2>&1
echo "mip4-vm: script exited $?"
sync
echo o >/proc/sysrq-trigger
while :; do :; done
