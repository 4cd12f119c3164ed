#!/usr/bin/env bash
# The packages on a clean system (issue 12; tests/packaging_clean.rs runs
# it): inside the kernel tier's guest booted with systemd as init, in a
# root made by `image.sh packages` (Debian's charon-systemd, the .debs'
# dependencies, no mip4 package yet). Offline: apt installs the .debs
# from the host's folders, which the guest sees at the host's paths.
#
#   packages-guest.sh DEBS UPGRADE OTHER
#     DEBS     the .debs `make deb` built
#     UPGRADE  the same repacked as a higher version, mip4d.conf changed
#              (packaging/repack-deb.sh upgrade)
#     OTHER    the plugin repacked as built for another strongSwan
#              (packaging/repack-deb.sh strongswan)
#
# Prints one JSON line per assertion ({"type":"check","name","ok",
# "detail"}) and per step's duration ({"type":"timing"}), then a summary;
# exits non-zero when a check failed. Its progress goes to stderr.
set -u
debs="$1" upgrade="$2" other="$3"
export DEBIAN_FRONTEND=noninteractive
failed=0
t0=$(date +%s.%N)

log() { echo "packages-guest: $*" >&2; }
json() { printf '%s' "$1" | tr '\n\t' '  ' | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g' | cut -c1-3000; }
# check NAME RC DETAIL: RC 0 is a pass.
check() {
	local ok=true
	if [ "$2" != 0 ]; then
		ok=false
		failed=$((failed + 1))
	fi
	log "check $1: $ok"
	printf '{"type":"check","name":"%s","ok":%s,"detail":"%s"}\n' "$1" "$ok" "$(json "$3")"
}
step_start=$t0
timing() {
	local now
	now=$(date +%s.%N)
	printf '{"type":"timing","step":"%s","s":%s}\n' "$1" "$(awk "BEGIN { printf \"%.1f\", $now - $step_start }")"
	step_start=$now
}
# until SECONDS CMD...: CMD polled every 0.2 s until it succeeds; the
# deadline only bounds a failure.
until_ok() {
	local end=$(($(date +%s) + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
apt_get() { apt-get -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; }

# Files whose presence is the system's own churn, not a package's: apt's
# and dpkg's bookkeeping, logs and the volatile journal, systemd's per-boot
# unit records, the test's own network namespaces.
noise='^/var/(cache|log)/|^/var/lib/apt/|^/var/lib/dpkg/[a-z-]+-old$|^/var/lib/dpkg/(lock|lock-frontend|triggers/Lock)$|^/run/log/|^/run/systemd/(units|transient|propagate|journal|seats|sessions|users|inhibit|ask-password|notify|private|io\.system[a-z.]*|userdb)(/|$)|^/run/netns(/|$)|^/run/lock/|^/run/user(/|$)'
snapshot() {
	for d in /etc /usr /var /opt /srv /run; do
		find "$d" -xdev 2>/dev/null
	done | grep -Ev "$noise" | sort
}

log "waiting for systemd"
state=$(systemctl is-system-running --wait 2>&1)
check systemd_is_init "$([ "$(cat /proc/1/comm)" = systemd ]; echo $?)" "PID 1 $(cat /proc/1/comm), system $state, $(systemctl --version | head -n1)"
until_ok 60 systemctl is-active strongswan
check charon_systemd_running "$?" "strongswan.service (charon-systemd): $(systemctl is-active strongswan) $(dpkg-query -W -f='${Version}' charon-systemd)"
snapshot >/tmp/before
timing boot_to_ready

# --- Install: apt, offline, the two .debs.
out=$(apt_get install "$debs"/strongswan-mip4-plugin_*.deb "$debs"/mip4-mobike_*.deb 2>&1)
rc=$?
check apt_install "$rc" "$(echo "$out" | grep -E '^(Setting up|E:|Unpacking)' | tr '\n' ';') $(dpkg-query -W -f='${Package} ${Version} ${Status}; ' strongswan-mip4-plugin mip4-mobike 2>&1)"
en="$(systemctl is-enabled mip4d mip4-ha mip4-fa 2>&1 | tr '\n' ' ')"
check units_installed_disabled "$([ "$en" = "disabled disabled disabled " ]; echo $?)" "mip4d mip4-ha mip4-fa: $en"
# systemd reads every key of every shipped unit, and each command exists.
out=$(systemd-analyze verify mip4d.service mip4-ha.service mip4-fa.service 2>&1)
check units_verify "$?" "${out:-systemd-analyze verify: nothing to say}"
timing install

# --- charon-systemd loads the plugin.
systemctl restart strongswan
until_ok 60 swanctl --stats
plugins=$(swanctl --stats 2>&1 | grep -A3 'loaded plugins' | tr '\n' ' ')
echo "$plugins" | grep -qw mip4
check charon_systemd_loads_plugin "$?" "$plugins"
until_ok 30 sh -c 'journalctl -b -u strongswan --no-pager | grep -q "mip4: bridge started"'
check plugin_logs_to_journal "$?" "$(journalctl -b -u strongswan --no-pager | grep -m3 'mip4:')"
timing plugin

# --- The daemons under their units: the home agent in the root namespace
# with a real home link (proxy ARP, RFC 5944 §4.6), the mobile node in a
# namespace of its own behind a foreign link. mip4d's unit gets only
# NetworkNamespacePath= added (a runtime drop-in), nothing loosened.
# link NS HOSTIF HOSTADDR NSADDR: a veth from the root namespace into NS
# (its end eth0), NS's default route via the root's end.
link() {
	ip netns add "$1"
	ip link add "$2" type veth peer name eth0 netns "$1"
	ip addr add "$3/24" dev "$2"
	ip link set "$2" up
	ip -n "$1" link set lo up
	ip -n "$1" addr add "$4/24" dev eth0
	ip -n "$1" link set eth0 up
	ip -n "$1" route add default via "$3"
}
link peer home0 10.1.0.1 10.1.0.50
link mn fa0 10.2.0.1 10.2.0.2
# A host on the home link that knew the mobile node at home: only the
# HA's gratuitous ARP moves this entry to the HA's MAC.
ip -n peer neigh replace 10.1.0.10 lladdr 02:00:00:00:00:0a dev eth0 nud stale
home_mac=$(cat /sys/class/net/home0/address)
key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

cat >/etc/mip4/mip4-ha.conf <<EOF
# The operator's edit (the test's home agent).
listen = "0.0.0.0:434"
home_agent = "10.1.0.1"
control_socket = "/run/mip4/ha.sock"
state_file = "/run/mip4/ha.state"
max_lifetime = 600
tunnel_backend = "kernel"
udp_tunnelling = false
trusted_networks = ["10.2.0.0/24"]
[[home_network]]
prefix = "10.1.0.0/24"
mode = "proxy-arp"
interface = "home0"
[[mobile_node]]
home_address = "10.1.0.10"
spi = 4096
key = "$key"
algorithm = "hmac-md5"
replay = "timestamp"
reverse_tunnel = "allowed"
EOF
cat >/etc/mip4/mip4d.conf <<EOF
# The operator's edit (the test's mobile node).
home_address = "10.1.0.10"
home_network = "10.1.0.0/24"
home_agent = "10.1.0.1"
spi = 4096
key = "$key"
algorithm = "hmac-md5"
replay = "timestamp"
interfaces = ["eth0"]
lifetime = 600
reverse_tunnel = true
deregister_on_shutdown = true
tunnel_backend = "kernel"
udp_tunnel = "never"
control_socket = "/run/mip4/mip4d.sock"
routing_table = 434
rule_priority = 200
[retransmission]
initial_timeout_ms = 1000
retries = 4
backoff_cap_ms = 4000
retry_interval_s = 2
# The RFC 5266 §3.4 probe: its socket bypasses IPsec (XFRM socket policy).
[detect]
timeout_ms = 2000
retries = 2
backoff_cap_ms = 4000
[vpn]
plugin_socket = "/run/mip4/plugin.sock"
connections = ["vpn"]
EOF
mkdir -p /run/systemd/system/mip4d.service.d
printf '[Service]\nNetworkNamespacePath=/run/netns/mn\n' >/run/systemd/system/mip4d.service.d/netns.conf
systemctl daemon-reload

systemctl start mip4-ha
until_ok 30 mip4ctl --socket /run/mip4/ha.sock status
check ha_started_under_unit "$?" "$(systemctl is-active mip4-ha) $(mip4ctl --socket /run/mip4/ha.sock status 2>&1 | head -n 8)"
until_ok 30 nft list table ip mip4-ha
check ha_nft_ingress_table "$?" "$(nft list table ip mip4-ha 2>&1 | tr -s ' \t' ' ')"
systemctl start mip4d
until_ok 30 mip4ctl status
check mip4d_started_under_unit "$?" "$(systemctl is-active mip4d) $(mip4ctl status 2>&1 | head -n 12)"
# mip4-fa under its unit, in a namespace of its own (mip4-ha has UDP 434
# in the root one) with an uplink and a served link: again only
# NetworkNamespacePath= added.
link fa fa1 10.3.0.1 10.3.0.2
ip -n fa link add eth1 type veth peer name visit0
ip -n fa addr add 10.50.0.1/24 dev eth1
ip -n fa link set eth1 up
ip -n fa link set visit0 up
cat >/etc/mip4/mip4-fa.conf <<EOF
# The operator's edit (the test's foreign agent).
care_of_address = "10.3.0.2"
allowed_home_agents = ["10.1.0.1/32"]
tunnel_backend = "kernel"
[advertisement]
interval = 1
[[interface]]
name = "eth1"
address = "10.50.0.1/24"
EOF
mkdir -p /run/systemd/system/mip4-fa.service.d
printf '[Service]\nNetworkNamespacePath=/run/netns/fa\n' >/run/systemd/system/mip4-fa.service.d/netns.conf
systemctl daemon-reload
systemctl start mip4-fa
until_ok 30 mip4ctl --socket /run/mip4/fa.sock status
check fa_started_under_unit "$?" "$(systemctl is-active mip4-fa) $(mip4ctl --socket /run/mip4/fa.sock status 2>&1 | head -n 8)"
# Its kernel backend's RFC 3024 ingress table (nft, its child) and its
# Agent Advertisements (raw ICMP on the served link, RFC 5944 §2.3).
until_ok 30 ip netns exec fa nft list table ip mip4-fa
check fa_nft_ingress_table "$?" "$(ip netns exec fa nft list table ip mip4-fa 2>&1 | tr -s ' \t' ' ')"
# (The counter counts those built; a failed send is logged.)
until_ok 30 sh -c 'mip4ctl --socket /run/mip4/fa.sock --json counters | grep -Eq "\"advertisements\": ?[1-9]"' &&
	! journalctl -b -u mip4-fa --no-pager | grep -q 'cannot send agent advertisement'
check fa_advertises "$?" "$(mip4ctl --socket /run/mip4/fa.sock --json counters 2>&1 | head -c 600) $(journalctl -b -u mip4-fa --no-pager | grep -m2 'cannot send')"
timing daemons_start

# The registration: the HA's binding, its tunnel, proxy ARP, gratuitous
# ARP; the MN's tunnel, rules; traffic both ways through the tunnel.
until_ok 90 sh -c 'mip4ctl --socket /run/mip4/ha.sock --json bindings | grep -q 10.1.0.10'
check registration_accepted "$?" "HA: $(mip4ctl --socket /run/mip4/ha.sock bindings 2>&1) | MN: $(mip4ctl status 2>&1 | head -n 12)"
# mip4-ha's kernel link is named after the care-of address (10.2.0.2: one
# link per care-of address, shared by its bindings); mip4d's after the
# home address (10.1.0.10).
ha_link="mip4-0a020002"
link="mip4-0a01000a"
until_ok 30 ip link show "$ha_link"
check ha_tunnel_installed "$?" "$(ip -d link show "$ha_link" 2>&1 | tr -s ' ') route: $(ip route get 10.1.0.10 2>&1)"
until_ok 30 sh -c 'ip neigh show proxy dev home0 | grep -q 10.1.0.10'
check ha_proxy_arp "$?" "$(ip neigh show proxy dev home0 2>&1)"
until_ok 30 sh -c "ip -n peer neigh show 10.1.0.10 | grep -q $home_mac"
check ha_gratuitous_arp "$?" "peer's entry for 10.1.0.10: $(ip -n peer neigh show 10.1.0.10) (HA home0 $home_mac, was 02:00:00:00:00:0a)"
mn_state="rules: $(ip -n mn rule | tr '\n' ';') links: $(ip -n mn -br link | tr '\n' ';') table 434: $(ip -n mn route show table 434 | tr '\n' ';')"
ip -n mn rule | grep -q '^200:' && ip -n mn -br link | grep -q "^$link"
check mn_tunnel_and_rules "$?" "$mn_state"
out=$(ip netns exec peer ping -c 3 -W 5 10.1.0.10 2>&1)
check home_link_reaches_mn_through_tunnel "$?" "$(echo "$out" | tail -n 2)"
# What the units' sandboxes refused shows as EPERM/EACCES in the logs.
denied=$(journalctl -b -u mip4-ha -u mip4d -u mip4-fa --no-pager | grep -Ei 'not permitted|permission denied|EPERM|EACCES|not sent|failed' | head -n 5)
check no_sandbox_denials "$([ -z "$denied" ]; echo $?)" "${denied:-none in the journal of mip4d, mip4-ha and mip4-fa}"
journalctl -b -u mip4d --no-pager | grep -qi 'probe'
check mn_probe_ran "$?" "$(journalctl -b -u mip4d --no-pager | grep -i -m3 'probe\|trusted')"
# Root-only control sockets (they hold no keys, but steer the daemons).
modes="$(stat -c '%n %a %U' /run/mip4 /run/mip4/mip4d.sock /run/mip4/ha.sock /run/mip4/fa.sock 2>&1 | tr '\n' ';')"
nobody=$(setpriv --reuid=65534 --regid=65534 --clear-groups mip4ctl status 2>&1)
rc=$?
[ "$rc" != 0 ] && echo "$modes" | grep -q '/run/mip4 700 root' && echo "$modes" | grep -q 'mip4d.sock 600 root' && echo "$modes" | grep -q 'fa.sock 600 root'
check control_socket_root_only "$?" "$modes nobody: rc $rc $nobody"
timing registration

# --- Upgrade: the operator's edited configs survive. mip4-ha.conf is the
# same in both versions (dpkg keeps the edit silently); mip4d.conf changed
# (dpkg's conffile question, answered "keep mine" by --force-confold: the
# package's new one lands beside it as .dpkg-dist).
cp /etc/mip4/mip4-ha.conf /tmp/ha.conf.edited
cp /etc/mip4/mip4d.conf /tmp/mip4d.conf.edited
pids_before="$(systemctl show -p MainPID --value mip4-ha mip4d mip4-fa | tr '\n' ' ')"
out=$(apt_get install "$upgrade"/strongswan-mip4-plugin_*.deb "$upgrade"/mip4-mobike_*.deb 2>&1)
rc=$?
vers="$(dpkg-query -W -f='${Package} ${Version}; ' strongswan-mip4-plugin mip4-mobike)"
cmp -s /etc/mip4/mip4-ha.conf /tmp/ha.conf.edited && cmp -s /etc/mip4/mip4d.conf /tmp/mip4d.conf.edited &&
	[ -e /etc/mip4/mip4d.conf.dpkg-dist ] && [ "$rc" = 0 ] && echo "$vers" | grep -q '+up1'
check upgrade_keeps_edited_configs "$?" "apt rc $rc; $vers; /etc/mip4: $(ls /etc/mip4 | tr '\n' ' ')"
# The running daemons were restarted on the new binaries, and the MN is
# registered again.
pids_after="$(systemctl show -p MainPID --value mip4-ha mip4d mip4-fa | tr '\n' ' ')"
active="$(systemctl is-active mip4-ha mip4d mip4-fa | tr '\n' ' ')"
until_ok 60 sh -c 'mip4ctl --socket /run/mip4/ha.sock --json bindings | grep -q 10.1.0.10'
rc=$?
[ "$rc" = 0 ] && [ "$active" = "active active active " ] && [ "$pids_before" != "$pids_after" ]
check upgrade_restarts_running_daemons "$?" "$active; main PIDs $pids_before-> $pids_after; binding again: rc $rc"
timing upgrade

# --- Remove: nothing keeps running, the kernel state goes; conffiles stay.
out=$(apt_get remove mip4-mobike strongswan-mip4-plugin 2>&1)
rc=$?
left="$(ps -eo comm | grep -Ex 'mip4d|mip4-ha|mip4-fa' | tr '\n' ' ')$(ip -br link | grep -o '^mip4[^ ]*' | tr '\n' ' ')$(ip -n mn -br link | grep -o '^mip4[^ ]*')$(ip -n fa -br link | grep -o '^mip4[^ ]*')$(nft list tables 2>/dev/null | grep mip4)$(ip netns exec fa nft list tables 2>/dev/null | grep mip4)$(ip neigh show proxy | grep 10.1.0.10)$(ip -n mn rule | grep '^200:')"
[ "$rc" = 0 ] && [ -z "$left" ] && [ -e /etc/mip4/mip4d.conf ]
check apt_remove_stops_and_cleans "$?" "apt rc $rc; left: ${left:-nothing}; $(systemctl is-active mip4-ha mip4d mip4-fa | tr '\n' ' ') $(dpkg-query -W -f='${Package} ${Status}; ' mip4-mobike strongswan-mip4-plugin)"
# The daemons' journal, for the run's logs (packages.stderr).
journalctl -b -u mip4-ha -u mip4d -u mip4-fa --no-pager | tail -n 100 >&2
systemctl restart strongswan
until_ok 60 swanctl --stats
swanctl --stats | grep -A3 'loaded plugins' | grep -qw mip4
check charon_without_plugin_after_remove "$([ $? != 0 ]; echo $?)" "$(swanctl --stats | grep -A3 'loaded plugins' | tr '\n' ' ')"
# The test's own pieces go before the comparison.
rm -rf /run/systemd/system/mip4d.service.d /run/systemd/system/mip4-fa.service.d
systemctl daemon-reload
ip netns del mn
ip netns del peer
ip netns del fa
ip link del home0 2>/dev/null
ip link del fa0 2>/dev/null
ip link del fa1 2>/dev/null
timing remove

# --- Purge: the file lists before install and after purge are the same.
out=$(apt_get purge mip4-mobike strongswan-mip4-plugin 2>&1)
rc=$?
systemctl daemon-reload
snapshot >/tmp/after
diff=$(diff /tmp/before /tmp/after | grep '^[<>]' | head -n 40)
[ "$rc" = 0 ] && [ -z "$diff" ] && ! dpkg -l mip4-mobike strongswan-mip4-plugin 2>/dev/null | grep -q '^[a-z][a-z] '
check apt_purge_leaves_nothing "$?" "apt rc $rc; $(wc -l </tmp/before) paths before and $(wc -l </tmp/after) after; differences: ${diff:-none}; units: $(systemctl list-unit-files 'mip4*' --no-legend | tr '\n' ' ')"
timing purge

# --- The pin: the plugin built for another strongSwan release.
out=$(apt_get install "$other"/strongswan-mip4-plugin_*.deb 2>&1)
rc=$?
[ "$rc" != 0 ] && ! dpkg -l strongswan-mip4-plugin 2>/dev/null | grep -q '^ii'
check apt_refuses_plugin_for_other_strongswan "$?" "apt rc $rc: $(echo "$out" | grep -E 'Depends|E:' | head -n 4)"
out=$(dpkg -i --force-depends "$other"/strongswan-mip4-plugin_*.deb 2>&1)
systemctl restart strongswan
until_ok 60 swanctl --stats
plugins=$(swanctl --stats 2>&1 | grep -A3 'loaded plugins' | tr '\n' ' ')
refusal=$(journalctl -b -u strongswan --no-pager | grep -m1 'mip4: built against strongSwan')
! echo "$plugins" | grep -qw mip4 && echo "$refusal" | grep -q "headers, but this charon is strongSwan"
check forced_plugin_refuses_to_load "$?" "$refusal | $plugins"
dpkg --purge strongswan-mip4-plugin >/dev/null 2>&1
# And the real plugin next to another strongSwan: a stand-in
# strongswan-libcharon of the next release (last: it replaces charon's
# library).
next=$(dpkg-query -W -f='${source:Upstream-Version}' strongswan-libcharon | awk -F. -v OFS=. '{ $NF = $NF + 1; print }')
mkdir -p /tmp/dummy/DEBIAN
printf 'Package: strongswan-libcharon\nVersion: %s-1\nArchitecture: amd64\nMaintainer: test <test@example.org>\nDescription: stand-in of another strongSwan release\n' "$next" >/tmp/dummy/DEBIAN/control
dpkg-deb -b /tmp/dummy /tmp/dummy.deb >/dev/null && dpkg -i /tmp/dummy.deb >/dev/null 2>&1
out=$(apt_get install "$debs"/strongswan-mip4-plugin_*.deb 2>&1)
rc=$?
[ "$rc" != 0 ] && echo "$out" | grep -q 'strongswan-libcharon'
check apt_refuses_plugin_next_to_other_strongswan "$?" "strongswan-libcharon $(dpkg-query -W -f='${Version}' strongswan-libcharon); apt rc $rc: $(echo "$out" | grep -E 'Depends|E:' | head -n 4)"
timing pin

total=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")
printf '{"type":"summary","checks_failed":%d,"guest_s":%s}\n' "$failed" "$total"
[ "$failed" = 0 ]
